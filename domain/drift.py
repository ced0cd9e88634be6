"""Arrow 3, drift: what differs between the authority and what runs, and who changed it.

Also the messages of the drift loop (``workflows/drift.py``), the sweep
(``workflows/sweep.py``) and their activities, at the end.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.apply import ApplyRequest
from domain.diff import FieldConflict, diff, json_equal, three_way_merge
from domain.errors import BadInput
from domain.markdown import OneLine
from domain.normalize import drop_paths, is_ignored, normalize, parse_ignore
from domain.paths import MISSING, Path, get_path, parse_path, set_path
from domain.schema import apply_defaults

# reverting: a revert was asked for and no check has agreed yet; reverted: one has.
DriftStateName = Literal[
    "unknown",
    "in-sync",
    "drifted",
    "captured",
    "reverting",
    "reverted",
    "paused",
    "failing",  # a check attempt failed; retrying
    "failed",
]
# What one check observed (``DriftCheckResult.state``): in-sync / drifted; applying: an
# apply is in flight; not-applied: nothing runs yet; inactive: the unit is orphaned,
# deleted or gone; paused: the authority says so. The loop turns it into a
# ``DriftStateName`` through ``state_of_check`` only.
CheckState = Literal["in-sync", "drifted", "applying", "not-applied", "inactive", "paused"]
DriftSource = Literal["kubernetes-live", "aws-live"]

# The one mapping from what a check observed to the state a unit reads before the loop
# acts on it (a capture, a revert, a pause decide further: ``decide``, which returns a
# ``DriftAction`` with the state it records). An inactive unit reads "paused": its loop
# ends, and a new state name would change what recorded histories wrote.
STATE_OF_CHECK: dict[CheckState, DriftStateName] = {
    "in-sync": "in-sync",
    "drifted": "drifted",
    "applying": "unknown",
    "not-applied": "unknown",
    "inactive": "paused",
    "paused": "paused",
}


def state_of_check(state: CheckState) -> DriftStateName:
    return STATE_OF_CHECK[state]


class DriftField(BaseModel):
    path: str
    authority: Any = None
    live: Any = None
    manager: str = ""  # who changed it, where known (a field manager, or "aws")
    source: DriftSource = "kubernetes-live"
    capturable: bool = True  # False: no claim field says this (e.g. a missing table)


class DriftReport(BaseModel):
    fields: list[DriftField] = Field(default_factory=list)
    checked_at: datetime | None = None

    def fingerprint(self) -> str:
        """Identifies a drift, so the same drift is never captured twice."""
        return "|".join(f"{f.path}={f.live!r}" for f in sorted(self.fields, key=lambda f: f.path))


def comparable(
    obj: dict[str, Any], ignore: list[str], schema: dict[str, Any] | None
) -> dict[str, Any]:
    """Normalized for comparison: server fields gone, XRD defaults in, ignored paths gone.

    ``ignore`` comes last: applied before the defaults, an ignored field would come
    back as its default and be compared after all.
    """
    out = normalize(obj)
    if schema:
        out = apply_defaults(schema, out)
    return drop_paths(out, parse_ignore(ignore))


def kubernetes_drift(
    authority: dict[str, Any],
    live: dict[str, Any],
    *,
    ignore: list[str],
    schema: dict[str, Any] | None,
) -> list[DriftField]:
    """Field-level drift of a live Claim against the authority's revision."""
    managed = (live.get("metadata") or {}).get("managedFields") or []
    out: list[DriftField] = []
    for change in diff(comparable(authority, ignore, schema), comparable(live, ignore, schema)):
        out.append(
            DriftField(
                path=change.path,
                authority=change.old if change.old_present else None,
                live=change.new if change.new_present else None,
                manager=manager_of(parse_path(change.path), managed),
                source="kubernetes-live",
            )
        )
    return out


