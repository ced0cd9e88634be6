"""The Tributary worker: every workflow and activity on one task queue.

Run it as ``tributary worker`` or ``python worker.py``. Blocking adapters (git,
kubectl, SQL, regopy) run as sync activities on a thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.authority import AuthorityActivities
from activities.drift import DriftActivities
from activities.failures import CompactFailures
from activities.git import GitActivities
from activities.keepalive import DeadWorkerDetection
from activities.kube import KubeActivities
from activities.kube_client import KubeClient
from activities.policy import PolicyActivities
from activities.render import RenderActivities
from activities.source import SourceCache
from activities.sync import SyncActivities
from activities.temporal import TemporalActivities
from activities.watcher import ClaimWatcher
from authority import open_store
from authority.protocol import AuthorityStore
from domain.redact import redact, secret_values
from starter.settings import Settings, connect
from workflows.apply import ApplyWorkflow
from workflows.change import BulkSetWorkflow, RollbackWorkflow, SpaceGatesWorkflow
from workflows.drift import DriftWorkflow
from workflows.publish import PublishRunWorkflow, PublishWorkflow
from workflows.sweep import SweepWorkflow
from workflows.sync import SyncPRWorkflow

WORKFLOWS: Sequence[type] = (
    PublishRunWorkflow,
    PublishWorkflow,
    BulkSetWorkflow,
    RollbackWorkflow,
    SpaceGatesWorkflow,
    ApplyWorkflow,
    DriftWorkflow,
    SweepWorkflow,
    SyncPRWorkflow,
)
ACTIVITY_THREADS = 16


def activities(
    store: AuthorityStore,
    cache: SourceCache,
    kube: KubeClient,
    client: Client,
    task_queue: str,
    watcher: ClaimWatcher | None = None,
) -> list[Any]:
    """Bound activity methods of every adapter class, ready to register."""
    git = GitActivities(cache)
    render = RenderActivities(cache)
    policy = PolicyActivities(cache)
    auth = AuthorityActivities(store)
    cluster = KubeActivities(kube, on_applied=watcher.notice if watcher else None)
    temporal = TemporalActivities(client, task_queue)
    drift = DriftActivities(store, kube)
    sync = SyncActivities(store, cache.root / "sync", render.kubectl)
    return [
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
        drift.check,
        drift.capture,
        drift.record,
        drift.classify,
        drift.request_reconcile,
        drift.set_paused,
        cluster.apply,
        cluster.wait_ready,
        cluster.delete,
        temporal.request_apply,
        temporal.request_applies,
        temporal.ensure_drift,
        temporal.request_sync,
        temporal.await_publish,
        sync.settings,
        sync.push,
        sync.ensure_pr,
        sync.close_prs,
    ]


def build_worker(
    client: Client,
    task_queue: str,
    store: AuthorityStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    kube: KubeClient | None = None,
    watcher: ClaimWatcher | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities(store, cache, kube or KubeClient(), client, task_queue, watcher),
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        # A SIGKILLed worker's activities are retried within seconds; failures stay
        # small enough for the Web UI to show them (see the modules).
        interceptors=[DeadWorkerDetection(), CompactFailures()],
    )


async def run(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    client = await connect(settings)
    store = open_store(settings.authority)
    cache = SourceCache(settings.cache_dir.resolve())
    kube = KubeClient(os.environ.get("KUBECONFIG"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if os.environ.get("TRIBUTARY_WATCH", "1") != "0":
        watcher = ClaimWatcher(store, kube, client, settings.task_queue, loop)
        watcher.start()
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        worker = build_worker(client, settings.task_queue, store, cache, executor, kube, watcher)
        logging.getLogger("tributary").info(
            "worker polling %s on %s (namespace %s)",
            settings.task_queue,
            settings.temporal_address,
            settings.namespace,
        )
        async with worker:
            await stop.wait()
    if watcher:
        watcher.stop()
    store.close()
    kube.close()


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


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redacting = RedactingFilter(secret_values(os.environ))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)


def main() -> None:
    configure_logging()
    try:
        asyncio.run(run())
    except Exception:
        # Logged (and so redacted) rather than printed by the interpreter: a bad
        # TRIBUTARY_AUTHORITY or an unreachable database names its URL.
        logging.getLogger("tributary").exception("the worker stopped")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
