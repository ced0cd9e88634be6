"""client/telemetry.py: options, JSON log lines (redacted), the heartbeat and its reading."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import telemetry
from domain.errors import BadInput
from domain.redact import secret_values
from worker import RedactingFilter

SECRET = "ghp_" + "Zq8" * 12


def test_metrics_bind_defaults_to_loopback_and_can_be_turned_off() -> None:
    assert telemetry.parse_metrics_bind(None) == "127.0.0.1:9464"
    assert telemetry.parse_metrics_bind("0.0.0.0:9100") == "0.0.0.0:9100"
    assert telemetry.parse_metrics_bind("") is None
    assert telemetry.parse_metrics_bind("off") is None
    assert telemetry.metrics_url("0.0.0.0:9100") == "http://127.0.0.1:9100/metrics"


@pytest.mark.parametrize(
    "bad", ["9464", "host:", "host:port", "h:70000", ":9464", "localhost:9464", "::1:9464"]
)
def test_a_bad_metrics_address_is_bad_input(bad: str) -> None:
    with pytest.raises(BadInput, match="is not HOST:PORT"):
        telemetry.parse_metrics_bind(bad)


def test_metrics_addresses_are_ip_literals() -> None:
    assert telemetry.parse_metrics_bind("[::1]:9464") == "[::1]:9464"
    assert telemetry.parse_metrics_bind("[::]:9464") == "[::]:9464"
    with pytest.raises(BadInput):
        telemetry.parse_metrics_bind("[127.0.0.1]:9464")


@pytest.mark.parametrize("bad", ["inf", "nan", "-1", "1e300", "86401"])
def test_a_graceful_shutdown_timeout_is_finite_and_at_most_a_day(bad: str) -> None:
    with pytest.raises(BadInput, match="from 0 to 86400"):
        telemetry.parse_seconds(bad)
    assert telemetry.parse_seconds("86400") == 86400


def test_the_workflow_cache_size_comes_from_the_environment_and_is_bounded() -> None:
    def size(env: dict[str, str]) -> int:
        return telemetry.WorkerOptions.from_args(None, env).max_cached_workflows

    assert size({}) == telemetry.DEFAULT_MAX_CACHED_WORKFLOWS
    assert size({"TRIBUTARY_MAX_CACHED_WORKFLOWS": "40"}) == 40
    for bad in ("-1", "lots", "1.5", "1000001"):
        with pytest.raises(BadInput) as e:
            size({"TRIBUTARY_MAX_CACHED_WORKFLOWS": bad})
        assert e.value.field == "TRIBUTARY_MAX_CACHED_WORKFLOWS"


def test_errors_name_the_variable_or_the_flag_that_was_written() -> None:
    import argparse

    cases = {
        "TRIBUTARY_METRICS_BIND": ("metrics_bind", "localhost:1"),
        "TRIBUTARY_LOG_FORMAT": ("log_format", "xml"),
        "TRIBUTARY_GRACEFUL_SHUTDOWN_TIMEOUT": ("graceful_shutdown_timeout", "inf"),
    }
    for var, (dest, value) in cases.items():
        with pytest.raises(BadInput) as from_env:
            telemetry.WorkerOptions.from_args(None, {var: value})
        assert from_env.value.field == var
        args = argparse.Namespace(**{dest: value})
        with pytest.raises(BadInput) as from_flag:
            telemetry.WorkerOptions.from_args(args, {})
        assert from_flag.value.field == "--" + dest.replace("_", "-")


def test_flags_win_over_the_environment() -> None:
    env = {
        "TRIBUTARY_METRICS_BIND": "off",
        "TRIBUTARY_LOG_FORMAT": "json",
        "TRIBUTARY_GRACEFUL_SHUTDOWN_TIMEOUT": "5",
        "TRIBUTARY_HEALTH_FILE": "/run/w.health",
    }
    from_env = telemetry.WorkerOptions.from_args(None, env)
    assert from_env.metrics_bind is None
    assert from_env.log_format == "json"
    assert from_env.graceful_shutdown_seconds == 5
    assert from_env.health_file == Path("/run/w.health")
    import argparse

    args = argparse.Namespace(
        metrics_bind="127.0.0.1:9999",
        log_format="text",
        graceful_shutdown_timeout=1.5,
        health_file=None,
        check=True,
        json=True,
    )
    flags = telemetry.WorkerOptions.from_args(args, env)
    assert flags.metrics_bind == "127.0.0.1:9999"
    assert flags.log_format == "text"
    assert flags.graceful_shutdown_seconds == 1.5
    assert flags.check
    assert flags.as_json
    with pytest.raises(BadInput, match="not a number of seconds"):
        telemetry.WorkerOptions.from_args(None, {"TRIBUTARY_GRACEFUL_SHUTDOWN_TIMEOUT": "soon"})
    with pytest.raises(BadInput, match="log format 'xml'"):
        telemetry.WorkerOptions.from_args(None, {"TRIBUTARY_LOG_FORMAT": "xml"})


def _json_line(record: logging.LogRecord) -> dict[str, object]:
    secrets = secret_values({"GITHUB_TOKEN": SECRET})
    assert RedactingFilter(secrets).filter(record)
    line = telemetry.JsonFormatter(secrets).format(record)
    assert "\n" not in line
    assert SECRET not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_json_lines_carry_workflow_and_activity_ids_and_stay_redacted() -> None:
    record = logging.LogRecord(
        "temporalio.activity", logging.WARNING, __file__, 1, "push to %s failed", (SECRET,), None
    )
    record.temporal_activity = {
        "activity_id": "7",
        "activity_type": "sync.push",
        "attempt": 2,
        "workflow_id": "sync-pr:dev",
        "workflow_run_id": "r-1",
        "workflow_type": "SyncPRWorkflow",
        "namespace": "default",
        "task_queue": "tributary",
    }
    line = _json_line(record)
    assert line["level"] == "warning"
    assert line["logger"] == "temporalio.activity"
    assert line["message"] == "push to *** failed"
    assert line["activity_id"] == "7"
    assert line["activity_type"] == "sync.push"
    assert line["workflow_id"] == "sync-pr:dev"
    assert line["run_id"] == "r-1"
    assert line["attempt"] == 2

    record = logging.LogRecord(
        "temporalio.workflow", logging.INFO, __file__, 1, "re-plan", (), None
    )
    record.temporal_workflow = {
        "workflow_id": "publish:dev:abc",
        "run_id": "r-2",
        "workflow_type": "PublishWorkflow",
        "attempt": 1,
        "namespace": "default",
        "task_queue": "tributary",
    }
    line = _json_line(record)
    assert line["workflow_id"] == "publish:dev:abc"
    assert line["workflow_type"] == "PublishWorkflow"
    assert "activity_id" not in line


def test_json_lines_redact_tracebacks() -> None:
    try:
        raise RuntimeError(f"token {SECRET} refused")
    except RuntimeError:
        record = logging.LogRecord(
            "tributary", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = _json_line(record)
    assert "RuntimeError: token *** refused" in str(line["exception"])


def test_heartbeat_read_back(tmp_path: Path) -> None:
    path = tmp_path / "worker.health"
    missing = telemetry.read_heartbeat(path)
    assert not missing.healthy
    assert "no worker heartbeat" in missing.message

    beat = telemetry.Heartbeat(path, {"pid": os.getpid(), "task_queue": "q"})
    beat.write("polling")
    assert path.stat().st_mode & 0o777 == 0o600
    fresh = telemetry.read_heartbeat(path)
    assert fresh.healthy, fresh.message
    stale = telemetry.read_heartbeat(path, now=time.time() + telemetry.STALE_SECONDS + 1)
    assert not stale.healthy
    assert "stuck or not polling" in stale.message
    beat.write("draining")
    assert "is draining" in telemetry.read_heartbeat(path).message
    beat.remove()
    assert not path.exists()


def test_heartbeat_of_a_dead_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / "worker.health"
    telemetry.Heartbeat(path, {"pid": int(done.stdout)}).write("polling")
    gone = telemetry.read_heartbeat(path)
    assert not gone.healthy
    assert "is gone" in gone.message
