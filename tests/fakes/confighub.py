"""A contract fake of ConfigHub's REST API on loopback, built from the public SDK
(``confighub/sdk``: ``openapi/goclient-new/models.gen.go``, ``cmd/cub/*.go``).

What it holds to, because the client relies on it:

- UUID paths (``/space/{space_id}/unit/{unit_id}``); slugs are found by listing with
  ``where`` (``Field = 'string'`` or ``Field = 123``, joined by ``AND`` only; anything
  else is a 400).
- PascalCase JSON, Go ``omitempty``: empty strings, zero numbers, empty maps are left
  out (a never-applied unit has no ``LiveRevisionNum`` key). Lists and gets answer
  ``ExtendedUnit`` / ``ExtendedSpace`` / ``ExtendedRevision`` wrappers; create, PUT and
  PATCH answer the bare object. Success is 200.
- ``Data`` is base64. A PUT must carry the ``Version`` it read (409 when stale, 400
  when absent); its ``LastChangeDescription`` becomes the new revision's
  ``Description``; identical data makes no revision. ``?revision_id=`` restores a
  revision's data. PATCH is a JSON merge patch without a version check.
- ``POST …/apply`` answers a ``QueuedOperation``, moves ``LastAppliedRevisionNum`` at
  once and completes (``UnitEvent`` ``Status: Completed``, ``LiveRevisionNum``) after
  ``apply_polls`` polls of ``…/unit_event``. ``POST …/approve`` answers a JSON string.
- ``DELETE /space/{space_id}/unit/{unit_id}`` (``DeleteUnit``) removes the unit with its
  revisions and events and answers a JSON string; then the unit is a 404.
- Errors are ``{"Code": "<status>", "Message": …}``; a wrong or missing bearer token
  is a 401. ``fail_next`` queues statuses (429, 503, …) to answer before the next
  requests, for the client's retries.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_WHERE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9.]*)\s*=\s*(?:'([^']*)'|(-?\d+))\s*$")
# Fields that are not omitempty in the SDK's models (written even when empty).
_ALWAYS = {"Slug", "ToolchainType", "ApprovedBy", "SetID", "TargetID", "TerminatedAt"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # Go's nanoseconds


def omitempty(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k in _ALWAYS or v not in (None, "", 0, {}, [])}


class Partial(Exception):
    """A bulk call where some items failed: 207 with the per-item answers."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__("partial")
        self.answers = answers


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_where(text: str) -> list[tuple[str, str | int]]:
    clauses: list[tuple[str, str | int]] = []
    for part in re.split(r"\s+AND\s+", text):
        m = _WHERE.match(part)
        if not m:
            raise ApiError(400, f"invalid where clause: {part!r}")
        clauses.append((m.group(1), m.group(2) if m.group(2) is not None else int(m.group(3))))
    return clauses


def matches(obj: dict[str, Any], clauses: list[tuple[str, str | int]]) -> bool:
    for field, value in clauses:
        have = obj.get(field)
        if isinstance(value, int):
            if int(have or 0) != value:
                return False
        elif str(have or "") != value:
            return False
    return True


