"""A real ``tributary dev`` stack for the whole end-to-end session.

The stack is started exactly as a user starts it — the CLI in a subprocess — and
tests drive it through the CLI with the ``export`` lines it wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authority.sql import SqlStore
from starter.stack import _die_with_parent
from tests.support import HANG, REPO_ROOT, AuthoringRepo, free_port, make_repo, run_cli


@dataclass
class Stack:
    env: dict[str, str]
    data_dir: Path
    proc: subprocess.Popen[str]

    def store(self) -> SqlStore:
        return SqlStore(self.env["TRIBUTARY_AUTHORITY"])


def start_stack(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Stack:
    """``tributary dev`` in a subprocess; ``env`` is added to this process's environment.

    Ports are chosen free, then bound by the stack's processes a moment later; one
    another process took meanwhile is a clear "Address already in use" from the stack,
    and the stack is started again on other ports.
    """
    for attempt in range(1, 4):
        try:
            return _start_stack(data_dir, *extra, env=env)
        except PortTaken:
            if attempt == 3:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class PortTaken(RuntimeError):
    pass


def _start_stack(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Stack:
    env_file = data_dir / "dev.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "starter",
            "dev",
            "--data-dir",
            str(data_dir),
            "--temporal-port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
            "--kube-port",
            str(free_port()),
            "--aws-port",
            str(free_port()),
            "--metrics-bind",
            f"127.0.0.1:{free_port()}",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A test process that dies (a stress run's stopped xdist worker) takes its
        # stack along instead of leaving it running with its ports.
        preexec_fn=_die_with_parent,
    )
    deadline = time.monotonic() + HANG
    while not env_file.exists():
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            taken = "address already in use" in output.lower() or " is in use" in output
            kind = PortTaken if taken else RuntimeError
            raise kind(f"tributary dev exited early:\n{output}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tributary dev did not become ready in {HANG} s")
        time.sleep(0.2)
    exported: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        exported[key] = value
    return Stack(env=exported, data_dir=data_dir, proc=proc)


def publish_applied(stack: Stack, source: str, space: str) -> None:
    """``tributary publish --apply`` of one space, as CI runs it; it must succeed."""
    published = run_cli(
        "publish",
        "--repo",
        source,
        "--space",
        space,
        "--apply",
        "--json",
        env=stack.env,
        timeout=240,
    )
    assert published.code == 0, published.stderr


def stop_stack(stack: Stack) -> int:
    stack.proc.send_signal(signal.SIGINT)
    try:
        return stack.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stack.proc.kill()
        raise


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("stack") / ".tributary")
    yield s
    stop_stack(s)


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own, for stories that share cluster objects and AWS names."""
    s = start_stack(tmp_path / ".tributary", "--no-ui")
    yield s
    stop_stack(s)


@pytest.fixture
def space_suffix() -> str:
    return f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def repo(tmp_path: Path, space_suffix: str) -> AuthoringRepo:
    """The message wall, with spaces of its own in the shared authority."""
    return make_repo(tmp_path, "messagewall", space_suffix=space_suffix)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
