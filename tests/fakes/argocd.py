"""A contract fake of Argo CD's REST API on loopback, from its documented shapes.

Shapes from argoproj/argo-cd ``assets/swagger.json``: ``GET /api/v1/applications/{name}``
(query ``refresh``: ``normal`` | ``hard``) and ``POST /api/v1/applications/{name}/sync``
(body ``applicationApplicationSyncRequest``) answer a ``v1alpha1Application``;
``status.sync`` is a ``v1alpha1SyncStatus`` (``status``, ``revision``), ``status.health``
a ``v1alpha1AppHealthStatus`` (``status``, ``message``), ``status.operationState`` a
``v1alpha1OperationState`` (``phase``, ``message``, ``operation`` with ``info``,
``syncResult.resources[]``, ``startedAt``, ``finishedAt``). Errors are ``runtimeError``
(``{"error", "code", "message"}``, gRPC codes: 16 unauthenticated → 401, 7 permission
denied → 403, 5 not found → 404, 9 failed precondition → 400).

The application controller is simulated: a sync starts an operation (``Running``);
each later GET moves it on by one step according to the app's ``plan``
(``succeed``: Running → Succeeded with health Progressing → Healthy; ``fail``:
Running → Failed with the plan's message; ``degraded``: Succeeded but Degraded).
``on_sync`` runs when an operation starts (a test renders the CMP there).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

Plan = Literal["succeed", "fail", "degraded"]


@dataclass
class FakeApp:
    name: str
    namespace: str = "argocd"
    plan: Plan = "succeed"
    fail_message: str = "one or more objects failed to apply"
    fail_resource: dict[str, Any] | None = None
    sync_status: str = "Synced"
    health: str = "Healthy"
    health_message: str = ""
    revision: str = "4e1a9c0d5b6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
    operation_state: dict[str, Any] | None = None
    steps: int = 0  # GETs seen since the operation started

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "sync": {"status": self.sync_status, "revision": self.revision},
            "health": {"status": self.health},
            "reconciledAt": _now(),
        }
        if self.health_message:
            status["health"]["message"] = self.health_message
        if self.operation_state is not None:
            status["operationState"] = self.operation_state
        return {
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://git.example/app.git", "path": "."},
                "destination": {"server": "https://kubernetes.default.svc"},
            },
            "status": status,
        }


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str
    body: dict[str, Any] | None


class FakeArgoCD:
    def __init__(self, token: str) -> None:
        self.token = token
        self.apps: dict[str, FakeApp] = {}
        self.requests: list[Seen] = []
        self.fail_next: list[int] = []  # statuses answered before the real answer
        self.limited: set[str] = set()  # valid sessions without rights on the apps (403)
        self.on_sync: Callable[[FakeApp, dict[str, Any]], None] | None = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeArgoCD:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, app: FakeApp) -> FakeApp:
        self.apps[app.name] = app
        return app

    def syncs(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST"]

    # ---- the API ----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with self.lock:
            self.requests.append(
                Seen(
                    method,
                    parts.path,
                    parse_qs(parts.query),
                    h.headers.get("Authorization", ""),
                    body,
                )
            )
            status, answer = self._answer(method, parts.path, parse_qs(parts.query), h, body)
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        h: BaseHTTPRequestHandler,
        body: dict[str, Any] | None,
    ) -> tuple[int, dict[str, Any]]:
        if self.fail_next:
            status = self.fail_next.pop(0)
            return status, _error(14 if status >= 500 else 8, "transport is closing")
        auth = h.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or token not in {self.token, *self.limited}:
            # Argo CD does not echo the token; a proxy in front of it might (tests check
            # that the client never repeats it).
            return 401, _error(16, f"invalid session: token signature is invalid: {auth}")
        prefix = "/api/v1/applications/"
        if not path.startswith(prefix):
            return 404, _error(5, f"Not Found: {path}")
        rest = path[len(prefix) :]
        name, _, action = rest.partition("/")
        name = unquote(name)
        app = self.apps.get(name)
        if token in self.limited:
            return 403, _error(7, f"permission denied: applications, get, default/{name}")
        if app is None:
            return 404, _error(5, f'applications.argoproj.io "{name}" not found')
        if method == "GET" and not action:
            if query.get("refresh") and app.operation_state is not None:
                self._step(app)
            return 200, app.body()
        if method == "POST" and action == "sync":
            if app.operation_state is not None and app.operation_state["phase"] == "Running":
                return 400, _error(9, "another operation is already in progress")
            assert body is not None
            app.operation_state = {
                "operation": {
                    "sync": {"prune": bool(body.get("prune")), "revision": app.revision},
                    "info": body.get("infos") or [],
                    "initiatedBy": {"username": "tributary"},
                },
                "phase": "Running",
                "message": "",
                "startedAt": _now(),
            }
            app.steps = 0
            app.sync_status = "OutOfSync"
            if self.on_sync is not None:
                self.on_sync(app, body)
            return 200, app.body()
        return 404, _error(5, f"Not Found: {method} {path}")

    def _step(self, app: FakeApp) -> None:
        """The application controller moves the operation on by one step."""
        state = app.operation_state
        assert state is not None
        app.steps += 1
        if state["phase"] != "Running" or app.steps < 2:
            if state["phase"] == "Succeeded" and app.plan == "succeed":
                app.health = "Healthy"
            return
        if app.plan == "fail":
            state.update(
                phase="Failed",
                message=app.fail_message,
                finishedAt=_now(),
                syncResult={"revision": app.revision, "resources": [app.fail_resource]}
                if app.fail_resource
                else {"revision": app.revision},
            )
            app.sync_status = "OutOfSync"
            return
        state.update(
            phase="Succeeded",
            message="successfully synced (all tasks run)",
            finishedAt=_now(),
            syncResult={"revision": app.revision, "resources": []},
        )
        app.sync_status = "Synced"
        if app.plan == "degraded":
            app.health = "Degraded"
            app.health_message = "Back-off pulling image"
        else:
            app.health = "Progressing"


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "code": code, "message": message}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
