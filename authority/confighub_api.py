"""ConfigHub's REST API over httpx: the shapes of ``confighub/sdk``
(``openapi/goclient-new/models.gen.go``), retries, and errors that name what failed.

- Paths use UUIDs (``/space/{space_id}/unit/{unit_id}``); slugs resolve through list
  calls filtered with ``where`` (SQL-like, ``AND`` only, single-quoted strings).
- JSON is PascalCase; every field is read as optional (Go ``omitempty``).
- Unit and revision ``Data`` is base64 of the configuration text (YAML here).
- Errors are ``{"Code": "<http status>", "Message": …}``. 429 and 5xx are retried here
  with backoff (200 ms doubling to 6.4 s), then raised as ``ConfigHubUnavailable``
  (a plain exception: Temporal retries the activity); 401/403 raise
  ``ConfigHubRejected`` and 404 ``NotFound`` (decided, non-retryable), naming the
  space and unit.
- The token (``CONFIGHUB_TOKEN``) is sent as ``Authorization: Bearer …`` and never
  appears in an error: messages are redacted and httpx's exceptions (which hold the
  request and its headers) are never chained.
"""

from __future__ import annotations

import base64
import json as jsonlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from domain.errors import BadInput, NotFound, TributaryError
from domain.redact import redact, redact_url

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 6.4
ATTEMPTS = 6  # 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s of waiting, then Temporal's retries take over
USER_AGENT = "tributary"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigHubUnavailable(Exception):
    """ConfigHub is unreachable, rate-limiting or failing (429, 5xx): retried."""


class ConfigHubRejected(TributaryError):
    """ConfigHub refused the credentials (401) or the operation (403, other 4xx)."""

    exit_code = 1

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ConfigHubConflict(Exception):
    """409: the unit's ``Version`` moved since it was read (handled by the store)."""


