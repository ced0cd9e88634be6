"""A dev stack whose parts the test owns one by one, so it can break each of them.

``tributary dev`` runs Temporal, the sandbox and the worker under one parent. Here:

- Temporal is ``DevStack`` with ``worker=False, sandbox=False`` (the same dev server,
  SQLite file and search attributes), so it can be stopped and started again on the
  same database file;
- the sandbox (Kubernetes API peer, moto, the Crossplane stand-in) runs in the test's
  process, so the test can take the API peer or moto away and bring them back;
- the worker is a process of its own, forked by ``zygote.py``, so the test can
  SIGKILL it at any moment and start another.

Randomness comes from one seed, printed, and taken from ``TRIBUTARY_CRASH_SEED``
when set: a failing run can be replayed with the same kill schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from adapters.kube import KubeClient
from authority.sql import SqlStore
from client.settings import connect
from sandbox.crossplane import CrossplaneStandIn
from sandbox.kubeapi import KubeApiPeerThread
from sandbox.moto_server import MotoServer
from starter.stack import DevStack, StackConfig
from tests.support import REPO_ROOT, free_port

WORKER_START_SECONDS = 60.0


def seed() -> int:
    value = os.environ.get("TRIBUTARY_CRASH_SEED")
    return int(value) if value else random.SystemRandom().randrange(1, 2**31)


@dataclass
class Kill:
    """One SIGKILL of the worker: what triggered it and how long the worker had run."""

    trigger: str
    after_seconds: float
    during: str


@dataclass
class CrashStack:
    data_dir: Path
    rng: random.Random
    temporal: DevStack = field(init=False)
    peer: KubeApiPeerThread = field(init=False)
    moto: MotoServer = field(init=False)
    crossplane: CrossplaneStandIn = field(init=False)
    env: dict[str, str] = field(init=False)
    client: Client = field(init=False)
    kills: list[Kill] = field(default_factory=list)
    worker_pid: int | None = None
    worker_started: float = 0.0
    _zygote: subprocess.Popen[str] | None = None
    _aws_port: int = 0

    # ---- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.data_dir / "kubeconfig"
        self.peer = KubeApiPeerThread()
        self.peer.start("127.0.0.1", free_port())
        self.peer.peer.write_kubeconfig(kubeconfig)
        self._aws_port = free_port()
        self.moto = MotoServer("127.0.0.1", self._aws_port)
        endpoint = self.moto.start()
        self.crossplane = CrossplaneStandIn(kubeconfig, endpoint)
        self.crossplane.start()
        self.temporal = DevStack(
            StackConfig(
                data_dir=self.data_dir,
                temporal_port=free_port(),
                ui=False,
                sandbox=False,
                worker=False,
            )
        )
        await self.temporal.start(lambda _: None)
        self.env = {
            **self.temporal.env,
            "KUBECONFIG": str(kubeconfig),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.client = await connect(self.temporal.settings())
        self._zygote = subprocess.Popen(  # noqa: ASYNC220 - a pipe we talk to line by line
            [sys.executable, str(Path(__file__).with_name("zygote.py"))],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.data_dir / "zygote.log").open("ab"),
            text=True,
        )
        await self.start_worker()

    async def stop(self) -> None:
        self.kill_worker("teardown", record=False)
        if self._zygote is not None:
            self._zygote.kill()
            self._zygote.wait()
        await self.temporal.stop()
        self.crossplane.stop()
        self.moto.stop()
        self.peer.stop()

    # ---- the worker ------------------------------------------------------------------------

    async def start_worker(self) -> int:
        """Fork a worker and wait until it polls the task queue."""
        assert self._zygote is not None
        assert self._zygote.stdin is not None
        assert self._zygote.stdout is not None
        assert self.worker_pid is None, "one worker at a time"
        self._zygote.stdin.write(f"spawn {self.data_dir / 'worker.log'}\n")
        self._zygote.stdin.flush()
        line = await asyncio.to_thread(self._zygote.stdout.readline)
        if not line:
            raise RuntimeError(f"the zygote died:\n{_tail(self.data_dir / 'zygote.log')}")
        pid = self.worker_pid = int(line)
        self.worker_started = time.monotonic()
        await self.wait_polling(pid)
        return pid

    async def wait_polling(self, pid: int) -> None:
        request = DescribeTaskQueueRequest(
            namespace=self.env["TEMPORAL_NAMESPACE"],
            task_queue=TaskQueue(name=self.env["TRIBUTARY_TASK_QUEUE"]),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        deadline = time.monotonic() + WORKER_START_SECONDS
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise RuntimeError(f"worker {pid} died:\n{_tail(self.data_dir / 'worker.log')}")
            with contextlib.suppress(Exception):  # Temporal may be restarting
                described = await self.client.workflow_service.describe_task_queue(request)
                if any(p.identity.startswith(f"{pid}@") for p in described.pollers):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"worker {pid} did not poll in {WORKER_START_SECONDS:.0f}s")

    def kill_worker(self, trigger: str, *, during: str = "", record: bool = True) -> None:
        pid, self.worker_pid = self.worker_pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.01)
        if record:
            self.kills.append(Kill(trigger, time.monotonic() - self.worker_started, during))

    # ---- Temporal ------------------------------------------------------------------------

    async def restart_temporal(self, down_seconds: float = 0.0) -> None:
        """Stop the dev server and start it again on the same SQLite file."""
        await self.temporal.stop()
        await asyncio.sleep(down_seconds)
        await self.temporal.start(lambda _: None)
        self.client = await connect(self.temporal.settings())

    # ---- outages -------------------------------------------------------------------------

    def moto_down(self) -> None:
        self.moto.stop()

    def moto_up(self) -> None:
        # moto keeps its resources in module state: a new server on the same port
        # serves the same AWS account.
        self.moto = MotoServer("127.0.0.1", self._aws_port)
        self.moto.start()

    # ---- reading the state -----------------------------------------------------------------

    @property
    def authority_path(self) -> Path:
        return Path(self.env["TRIBUTARY_AUTHORITY"].removeprefix("sqlite:///"))

    def store(self) -> SqlStore:
        return SqlStore(self.env["TRIBUTARY_AUTHORITY"])

    def kube(self) -> KubeClient:
        return KubeClient(self.env["KUBECONFIG"])

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """A read of the authority database behind the worker's back (cheap, for triggers)."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.authority_path}?mode=ro", uri=True, timeout=5)
        ) as db:
            try:
                return list(db.execute(query))
            except sqlite3.OperationalError:  # not created yet
                return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that is not reaped yet is a zombie: dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def eventually(
    probe: Callable[[], Awaitable[bool]], *, limit: float, what: str, every: float = 0.2
) -> None:
    deadline = time.monotonic() + limit
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {limit:.0f} s")
        await asyncio.sleep(every)
