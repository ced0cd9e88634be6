"""The worker as operations run it: a process that stops cleanly on SIGTERM, shares a
task queue with its peers, answers ``tributary worker --check`` and logs JSON.

Each worker is ``python -m tests.worker.gate``: the real ``worker.main()`` with a test
workflow whose activity waits at a gate (a file), so a test decides how long an
activity stays in flight. Temporal is the session's dev server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.support import REPO_ROOT, run_cli
from tests.worker.gate import GateInput, GateResult

START_SECONDS = 90.0
CANARY = "canary-" + uuid.uuid4().hex  # a secret by its variable's name


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    @property
    def health(self) -> Path:
        return Path(self.env["TRIBUTARY_HEALTH_FILE"])

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@pytest.fixture
def queue() -> str:
    return f"ops-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def spawn(
    local_env: WorkflowEnvironment, tmp_path: Path, queue: str
) -> Iterator[Callable[..., WorkerProc]]:
    started: list[WorkerProc] = []
    address = local_env.client.service_client.config.target_host

    def start(name: str, **extra: str) -> WorkerProc:
        env = {
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": "default",
            "TRIBUTARY_TASK_QUEUE": queue,
            "TRIBUTARY_AUTHORITY": f"sqlite:///{tmp_path / 'authority.db'}",
            "TRIBUTARY_CACHE": str(tmp_path / name / "cache"),
            "TRIBUTARY_HEALTH_FILE": str(tmp_path / name / "worker.health"),
            "TRIBUTARY_WATCH": "0",
            "TRIBUTARY_METRICS_BIND": "off",
            "TRIBUTARY_TEST_TOKEN": CANARY,
            **extra,
        }
        log = tmp_path / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.worker.gate"],
                cwd=REPO_ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        w = WorkerProc(name, proc, env, log)
        started.append(w)
        deadline = time.monotonic() + START_SECONDS
        while not _polling(w):
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited: {w.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start polling: {w.log.read_text()}")
            time.sleep(0.2)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def _polling(w: WorkerProc) -> bool:
    try:
        return json.loads(w.health.read_text()).get("state") == "polling"
    except (OSError, ValueError):
        return False


async def _start(client: Client, queue: str, directory: Path, key: str) -> WorkflowHandle:
    return await client.start_workflow(
        "GateWorkflow",
        GateInput(directory=str(directory), key=key),
        id=f"gate-{queue}-{key}",
        task_queue=queue,
        result_type=GateResult,
    )


async def _until(predicate: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def _exit_code(w: WorkerProc, seconds: float = 90) -> int:
    return await asyncio.to_thread(w.proc.wait, seconds)


async def test_two_workers_on_one_queue_share_the_load(
    local_env: WorkflowEnvironment, spawn: Callable[..., WorkerProc], queue: str, tmp_path: Path
) -> None:
    a, b = spawn("a"), spawn("b")
    gates = tmp_path / "gates"
    gates.mkdir()
    # More activities than one worker has slots (16): both must take some.
    keys = [str(i) for i in range(20)]
    handles = [await _start(local_env.client, queue, gates, k) for k in keys]
    await _until(lambda: all((gates / f"started-{k}").exists() for k in keys))
    for k in keys:
        (gates / f"release-{k}").write_text("")
    results = [await h.result() for h in handles]

    assert {r.pid for r in results} == {a.proc.pid, b.proc.pid}
    for w in (a, b):
        w.proc.send_signal(signal.SIGTERM)
        assert await _exit_code(w) == 0, w.log.read_text()


async def test_sigterm_lets_the_activity_in_flight_finish_then_exits_0(
    local_env: WorkflowEnvironment, spawn: Callable[..., WorkerProc], queue: str, tmp_path: Path
) -> None:
    w = spawn("a", TRIBUTARY_LOG_FORMAT="json")
    handle = await _start(local_env.client, queue, tmp_path, "inflight")
    await _until(lambda: (tmp_path / "started-inflight").exists())

    w.proc.send_signal(signal.SIGTERM)
    # The worker took the signal (it stops announcing itself as polling) …
    await _until(lambda: not w.health.exists())
    # … and no longer takes work; the activity it holds may finish.
    later = await _start(local_env.client, queue, tmp_path, "later")
    (tmp_path / "release-inflight").write_text("")
    assert await _exit_code(w) == 0, w.log.read_text()
    assert not (tmp_path / "started-later").exists()

    # The workflows go on on another worker; the activity completed on the first one.
    b = spawn("b")
    result = await handle.result()
    assert result.pid == w.proc.pid
    assert result.saw_shutdown  # it completed after the shutdown had begun
    await _until(lambda: (tmp_path / "started-later").exists())
    (tmp_path / "release-later").write_text("")
    assert (await later.result()).pid == b.proc.pid

    # One JSON object a line, with the workflow's and activity's ids; no secret.
    lines = [json.loads(line) for line in w.lines()]
    gate_line = next(line for line in lines if str(line["message"]).startswith("gate inflight"))
    assert gate_line["workflow_id"] == handle.id
    assert gate_line["activity_type"] == "test.gate"
    assert gate_line["activity_id"]
    assert gate_line["message"] == "gate inflight opened; token ***"
    assert any("SIGTERM" in str(line["message"]) for line in lines)
    assert CANARY not in w.log.read_text()


async def test_graceful_shutdown_is_bounded(
    local_env: WorkflowEnvironment, spawn: Callable[..., WorkerProc], queue: str, tmp_path: Path
) -> None:
    w = spawn("a", TRIBUTARY_GRACEFUL_SHUTDOWN_TIMEOUT="1")
    handle = await _start(local_env.client, queue, tmp_path, "stuck")
    await _until(lambda: (tmp_path / "started-stuck").exists())

    w.proc.send_signal(signal.SIGTERM)
    # The gate never opens: the activity is cancelled after 1 s and the worker leaves.
    assert await _exit_code(w) == 0, w.log.read_text()
    assert not (tmp_path / "release-stuck").exists()
    await handle.terminate()


async def test_check_reports_the_worker_and_temporal(
    spawn: Callable[..., WorkerProc], tmp_path: Path
) -> None:
    w = spawn("a")
    ok = run_cli("worker", "--check", "--json", env=w.env)
    assert ok.code == 0, ok.stderr
    assert ok.json["healthy"] is True
    assert ok.json["worker"]["pid"] == w.proc.pid

    unreachable = run_cli("worker", "--check", env={**w.env, "TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert unreachable.code == 1
    assert "Temporal at 127.0.0.1:1 is unreachable" in unreachable.stderr

    other_queue = run_cli("worker", "--check", env={**w.env, "TRIBUTARY_TASK_QUEUE": "x"})
    assert other_queue.code == 0  # the queue comes from the worker's heartbeat

    w.proc.send_signal(signal.SIGTERM)
    assert await _exit_code(w) == 0
    down = run_cli("worker", "--check", "--json", env=w.env)
    assert down.code == 1
    assert down.json["healthy"] is False
    assert "no worker heartbeat" in down.json["message"]
