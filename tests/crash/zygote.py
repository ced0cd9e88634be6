"""Fork worker processes from a parent that has already imported the worker.

Importing the worker (Temporal, Kubernetes, boto3, SQLAlchemy, regopy) takes about
3 s of wall time on a busy 2-core machine; a hundred kill-and-restart cycles would
spend most of their time importing. This parent imports once, then forks a whole
worker process (``worker.main()``) for every ``spawn LOGFILE`` line on stdin and
answers with its pid. The test kills that pid with a real SIGKILL.

The parent starts no thread and no Temporal runtime before forking (checked below),
so each child starts as cleanly as ``python worker.py``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

from temporalio.worker import _worker as temporal_worker

import worker

# The SDK hashes the code of every loaded module for the worker's default build id
# (1.4 s here) and caches it: pay that once, before forking.
temporal_worker.load_default_build_id()
_PR_SET_PDEATHSIG = 1


def _child(log_path: str) -> None:
    # A worker must not outlive the test that owns it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The worker waits for its own subprocesses (git, kubectl): default SIGCHLD again.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    worker.main()


def main() -> None:
    if threading.active_count() != 1:
        raise SystemExit("zygote: a thread runs before fork; the children would inherit a mess")
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed children
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command != "spawn" or not arg:
            continue
        pid = os.fork()
        if pid == 0:
            try:
                _child(arg)
            finally:
                os._exit(0)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