def managed_drift(
    observed: list[DriftField],
    *,
    wanted: dict[str, Any],
    ignore: list[str],
    claim_paths: set[str],
) -> list[DriftField]:
    """The AWS half of the check: what the managed resources report that is drift
    from the live revision.

    ``observed``: the observer's fields, from the whole Claim (defaults in, nothing
    ignored); ``wanted``: the live revision, normalized the same way. A field under an
    ignored path is dropped, as on the Kubernetes side; a Claim field that moved
    itself (``claim_paths``) is left to AWS to follow once Crossplane reconciles.
    """
    out: list[DriftField] = []
    for f in observed:
        if is_ignored(f.path, ignore):
            continue
        if f.capturable and f.path in claim_paths:
            continue
        if f.capturable:
            value = get_path(wanted, parse_path(f.path))
            f = f.model_copy(update={"authority": None if value is MISSING else value})
            if f.live == f.authority:
                continue
        out.append(f)
    return out


def manager_of(path: Path, managed_fields: list[dict[str, Any]]) -> str:
    """The field manager that last wrote ``path`` (from ``metadata.managedFields``)."""
    best: tuple[str, str] | None = None  # (time, manager)
    for entry in managed_fields:
        if _owns(entry.get("fieldsV1") or {}, path):
            stamp = str(entry.get("time") or "")
            if best is None or stamp >= best[0]:
                best = (stamp, str(entry.get("manager") or ""))
    return best[1] if best else ""


def changed_at(paths: list[str], managed_fields: list[dict[str, Any]]) -> datetime | None:
    """When the newest of the field managers owning ``paths`` last wrote (from
    ``metadata.managedFields``): when a live change was made, where Kubernetes knows.
    None when no owner records a time (an AWS-side change, a server without times)."""
    newest: datetime | None = None
    for entry in managed_fields:
        stamp = str(entry.get("time") or "")
        if not stamp or not any(_owns(entry.get("fieldsV1") or {}, parse_path(p)) for p in paths):
            continue
        try:
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        if at.tzinfo is None:
            continue
        newest = at if newest is None or at > newest else newest
    return newest


def _owns(fields: dict[str, Any], path: Path) -> bool:
    cur: Any = fields
    for seg in path:
        if not isinstance(cur, dict):
            return True  # owns a parent of an atomic value
        key = f"f:{seg}"
        if key not in cur:
            return False
        cur = cur[key]
    return True


def captured_data(authority: dict[str, Any], fields: list[DriftField]) -> dict[str, Any]:
    """The authority's revision with every capturable drifted field set to what runs."""
    out = authority
    for f in fields:
        if not f.capturable:
            continue
        value = MISSING if f.live is None else f.live
        out = set_path(out, parse_path(f.path), value)
    return out


class Rebase(BaseModel):
    """A pending head re-based onto a capture."""

    data: dict[str, Any] | None = None  # None: nothing to write (see ``conflicts``)
    conflicts: list[FieldConflict] = Field(default_factory=list)


def rebase_pending(
    old_live: dict[str, Any], head: dict[str, Any], captured: dict[str, Any]
) -> Rebase:
    """The change waiting in ``head`` (since ``old_live``), re-based onto ``captured``.

    Three-way, base = the old live revision: the pending change (ours) and the live
    edit (theirs) are both descendants of what ran. A field both changed to different
    values is a conflict, and then nothing is re-based (the head stays as it was).
    """
    merged, conflicts = three_way_merge(old_live, head, captured)
    if conflicts:
        return Rebase(conflicts=conflicts)
    if merged is MISSING or json_equal(merged, captured):
        return Rebase(data=captured)  # the capture already holds the pending change
    return Rebase(data=merged)


# Tags a capture puts on a pending head it could not re-base (the same field changed
# on both sides). The head stays as it was, but applying or approving it would put
# its value back over the captured one: both are refused until a new revision (a
# ``set``, a ``rollback``, a publish) decides the field. A later capture that re-bases
# the head carries the mark to the re-based revision for each field where it still
# differs from what runs.
CONFLICT_FIELDS_TAG = "capture_conflict"  # JSON list of paths
CONFLICT_CAPTURE_TAG = "conflict_capture"
CONFLICT_TAGS = (CONFLICT_FIELDS_TAG, CONFLICT_CAPTURE_TAG)


