"""The sweep's judgement without Temporal: the same verdict as the drift check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.drift import DriftField, DriftRecord, DriftStateName, managed_drift
from domain.sweep import (
    COVERED_BACKSTOP,
    SWEEP_MESSAGE,
    UnitFacts,
    covered_for,
    covered_horizon,
    ends_cover,
    judge_claim,
    precheck,
    schedule_cadence,
    sweep_cadence,
    sweep_message,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "memory": {"type": "integer", "default": 128},
                "name": {"type": "string"},
            },
        }
    },
}
IGNORE = ['metadata.annotations["example.io/seen"]']


def claim(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.io/v1",
        "kind": "AppClaim",
        "metadata": {"name": "a", "namespace": "default", **meta},
        "spec": spec,
    }


def row(state: DriftStateName = "in-sync", **kw: Any) -> DriftRecord:
    return DriftRecord(space="s", unit="u", state=state, checked_at=NOW, **kw)


def live_of(obj: dict[str, Any]) -> dict[str, Any]:
    """As the API server answers: server fields added."""
    return {
        **obj,
        "metadata": {
            **obj["metadata"],
            "uid": "1",
            "resourceVersion": "7",
            "generation": 1,
            "creationTimestamp": "2026-11-30T10:00:00Z",
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_claim_equal_but_for_server_fields_defaults_and_ignored_paths_is_in_sync() -> None:
    authority = claim({"name": "x"})
    live = live_of(claim({"name": "x", "memory": 128}, annotations={"example.io/seen": "now"}))

    assert judge_claim(authority, live, ignore=IGNORE, schema=SCHEMA) == "in-sync"


def test_a_default_made_explicit_with_another_value_differs() -> None:
    live = live_of(claim({"name": "x", "memory": 256}))

    assert judge_claim(claim({"name": "x"}), live, ignore=[], schema=SCHEMA) == "differs"


def test_an_annotation_not_ignored_differs_and_a_missing_claim_is_missing() -> None:
    live = live_of(claim({"name": "x"}, annotations={"other": "1"}))

    assert judge_claim(claim({"name": "x"}), live, ignore=IGNORE, schema=SCHEMA) == "differs"
    assert judge_claim(claim({"name": "x"}), None, ignore=IGNORE, schema=SCHEMA) == "missing"


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [
        (UnitFacts(space="s", unit="u", live_revision=2, row=row()), None),
        (UnitFacts(space="s", unit="u", live_revision=2, row=row("captured")), None),
        (UnitFacts(space="s", unit="u", live_revision=2, row=row(paused=True)), "paused"),
        (UnitFacts(space="s", unit="u", live_revision=None, row=row()), "not-applied"),
        (
            UnitFacts(space="s", unit="u", live_revision=2, last_applied_revision=3, row=row()),
            "in-flight",
        ),
        # never recorded (a fleet the sweep meets first): compared like any other
        (UnitFacts(space="s", unit="u", live_revision=2, row=None), None),
        (UnitFacts(space="s", unit="u", live_revision=2, row=row("reverting")), "due"),
        (UnitFacts(space="s", unit="u", live_revision=2, row=row("drifted")), "due"),
        (UnitFacts(space="s", unit="u", live_revision=2, row=row("failing")), "due"),
    ],
)
def test_what_only_the_loop_may_decide_is_signalled_before_any_comparison(
    facts: UnitFacts, verdict: str | None
) -> None:
    assert precheck(facts) == verdict


def aws(path: str, live: Any, capturable: bool = True) -> DriftField:
    return DriftField(path=path, live=live, source="aws-live", capturable=capturable)


def test_managed_drift_keeps_only_real_differences_from_the_live_revision() -> None:
    wanted = {"spec": {"memory": 128, "name": "x"}}
    observed = [
        aws("spec.memory", 128),  # what the revision says: no drift
        aws("spec.name", "y"),  # a claim field AWS changed
        aws('metadata.annotations["example.io/seen"]', "now"),  # ignored
        aws('managed["Function/f"].spec.forProvider.timeout', 9, capturable=False),
    ]

    fields = managed_drift(observed, wanted=wanted, ignore=IGNORE, claim_paths=set())

    assert [(f.path, f.authority, f.live) for f in fields] == [
        ("spec.name", "x", "y"),
        ('managed["Function/f"].spec.forProvider.timeout', None, 9),
    ]
    # A claim field that moved on the Claim itself: AWS follows it, not drift of its own.
    assert (
        managed_drift([aws("spec.name", "y")], wanted=wanted, ignore=[], claim_paths={"spec.name"})
        == []
    )


def sweep_row(at: datetime, revision: int = 2, **kw: Any) -> DriftRecord:
    return row(message=SWEEP_MESSAGE, revision=revision, sweep_id="sw/1", **kw).model_copy(
        update={"checked_at": at}
    )


def test_a_fresh_sweep_judgement_covers_the_rest_of_its_interval_once() -> None:
    at = NOW - timedelta(seconds=100)

    left = covered_for(sweep_row(at), live_revision=2, now=NOW, interval_seconds=300, seen=None)

    assert left == timedelta(seconds=200)
    # Seen at the previous wake: no sweep since, so the loop checks itself.
    assert (
        covered_for(sweep_row(at), live_revision=2, now=NOW, interval_seconds=300, seen=at) is None
    )


@pytest.mark.parametrize(
    "record",
    [
        sweep_row(NOW - timedelta(seconds=400)),  # older than the interval
        sweep_row(NOW, revision=1),  # judged against an older live revision
        sweep_row(NOW, paused=True),
        row(message="in-sync", revision=2),  # the loop's own check, not a sweep's
        sweep_row(NOW).model_copy(update={"state": "drifted"}),
        None,
    ],
)
def test_nothing_else_covers_a_tick(record: DriftRecord | None) -> None:
    assert covered_for(record, live_revision=2, now=NOW, interval_seconds=300, seen=None) is None


def test_a_scheduled_sweep_says_its_cadence_and_a_manual_one_does_not() -> None:
    assert sweep_message(None) == SWEEP_MESSAGE
    assert sweep_cadence(SWEEP_MESSAGE) is None
    assert sweep_cadence(sweep_message(290)) == 290
    assert sweep_cadence("in-sync") is None
    assert sweep_cadence("in-sync (sweep every 290s) and more") is None


def test_a_scheduled_sweep_at_most_the_interval_lets_a_loop_sleep_to_the_backstop() -> None:
    at = NOW - timedelta(seconds=100)
    scheduled = sweep_row(at).model_copy(update={"message": sweep_message(290)})

    left = covered_for(scheduled, live_revision=2, now=NOW, interval_seconds=300, seen=None)

    assert left == COVERED_BACKSTOP - timedelta(seconds=100)
    # A schedule rarer than the interval would let drift sit longer than the interval
    # between sweeps: it covers only the rest of one interval, as a manual sweep does.
    rare = sweep_row(at).model_copy(update={"message": sweep_message(600)})
    assert covered_for(
        rare, live_revision=2, now=NOW, interval_seconds=300, seen=None
    ) == timedelta(seconds=200)
    # The backstop never shortens a long interval.
    assert covered_horizon(86400, 3600) == timedelta(seconds=86400)
    # The loop saw this record at its previous wake: the schedule stopped, it checks.
    assert covered_for(scheduled, live_revision=2, now=NOW, interval_seconds=300, seen=at) is None


@given(
    interval=st.integers(min_value=1, max_value=7 * 86400),
    cadence=st.one_of(st.none(), st.integers(min_value=0, max_value=14 * 86400)),
    age=st.integers(min_value=0, max_value=14 * 86400),
    revision=st.integers(min_value=1, max_value=3),
    seen=st.booleans(),
)
def test_a_loop_never_goes_longer_without_a_judgement_than_its_bound(
    interval: int, cadence: int | None, age: int, revision: int, seen: bool
) -> None:
    """The next full check comes at most max(interval, backstop) after the last
    judgement, and at most one interval after it unless a scheduled sweep with a cadence
    no longer than the interval made that judgement."""
    at = NOW - timedelta(seconds=age)
    record = sweep_row(at, revision=revision).model_copy(update={"message": sweep_message(cadence)})

    left = covered_for(
        record, live_revision=2, now=NOW, interval_seconds=interval, seen=at if seen else None
    )

    if left is None:
        return  # the loop checks now
    assert left > timedelta(0)
    assert revision == 2
    assert not seen
    wake = NOW + left
    assert wake - at <= max(timedelta(seconds=interval), COVERED_BACKSTOP)
    if cadence is None or not 0 < cadence <= interval:
        assert wake - at <= timedelta(seconds=interval)


def test_a_schedule_keeps_its_declared_cadence_only_while_it_runs_that_often() -> None:
    def kept(**over: Any) -> int | None:
        args: dict[str, Any] = {
            "paused": False,
            "intervals": [300],
            "other_specs": False,
            "declared": 300,
            "exhausted": False,
        }
        return schedule_cadence(**(args | over))

    assert kept() == 300
    assert kept(intervals=[60]) == 300  # runs more often than its records say: still true
    # Anything that makes the records overstate how often a sweep looks:
    assert kept(paused=True) is None
    assert kept(exhausted=True) is None
    assert kept(intervals=[600]) is None
    assert kept(intervals=[300, 600]) is None
    assert kept(intervals=[]) is None
    assert kept(other_specs=True) is None
    assert kept(declared=None) is None  # a manual-style sweep on a schedule claims nothing


@given(
    claimed=st.one_of(st.none(), st.integers(min_value=1, max_value=86400)),
    kept=st.one_of(st.none(), st.integers(min_value=1, max_value=86400)),
)
def test_only_a_claim_the_schedule_no_longer_keeps_ends(
    claimed: int | None, kept: int | None
) -> None:
    message = sweep_message(claimed)
    assert ends_cover(message, kept) == (claimed is not None and claimed != kept)
    # What it becomes claims nothing, so it never ends anything again.
    assert not ends_cover(SWEEP_MESSAGE, kept)
    assert not ends_cover("in-sync", kept)
