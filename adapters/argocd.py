"""Argo CD's REST API (``/api/v1``): the client the ``argocd`` actuator's activities use.

Synchronous on purpose (sync activities, httpx). The token comes from the worker's
``ARGOCD_AUTH_TOKEN`` and is only placed in the ``Authorization`` header of requests
to ``ARGOCD_SERVER``; it never reaches an exception, a log line or a return value.
What Argo CD decided (401, 403, 404, a refused sync) is a ``TributaryError`` (not
retried); what passes (5xx, 429, a dropped connection, another operation still
running) is ``ArgoCDUnavailable``, retried here a few times and then by Temporal.
The activities (refresh, sync, wait for Synced and Healthy): ``activities/argocd.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit

import httpx

from domain.errors import BadInput, Rejected
from domain.redact import redact

USER_AGENT = "tributary"
#: the ``operation.info`` entry that marks an operation as ours
INFO_NAME = "tributary"
ATTEMPTS = 4  # per request, for 5xx / 429 / transport errors, before Temporal retries


class ArgoCDUnavailable(RuntimeError):
    """A passing failure (5xx, 429, transport, another operation running): retried."""


class ArgoCDRefused(Rejected):
    """Argo CD refused the request for good (credentials, permissions, a bad sync)."""


class ArgoCDClient:
    """Argo CD's REST API (``/api/v1``) with a bearer token."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        verify: bool = True,
    ) -> None:
        self.base = _base_url(server)
        self._token = token
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(30.0, connect=10.0),
            transport=transport,
            verify=verify,
            follow_redirects=False,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ArgoCDClient | None:
        """The client ``ARGOCD_SERVER`` / ``ARGOCD_AUTH_TOKEN`` describe, or None."""
        env = os.environ if env is None else env
        server = env.get("ARGOCD_SERVER", "").strip()
        if not server:
            return None
        return cls(
            server,
            env.get("ARGOCD_AUTH_TOKEN", ""),
            verify=env.get("ARGOCD_INSECURE", "") not in ("1", "true"),
        )

    def __repr__(self) -> str:  # never the token
        return f"ArgoCDClient({self.base!r})"

    def close(self) -> None:
        self._http.close()

    def get_app(self, name: str, *, refresh: str | None = None) -> dict[str, Any]:
        params = {"refresh": refresh} if refresh else None
        return self._request("GET", f"/api/v1/applications/{quote(name, safe='')}", name, params)

    def sync(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request(
            "POST", f"/api/v1/applications/{quote(name, safe='')}/sync", name, None, body
        )

    def _request(
        self,
        method: str,
        path: str,
        app: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if not self._token:
            raise BadInput(
                "the worker has ARGOCD_SERVER but no ARGOCD_AUTH_TOKEN (an Argo CD API token "
                "of an account allowed to get and sync the Application)",
                field="ARGOCD_AUTH_TOKEN",
            )
        headers = {"Authorization": f"Bearer {self._token}"}
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                self._sleep(min(0.5 * 2**attempt, 4.0))
            try:
                response = self._http.request(
                    method, path, params=params, json=body, headers=headers
                )
            except httpx.HTTPError as e:
                problem = f"{method} {path}: {type(e).__name__}"
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                problem = f"{method} {path}: HTTP {status}: {_message(response)}"
                continue
            if status >= 400:
                self._refuse(method, path, app, status, _message(response))
            try:
                found = response.json()
            except ValueError:
                problem = f"{method} {path}: HTTP {status} with a body that is not JSON"
                continue
            if not isinstance(found, dict):
                problem = f"{method} {path}: HTTP {status} with a body that is not an object"
                continue
            return found
        raise ArgoCDUnavailable(self._clean(f"Argo CD at {self.base} unavailable: {problem}"))

    def _refuse(self, method: str, path: str, app: str, status: int, message: str) -> None:
        where = f"Argo CD at {self.base}, Application {app}"
        if status == 401:
            raise ArgoCDRefused(
                self._clean(
                    f"{where}: the worker's ARGOCD_AUTH_TOKEN was not accepted (HTTP 401: "
                    f"{message}); create a token with `argocd account generate-token`"
                )
            )
        if status == 403:
            raise ArgoCDRefused(
                self._clean(
                    f"{where}: permission denied (HTTP 403: {message}); the token's account "
                    "needs `applications, get` and `applications, sync` on it"
                )
            )
        if status == 404:
            # The space names an Application Argo CD does not have: a refusal for good
            # (the apply is rejected, exit 2), not an unexpected error.
            raise ArgoCDRefused(
                self._clean(
                    f"{where}: no such Application (HTTP 404: {message}); "
                    "`tributary space set SPACE --argocd-app NAME` names it"
                )
            )
        if "another operation is already in progress" in message:
            raise ArgoCDUnavailable(self._clean(f"{where}: {message}"))
        raise ArgoCDRefused(self._clean(f"{where}: {method} refused (HTTP {status}: {message})"))

    def _clean(self, message: str) -> str:
        """``message`` without the token, whatever Argo CD echoed back."""
        return redact(message, [self._token] if self._token else [])


def _base_url(server: str) -> str:
    """``ARGOCD_SERVER`` as a base URL: https, or http only on loopback (tests)."""
    url = server.strip()
    if "://" not in url:
        url = f"https://{url}"  # the argocd CLI's form: host[:port]
    url = url.rstrip("/")
    parts = _split(url)
    if parts is None or any(c.isspace() or not c.isprintable() for c in url):
        # the value itself is not shown: it may hold a credential
        raise BadInput(
            "ARGOCD_SERVER is not an address (https://HOST[:PORT] or HOST[:PORT])",
            field="ARGOCD_SERVER",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadInput(
            "ARGOCD_SERVER must be a plain address, without credentials, a query or a fragment",
            field="ARGOCD_SERVER",
        )
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise BadInput(
            f"ARGOCD_SERVER {parts.scheme}://{parts.netloc} must use https "
            "(http is accepted on loopback only)",
            field="ARGOCD_SERVER",
        )
    return url


def _split(url: str) -> SplitResult | None:
    """``url``'s parts when it has a host and a numeric port (if any), else None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return None
    return parts if parts.hostname else None


def _message(response: httpx.Response) -> str:
    """Argo CD's error (``runtimeError``: ``{"error", "code", "message"}``), one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        text = str(body.get("message") or body.get("error") or "")
    if not text:
        text = response.reason_phrase or "no message"
    return " ".join(text.split())[:500]


# ---- reading an Application ----------------------------------------------------------------


def ours(app: dict[str, Any], marker: str) -> dict[str, Any] | None:
    """The operation state of the sync ``marker`` started, or None."""
    state = (app.get("status") or {}).get("operationState") or {}
    infos = (state.get("operation") or {}).get("info") or []
    if any(i.get("name") == INFO_NAME and i.get("value") == marker for i in infos):
        return dict(state)
    # Just after the POST the operation may only be in .operation (not yet picked up).
    infos = (app.get("operation") or {}).get("info") or []
    if any(i.get("name") == INFO_NAME and i.get("value") == marker for i in infos):
        return {"phase": "Running", "message": "waiting for the application controller"}
    return None


def failure_message(state: dict[str, Any]) -> str:
    """Argo CD's message of a failed operation, with the resources that failed."""
    parts = [str(state.get("message") or f"sync {state.get('phase', 'failed')}")]
    for r in ((state.get("syncResult") or {}).get("resources")) or []:
        if r.get("status") in ("SyncFailed",) or r.get("hookPhase") in ("Failed", "Error"):
            parts.append(f"{r.get('kind', '?')}/{r.get('name', '?')}: {r.get('message', '')}")
    return "; ".join(p for p in parts if p)


def app_condition(app: dict[str, Any]) -> tuple[str, str, str]:
    """(sync status, health status, health or condition message) of an Application."""
    status = app.get("status") or {}
    sync = str((status.get("sync") or {}).get("status") or "Unknown")
    health = status.get("health") or {}
    message = str(health.get("message") or "")
    if not message:
        conditions = status.get("conditions") or []
        message = "; ".join(str(c.get("message") or c.get("type")) for c in conditions)
    return sync, str(health.get("status") or "Unknown"), message


# ---- activities ------------------------------------------------------------------------------
