"""Failures the API peer answers with: apiserver ``Status`` bodies and injected faults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

# kmock does not re-export its Response (status + headers + payload); our handlers return it.
from kmock._internal.rendering import Response

from sandbox.kubeapi_kinds import KindInfo

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, reason: str | None = None, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``v1 Status`` failure, as every apiserver error body is."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


class ApiError(Exception):
    """An apiserver-style failure; rendered as a ``Status`` with the same code."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.body = status_body(code, message, reason, details)
        self.code = code

    def response(self) -> Response:
        return Response(status=self.code, payload=self.body)


def no_such_resource() -> ApiError:
    return ApiError(404, "the server could not find the requested resource")


def not_found(kind: KindInfo, name: str) -> ApiError:
    return ApiError(
        404,
        f'{kind.resource_name} "{name}" not found',
        details={"name": name, "group": kind.group, "kind": kind.plural},
    )


def already_exists(kind: KindInfo, name: str) -> ApiError:
    return ApiError(
        409,
        f'{kind.resource_name} "{name}" already exists',
        "AlreadyExists",
        {"name": name, "group": kind.group, "kind": kind.plural},
    )


def invalid(kind: KindInfo, name: str, field_path: str, message: str) -> ApiError:
    qualified = f"{kind.kind}.{kind.group}" if kind.group else kind.kind
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {field_path}: {message}',
        details={
            "name": name,
            "group": kind.group,
            "kind": kind.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}],
        },
    )


def modified_conflict(kind: KindInfo, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {kind.resource_name} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details={"name": name, "group": kind.group, "kind": kind.plural},
    )


@dataclass
class FaultRule:
    """Answer matching requests with ``status`` instead of serving them.

    ``count`` is how many requests to fail (None: until cleared); ``method`` and ``path`` (a
    regular expression searched in the URL path) narrow which requests count. ``hits`` counts
    the requests it answered.
    """

    status: int
    count: int | None = 1
    method: str | None = None
    path: str | None = None
    message: str | None = None
    reason: str | None = None
    retry_after: int | None = None
    hits: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path) if self.path else None

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def matches(self, method: str, path: str) -> bool:
        if self.exhausted:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    def response(self) -> aiohttp.web.Response:
        reason = self.reason or REASONS.get(self.status, "InternalError")
        message = self.message or f"injected fault: {reason}"
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return aiohttp.web.json_response(
            status_body(self.status, message, reason), status=self.status, headers=headers
        )
