"""Operating ``tributary dev``: metrics that move with the loop, JSON logs, a health
check, and a worker that is restarted when it dies."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

from domain import metrics
from tests.e2e.conftest import Stack, publish_applied, start_stack, stop_stack
from tests.e2e.test_cli_apply import kubectl
from tests.e2e.test_cli_drift import revisions, wait_for
from tests.support import HANG, git, make_repo, run_cli

DEV = "messagewall-dev-east"
PROD = "messagewall-prod-east"
SERIES = re.compile(r"^([a-z_]+)\{(.*)\} (\S+)$")


def scrape(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by name and labels (ours and the SDK's)."""
    url = f"http://{stack.env['TRIBUTARY_METRICS_BIND']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        found = SERIES.match(line)
        if found:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
            samples[(found.group(1), labels)] = float(found.group(3))
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **want: str
) -> float:
    """The sum of the samples of ``name`` whose labels include ``want``."""
    return sum(v for (n, labels), v in samples.items() if n == name and set(want.items()) <= labels)


def worker_pid(stack: Stack) -> int:
    return int(json.loads((stack.data_dir / "worker.health").read_text())["pid"])


def test_metrics_move_with_the_loop_and_the_worker_is_supervised(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / ".tributary", "--no-ui", "--log-format", "json")
    try:
        repo = make_repo(tmp_path, "messagewall")
        before = scrape(stack)
        assert value(before, "temporal_num_pollers") > 0  # the SDK's own metrics

        # publish + apply, a live edit captured, a sync PR opened and merged
        publish_applied(stack, repo.url, DEV)
        edited = kubectl(
            stack,
            "patch",
            "serverlesseventappclaims.messagewall.demo",
            DEV,
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"lambdaMemory": 512}}),
        )
        assert edited.returncode == 0, edited.stderr
        wait_for(lambda: len(revisions(stack, DEV, DEV)) == 2)
        synced = run_cli("sync-pr", DEV, "--json", env=stack.env, timeout=120)
        # the capture's own debounced sync may have opened it first (a slow machine);
        # either way one sync opened it, which the metric below counts
        assert synced.json["action"] in ("opened", "updated", "unchanged"), synced.stderr
        git(repo.work, "fetch", "-q", "origin")
        git(repo.work, "merge", "-q", "--no-edit", f"origin/{synced.json['branch']}")
        git(repo.work, "push", "-q", "origin", "main")
        assert run_cli("sync-pr", DEV, "--json", env=stack.env, timeout=120).code == 0
        # a unit waiting at its approval gate
        held = run_cli(
            "publish",
            "--repo",
            repo.url,
            "--space",
            PROD,
            "--apply",
            "--json",
            env=stack.env,
            timeout=240,
        )
        assert held.code == 5, held.stderr
        wait_for(lambda: value(scrape(stack), metrics.AWAITING_APPROVAL, space=PROD) == 1)
        after = scrape(stack)

        def moved(name: str, **labels: str) -> bool:
            return value(after, name, **labels) > value(before, name, **labels)

        assert moved(metrics.PUBLISHES, space=DEV, action="published")
        assert moved(metrics.DRIFT_CHECKS, space=DEV)
        assert moved(metrics.DRIFTS_DETECTED, space=DEV)
        assert moved(metrics.DRIFTS_CAPTURED, space=DEV)
        assert moved(metrics.DETECTION_LATENCY + "_count", space=DEV)
        assert moved(metrics.APPLY_DURATION + "_count", space=DEV, state="ready")
        assert moved(metrics.SYNC_PRS, space=DEV, action="opened")
        assert moved(metrics.SYNC_PRS, space=DEV, action="merged")
        assert value(after, metrics.AWAITING_APPROVAL, space=DEV) == 0

        # the health check, then a worker that dies is started again
        checked = run_cli("worker", "--check", "--json", env=stack.env)
        assert checked.code == 0, checked.stderr
        first = worker_pid(stack)
        assert checked.json["worker"]["pid"] == first
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + HANG
        while run_cli("worker", "--check", env=stack.env).code != 0:
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(1)
        assert worker_pid(stack) != first
    finally:
        code = stop_stack(stack)
    output = stack.proc.stdout.read() if stack.proc.stdout else ""
    assert code == 0, output
    assert f"Metrics       http://{stack.env['TRIBUTARY_METRICS_BIND']}/metrics" in output
    assert "the worker exited with code -9" in output
    assert "restarting it in 1s" in output
    log = (stack.data_dir / "worker.log").read_text().splitlines()
    assert "tributary dev: the worker exited with code -9" in "\n".join(log)
    started = [json.loads(line) for line in log if "worker polling" in line]
    assert len(started) == 2  # JSON lines, one per worker process
    assert {line["logger"] for line in started} == {"tributary"}
    # stopped: the check says so
    down = run_cli("worker", "--check", env=stack.env)
    assert down.code == 1
    assert "no worker heartbeat" in down.stderr