def conflict_tags(capture: int, paths: list[str]) -> dict[str, str]:
    """The tags that mark a pending head as in conflict with capture ``capture``."""
    if not paths:
        return {}
    return {CONFLICT_FIELDS_TAG: json.dumps(paths), CONFLICT_CAPTURE_TAG: str(capture)}


def conflict_paths(tags: dict[str, str]) -> list[str]:
    """The fields a capture found in conflict with the revision these tags are of."""
    text = tags.get(CONFLICT_FIELDS_TAG, "")
    if not text:
        return []
    try:
        paths = json.loads(text)
    except ValueError:
        return [text]
    return [str(p) for p in paths] if isinstance(paths, list) else [str(paths)]


def still_conflicting(
    tags: dict[str, str], rebased: dict[str, Any], captured: dict[str, Any]
) -> list[str]:
    """The marked fields where a re-based head still differs from what runs."""
    out = []
    for text in conflict_paths(tags):
        try:
            path = parse_path(text)
        except BadInput:
            out.append(text)
            continue
        ours, theirs = get_path(rebased, path), get_path(captured, path)
        if (ours is MISSING) != (theirs is MISSING) or (
            ours is not MISSING and not json_equal(ours, theirs)
        ):
            out.append(text)
    return out


def capture_conflict(space: str, unit: str, revision: int, tags: dict[str, str]) -> str:
    """Why revision ``revision`` may not be applied or approved ("" when it may).

    A capture recorded a conflict between it and what runs: applying it would
    silently overwrite the captured live change (DESIGN.md, "Capture").
    """
    paths = conflict_paths(tags)
    if not paths:
        return ""
    capture = tags.get(CONFLICT_CAPTURE_TAG, "?")
    return (
        f"{space}/{unit} revision {revision} conflicts with drift capture r{capture} "
        f"(what runs) in {', '.join(paths)}: applying it would overwrite the captured "
        f"change. Decide the field with a new revision — `tributary rollback {space} "
        f"{unit} --to {revision}` keeps revision {revision}'s values, `tributary set` or "
        "a new publish sets them — then apply that"
    )


class PendingHead(BaseModel):
    """The head that waited ahead of live when a capture came (what a store read)."""

    number: int
    data: dict[str, Any]
    tags: dict[str, str]
    description: str
    source: str


class CaptureOverPending(BaseModel):
    """What a capture does to a pending head: keep it marked, re-base it, or nothing (the
    capture already holds it).

    One plan for every store (the embedded SQL store and the ConfigHub client write it
    each in their own objects), so the mark that the apply and approval gates read
    (``capture_conflict``) is set the same way everywhere.
    """

    conflicts: list[FieldConflict] = Field(default_factory=list)
    kept_tags: dict[str, str] = Field(default_factory=dict)  # on conflict: the head's tags
    rebased: dict[str, Any] | None = None  # the re-based head's data; None: nothing to write
    rebased_description: str = ""
    rebased_tags: dict[str, str] = Field(default_factory=dict)
    note: str = ""  # on conflict: appended to the capture's description


