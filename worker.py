"""The Tributary worker: every workflow and activity on one task queue.

Run it as ``tributary worker`` or ``python worker.py``. Blocking adapters (git,
kubectl, SQL, regopy) run as sync activities on a thread pool.

SIGTERM or SIGINT stops polling; activities in flight get the graceful shutdown
timeout to finish (then they are cancelled, and Temporal retries them on another
worker), and the process exits 0. Metrics, JSON logs and the heartbeat that
``tributary worker --check`` reads: ``client/telemetry.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.worker import Worker

from activities.argocd import ArgoCDActivities
from activities.authority import AuthorityActivities
from activities.confighub import ConfigHubActivities
from activities.drift import DriftActivities
from activities.git import GitActivities
from activities.kube import KubeActivities
from activities.policy import PolicyActivities
from activities.reads import ReadActivities
from activities.render import RenderActivities
from activities.sweep import SweepActivities
from activities.sync import SyncActivities
from activities.temporal import TemporalActivities
from adapters.argocd import ArgoCDClient
from adapters.forge import check_forge_env
from adapters.kube import KubeClient
from adapters.source import SourceCache
from adapters.watcher import ClaimWatcher
from authority import authority_variable, open_store
from authority.confighub import ConfigHubStore
from authority.protocol import AuthorityStore
from client import codecache, contract, telemetry
from client.cover import POLL_SECONDS, SweepCoverWatch
from client.failures import CompactFailures
from client.keepalive import DeadWorkerDetection
from client.settings import Settings, connect
from domain import metrics
from domain.apply import ApplyStatus
from domain.errors import TributaryError
from domain.redact import redact, secret_values
from workflows.apply import ApplyWorkflow
from workflows.change import (
    BulkSetWorkflow,
    RenderLiveWorkflow,
    RollbackWorkflow,
    SpaceGatesWorkflow,
)
from workflows.drift import DriftWorkflow
from workflows.publish import PublishRunWorkflow, PublishWorkflow
from workflows.read import ReadWorkflow
from workflows.sweep import SweepWorkflow
from workflows.sync import SyncPRWorkflow

WORKFLOWS: Sequence[type] = (
    PublishRunWorkflow,
    PublishWorkflow,
    BulkSetWorkflow,
    RollbackWorkflow,
    SpaceGatesWorkflow,
    RenderLiveWorkflow,
    ApplyWorkflow,
    DriftWorkflow,
    SweepWorkflow,
    SyncPRWorkflow,
    ReadWorkflow,
)
ACTIVITY_THREADS = 16
# After the graceful shutdown timeout the SDK cancels activities still running; a
# blocking call that does not notice gets this much longer before the process leaves.
SHUTDOWN_SLACK_SECONDS = 10.0
# A look of the schedule watch under way at shutdown: signals to a few thousand loops.
COVER_STOP_SECONDS = 20.0
# How often the worker counts the units waiting at an approval gate (a gauge).
APPROVAL_GAUGE_SECONDS = 15.0
log = logging.getLogger("tributary")


def activities(
    store: AuthorityStore,
    cache: SourceCache,
    kube: KubeClient,
    client: Client,
    task_queue: str,
    watcher: ClaimWatcher | None = None,
    argocd: ArgoCDClient | None = None,
) -> list[Any]:
    """Bound activity methods of every adapter class, ready to register.

    ``argocd`` None: the client ``ARGOCD_SERVER`` / ``ARGOCD_AUTH_TOKEN`` describe, if any.
    """
    git = GitActivities(cache)
    render = RenderActivities(cache)
    policy = PolicyActivities(cache)
    auth = AuthorityActivities(store)
    cluster = KubeActivities(kube, on_applied=watcher.notice if watcher else None)
    temporal = TemporalActivities(client, task_queue)
    drift = DriftActivities(store, kube)
    sweep = SweepActivities(store, kube)
    sync = SyncActivities(store, cache.root / "sync", render.kubectl)
    argo = ArgoCDActivities(argocd or ArgoCDClient.from_env())
    reads = ReadActivities(store)
    # The confighub actuator's activities exist only when ConfigHub is the authority
    # (ApplyWorkflow schedules them only then: ApplyContextResult.confighub).
    hub = [] if not isinstance(store, ConfigHubStore) else _confighub(ConfigHubActivities(store))
    return [
        *hub,
        git.checkout,
        git.newer_commits,
        render.load_project,
        render.render_space,
        policy.load_bundle,
        policy.check,
        auth.snapshot_units,
        auth.commit,
        auth.find_units,
        auth.get_revision,
        auth.apply_context,
        auth.record_approval,
        auth.record_applied,
        auth.list_units_page,
        auth.count_drift,
        auth.space_gates,
        auth.live_objects,
        drift.check,
        drift.capture,
        drift.record,
        drift.tag_capture,
        drift.request_reconcile,
        drift.set_paused,
        sweep.judge,
        sweep.covered,
        cluster.apply,
        cluster.wait_ready,
        cluster.delete,
        argo.sync,
        argo.wait,
        temporal.request_apply,
        temporal.request_applies,
        temporal.ensure_drift,
        temporal.ensure_drift_loops,
        temporal.request_sync,
        temporal.await_publish,
        sync.settings,
        sync.push,
        sync.ensure_pr,
        sync.close_prs,
        reads.read,
    ]


def _confighub(hub: ConfigHubActivities) -> list[Any]:
    return [hub.apply, hub.wait]


def build_worker(
    client: Client,
    task_queue: str,
    store: AuthorityStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    kube: KubeClient | None = None,
    watcher: ClaimWatcher | None = None,
    argocd: ArgoCDClient | None = None,
    graceful_shutdown: timedelta = timedelta(seconds=telemetry.DEFAULT_GRACEFUL_SHUTDOWN_SECONDS),
    max_cached_workflows: int = telemetry.DEFAULT_MAX_CACHED_WORKFLOWS,
) -> Worker:
    # The sandbox runs a workflow's module afresh for every run it creates or replays.
    codecache.install()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities(
            store, cache, kube or KubeClient(), client, task_queue, watcher, argocd
        ),
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        # A SIGKILLed worker's activities are retried within seconds; failures stay
        # small enough for the Web UI to show them (see the modules).
        interceptors=[DeadWorkerDetection(), CompactFailures()],
        graceful_shutdown_timeout=graceful_shutdown,
        # Memory for replays: most cached runs are idle drift loops (client/telemetry.py).
        max_cached_workflows=max_cached_workflows,
    )


async def run(
    settings: Settings | None = None, options: telemetry.WorkerOptions | None = None
) -> None:
    settings = settings or Settings()
    options = options or telemetry.WorkerOptions.from_args(None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: stopping at once", sig.name)
            os._exit(1)
        log.info(
            "%s: no new tasks; activities in flight get %.0fs to finish",
            sig.name,
            options.graceful_shutdown_seconds,
        )
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    # A bad ARGOCD_SERVER, forge or authority URL is refused before Temporal is connected.
    argocd = ArgoCDClient.from_env()
    check_forge_env()
    store = open_store(settings.authority, field=authority_variable())
    runtime = telemetry.make_runtime(
        options.metrics_bind, forward_logs=options.log_format == "json"
    )
    client = await connect(settings, runtime=runtime)
    cache = SourceCache(settings.cache_dir.resolve())
    kube = KubeClient(os.environ.get("KUBECONFIG"))
    watcher = None
    if os.environ.get("TRIBUTARY_WATCH", "1") != "0":
        watcher = ClaimWatcher(store, kube, client, settings.task_queue, loop)
        watcher.start()
    heartbeat = telemetry.Heartbeat(
        telemetry.health_path(options, settings.cache_dir),
        {
            "pid": os.getpid(),
            "identity": client.identity,
            "task_queue": settings.task_queue,
            "namespace": settings.namespace,
            "metrics": telemetry.metrics_url(options.metrics_bind) if options.metrics_bind else "",
        },
    )
    executor = ThreadPoolExecutor(max_workers=ACTIVITY_THREADS)
    worker = build_worker(
        client,
        settings.task_queue,
        store,
        cache,
        executor,
        kube,
        watcher,
        argocd,
        graceful_shutdown=timedelta(seconds=options.graceful_shutdown_seconds),
        max_cached_workflows=options.max_cached_workflows,
    )
    running = asyncio.create_task(worker.run())
    helpers = [asyncio.create_task(heartbeat.beat(lambda: worker.is_running))]
    cover_poll = float(os.environ.get("TRIBUTARY_COVER_WATCH_SECONDS", POLL_SECONDS))
    cover = SweepCoverWatch(store, client, poll_seconds=cover_poll) if cover_poll > 0 else None
    covering = asyncio.create_task(cover.run()) if cover else None
    if options.metrics_bind and runtime is not None:
        helpers.append(asyncio.create_task(count_awaiting_approval(client, runtime.metric_meter)))
    log.info(
        "worker polling %s on %s (namespace %s)%s",
        settings.task_queue,
        settings.temporal_address,
        settings.namespace,
        f"; metrics on {telemetry.metrics_url(options.metrics_bind)}"
        if options.metrics_bind
        else "",
    )
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for helper in helpers:
        helper.cancel()
    if cover and covering:
        cover.stop()  # let a look under way tell the loops it took the claim off
        with contextlib.suppress(Exception):
            await asyncio.wait_for(covering, COVER_STOP_SECONDS)
    heartbeat.remove()
    drained = True
    if not running.done():
        try:
            await asyncio.wait_for(
                worker.shutdown(), options.graceful_shutdown_seconds + SHUTDOWN_SLACK_SECONDS
            )
        except TimeoutError:
            drained = False
            log.warning("activities still running after the graceful shutdown timeout: leaving")
    stopped.cancel()
    if watcher:
        watcher.stop()
    if not drained:
        # Threads of activities that ignore cancellation would hold the interpreter;
        # Temporal retries those activities on another worker.
        executor.shutdown(wait=False, cancel_futures=True)
        logging.shutdown()
        os._exit(0)
    executor.shutdown(wait=True)
    store.close()
    kube.close()
    if running.done() and not stop.is_set():
        running.result()  # the worker failed on its own: raise why
        raise RuntimeError("the worker stopped polling")
    log.info("worker stopped")


async def count_awaiting_approval(client: Client, meter: MetricMeter) -> None:
    """The ``tributary_units_awaiting_approval`` gauge: running apply workflows whose
    current request waits at an approval gate, by space (from their ``status`` query)."""
    seen: set[str] = set()
    while True:
        counts: dict[str, int] = dict.fromkeys(seen, 0)
        try:
            async for execution in client.list_workflows(
                f"WorkflowType = '{contract.APPLY_WORKFLOW}' AND ExecutionStatus = 'Running'"
            ):
                status = await client.get_workflow_handle(execution.id).query(
                    contract.APPLY_STATUS_QUERY, result_type=ApplyStatus
                )
                counts.setdefault(status.space, 0)
                if status.current and status.current.state == "awaiting-approval":
                    counts[status.space] += 1
        except Exception as e:  # a busy server, a workflow that just ended: next round
            log.debug("counting units awaiting approval: %s", e)
        else:
            for space, value in counts.items():
                metrics.set_gauge(meter, metrics.AWAITING_APPROVAL, {"space": space}, value)
            seen |= set(counts)
        await asyncio.sleep(APPROVAL_GAUGE_SECONDS)


class RedactingFilter(logging.Filter):
    """Redacts every record a handler emits: message, arguments, traceback.

    On the handlers rather than a logger, so records of every library (temporalio's
    activity failures, SQLAlchemy, botocore, kubernetes) pass through it.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def configure_logging(log_format: str = "text") -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secrets = secret_values(os.environ)
    redacting = RedactingFilter(secrets)
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(redacting)
    if log_format == "json":
        telemetry.use_json_logs(handlers, secrets)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker.py", description="the Tributary worker")
    p.add_argument("--json", action="store_true", help="--check prints one JSON object")
    telemetry.add_worker_arguments(p)
    return p