def check_base_url(url: str, field: str = "TRIBUTARY_AUTHORITY") -> str:
    """``https://…``, or plain ``http://`` on loopback only (tests, a local proxy);
    ``field`` names the variable the URL came from."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise BadInput(
            f"{redact_url(url)!r} is not a ConfigHub API URL (https://HOST/api)", field=field
        ) from None
    if parts.username or parts.password:
        raise BadInput(
            f"{redact_url(url)!r}: put the ConfigHub token in CONFIGHUB_TOKEN, not in the URL",
            field=field,
        )
    if any(c.isspace() or not c.isprintable() for c in url):
        raise BadInput(
            f"{redact_url(url)!r}: a ConfigHub API URL has no spaces or control characters",
            field=field,
        )
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return url.rstrip("/")
    raise BadInput(
        f"{redact_url(url)!r}: a ConfigHub API URL must be https:// "
        "(plain http only on 127.0.0.1 or localhost)",
        field=field,
    )


def quote(value: str) -> str:
    """A string literal for a ``where`` filter."""
    if "'" in value or "\\" in value:
        raise BadInput(f"{value!r}: quotes and backslashes cannot name a ConfigHub object")
    return f"'{value}'"


def encode_data(data: Mapping[str, Any]) -> str:
    text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    return base64.b64encode(text.encode()).decode()


def decode_data(encoded: str | None) -> dict[str, Any]:
    if not encoded:
        return {}
    loaded = yaml.safe_load(base64.b64decode(encoded).decode())
    return loaded if isinstance(loaded, dict) else {}


class ConfigHubApi:
    """The HTTP calls the store needs, each with its retries and error mapping."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
        field: str = "TRIBUTARY_AUTHORITY",
    ) -> None:
        self.base_url = check_base_url(base_url, field)
        raw = token if token is not None else os.environ.get("CONFIGHUB_TOKEN", "")
        self.__token = raw.strip()
        if not self.__token:
            raise BadInput(
                "CONFIGHUB_TOKEN is not set in the worker's environment; the ConfigHub "
                "authority needs a token (cub auth get-token)",
                field="CONFIGHUB_TOKEN",
            )
        self._sleep = sleep
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:
        return f"ConfigHubApi(base_url={self.base_url!r}, token=set)"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # ---- spaces -----------------------------------------------------------------

    def find_space(self, slug: str) -> dict[str, Any] | None:
        found = self.call(
            "GET", "/space", params={"where": f"Slug = {quote(slug)}"}, what=f"space {slug}"
        )
        for item in found or []:
            space = (item or {}).get("Space") or {}
            if space.get("Slug") == slug:
                return dict(space)
        return None

    def create_space(self, slug: str, labels: Mapping[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"Slug": slug, "DisplayName": slug}
        if labels:
            body["Labels"] = dict(labels)
        return dict(self.call("POST", "/space", json=body, what=f"creating space {slug}"))

    # ---- units ------------------------------------------------------------------

    def list_units(self, space_id: str, what: str, where: str = "") -> list[dict[str, Any]]:
        """ExtendedUnits (``{"Unit": …, "UnitStatus": …, "LatestUnitEvent": …}``)."""
        params = {"where": where} if where else None
        found = self.call("GET", f"/space/{space_id}/unit", params=params, what=what)
        return [dict(item) for item in found or [] if (item or {}).get("Unit")]

    def create_unit(self, space_id: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/space/{space_id}/unit", json=dict(body), what=what))

    def update_unit(
        self,
        space_id: str,
        unit_id: str,
        body: Mapping[str, Any],
        what: str,
        *,
        revision_id: str | None = None,
    ) -> dict[str, Any]:
        """PUT the whole unit with the ``Version`` it was read at (409 when stale)."""
        params = {"revision_id": revision_id} if revision_id else None
        return dict(
            self.call(
                "PUT",
                f"/space/{space_id}/unit/{unit_id}",
                params=params,
                json=dict(body),
                what=what,
            )
        )

    def patch_unit(
        self, space_id: str, unit_id: str, patch: Mapping[str, Any], what: str
    ) -> dict[str, Any]:
        """JSON merge patch, no ``Version``: for fields no one else owns (annotations)."""
        return dict(
            self.call(
                "PATCH",
                f"/space/{space_id}/unit/{unit_id}",
                json=dict(patch),
                what=what,
                content_type="application/merge-patch+json",
            )
        )

    def delete_unit(self, space_id: str, unit_id: str, what: str) -> bool:
        """``DELETE /space/{space_id}/unit/{unit_id}`` (``cub unit delete``): the unit and
        its revisions. False when ConfigHub has no such unit (any more): a delete retried
        after an answer that was lost."""
        try:
            self.call("DELETE", f"/space/{space_id}/unit/{unit_id}", what=what)
        except NotFound:
            return False
        return True

    def list_revisions(
        self, space_id: str, unit_id: str, what: str, number: int | None = None
    ) -> list[dict[str, Any]]:
        params = {"where": f"RevisionNum = {int(number)}"} if number is not None else None
        found = self.call(
            "GET", f"/space/{space_id}/unit/{unit_id}/revision", params=params, what=what
        )
        return [dict(item["Revision"]) for item in found or [] if (item or {}).get("Revision")]

    # ---- applies through ConfigHub ------------------------------------------------

    def apply(
        self, space_id: str, unit_id: str, what: str, *, retry: bool = True
    ) -> dict[str, Any]:
        """Queue an apply through the unit's target; returns the ``QueuedOperation``.

        ``retry=False``: one request, no retry here — a 5xx may come after ConfigHub
        queued the apply, so the caller looks at the unit before asking again."""
        return dict(
            self.call(
                "POST",
                f"/space/{space_id}/unit/{unit_id}/apply",
                json={},
                what=what,
                attempts=ATTEMPTS if retry else 1,
            )
        )

    def bulk_apply(self, where: str, what: str) -> tuple[list[dict[str, Any]], list[str]]:
        """``POST /unit/apply?where=…``: the queued operations, and the per-unit errors of a
        207 (some units failed) as messages."""
        found = self.call("POST", "/unit/apply", params={"where": where}, json={}, what=what)
        actions: list[dict[str, Any]] = []
        errors: list[str] = []
        for item in found or []:
            item = item or {}
            if item.get("Error"):
                errors.append(self._scrub(str(item["Error"].get("Message") or item["Error"])))
            elif item.get("Action"):
                actions.append(dict(item["Action"]))
        return actions, errors

    def wait_for_operation(
        self,
        space_id: str,
        unit_id: str,
        operation_id: str,
        what: str,
        *,
        deadline: float,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> dict[str, Any] | None:
        """Poll the unit events of a queued operation (200 ms doubling to 6.4 s) until one
        is ``Completed``, ``Failed`` or ``Canceled``; None when ``deadline`` (monotonic)
        passes first."""
        where = f"QueuedOperationID = {quote(operation_id)}"
        return self.wait_for_event(
            space_id, unit_id, where, what, deadline=deadline, heartbeat=heartbeat
        )

    def wait_for_event(
        self,
        space_id: str,
        unit_id: str,
        where: str,
        what: str,
        *,
        deadline: float,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> dict[str, Any] | None:
        """Poll the unit events ``where`` selects (200 ms doubling to 6.4 s) until the
        newest has ended (``Completed``, ``Failed``, ``Canceled``); None at ``deadline``."""
        delay = BACKOFF_FIRST
        while True:
            heartbeat()
            events = self.call(
                "GET",
                f"/space/{space_id}/unit/{unit_id}/unit_event",
                params={"where": where},
                what=what,
            )
            for event in reversed(events or []):
                if (event or {}).get("Status") in ("Completed", "Failed", "Canceled"):
                    return dict(event)
            if time.monotonic() + delay > deadline:
                return None
            self._sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    # ---- the one request function ---------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content_type: str = "application/json",
        attempts: int = ATTEMPTS,
    ) -> Any:
        headers = {
            "Authorization": f"Bearer {self.__token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        content = None
        if json is not None:
            content = jsonlib.dumps(json).encode()
            headers["Content-Type"] = content_type
        delay = BACKOFF_FIRST
        for attempt in range(attempts):
            wait = delay
            try:
                response = self._client.request(
                    method, self.base_url + path, params=params, content=content, headers=headers
                )
            except httpx.TransportError as e:
                # never chained: the httpx error holds the request and its headers
                failure: Exception = ConfigHubUnavailable(
                    self._scrub(f"ConfigHub unreachable while {what}: {type(e).__name__}: {e}")
                )
            else:
                status = response.status_code
                if status in (200, 201, 207):
                    return self._json(response, what)
                message = self._message(response)
                if status == 429 or status >= 500:
                    failure = ConfigHubUnavailable(
                        f"ConfigHub answered {status} while {what}: {message}"
                    )
                    wait = max(wait, _retry_after(response))
                else:
                    raise self._failure(status, message, what)
            if attempt + 1 == attempts:
                raise failure
            self._sleep(min(wait, BACKOFF_MAX))
            delay = min(delay * 2, BACKOFF_MAX)
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, status: int, message: str, what: str) -> Exception:
        if status == 401:
            return ConfigHubRejected(
                f"ConfigHub rejected the credentials (CONFIGHUB_TOKEN) while {what}: {message}",
                status=status,
            )
        if status == 403:
            return ConfigHubRejected(
                f"ConfigHub refused {what}: {message}; the token (CONFIGHUB_TOKEN) needs "
                "permission on this space",
                status=status,
            )
        if status == 404:
            return NotFound(f"ConfigHub found nothing while {what}: {message}")
        if status == 409:
            return ConfigHubConflict(f"ConfigHub: version conflict while {what}: {message}")
        return ConfigHubRejected(
            f"ConfigHub answered {status} while {what}: {message}", status=status
        )

    def _json(self, response: httpx.Response, what: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ConfigHubUnavailable(
                f"ConfigHub sent an unreadable answer while {what}"
            ) from None

    def _message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("Message"):
            text = str(body["Message"])
        else:
            text = response.text[:300] or response.reason_phrase
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        return redact(text.replace(self.__token, "***"), [self.__token])


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0