def capture_over_pending(
    old_live: dict[str, Any], pending: PendingHead, captured: dict[str, Any], capture: int
) -> CaptureOverPending:
    """Plan capture number ``capture`` (data ``captured``) over ``pending`` (DESIGN "Capture").

    A conflict keeps the head and marks every field in conflict — the new ones and those
    an earlier capture marked that still differ — so neither an apply nor an approval
    puts the head's value back over what runs. Otherwise the pending change is re-based
    onto the capture; a mark goes with it for each marked field where it still differs.
    """
    plan = rebase_pending(old_live, pending.data, captured)
    if plan.conflicts:
        paths = [c.path for c in plan.conflicts]
        paths += [
            p for p in still_conflicting(pending.tags, pending.data, captured) if p not in paths
        ]
        return CaptureOverPending(
            conflicts=plan.conflicts,
            kept_tags={**pending.tags, **conflict_tags(capture, paths)},
            note=f"; pending revision {pending.number} kept, conflict in "
            + ", ".join(c.path for c in plan.conflicts),
        )
    if plan.data is None or json_equal(plan.data, captured):
        return CaptureOverPending()  # the capture already holds the pending change
    kept = {k: v for k, v in pending.tags.items() if k != "idempotency" and k not in CONFLICT_TAGS}
    return CaptureOverPending(
        rebased=plan.data,
        rebased_description=f"{pending.description} (re-based onto capture r{capture})",
        rebased_tags={
            **kept,
            **conflict_tags(capture, still_conflicting(pending.tags, plan.data, captured)),
            "rebased_from": str(pending.number),
            "rebased_source": pending.source,
            "rebased_onto": str(capture),
        },
    )


class CaptureResult(BaseModel):
    """What a capture wrote: the captured revision (now live) and the unit's head.

    The store's answer and the ``drift.capture`` activity's result, one model.
    """

    revision: int
    created: bool
    # The unit's head: == revision unless a pending head was kept. The stores always
    # set it; None decodes results recorded before they did.
    head_revision: int | None = None
    rebased_revision: int | None = None  # the pending change re-based onto the capture
    conflicts: list[FieldConflict] = Field(default_factory=list)
    pending_revision: int | None = None  # the head that was ahead of live, if one was


class CaptureFollowUp(BaseModel):
    """What the loop does after a capture is written: one apply request (or none), then
    a sync PR request, always; and what it says."""

    apply: ApplyRequest | None = None
    summary: str = ""  # the apply request's line in the Web UI
    state_message: str  # the loop's status after the capture
    outcome_message: str  # the answer to whoever asked for the capture


def after_capture(written: CaptureResult, fields: str) -> CaptureFollowUp:
    """The follow-up of capture ``written`` (of ``fields``), by where the head is.

    - Head is the capture: make the cluster's Claim say what runs (it already does
      after a kubectl edit; after an AWS-side edit it does not), ungated, so it is owned
      by Tributary again.
    - A change waits ahead of it (at its gate or in flight), re-based: a request for the
      old head now stands for the re-based revision, with its waiters, and passes the
      gate anew (with no such request it applies nothing). The capture itself is not
      applied: that would supersede the waiting request.
    - A change waits ahead of it in conflict: the head is kept, nothing is applied.
    """
    if written.head_revision in (None, written.revision):
        return CaptureFollowUp(
            apply=ApplyRequest(
                revision=written.revision, requested_by="drift capture", ungated=True
            ),
            summary=f"sync the Claim to revision {written.revision}",
            state_message=f"revision {written.revision}: {fields}",
            outcome_message=f"captured as revision {written.revision}",
        )
    if written.conflicts:
        conflict = ", ".join(c.path for c in written.conflicts)
        message = (
            f"revision {written.revision} (live): {fields}; conflict with "
            f"pending head {written.head_revision} in {conflict}, head kept"
        )
        return CaptureFollowUp(state_message=message, outcome_message=message)
    message = (
        f"revision {written.revision} (live): {fields}; pending change "
        f"re-based as revision {written.rebased_revision}, awaiting its gate"
    )
    if written.rebased_revision is None or written.pending_revision is None:
        return CaptureFollowUp(state_message=message, outcome_message=message)
    return CaptureFollowUp(
        apply=ApplyRequest(
            revision=written.rebased_revision,
            requested_by="drift capture: re-based",
            follows=written.pending_revision,
        ),
        summary=f"re-based r{written.rebased_revision} follows a request for "
        f"r{written.pending_revision}",
        state_message=message,
        outcome_message=message,
    )


class LastDrift(BaseModel):
    """The latest drift seen, kept after it is captured: operators ask what changed."""

    fields: list[DriftField] = Field(default_factory=list)
    at: datetime | None = None
    revision: int | None = None  # the revision that captured it, if one did
    head_revision: int | None = None
    rebased_revision: int | None = None
    conflicts: list[FieldConflict] = Field(default_factory=list)


