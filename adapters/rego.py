"""Rego, evaluated in child processes without the worker's environment, within bounds.

The policy activities (``activities/policy.py``) hand a whole space's objects to
``RegoSandbox.evaluate``; the child (``adapters/rego_child.py``) runs regopy.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from domain.errors import BadInput

_CHILD = Path(__file__).with_name("rego_child.py")

#: wall time one evaluation request (a whole space's objects) may take
POLICY_SECONDS = 30.0
#: more time for each object of a space, up to 100 s in all
PER_OBJECT_SECONDS = 0.03
#: resident memory of the evaluating child
POLICY_MEMORY_BYTES = 1024 * 1024 * 1024
_POLL_SECONDS = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")


class RegoSandbox:
    """Evaluates Rego in child processes without the worker's environment, within bounds.

    rego-cpp's ``opa.runtime().env`` is the process environment, and it has no
    limits of its own, so Rego never runs in the worker: each request goes to a
    child (``rego_child.py``) started with ``env={}``, whose resident memory and wall
    time are watched from here; a child over either bound is killed and the request
    fails as ``BadInput``. rego-cpp's allocator reserves 256 GB of address space up
    front, which is why an ``RLIMIT_AS`` cannot bound it and the parent watches RSS.
    At most ``children`` children run, and they are kept between requests (a whole
    space is one request), so a process start (~0.1 s) is paid once, not per
    evaluation.
    """

    def __init__(
        self,
        *,
        seconds: float = POLICY_SECONDS,
        memory_bytes: int = POLICY_MEMORY_BYTES,
        children: int = 4,
    ) -> None:
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self.keep = children
        self._idle: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        # Evaluation is CPU-bound: more children than this only add process starts
        # (~0.1 s of CPU each) when a publish checks many spaces at once.
        self._slots = threading.BoundedSemaphore(children)

    def evaluate(self, request: dict[str, Any], *, blame: str) -> dict[str, Any]:
        with self._slots:
            proc = self._take()
            try:
                answer = self._ask(proc, request, blame=blame)
            except BaseException:
                _kill(proc)
                raise
            if answer.get("error") == "memory":
                _kill(proc)  # a child that ran out of memory once is not reused
            else:
                self._give_back(proc)
            return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for proc in idle:
            _kill(proc)

    def _take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            while self._idle:
                proc = self._idle.pop()
                if proc.poll() is None:
                    return proc
        return subprocess.Popen(
            [sys.executable, "-I", str(_CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # rego-cpp prints some errors with the values involved: nothing of a
            # policy's reaches the worker's log unasked.
            stderr=subprocess.DEVNULL,
            env={},  # the point of the child: no token, key or database URL to read
            cwd="/",
            close_fds=True,
        )

    def _give_back(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(proc)
                return
        _kill(proc)

    def _ask(
        self, proc: subprocess.Popen[bytes], request: dict[str, Any], *, blame: str
    ) -> dict[str, Any]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError("the policy evaluator exited before reading its request") from None
        # A big space gets more time, but always less than the activity's own
        # timeout (2 min): a bound hit must be bad input, never a timeout and a retry.
        seconds = min(self.seconds + PER_OBJECT_SECONDS * len(request.get("inputs", ())), 100.0)
        deadline = time.monotonic() + seconds
        line = _read_line(
            proc, proc.stdout, deadline, self.memory_bytes, blame=blame, seconds=seconds
        )
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError as e:
            raise RuntimeError("the policy evaluator answered garbage") from e
        return answer


def _read_line(
    proc: subprocess.Popen[bytes],
    out: IO[bytes],
    deadline: float,
    memory_bytes: int,
    *,
    blame: str,
    seconds: float,
) -> bytes:
    fd = out.fileno()
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BadInput(
                f"policy evaluation took longer than {seconds:g} s and was stopped",
                file=blame,
            )
        ready, _, _ = select.select([fd], [], [], min(_POLL_SECONDS, remaining))
        if not ready:
            if _rss(proc.pid) > memory_bytes:
                raise BadInput(
                    f"policy evaluation used more than {memory_bytes // 2**20} MiB and was stopped",
                    file=blame,
                )
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            proc.wait()
            if proc.returncode and proc.returncode < 0:
                raise BadInput(f"policy evaluation crashed (signal {-proc.returncode})", file=blame)
            raise RuntimeError(f"the policy evaluator exited ({proc.returncode})")
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


#: the worker's evaluator; tests make their own with tighter bounds
SANDBOX = RegoSandbox()