def main(args: argparse.Namespace | None = None) -> None:
    """``python worker.py`` / ``tributary worker`` (``args`` from the CLI's parser)."""
    if args is None:
        args = parser().parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    try:
        options = telemetry.WorkerOptions.from_args(args)
    except TributaryError as e:
        print(f"error: {e.message}", file=sys.stderr)
        _json_error(args, e)
        raise SystemExit(e.exit_code) from None
    if options.check:
        code = check(options)
        # The answer is complete. After a failed connect the SDK core's runtime can abort
        # while the interpreter tears it down (SIGABRT, seen on CI), which would turn a
        # clear "unhealthy" (1) into -6 for the orchestrator: leave without teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    configure_logging(options.log_format)
    try:
        asyncio.run(run(options=options))
    except TributaryError as e:  # a bad metrics address, Temporal configuration
        logging.getLogger("tributary").error("the worker did not start: %s", e.message)
        _json_error(args, e)
        raise SystemExit(e.exit_code) from None
    except Exception:
        # Logged (and so redacted) rather than printed by the interpreter: a bad
        # TRIBUTARY_AUTHORITY or an unreachable database names its URL.
        logging.getLogger("tributary").exception("the worker stopped")
        raise SystemExit(1) from None


def _json_error(args: argparse.Namespace, e: TributaryError) -> None:
    """Under ``--json`` the one JSON object on stdout is the error (redacted)."""
    if getattr(args, "json", False):
        message = redact(e.message, secret_values(os.environ))
        print(json.dumps({"error": {"type": type(e).__name__, "message": message}}))
        sys.stdout.flush()


def check(options: telemetry.WorkerOptions) -> int:
    """``--check``: 0 when the worker here is up, polling, and Temporal reachable."""
    try:
        health = asyncio.run(telemetry.check(Settings(), options))
    except TributaryError as e:
        health = telemetry.Health(False, e.message, {})
    message = redact(health.message, secret_values(os.environ))
    if options.as_json:
        print(json.dumps({"healthy": health.healthy, "message": message, "worker": health.worker}))
    print(("ok: " if health.healthy else "unhealthy: ") + message, file=sys.stderr)
    return 0 if health.healthy else 1


if __name__ == "__main__":
    main()