class CaptureRequest(BaseModel):
    tag: OneLine = ""
    incident: OneLine = ""  # shown in commit messages and PR bodies
    by: OneLine = ""


class CaptureOutcome(BaseModel):
    captured: bool
    revision: int | None = None
    message: str = ""
    fields: list[DriftField] = Field(default_factory=list)
    # "none": nothing captured or labelled (no current drift); "captured", "labelled"
    action: str = ""
    head_revision: int | None = None
    rebased_revision: int | None = None
    conflicts: list[FieldConflict] = Field(default_factory=list)


class CheckRequest(BaseModel):
    reason: str = ""  # "watch", "sweep", "cli", "apply"
    sweep_id: str = ""


class DriftStatus(BaseModel):
    space: str
    unit: str
    state: DriftStateName = "unknown"
    paused: bool = False
    last_check: datetime | None = None
    last_drift: DriftReport | None = None
    last_revision: int | None = None  # the last revision this loop captured
    last_capture_at: datetime | None = None
    # (``last_fingerprint``, written and never read, is gone: statuses in older
    # histories still carry it, and pydantic ignores the unknown key.)
    last_detected: str = ""  # the fingerprint of the last drift counted as detected
    last_detected_at: datetime | None = None  # when a check first saw it
    interval_seconds: int = 300
    checks: int = 0
    captures: int = 0
    message: str = ""


def capture_source(tag: str) -> Literal["drift-capture", "break-glass"]:
    return "break-glass" if tag == "break-glass" else "drift-capture"


def capture_description(fields: list[DriftField], req: CaptureRequest | None) -> str:
    changed = ", ".join(
        f"{f.path}={f.live!r}" + (f" ({f.manager})" if f.manager else "")
        for f in fields
        if f.capturable
    )
    # "drift-capture: …" is the seed's convention (ConfigHub fleets read the prefix).
    if req and req.tag == "break-glass":
        incident = f" ({req.incident})" if req.incident else ""
        return f"drift-capture: break-glass{incident}: {changed}"
    return f"drift-capture: {changed}"


class DriftRecord(BaseModel):
    """The outcome of a unit's last drift check, as the authority keeps it."""

    space: str
    unit: str
    state: DriftStateName
    checked_at: datetime
    fields: list[DriftField] = Field(default_factory=list)
    message: str = ""
    revision: int | None = None
    sweep_id: str = ""
    # Set by captures: kept as ``last_drift`` until a later drift replaces it.
    head_revision: int | None = None
    rebased_revision: int | None = None
    conflicts: list[FieldConflict] = Field(default_factory=list)
    # Read back from the authority: pause survives restarts of the loop.
    paused: bool = False
    last_drift: LastDrift | None = None


# ---- the drift loop's, the sweep's and their activities' messages ------------------------


class DriftCheckInput(BaseModel):
    space: str
    unit: str
    sweep_id: str = ""  # recorded with the result, so a sweep can count its checks
    force: bool = False  # check even when the unit is paused (an operator's capture)
    # The check is read-only: the loop records what it decides. Only a loop run started
    # before "drift-one-owner" (workflows/drift.py) asks the check to write the row it
    # saw, as it used to: such a run keeps its old path until it continues as new.
    record: bool = False


class DriftCheckResult(BaseModel):
    # ``claim_data`` goes by its first name, ``captured``, on the wire (the results of
    # checks in loops' histories).
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    state: CheckState
    fields: list[DriftField] = Field(default_factory=list)
    live_revision: int | None = None
    expected_version: int = 0
    # The Claim a capture would write: the authority's revision with the drift taken
    # in (None: nothing capturable).
    claim_data: dict[str, Any] | None = Field(default=None, alias="captured")
    fingerprint: str = ""
    mode: str = "capture"
    interval_seconds: int = 300
    paused: bool = False  # kept in the authority, so a restarted loop stays paused
    head_revision: int | None = None
    # when the drifted Claim fields were last written (managedFields), where known
    changed_at: datetime | None = None
    # when the check read the cluster: the time of the row that records what it saw
    checked_at: datetime | None = None