class FakeConfigHub:
    def __init__(self, token: str = "ch-test-token-0123456789") -> None:
        self.token = token
        self.org = str(uuid.uuid4())
        self.user = str(uuid.uuid4())
        self.spaces: dict[str, dict[str, Any]] = {}
        self.units: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, list[dict[str, Any]]] = {}  # unit id -> revisions
        self.operations: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}  # unit id -> events
        self.deleted: list[str] = []  # unit ids, in the order they were deleted
        self.apply_polls = 1
        self.apply_result = "Completed"
        self.apply_message = ""  # the event's Message ("applied" / "apply failed" if empty)
        self.fail_next: list[int] = []
        self.refuse_apply: set[str] = set()
        # Queue the next N applies, then answer 503 (the answer lost after the queueing).
        self.lose_apply_answers = 0
        self.lose_delete_answers = 0  # the same for deletes: done, then 503
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeConfigHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def unit_by_slug(self, space: str, slug: str) -> dict[str, Any] | None:
        for sp in self.spaces.values():
            if sp["Slug"] == space:
                for u in self.units.values():
                    if u["SpaceID"] == sp["SpaceID"] and u["Slug"] == slug:
                        return u
        return None

    # ---- the API --------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any, ctype: str) -> Any:
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if parts == ["unit", "apply"] and method == "POST":
                return self._bulk_apply(query)
            if parts == ["space"]:
                if method == "GET":
                    return [
                        {"Space": omitempty(s), "TotalUnitCount": self._count(s["SpaceID"])}
                        for s in self._where(self.spaces.values(), query)
                    ]
                if method == "POST":
                    return self._create_space(body)
            if len(parts) >= 3 and parts[0] == "space" and parts[2] == "unit":
                space = self.spaces.get(parts[1])
                if space is None:
                    raise ApiError(404, f"space {parts[1]} not found")
                if len(parts) == 3:
                    if method == "GET":
                        units = [u for u in self.units.values() if u["SpaceID"] == parts[1]]
                        return [self._extended(u) for u in self._where(units, query)]
                    if method == "POST":
                        return self._create_unit(space, body)
                unit = self.units.get(parts[3]) if len(parts) > 3 else None
                if unit is None or unit["SpaceID"] != parts[1]:
                    raise ApiError(404, f"unit {parts[3] if len(parts) > 3 else ''} not found")
                rest = parts[4:]
                if not rest:
                    if method == "GET":
                        return self._extended(unit)
                    if method == "PUT":
                        return self._update(unit, body, query.get("revision_id"))
                    if method == "PATCH":
                        if ctype != "application/merge-patch+json":
                            raise ApiError(415, "PATCH takes application/merge-patch+json")
                        return self._patch(unit, body)
                    if method == "DELETE":
                        deleted = self._delete(unit)
                        if self.lose_delete_answers:
                            self.lose_delete_answers -= 1
                            raise ApiError(503, "upstream request timeout")
                        return deleted
                if rest == ["revision"] and method == "GET":
                    revs = self._where(self.revisions[unit["UnitID"]], query)
                    return [{"Revision": omitempty(r)} for r in revs]
                if rest == ["apply"] and method == "POST":
                    queued = self._apply(unit)
                    if self.lose_apply_answers:
                        self.lose_apply_answers -= 1
                        raise ApiError(503, "upstream request timeout")
                    return queued
                if rest == ["unit_event"] and method == "GET":
                    return self._poll(unit, query)
                if rest == ["approve"] and method == "POST":
                    if self.user not in unit["ApprovedBy"]:
                        unit["ApprovedBy"].append(self.user)
                    return "Approved"
            raise ApiError(404, f"no route {method} {path}")

    def _delete(self, unit: dict[str, Any]) -> str:
        """``cub unit delete``: the unit goes with its revisions and events (what it
        applied stays in the cluster: that is ``cub unit destroy``); a JSON string."""
        unit_id = unit["UnitID"]
        del self.units[unit_id]
        self.revisions.pop(unit_id, None)
        self.events.pop(unit_id, None)
        self.deleted.append(unit_id)
        return "Deleted"

    def _where(self, items: Any, query: dict[str, str]) -> list[dict[str, Any]]:
        items = list(items)
        if "where" not in query:
            return items
        clauses = parse_where(query["where"])
        return [i for i in items if matches(i, clauses)]

    def _count(self, space_id: str) -> int:
        return sum(1 for u in self.units.values() if u["SpaceID"] == space_id)

    def _extended(self, unit: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Unit": omitempty(unit),
            "UnitStatus": {"Status": "Ready" if unit.get("LiveRevisionNum") else "NoLive"},
        }
        events = self.events.get(unit["UnitID"])
        if events:
            out["LatestUnitEvent"] = omitempty(events[-1])
        return out

    def _create_space(self, body: dict[str, Any]) -> dict[str, Any]:
        slug = str(body.get("Slug") or "")
        if not slug:
            raise ApiError(400, "Slug is required")
        if any(s["Slug"] == slug for s in self.spaces.values()):
            raise ApiError(409, f"space {slug} already exists")
        now = _now()
        space = {
            "SpaceID": str(uuid.uuid4()),
            "OrganizationID": self.org,
            "Slug": slug,
            "DisplayName": body.get("DisplayName") or slug,
            "Labels": dict(body.get("Labels") or {}),
            "Annotations": dict(body.get("Annotations") or {}),
            "CreatedAt": now,
            "UpdatedAt": now,
            "Version": 1,
            "EntityType": "space",
        }
        self.spaces[space["SpaceID"]] = space
        return omitempty(space)

    def _create_unit(self, space: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        slug = str(body.get("Slug") or "")
        if not slug:
            raise ApiError(400, "Slug is required")
        if any(u["SpaceID"] == space["SpaceID"] and u["Slug"] == slug for u in self.units.values()):
            raise ApiError(409, f"unit {slug} already exists in space {space['Slug']}")
        _decode(body.get("Data"))
        now = _now()
        unit = {
            "UnitID": str(uuid.uuid4()),
            "SpaceID": space["SpaceID"],
            "OrganizationID": self.org,
            "Slug": slug,
            "DisplayName": body.get("DisplayName") or slug,
            "ToolchainType": body.get("ToolchainType") or "Kubernetes/YAML",
            "Data": body.get("Data") or "",
            "Labels": dict(body.get("Labels") or {}),
            "Annotations": dict(body.get("Annotations") or {}),
            "LastChangeDescription": body.get("LastChangeDescription") or "",
            "HeadRevisionNum": 0,
            "LiveRevisionNum": 0,
            "LastAppliedRevisionNum": 0,
            "PreviousLiveRevisionNum": 0,
            "ApplyGates": {},
            "ApprovedBy": [],
            "SetID": None,
            "TargetID": None,
            "CreatedAt": now,
            "UpdatedAt": now,
            "Version": 1,
            "EntityType": "unit",
        }
        self.units[unit["UnitID"]] = unit
        self.revisions[unit["UnitID"]] = []
        self._revision(unit, now)
        return omitempty(unit)

    def _revision(self, unit: dict[str, Any], now: str) -> None:
        revs = self.revisions[unit["UnitID"]]
        number = len(revs) + 1
        revs.append(
            {
                "RevisionID": str(uuid.uuid4()),
                "RevisionNum": number,
                "UnitID": unit["UnitID"],
                "SpaceID": unit["SpaceID"],
                "OrganizationID": self.org,
                "Data": unit["Data"],
                "Description": unit["LastChangeDescription"],
                "Source": "API",
                "UserID": self.user,
                "ApprovedBy": [],
                "CreatedAt": now,
                "UpdatedAt": now,
                "Version": 1,
                "EntityType": "revision",
            }
        )
        unit["HeadRevisionNum"] = number
        unit["ApprovedBy"] = []

    def _update(
        self, unit: dict[str, Any], body: dict[str, Any], revision_id: str | None
    ) -> dict[str, Any]:
        if not body.get("Version"):
            raise ApiError(400, "Version is required")
        if int(body["Version"]) != unit["Version"]:
            raise ApiError(
                409, f"version {body['Version']} is stale: the unit is at {unit['Version']}"
            )
        data = body.get("Data") or ""
        if revision_id:
            found = [r for r in self.revisions[unit["UnitID"]] if r["RevisionID"] == revision_id]
            if not found:
                raise ApiError(404, f"revision {revision_id} not found")
            data = found[0]["Data"]
        _decode(data)
        now = _now()
        changed = data != unit["Data"]
        unit["Data"] = data
        unit["Labels"] = dict(body.get("Labels") or {})
        unit["Annotations"] = dict(body.get("Annotations") or {})
        unit["LastChangeDescription"] = body.get("LastChangeDescription") or ""
        unit["Version"] += 1
        unit["UpdatedAt"] = now
        if changed:
            self._revision(unit, now)
        return omitempty(unit)

    def _patch(self, unit: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        for key, value in patch.items():
            if key in ("UnitID", "SpaceID", "HeadRevisionNum", "Version", "Data"):
                raise ApiError(400, f"{key} cannot be patched here")
            if isinstance(value, dict) and isinstance(unit.get(key), dict):
                merged = dict(unit[key])
                for k, v in value.items():
                    if v is None:
                        merged.pop(k, None)
                    else:
                        merged[k] = v
                unit[key] = merged
            elif value is None:
                unit[key] = "" if isinstance(unit.get(key), str) else {}
            else:
                unit[key] = value
        unit["Version"] += 1
        unit["UpdatedAt"] = _now()
        return omitempty(unit)

    def _apply(self, unit: dict[str, Any]) -> dict[str, Any]:
        op = {
            "QueuedOperationID": str(uuid.uuid4()),
            "OrganizationID": self.org,
            "SpaceID": unit["SpaceID"],
            "UnitID": unit["UnitID"],
            "RevisionNum": unit["HeadRevisionNum"],
            "Action": "Apply",
            "Status": "Queued",
            "CreatedAt": _now(),
            "Version": 1,
            "polls": 0,
        }
        self.operations[op["QueuedOperationID"]] = op
        unit["LastAppliedRevisionNum"] = unit["HeadRevisionNum"]
        return omitempty({k: v for k, v in op.items() if k != "polls"})

    def _bulk_apply(self, query: dict[str, str]) -> Any:
        """``POST /unit/apply?where=…``: one ``UnitActionResponse`` per matching unit;
        207 when some failed (``refuse_apply`` holds the unit ids that fail)."""
        if not query.get("where"):
            raise ApiError(400, "where is required")
        answers: list[dict[str, Any]] = []
        for unit in self._where(self.units.values(), query):
            if unit["UnitID"] in self.refuse_apply:
                answers.append(
                    {"Error": {"Status": 422, "Message": f"unit {unit['Slug']} has no target"}}
                )
            else:
                op = self._apply(unit)
                answers.append({"Action": op})
        if any("Error" in a for a in answers):
            raise Partial(answers)
        return answers

    def _poll(self, unit: dict[str, Any], query: dict[str, str]) -> list[dict[str, Any]]:
        for op in self.operations.values():
            if op["UnitID"] != unit["UnitID"] or op["Status"] != "Queued":
                continue
            op["polls"] += 1
            if op["polls"] >= self.apply_polls:
                op["Status"] = self.apply_result
                now = _now()
                ok = self.apply_result == "Completed"
                event = {
                    "UnitEventID": str(uuid.uuid4()),
                    "QueuedOperationID": op["QueuedOperationID"],
                    "UnitID": unit["UnitID"],
                    "SpaceID": unit["SpaceID"],
                    "OrganizationID": self.org,
                    "RevisionNum": op["RevisionNum"],
                    "Action": "Apply",
                    "Result": "ApplyCompleted"
                    if self.apply_result == "Completed"
                    else "ApplyFailed",
                    "Status": self.apply_result,
                    "Message": self.apply_message or ("applied" if ok else "apply failed"),
                    "BridgeWorkerID": None,
                    "StartedAt": now,
                    "TerminatedAt": now,
                    "CreatedAt": now,
                }
                self.events.setdefault(unit["UnitID"], []).append(event)
                if ok:
                    unit["PreviousLiveRevisionNum"] = unit["LiveRevisionNum"]
                    unit["LiveRevisionNum"] = op["RevisionNum"]
        events = self._where(self.events.get(unit["UnitID"], []), query)
        return [omitempty(e) for e in events]  # a bare list, Status at top level

    # ---- HTTP ---------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as ConfigHub's server
            # The head and the body go out in two writes; on a kept-alive connection
            # Nagle's algorithm holds the body until the client's delayed ACK, 40 ms
            # a request (most of the ConfigHub tests' time).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake.lock:
                    fake.requests.append((self.command, self.path, dict(self.headers), raw))
                    injected = fake.fail_next.pop(0) if fake.fail_next else None
                try:
                    if self.headers.get("Authorization") != f"Bearer {fake.token}":
                        raise ApiError(401, "invalid or missing bearer token")
                    if injected is not None:
                        raise ApiError(injected, "injected failure")
                    body = json.loads(raw) if raw else None
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0]
                    out = fake.handle(self.command, split.path, query, body, ctype)
                    self._send(200, out)
                except Partial as e:
                    self._send(207, e.answers)
                except ApiError as e:
                    self._send(e.status, {"Code": str(e.status), "Message": e.message})
                except (ValueError, KeyError, TypeError) as e:
                    self._send(400, {"Code": "400", "Message": f"bad request: {e}"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


def _decode(data: Any) -> None:
    if data:
        try:
            base64.b64decode(str(data), validate=True)
        except ValueError as e:
            raise ApiError(400, "Data must be base64") from e
