"""Batched drift detection: what a sweep decides about a unit without its drift loop.

A sweep lists the live objects once per kind and namespace and reads the units' live
revisions in one query; the judgement here is the drift check's own
(``kubernetes_drift`` on ``comparable`` objects, the space's ``ignore`` and XRD
defaults, then the managed resources' ``atProvider`` where a Composition maps it),
so a unit the sweep calls in sync is one the loop's check would call in sync.

Only ``in-sync`` is recorded by the sweep, in bulk. Everything else goes to the unit's
``DriftWorkflow``, which stays the owner of state, captures, pause and history: a
difference (drift, or an apply the cluster runs before the authority knows), a
paused unit, an apply in flight, a unit whose loop left it in a state the loop owns,
or one the sweep could not judge (a provider that cannot sync, an unknown kind).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.drift import DriftRecord, DriftStateName, kubernetes_drift

# in-sync: recorded by the sweep; every other verdict signals the unit's loop.
Verdict = Literal[
    "in-sync",
    "differs",  # the Claim or a managed resource differs from the live revision
    "missing",  # the Claim is not in the cluster
    "paused",
    "in-flight",  # an apply reached the cluster and is not recorded as live yet
    "not-applied",
    "due",  # the loop left the unit in a state it owns
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
    if row is not None and row.state not in BULK_STATES:
        return "due"
    # No row yet (a fleet the sweep meets first, units whose loops never ran): the sweep
    # judges it like any other, so the first sweep of a large fleet records its units in
    # sync instead of starting every loop on a check.
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


# How long a loop may go without a check of its own while scheduled sweeps judge its
# unit in sync: the bound on finding drift if the schedule stops (is paused, deleted,
# or its worker is gone) without anyone waking the loops. Sweeps that run catch drift
# within their cadence and signal the loop, so this only bounds the failure case.
COVERED_BACKSTOP = timedelta(hours=1)
SCHEDULED_PREFIX = "in-sync (sweep every "  # a scheduled sweep's record: its cadence follows
_CADENCE = re.compile(r"^in-sync \(sweep every (\d+)s\)$")


def sweep_message(cadence_seconds: int | None) -> str:
    """The message of a sweep's in-sync record. A scheduled sweep says its cadence: the
    record itself is then what justifies a covered loop's longer sleep (a manual
    ``sweep run`` carries none, so it never extends a sleep past one interval)."""
    return SWEEP_MESSAGE if cadence_seconds is None else f"{SCHEDULED_PREFIX}{cadence_seconds}s)"


def sweep_cadence(message: str) -> int | None:
    """The cadence a sweep record carries (``sweep_message``), or None."""
    m = _CADENCE.match(message)
    return int(m.group(1)) if m else None


def is_sweep_message(message: str) -> bool:
    return message == SWEEP_MESSAGE or sweep_cadence(message) is not None


def covered_horizon(interval_seconds: int, cadence_seconds: int | None) -> timedelta:
    """How long after a sweep's in-sync judgement a loop may wait for its next check.

    One interval, unless the judgement came from a scheduled sweep that runs at least
    as often as the loop would check (cadence ≤ interval): then each sweep finds drift
    within the interval and signals the loop, and the loop's own check is only a
    backstop for when the schedule stops, ``COVERED_BACKSTOP`` (never less than one
    interval) after the last judgement it saw.
    """
    interval = timedelta(seconds=interval_seconds)
    if cadence_seconds is None or cadence_seconds <= 0 or cadence_seconds > interval_seconds:
        return interval
    return max(interval, COVERED_BACKSTOP)


def schedule_cadence(
    *,
    paused: bool,
    intervals: list[int],
    other_specs: bool,
    declared: int | None,
    exhausted: bool = False,
) -> int | None:
    """The cadence a sweep schedule really keeps, or None: what its in-sync records may
    claim (``sweep_message``) and still cover loops past one interval.

    Its records carry the cadence it was created with (``declared``, the sweep's input),
    which holds only while the schedule runs (not paused, actions left) on one interval
    spec at least that frequent. Anything else (paused or exhausted from the Web UI,
    a calendar added, the interval stretched) and the records overstate it.
    """
    if paused or exhausted or declared is None or other_specs or len(intervals) != 1:
        return None
    return declared if 0 < intervals[0] <= declared else None


def ends_cover(message: str, cadence: int | None) -> bool:
    """Whether a sweep record claims a cadence (``sweep_message``) the schedule no
    longer keeps (``schedule_cadence``): its loop's long sleep is no longer justified."""
    claimed = sweep_cadence(message)
    return claimed is not None and claimed != cadence


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

    Only a sweep's own record covers (``sweep_message``), only one newer than what
    the loop saw at its previous wake (``seen``), at the unit's live revision, and
    only until ``covered_horizon`` after that judgement: one interval for a manual
    sweep, so with no sweeps the loop's next tick is a full check and it still finds
    drift within its interval; the backstop for a scheduled sweep whose cadence is at
    most the interval (each such sweep signals the loop when the unit differs).
    """
    if row is None or row.paused or row.state != "in-sync" or not is_sweep_message(row.message):
        return None
    if live_revision is None or row.revision != live_revision or row.checked_at == seen:
        return None
    horizon = covered_horizon(interval_seconds, sweep_cadence(row.message))
    left = row.checked_at + horizon - now
    return left if left > timedelta(seconds=1) else None


class SweepInput(BaseModel):
    """The sweep workflow's input: a manual ``sweep run`` or a ``sweep schedule`` run."""

    batch_size: int = 500
    wait_seconds: int = 600  # for the checks to report back
    # Set by ``sweep schedule`` to its interval (None: a manual ``sweep run``). Drift
    # loops covered by sweeps that run at least as often as they would check sleep
    # longer (``domain.sweep.covered_horizon``); a manual sweep never lets them.
    cadence_seconds: int | None = None


class SweepResult(BaseModel):
    sweep_id: str
    units: int
    counts: dict[str, int]
    complete: bool


class SweepJudgeInput(BaseModel):
    sweep_id: str
    # The schedule's interval, for a scheduled sweep: recorded with each in-sync row
    # (``sweep_message``) so covered loops may sleep past one interval.
    cadence_seconds: int | None = None
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
    # space → drift interval, for the loops the sweep starts without a first check (the
    # check is where a loop learns it; a default would break short intervals)
    intervals: dict[str, int] = Field(default_factory=dict)
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
    intervals: dict[str, int] = Field(default_factory=dict)  # space → drift interval


class EnsureLoopsResult(BaseModel):
    started_or_running: int = 0
    signalled: int = 0


class CoveredInput(BaseModel):
    space: str
    unit: str
    interval_seconds: int
    seen: datetime | None = None  # the sweep record the loop saw at its previous wake


class CoverEnded(BaseModel):
    """Signal ``cover_ended``: the sweep schedule that covered this loop stopped (or
    changed), so the loop re-reads its cover and sleeps one interval at most."""

    cadence_seconds: int | None = None  # what the schedule keeps now; None: no schedule


class CoveredResult(BaseModel):
    sleep_seconds: float = 0.0  # 0: not covered, check now
    checked_at: datetime | None = None
