"""A Kubernetes API peer on 127.0.0.1 for tests and the dev sandbox.

The official ``kubernetes`` client and ``kubectl`` reach it through an ordinary kubeconfig
(``write_kubeconfig``). It serves what our GitOps arrows rely on: discovery, CRDs registered at
runtime (through the API or ``register_kind``), create/get/list/watch/update/patch/delete with
resourceVersion and optimistic concurrency, generation, the status subresource, server-side
apply with managedFields and conflicts, label/field selectors — plus fault injection and a
connection-refusing outage for testing retries.

How it is built:

* ``kubeapi_handler``: the request handler, a subclass of kmock's ``KubernetesScaffold`` (kmock
  parses requests, routes them, renders errors and keeps its DSL for ad-hoc reactions:
  ``peer.emulator['get /version'] << 500``). kmock's ``KubernetesEmulator`` is not used
  because it mutates its store before routing with naive semantics we would have to undo.
* ``kubeapi_store``: objects, kinds, resourceVersions, watches and the write rules; with the
  pure helpers ``kubeapi_ssa`` (managedFields, apply), ``kubeapi_patch``, ``kubeapi_select``,
  ``kubeapi_kinds`` (CRDs, discovery, URLs) and ``kubeapi_status`` (errors, faults).
* This module: the listener — aiohttp's low-level ``web.Server`` on a socket we own, not
  kmock's ``Server``, which also patches aiohttp's DNS resolution process-wide (fine in a unit
  test, not next to other services) and cannot give its port back and re-take it, which
  ``refuse_connections`` needs — plus a thread wrapper for sync code, and the command line.

Run it standalone (until SIGINT/SIGTERM)::

    python -m sandbox.kubeapi --port 6443 --kubeconfig /tmp/kubeconfig
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import io
import signal
import sys
import threading
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web
from ruamel.yaml import YAML

from sandbox._service import Service
from sandbox.kubeapi_handler import KubeApiEmulator
from sandbox.kubeapi_kinds import KindInfo
from sandbox.kubeapi_status import FaultRule
from sandbox.kubeapi_store import ObjectStore

T = TypeVar("T")

SANDBOX_NAME = "tributary-sandbox"
SANDBOX_TOKEN = "tributary-sandbox-token"  # a dummy: the peer does not authenticate


class KubeApiPeer:
    """The API peer: an emulator (the state) behind a listener (the network)."""

    def __init__(self, *, event_log_size: int = 10_000, request_log_size: int = 1) -> None:
        self.emulator = KubeApiEmulator(
            event_log_size=event_log_size, request_log_size=request_log_size
        )
        self._host = "127.0.0.1"
        self._port = 0
        self._web: aiohttp.web.Server | None = None
        self._listener: asyncio.Server | None = None
        self._reopen: asyncio.Task[None] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); returns the base URL."""
        if self._web is not None:
            raise RuntimeError("the API peer is already started")
        await self.emulator.__aenter__()
        # handler_cancellation: a client that goes away cancels its request, which is how an
        # abandoned watch stream learns to unsubscribe.
        self._web = aiohttp.web.Server(self.emulator, handler_cancellation=True)
        self._host = host
        self._port = port
        await self._listen()
        return self.url

    async def stop(self) -> None:
        if self._web is None:
            return
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._reopen  # OSError: the port was taken meanwhile; we stop anyway
            self._reopen = None
        await self._close_listener()
        await self._web.shutdown(timeout=1.0)
        self._web = None
        await self.emulator.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("the API peer is not started")
        return f"http://{self._host}:{self._port}"

    async def _listen(self) -> None:
        assert self._web is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._web, self._host, self._port, reuse_address=True
        )
        self._port = self._listener.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        """Stop accepting, end watch streams and drop open connections (keep-alive included)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.store.close_watches()
        await asyncio.sleep(0)  # let the streams see their end before their sockets go
        if self._web is not None:
            for connection in self._web.connections:
                connection.force_close()

    # ---- faults -------------------------------------------------------------------------------

    async def refuse_connections(self, seconds: float) -> None:
        """Go away for ``seconds`` (connections refused), then listen again on the same port.

        Returns as soon as the port is closed; ``wait_listening`` waits for the return.
        """
        if self._web is None:
            raise RuntimeError("the API peer is not started")
        if self._reopen is not None and not self._reopen.done():
            self._reopen.cancel()
        await self._close_listener()
        self._reopen = asyncio.create_task(self._listen_after(seconds))

    async def _listen_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._listen()

    async def wait_listening(self) -> None:
        if self._reopen is not None:
            await asyncio.shield(self._reopen)

    def inject_faults(
        self,
        status: int = 503,
        *,
        count: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        message: str | None = None,
        reason: str | None = None,
        retry_after: int | None = None,
    ) -> FaultRule:
        """Answer the next ``count`` matching requests (None: all, until ``clear_faults``)
        with ``status`` and a ``v1 Status`` body. ``path`` is a regex searched in the URL path.
        Thread-safe; the returned rule's ``hits`` tells how many requests it answered."""
        rule = FaultRule(status, count, method, path, message, reason, retry_after)
        return self.emulator.add_fault(rule)

    def clear_faults(self) -> None:
        self.emulator.clear_faults()

    # ---- kinds and objects --------------------------------------------------------------------

    @property
    def store(self) -> ObjectStore:
        """Kinds, objects and the current resourceVersion (thread-safe)."""
        return self.emulator.store

    def register_kind(
        self,
        group: str,
        version: str,
        kind: str,
        plural: str,
        *,
        namespaced: bool = True,
        list_kind: str | None = None,
        singular: str | None = None,
        short_names: Iterable[str] = (),
        categories: Iterable[str] = (),
        status_subresource: bool = True,
    ) -> KindInfo:
        """Serve a kind (as an established CRD would) without a CRD object. Thread-safe."""
        info = KindInfo(
            group=group,
            version=version,
            kind=kind,
            plural=plural,
            namespaced=namespaced,
            singular=singular or "",
            list_kind=list_kind or "",
            short_names=tuple(short_names),
            categories=tuple(categories),
            status_subresource=status_subresource,
        )
        self.store.register_kind(info)
        return info

    def get_object(
        self, group: str, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """A copy of a stored object, for assertions. Thread-safe."""
        return self.store.snapshot(group, plural, name, namespace)

    # ---- clients ------------------------------------------------------------------------------

    def write_kubeconfig(
        self, path: str | Path, *, context: str = SANDBOX_NAME, namespace: str = "default"
    ) -> Path:
        """A kubeconfig whose current context points at this peer (with a dummy token)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": SANDBOX_TOKEN}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": namespace},
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        text = io.StringIO()
        YAML(typ="safe", pure=True).dump(config, text)
        target.write_text(text.getvalue())
        return target


class KubeApiPeerThread(Service):
    """Runs a ``KubeApiPeer`` on its own event loop in a daemon thread, for sync callers.

    The peer's thread-safe methods (``register_kind``, ``inject_faults``, ``get_object``,
    ``write_kubeconfig``) can be called directly on ``.peer``; the async ones have sync
    wrappers here::

        with KubeApiPeerThread() as thread:
            thread.peer.write_kubeconfig(path)
            ...
    """

    def __init__(self, peer: KubeApiPeer | None = None) -> None:
        self.peer = peer or KubeApiPeer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0) -> str:
        """Start the loop thread and the peer in it; returns the base URL once listening."""
        if self._thread is not None:
            raise RuntimeError("the API peer thread is already started")
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                started.set_result(loop.run_until_complete(self.peer.start(host, port)))
            except BaseException as error:  # e.g. the port is taken: report it to start()
                started.set_exception(error)
                loop.close()
                return
            loop.run_forever()  # until stop() stops the loop
            loop.run_until_complete(self.peer.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-api-peer", daemon=True)
        self._thread.start()
        try:
            return started.result(timeout)
        except BaseException:
            self._thread.join(timeout)
            self._loop = self._thread = None
            raise

    def stop(self, *, timeout: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop = self._thread = None

    def refuse_connections(self, seconds: float) -> None:
        self._call(self.peer.refuse_connections(seconds))

    def wait_listening(self, timeout: float = 30.0) -> None:
        self._call(self.peer.wait_listening(), timeout)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the API peer thread is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def url(self) -> str:
        return self.peer.url


# ---- standalone ---------------------------------------------------------------------------------


async def _serve(host: str, port: int, kubeconfig: Path | None) -> None:
    peer = KubeApiPeer()
    url = await peer.start(host, port)
    if kubeconfig is not None:
        peer.write_kubeconfig(kubeconfig)
    print(
        f"kube-api peer listening on {url}"
        + (f" (kubeconfig: {kubeconfig})" if kubeconfig else ""),
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await peer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.kubeapi",
        description="Serve a Kubernetes API peer until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for this peer here")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.kubeconfig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
