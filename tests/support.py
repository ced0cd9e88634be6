"""Helpers the tests share: authoring repos on disk, free ports, CLI runs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from temporalio.service import RPCError

from authority.sql import SqlStore
from domain.authority import UnitChange
from domain.paths import parse_path, set_path
from domain.yamledit import set_inline_patch_value
from starter.runner import wait_again

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).parent.parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class AuthoringRepo:
    """A working clone of a fixture app plus the bare repository it pushes to."""

    work: Path
    remote: Path

    @property
    def url(self) -> str:
        return self.remote.as_uri()

    @property
    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")

    def read(self, rel: str) -> str:
        return (self.work / rel).read_text()

    def write(self, rel: str, text: str) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def edit(self, rel: str, fn: Callable[[str], str]) -> None:
        before = self.read(rel)
        after = fn(before)
        assert after != before, f"edit of {rel} changed nothing"
        self.write(rel, after)

    def remove(self, rel: str) -> None:
        git(self.work, "rm", "-q", "-r", rel)

    def commit(self, message: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", "HEAD:main")
        return self.head


def make_repo(tmp: Path, fixture: str, *, space_suffix: str = "") -> AuthoringRepo:
    """A fixture app committed and pushed; ``space_suffix`` renames its spaces.

    Tests that share one authority give each repo its own spaces this way.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    remote = tmp / f"{fixture}.git"
    work = tmp / fixture
    git(tmp, "init", "-q", "--bare", "--initial-branch=main", str(remote))
    shutil.copytree(FIXTURES / fixture, work)
    if space_suffix:
        config_path = work / "tributary.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["spaces"] = {f"{k}{space_suffix}": v for k, v in config["spaces"].items()}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    git(work, "init", "-q", "--initial-branch=main")
    git(work, "config", "user.name", "Dana Developer")
    git(work, "config", "user.email", "dana@example.com")
    git(work, "remote", "add", "origin", str(remote))
    repo = AuthoringRepo(work=work, remote=remote)
    repo.commit(f"{fixture}: initial")
    return repo


def set_patch_value(text: str, path: str, value: str) -> str:
    """Change the ``value:`` of the JSON-patch op on ``path``; ``value`` is YAML text."""
    return set_inline_patch_value(text, path, yaml.safe_load(value))


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports for servers the tests start are drawn below the kernel's ephemeral range: a
# port the kernel calls free inside that range can become the local port of any
# outgoing connection (the suite makes thousands) before the server binds it — a
# stress run lost a stack that way ("Address already in use" for its metrics).
_FIRST_PORT = 20000
_handed_out: set[int] = set()


def _worker_share(low: int, high: int) -> tuple[int, int]:
    """This xdist worker's slice of ``[low, high)``: ``_handed_out`` is per process, so
    two workers could otherwise both find a port free before either server binds it."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, …
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (high - low) // max(count, 1)
    return low + index * size, low + (index + 1) * size


def free_port() -> int:
    floor = _ephemeral_floor()
    if floor - _FIRST_PORT < 1000:  # an unusual range: let the kernel choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    low, high = _worker_share(_FIRST_PORT, floor)
    for _ in range(500):
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_FIRST_PORT}-{floor - 1}")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> CliResult:
    """``tributary ARGS`` exactly as CI runs it: a separate process, env-configured."""
    proc = subprocess.run(
        [sys.executable, "-m", "starter", *args],
        env={**os.environ, **env},
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


T = TypeVar("T")


# The bound of a wait on a condition: long enough that only a hang reaches it, even on
# a machine many times slower than a quiet one (stress runs), and short of pytest's
# 300 s per test so that the wait's own message (with its last value) is what fails.
HANG = 240.0


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    *,
    limit: float = HANG,
    what: str = "condition",
) -> T:
    """Poll ``probe`` in real time (the time-skipping server does not skip while we poll)
    until ``ok`` holds; the last value otherwise fails.

    A probe that is a query may meet a server that stopped waiting for the worker's
    answer (a loaded machine): that is "not yet", as for the CLI
    (``starter.runner.wait_again``), until the limit."""
    deadline = time.monotonic() + limit
    while True:
        try:
            value = await probe()
        except RPCError as e:
            if not wait_again(e) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {limit}s: last {value!r}")
        await asyncio.sleep(0.05)


def authority_change(
    store: SqlStore,
    space: str,
    unit: str,
    source: str,
    tags: dict[str, str] | None = None,
    **fields: Any,
) -> int:
    """A new head revision written outside Git (``spec__lambdaMemory=512``)."""
    record = store.get_unit(space, unit)
    assert record is not None
    rev = store.get_revision(space, unit, record.head_revision)
    assert rev is not None
    data = rev.data
    for path, value in fields.items():
        data = set_path(data, parse_path(path.replace("__", ".")), value)
    [outcome] = store.commit(
        [
            UnitChange(
                space=space,
                slug=unit,
                expected_version=record.version,
                data=data,
                description=f"{source} edit",
                source=source,
                tags=tags or {},
            )
        ]
    )
    assert outcome.created
    return outcome.revision