class CaptureInput(BaseModel):
    space: str
    unit: str
    expected_version: int
    data: dict[str, Any]
    source: Literal["drift-capture", "break-glass"]
    description: str
    tags: dict[str, str]
    author: str
    idempotency_key: str
    fields: list[DriftField] = Field(default_factory=list)
    sweep_id: str = ""
    # The live revision the capture was planned on: a publish or `set` since then
    # (a new head, a new version) is re-based onto the capture, not a stale write.
    live_revision: int | None = None


class CaptureReconcileInput(BaseModel):
    space: str
    unit: str
    revision: int
    token: str  # a new value each request: the annotation must change to be an event


class CaptureReconcileResult(BaseModel):
    requested: bool


class DriftLoopState(BaseModel):
    """What a drift loop carries across continue-as-new: one object, handed over whole."""

    status: DriftStatus
    wake: bool = False  # a check is due at once (asked for before the hand-over)
    sweep_id: str = ""  # the sweep that asked for it
    # A sweep judged the unit in sync: the next timer sleeps this long, not an interval.
    sleep_seconds: float | None = None
    sweep_seen: datetime | None = None  # the sweep record seen at the last wake
    # The sweep schedule stopped (signal ``cover_ended``): re-read the cover now.
    recheck_cover: bool = False


class DriftInput(BaseModel):
    space: str
    unit: str
    loop: DriftLoopState | None = None  # None: a new loop
    # Runs handed over by an older worker carry the loop's state in these fields;
    # ``check_first`` and ``sweep_id`` also start a loop that checks at once for a sweep.
    status: DriftStatus | None = None
    check_first: bool = False
    sweep_id: str = ""

    def loop_state(self) -> DriftLoopState:
        """The loop's state at the start of this run."""
        if self.loop is not None:
            return self.loop.model_copy(deep=True)
        return DriftLoopState(
            status=self.status or DriftStatus(space=self.space, unit=self.unit),
            wake=self.check_first,
            sweep_id=self.sweep_id,
        )


class UnitKey(BaseModel):
    space: str
    unit: str


class EnsureDriftInput(BaseModel):
    units: list[UnitKey]
    reason: str = ""
    sweep_id: str = ""


class EnsureDriftResult(BaseModel):
    workflow_ids: list[str]


class DriftRecordInput(BaseModel):
    record: DriftRecord


class DriftPauseInput(BaseModel):
    space: str
    unit: str
    paused: bool


class DriftRecordResult(BaseModel):
    recorded: bool = True


class ListUnitsPageInput(BaseModel):
    after: UnitKey | None = None
    limit: int = 500


class ListUnitsPageResult(BaseModel):
    units: list[UnitKey]


class CountDriftInput(BaseModel):
    sweep_id: str
    expected: int
    timeout_seconds: int = 600


class CountDriftResult(BaseModel):
    counts: dict[str, int]
    complete: bool


class TagCaptureInput(BaseModel):
    """Tag a capture after the fact (activity ``drift.classify``, its first name)."""

    space: str
    unit: str
    revision: int
    source: Literal["drift-capture", "break-glass"]
    tags: dict[str, str]


class TagCaptureResult(BaseModel):
    revision: int


# ---- the drift loop's decision table -----------------------------------------------------

DriftAction = Literal[
    "end",  # the unit is orphaned, deleted or gone: the loop ends
    "stay-paused",  # the authority says paused (this loop was restarted): stay paused
    "record",  # record what the check saw (in sync, an apply in flight, nothing applied)
    "reverted",  # in sync after a revert: the revert counts
    "tag-capture",  # in sync, and the watch captured the edit first: tag that capture
    "capture",  # write what runs as a revision
    "nothing-capturable",  # drifted, but no claim field says what runs
    "revert",  # re-apply the live revision
    "report",  # drifted: record it, nothing else
]


