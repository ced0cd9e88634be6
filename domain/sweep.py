"""Batched drift detection: what a sweep decides about a unit without its drift loop.

A sweep lists the live objects once per kind and namespace and reads the units' live
revisions in one query; the judgement here is the drift check's own
(``kubernetes_drift`` on ``comparable`` objects, the space's ``ignore`` and XRD
defaults, then the managed resources' ``atProvider`` where a Composition maps it),
so a unit the sweep calls in sync is one the loop's check would call in sync.

Only ``in-sync`` is recorded by the sweep, in bulk. Everything else goes to the unit's
``DriftWorkflow``, which stays the owner of state, captures, pause and history: a
difference (drift, or an apply the cluster runs before the authority knows), a
paused unit, an apply in flight, a unit never judged by its loop, or one the sweep
could not judge (a provider that cannot sync, an unknown kind).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.drift import DriftField, DriftRecord, DriftStateName, kubernetes_drift
from domain.normalize import is_ignored
from domain.paths import MISSING, get_path, parse_path

# in-sync: recorded by the sweep; every other verdict signals the unit's loop.
Verdict = Literal[
    "in-sync",
    "differs",  # the Claim or a managed resource differs from the live revision
    "missing",  # the Claim is not in the cluster
    "paused",
    "in-flight",  # an apply reached the cluster and is not recorded as live yet
    "not-applied",
    "due",  # the loop has not judged the unit itself yet, or left it in a state it owns
    "unjudged",  # the sweep could not judge it (unknown kind, a provider not syncing)
]
SIGNAL_VERDICTS: tuple[Verdict, ...] = (
    "differs",
    "missing",
    "paused",
    "in-flight",
    "not-applied",
    "due",
    "unjudged",
)
# States the sweep may replace with "in-sync": the loop's own check would write
# in-sync over them too, without anything else (a revert waiting for a check to
# agree, a drift in report mode, a failing check are the loop's to settle).
# The message of a sweep's in-sync record: a drift loop's timer trusts only these.
SWEEP_MESSAGE = "in-sync (sweep)"
BULK_STATES: frozenset[DriftStateName] = frozenset({"in-sync", "captured", "reverted"})


class UnitFacts(BaseModel):
    """What the authority says about one unit, as the sweep reads it."""

    space: str
    unit: str
    live_revision: int | None = None
    last_applied_revision: int | None = None
    row: DriftRecord | None = None  # the unit's last drift record


def precheck(facts: UnitFacts) -> Verdict | None:
    """A verdict reached without looking at the cluster, or None: compare."""
    row = facts.row
    if row is not None and row.paused:
        return "paused"
    if facts.live_revision is None:
        return "not-applied"
    if facts.last_applied_revision not in (None, facts.live_revision):
        return "in-flight"
    if row is None or row.state not in BULK_STATES:
        return "due"
    return None


def judge_claim(
    authority: dict[str, Any],
    live: dict[str, Any] | None,
    *,
    ignore: list[str],
    schema: dict[str, Any] | None,
) -> Verdict:
    """The Kubernetes half of the check: the live Claim against the live revision."""
    if live is None:
        return "missing"
    if kubernetes_drift(authority, live, ignore=ignore, schema=schema):
        return "differs"
    return "in-sync"


def managed_drift(
    observed: list[DriftField],
    *,
    wanted: dict[str, Any],
    ignore: list[str],
    claim_paths: set[str],
) -> list[DriftField]:
    """What the managed resources report that is drift from the live revision.

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


def covered_for(
    row: DriftRecord | None,
    *,
    live_revision: int | None,
    now: datetime,
    interval_seconds: int,
    seen: datetime | None,
) -> timedelta | None:
    """How long a drift loop whose timer fired may sleep again instead of checking,
    because a sweep judged its unit in sync since the loop last looked; None: check.

    Only a sweep's own record covers (``SWEEP_MESSAGE``), only one newer than what
    the loop saw at its previous wake (``seen``), at the unit's live revision, and
    only until one interval after that judgement: with no sweeps running, the loop's
    next tick is a full check, so it still finds drift within its interval.
    """
    if row is None or row.paused or row.state != "in-sync" or row.message != SWEEP_MESSAGE:
        return None
    if live_revision is None or row.revision != live_revision or row.checked_at == seen:
        return None
    left = row.checked_at + timedelta(seconds=interval_seconds) - now
    return left if left > timedelta(seconds=1) else None


class SweepJudgeInput(BaseModel):
    sweep_id: str
    after: tuple[str, str] | None = None  # (space, unit) of the previous page's last unit
    limit: int = 1000
    page_size: int = 500  # objects per list request (``limit`` and ``continue``)


class SweepJudgeResult(BaseModel):
    """One page of units judged; the loops to signal, by space (small: only those)."""

    units: int = 0
    last: tuple[str, str] | None = None  # None: no more units
    recorded: int = 0  # recorded in sync, in bulk
    # Units recorded in sync, by space: their loops must exist (a loop that ended is
    # started again), though none is signalled.
    in_sync: dict[str, list[str]] = Field(default_factory=dict)
    signal: dict[str, list[str]] = Field(default_factory=dict)  # space → units
    verdicts: dict[str, int] = Field(default_factory=dict)  # verdict → count
    lists: int = 0  # list requests made for this page (cached listings are free)

    def signal_count(self) -> int:
        return sum(len(v) for v in self.signal.values())


class EnsureLoopsInput(BaseModel):
    """Loops a sweep makes sure exist (without a signal: no workflow task for a loop that
    runs), and loops it signals to check."""

    sweep_id: str
    start: dict[str, list[str]] = Field(default_factory=dict)  # space → units
    signal: dict[str, list[str]] = Field(default_factory=dict)


class EnsureLoopsResult(BaseModel):
    started_or_running: int = 0
    signalled: int = 0


class CoveredInput(BaseModel):
    space: str
    unit: str
    interval_seconds: int
    seen: datetime | None = None  # the sweep record the loop saw at its previous wake


class CoveredResult(BaseModel):
    sleep_seconds: float = 0.0  # 0: not covered, check now
    checked_at: datetime | None = None
