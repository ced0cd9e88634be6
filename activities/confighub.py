"""The ``confighub`` actuator: ConfigHub applies a unit through the space's target and
bridge worker (the seed's main path), and ``LiveRevisionNum`` is ConfigHub's own.

- ``confighub.apply``: ``POST /space/{s}/unit/{u}/apply`` answers a ``QueuedOperation``
  (``LastAppliedRevisionNum`` moves at once). ConfigHub applies the unit's *head*
  revision, so a request for another revision is refused (``tributary rollback`` makes
  an older revision the head). A retried attempt never queues a second apply: it finds
  the operation it queued in its heartbeat details, else by the unit
  (``LastAppliedRevisionNum`` = the revision, its ``LatestUnitEvent``).
- ``confighub.wait``: polls ``…/unit_event?where=QueuedOperationID = '…'`` (200 ms
  doubling to 6.4 s, heartbeating) until the event is ``Completed``, ``Failed`` or
  ``Canceled``; ConfigHub moves ``LiveRevisionNum`` on completion, and Tributary reads
  the live revision from there (``ConfigHubStore._unit``).

Registered only when the worker's authority is ConfigHub (``ConfigHubStore``): the
client, its token and its retries are the store's (``authority/confighub_api.py``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import activity

from activities._errors import decided
from authority.confighub import ConfigHubStore
from authority.confighub_api import quote
from domain.errors import NotFound, Rejected

ENDED_OK = "Completed"


class ConfigHubApplyInput(BaseModel):
    space: str
    unit: str
    revision: int


class ConfigHubApplyResult(BaseModel):
    # The queued operation; "" when a retried attempt found the apply queued but no
    # event of it yet (the wait then follows the revision's events).
    operation_id: str
    queued: bool  # False: a retried attempt found the apply it queued before


class ConfigHubWaitInput(BaseModel):
    space: str
    unit: str
    revision: int
    operation_id: str
    timeout_seconds: int


class ConfigHubWaitResult(BaseModel):
    # ready: Completed; failed: Failed or Canceled (ConfigHub's message); pending: the
    # timeout passed first.
    state: Literal["ready", "failed", "pending"]
    message: str
    live_revision: int | None = None


class ConfigHubActivities:
    def __init__(self, store: ConfigHubStore) -> None:
        self.store = store

    def _unit(self, space: str, unit: str) -> tuple[str, dict[str, Any]]:
        found = self.store.extended_unit(space, unit)
        if found is None:
            raise NotFound(f"unit {space}/{unit} does not exist in ConfigHub")
        return found

    @activity.defn(name="confighub.apply")
    @decided
    def apply(self, inp: ConfigHubApplyInput) -> ConfigHubApplyResult:
        """Queue ConfigHub's apply of the unit's head revision (once per request)."""
        space_id, extended = self._unit(inp.space, inp.unit)
        unit = extended["Unit"]
        info = activity.info()
        if info.attempt > 1:
            earlier = _earlier_operation(info.heartbeat_details, extended, inp.revision)
            if earlier is not None:
                return ConfigHubApplyResult(operation_id=earlier, queued=False)
        head = int(unit.get("HeadRevisionNum") or 0)
        if head != inp.revision:
            raise Rejected(
                f"unit {inp.space}/{inp.unit}: ConfigHub applies the unit's head revision "
                f"({head}), not revision {inp.revision}; make it the head first "
                f"(tributary rollback {inp.space} {inp.unit} --to {inp.revision} --apply)"
            )
        queued = self.store.api.apply(
            space_id,
            str(unit["UnitID"]),
            f"applying revision {inp.revision} of unit {inp.space}/{inp.unit}",
            retry=False,  # a failed answer may follow the queueing: the next attempt looks
        )
        operation = str(queued.get("QueuedOperationID") or "")
        if not operation:
            raise RuntimeError(
                f"ConfigHub queued the apply of unit {inp.space}/{inp.unit} "
                "without a QueuedOperationID"
            )
        activity.heartbeat(operation)  # a retried attempt finds it here first
        return ConfigHubApplyResult(operation_id=operation, queued=True)

    @activity.defn(name="confighub.wait")
    @decided
    def wait(self, inp: ConfigHubWaitInput) -> ConfigHubWaitResult:
        """Poll the operation's unit events until it ended, or the timeout."""
        space_id, extended = self._unit(inp.space, inp.unit)
        unit_id = str(extended["Unit"]["UnitID"])
        if inp.operation_id:
            where = f"QueuedOperationID = {quote(inp.operation_id)}"
        else:
            where = f"RevisionNum = {int(inp.revision)} AND Action = 'Apply'"
        what = f"waiting for ConfigHub's apply of unit {inp.space}/{inp.unit}"
        event = self.store.api.wait_for_event(
            space_id,
            unit_id,
            where,
            what,
            deadline=time.monotonic() + inp.timeout_seconds,
            heartbeat=lambda: activity.heartbeat(inp.operation_id),
        )
        if event is None:
            return ConfigHubWaitResult(
                state="pending",
                message=f"ConfigHub's apply of revision {inp.revision} did not end "
                f"within {inp.timeout_seconds}s",
            )
        status = str(event.get("Status") or "")
        said = " ".join(str(event.get("Message") or event.get("Result") or "").split())[:500]
        if status != ENDED_OK:
            return ConfigHubWaitResult(
                state="failed",
                message=f"ConfigHub apply {status}: {said or 'no message'}",
            )
        _, after = self._unit(inp.space, inp.unit)
        live = int(after["Unit"].get("LiveRevisionNum") or 0) or None
        return ConfigHubWaitResult(
            state="ready",
            message=f"ConfigHub: applied, live revision {live}" + (f" ({said})" if said else ""),
            live_revision=live,
        )


def _earlier_operation(details: Any, extended: dict[str, Any], revision: int) -> str | None:
    """The operation an earlier attempt of this request queued, or None when it did not
    get that far: its heartbeat, else the unit's ``LastAppliedRevisionNum`` (moved when
    an apply is queued) with the ``LatestUnitEvent`` of that revision."""
    for value in details or []:
        if isinstance(value, str) and value:
            return value
    unit = extended.get("Unit") or {}
    if int(unit.get("LastAppliedRevisionNum") or 0) != revision:
        return None
    event = extended.get("LatestUnitEvent") or {}
    if int(event.get("RevisionNum") or 0) == revision and event.get("QueuedOperationID"):
        return str(event["QueuedOperationID"])
    return ""