class DriftDecision(BaseModel):
    """What the loop does with one check's result (``decide``)."""

    action: DriftAction
    # The state and message the unit reads afterwards ("capture" sets its own once the
    # capture is written: the message names the revision).
    state: DriftStateName
    message: str
    # The request whose tag, incident and author the capture carries; for
    # "tag-capture" and "reverted": the request to tag the loop's last capture with.
    request: CaptureRequest | None = None


def current_capture(status: DriftStatus, result: DriftCheckResult, now: datetime) -> bool:
    """This loop's last capture is of the drift that is current: it still runs, and
    it was made within one drift interval (had the watch not seen the edit first,
    the timer would be catching that drift now). An older capture is history."""
    at = status.last_capture_at
    return (
        status.last_revision is not None
        and status.last_revision == result.live_revision
        and at is not None
        and now - at <= timedelta(seconds=status.interval_seconds)
    )


def decide(
    result: DriftCheckResult,
    status: DriftStatus,
    requests: list[CaptureRequest],
    now: datetime,
) -> DriftDecision:
    """The drift loop's decision table: what one check's result makes the loop do.

    ``status`` is the loop's before the check (its state, whether it is paused, its
    last capture); ``requests`` are the operators' capture requests this check
    answers; the space's mode is ``result.mode``. A request captures whatever the
    mode and a pause say (an operator asked); without one, only capture mode captures
    and only revert mode reverts, and a paused loop does neither.
    """
    observed = state_of_check(result.state)
    if result.state == "inactive":
        return DriftDecision(
            action="end",
            state=observed,
            message="the unit is orphaned or deleted: drift loop ends",
        )
    if result.state == "paused":
        return DriftDecision(
            action="stay-paused", state=observed, message="paused: no checks until resumed"
        )
    if result.state != "drifted":
        tagged = [r for r in requests if r.tag or r.incident]
        # The watch captured the edit first: the operator's tag and incident belong on
        # that capture (also when the check confirms a revert).
        tag = tagged[-1] if tagged and current_capture(status, result, now) else None
        if result.state == "in-sync" and status.state == "reverting":
            return DriftDecision(
                action="reverted",
                state="reverted",
                message="a check after the revert found live in sync",
                request=tag,
            )
        if tag is not None:
            return DriftDecision(
                action="tag-capture", state=observed, message=result.state, request=tag
            )
        return DriftDecision(action="record", state=observed, message=result.state)
    paths = ", ".join(f.path for f in result.fields)
    if requests or (result.mode == "capture" and not status.paused):
        if result.claim_data is None:
            return DriftDecision(
                action="nothing-capturable",
                state="drifted",
                message=f"drift outside claim fields, not capturable: {paths}",
            )
        return DriftDecision(
            action="capture",
            state="captured",
            message=paths,
            request=requests[-1] if requests else None,
        )
    if result.mode == "revert" and not status.paused:
        return DriftDecision(
            action="revert",
            state="reverting",
            message=f"re-applying revision {result.live_revision}: {paths}",
        )
    return DriftDecision(
        action="report", state="drifted", message=f"drift recorded ({result.mode}): {paths}"
    )


# The decisions whose row is what the check saw (``check_row``). The loop writes the
# others' rows itself (paused, reverted, reverting, failing, failed), the capture writes
# "captured" in the transaction of its revision, and an ending loop writes none.
RECORDS_CHECK: frozenset[DriftAction] = frozenset(
    {"record", "tag-capture", "nothing-capturable", "report"}
)


def check_row(
    space: str, unit: str, sweep_id: str, result: DriftCheckResult, at: datetime
) -> DriftRecord:
    """The drift row that records what a check saw (``drift status``, a sweep's count);
    ``at``: when the check read the cluster."""
    return DriftRecord(
        space=space,
        unit=unit,
        state=state_of_check(result.state),
        checked_at=at,
        fields=result.fields,
        message=result.state,
        revision=result.live_revision,
        sweep_id=sweep_id,
    )
