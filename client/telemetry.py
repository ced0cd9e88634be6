"""What operators see of a running worker: metrics, JSON logs, a heartbeat and its check.

- Metrics: the Temporal runtime's Prometheus exporter serves the SDK's own metrics and
  ours (``domain/metrics.py``) on ``127.0.0.1:9464/metrics`` unless told otherwise
  (``--metrics-bind`` / ``TRIBUTARY_METRICS_BIND``; empty or ``off`` disables).
- Logs: ``--log-format json`` / ``TRIBUTARY_LOG_FORMAT=json`` prints one JSON object a
  line, with the workflow and activity ids the SDK's logger adapters attach.
- Health: the worker rewrites a small heartbeat file while it polls
  (``TRIBUTARY_HEALTH_FILE``, default next to the cache: ``.tributary/worker.health``);
  ``tributary worker --check`` reads it, checks that the process lives and that
  Temporal lists the worker as a poller of its task queue, and exits 0 or 1.

Light to import: the CLI builds its parser from here without loading the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError

from client.settings import Settings, connect
from domain import metrics
from domain.errors import BadInput
from domain.redact import redact

DEFAULT_METRICS_BIND = "127.0.0.1:9464"
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = 30.0
MAX_GRACEFUL_SHUTDOWN_SECONDS = 86400.0
# Workflow runs the worker keeps in memory between tasks (the SDK's default is 1,000).
# A cached drift loop costs about 100 KB (client/codecache.py shares the code); an
# idle loop covered by scheduled sweeps wakes about once an hour, when replaying its
# short run (at most ~100 events) costs about 12 ms, less than keeping it, so the
# worker keeps room for its busy workflows (publishes, applies, sync PRs, sweeps).
DEFAULT_MAX_CACHED_WORKFLOWS = 150
LOG_FORMATS = ("text", "json")
HEARTBEAT_SECONDS = 5.0
# A heartbeat older than this means the worker's event loop is stuck (or it is gone).
STALE_SECONDS = 30.0
CHECK_TIMEOUT_SECONDS = 10.0


# ---- options -------------------------------------------------------------------------


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """The worker's flags, for ``tributary worker`` and ``python worker.py`` alike."""
    p.add_argument(
        "--check",
        action="store_true",
        help="check the running worker instead of starting one: exit 0 when it is up and "
        "polling and Temporal is reachable, 1 otherwise (a Docker HEALTHCHECK)",
    )
    p.add_argument(
        "--metrics-bind",
        default=None,
        metavar="HOST:PORT",
        help=f"serve Prometheus metrics on http://HOST:PORT/metrics (default "
        f"{DEFAULT_METRICS_BIND}, env TRIBUTARY_METRICS_BIND; empty or 'off' disables)",
    )
    p.add_argument(
        "--log-format",
        default=None,
        choices=LOG_FORMATS,
        help="text (default) or json: one JSON object a line (env TRIBUTARY_LOG_FORMAT)",
    )
    p.add_argument(
        "--graceful-shutdown-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long in-flight activities may run before they are "
        f"cancelled (default {DEFAULT_GRACEFUL_SHUTDOWN_SECONDS:.0f}, env "
        "TRIBUTARY_GRACEFUL_SHUTDOWN_TIMEOUT)",
    )
    p.add_argument(
        "--health-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="the heartbeat file the worker writes and --check reads (env "
        "TRIBUTARY_HEALTH_FILE; default: worker.health beside the cache directory)",
    )


@dataclass(frozen=True)
class WorkerOptions:
    metrics_bind: str | None = DEFAULT_METRICS_BIND  # None: no metrics
    log_format: str = "text"
    graceful_shutdown_seconds: float = DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
    health_file: Path | None = None  # None: beside the cache directory
    check: bool = False
    as_json: bool = False
    max_cached_workflows: int = DEFAULT_MAX_CACHED_WORKFLOWS

    @classmethod
    def from_args(
        cls, args: argparse.Namespace | None, env: Mapping[str, str] | None = None
    ) -> WorkerOptions:
        """Flags first, then the environment, then the defaults."""
        env = os.environ if env is None else env

        def pick(name: str, var: str) -> tuple[Any, str]:
            """The value and what it came from (the flag, else the variable): an
            error names the one the operator wrote."""
            value = getattr(args, name, None) if args is not None else None
            if value is not None:
                return value, "--" + name.replace("_", "-")
            return env.get(var), var

        health, _ = pick("health_file", "TRIBUTARY_HEALTH_FILE")
        return cls(
            metrics_bind=parse_metrics_bind(*pick("metrics_bind", "TRIBUTARY_METRICS_BIND")),
            log_format=parse_log_format(*pick("log_format", "TRIBUTARY_LOG_FORMAT")),
            graceful_shutdown_seconds=parse_seconds(
                *pick("graceful_shutdown_timeout", "TRIBUTARY_GRACEFUL_SHUTDOWN_TIMEOUT")
            ),
            health_file=Path(health) if health else None,
            check=bool(getattr(args, "check", False)),
            as_json=bool(getattr(args, "json", False)),
            max_cached_workflows=parse_cache_size(
                *pick("max_cached_workflows", "TRIBUTARY_MAX_CACHED_WORKFLOWS")
            ),
        )


def parse_metrics_bind(value: str | None, field: str = "--metrics-bind") -> str | None:
    """``HOST:PORT`` with HOST an IP address (the exporter binds a socket address, so
    a host name fails only after the worker started); None (unset) is the default;
    empty or ``off`` is no metrics."""
    if value is None:
        return DEFAULT_METRICS_BIND
    value = value.strip()
    if value.lower() in ("", "off"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not _ip_literal(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(
            f"metrics address {value!r} is not HOST:PORT with HOST an IP address "
            "(127.0.0.1, 0.0.0.0, [::1]), or 'off'",
            field=field,
        )
    return value


def _ip_literal(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        want = 6
    else:
        want = 4
    try:
        return ipaddress.ip_address(host).version == want
    except ValueError:
        return False


def parse_log_format(value: str | None, field: str = "--log-format") -> str:
    value = (value or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise BadInput(f"log format {value!r} is not one of {', '.join(LOG_FORMATS)}", field=field)
    return value


def parse_cache_size(value: Any, field: str = "TRIBUTARY_MAX_CACHED_WORKFLOWS") -> int:
    """Workflow runs the worker keeps in memory (sticky), 0 to a million."""
    if value is None or value == "":
        return DEFAULT_MAX_CACHED_WORKFLOWS
    try:
        size = int(value)
    except ValueError:
        size = -1
    if not 0 <= size <= 1_000_000:
        raise BadInput(f"{str(value)!r} is not a number of workflow runs", field=field)
    return size


def parse_seconds(value: Any, field: str = "--graceful-shutdown-timeout") -> float:
    """Seconds from 0 to a day: infinity or 1e300 would pass a ``>= 0`` check and
    overflow only when the worker, already connected, builds its timedelta."""
    if value is None or value == "":
        return DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_GRACEFUL_SHUTDOWN_SECONDS:
        raise BadInput(
            f"graceful shutdown timeout {str(value)!r} is not a number of seconds from 0 to "
            f"{MAX_GRACEFUL_SHUTDOWN_SECONDS:.0f}",
            field=field,
        )
    return seconds


def metrics_url(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/metrics"


def health_path(options: WorkerOptions, cache_dir: Path) -> Path:
    return options.health_file or cache_dir.resolve().parent / "worker.health"


# ---- metrics -------------------------------------------------------------------------


def make_runtime(bind: str | None, *, forward_logs: bool = False) -> Runtime | None:
    """A Temporal runtime whose Prometheus exporter serves on ``bind``; with
    ``forward_logs`` the SDK core's own log lines go through Python's logging (and so
    through the JSON formatter and the redaction) instead of straight to stderr.
    None: the default runtime will do. Names come out as given: no ``_total`` or unit
    suffix is appended, durations are seconds (``domain/metrics.py``)."""
    if bind is None and not forward_logs:
        return None
    prometheus = (
        PrometheusConfig(
            bind_address=bind,
            counters_total_suffix=False,
            unit_suffix=False,
            durations_as_seconds=True,
            histogram_bucket_overrides={k: list(v) for k, v in metrics.BUCKETS.items()},
        )
        if bind
        else None
    )
    logs = (
        LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
        if forward_logs
        else LoggingConfig.default
    )
    try:
        return Runtime(telemetry=TelemetryConfig(logging=logs, metrics=prometheus))
    except ValueError as e:  # the exporter could not bind
        raise BadInput(
            f"cannot serve metrics on {bind} ({e}): choose another address with "
            "--metrics-bind or TRIBUTARY_METRICS_BIND ('off' disables metrics)",
            field="--metrics-bind",
        ) from e


# ---- logs ----------------------------------------------------------------------------

# What the SDK's logger adapters attach (``extra``): the workflow's or activity's ids.
_WORKFLOW_KEYS = ("workflow_id", "run_id", "workflow_type", "namespace", "task_queue", "attempt")
_ACTIVITY_KEYS = {
    "activity_id": "activity_id",
    "activity_type": "activity_type",
    "attempt": "attempt",
    "workflow_id": "workflow_id",
    "workflow_run_id": "run_id",
    "workflow_type": "workflow_type",
    "namespace": "namespace",
    "task_queue": "task_queue",
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the workflow's and
    activity's ids where the record has them, and the exception.

    Runs after the handler's ``RedactingFilter`` (message, arguments, traceback are
    redacted there); every other string it adds is redacted here.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        details = getattr(record, "temporal_workflow", None)
        if isinstance(details, Mapping):
            out.update({k: details[k] for k in _WORKFLOW_KEYS if details.get(k) is not None})
        details = getattr(record, "temporal_activity", None)
        if isinstance(details, Mapping):
            for key, name in _ACTIVITY_KEYS.items():
                if details.get(key) is not None:
                    out[name] = details[key]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(
            {k: redact(v, self.secrets) if isinstance(v, str) else v for k, v in out.items()},
            default=str,
        )


def use_json_logs(handlers: Sequence[logging.Handler], secrets: Sequence[str]) -> None:
    """JSON lines on ``handlers``; the SDK's adapters keep their ids in ``extra`` only
    (not appended to the message as well)."""
    formatter = JsonFormatter(secrets)
    for handler in handlers:
        handler.setFormatter(formatter)
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


# ---- health --------------------------------------------------------------------------


@dataclass
class Heartbeat:
    """The worker's heartbeat file: rewritten every few seconds while it polls."""

    path: Path
    info: dict[str, Any]

    def write(self, state: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**self.info, "state": state, "at": time.time()}, fh)
        os.replace(tmp, self.path)

    async def beat(self, polling: Callable[[], bool]) -> None:
        while True:
            if polling():
                self.write("polling")
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            current = json.loads(self.path.read_text())
            if current.get("pid") == os.getpid():  # not another worker's file
                self.path.unlink()


@dataclass(frozen=True)
class Health:
    healthy: bool
    message: str
    worker: dict[str, Any]


def read_heartbeat(path: Path, now: float | None = None) -> Health:
    """The heartbeat file alone: is a worker process up, and polling, recently?"""
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return Health(
            False,
            f"no worker heartbeat at {path}: the worker is not running here "
            "(or it writes elsewhere: TRIBUTARY_HEALTH_FILE, TRIBUTARY_CACHE)",
            {},
        )
    except (OSError, ValueError) as e:
        return Health(False, f"unreadable worker heartbeat {path}: {e}", {})
    if not isinstance(info, dict):
        return Health(False, f"unreadable worker heartbeat {path}", {})
    pid = int(info.get("pid") or 0)
    if pid <= 0 or not _alive(pid):
        return Health(False, f"the worker (pid {pid}) of heartbeat {path} is gone", info)
    age = (time.time() if now is None else now) - float(info.get("at") or 0)
    if age > STALE_SECONDS:
        return Health(
            False,
            f"the worker (pid {pid}) last polled {age:.0f}s ago: stuck or not polling",
            info,
        )
    if info.get("state") != "polling":
        return Health(False, f"the worker (pid {pid}) is {info.get('state')}", info)
    return Health(True, f"the worker (pid {pid}) polls {info.get('task_queue')}", info)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def check(settings: Settings, options: WorkerOptions) -> Health:
    """``tributary worker --check``: the heartbeat is fresh, its process lives, and
    Temporal is reachable and lists this worker among the pollers of its task queue."""
    health = read_heartbeat(health_path(options, settings.cache_dir))
    if not health.healthy:
        return health
    info = health.worker
    queue = str(info.get("task_queue") or settings.task_queue)
    identity = str(info.get("identity") or "")
    try:
        client = await asyncio.wait_for(connect(settings), CHECK_TIMEOUT_SECONDS)
        for kind, label in (
            (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "workflow"),
            (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
        ):
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=settings.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=kind,
                ),
                timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS),
            )
            if identity and not any(p.identity == identity for p in described.pollers):
                return Health(
                    False,
                    f"Temporal at {settings.temporal_address} lists no {label} poller "
                    f"{identity} on task queue {queue}",
                    info,
                )
    except (RuntimeError, TimeoutError, RPCError) as e:
        return Health(False, f"Temporal at {settings.temporal_address} is unreachable: {e}", info)
    return Health(
        True,
        f"the worker (pid {info.get('pid')}) polls {queue} on {settings.temporal_address}",
        info,
    )
