"""A sweep's bulk in-sync record, on every backend (the protocol's ``store`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.sweep import SWEEP_MESSAGE, sweep_cadence, sweep_message
from tests.authority.test_protocol import store  # noqa: F401  (every backend)
from tests.authority.test_store import SPACE, drift_record, seeded  # noqa: F401

SWEEP = "sweep/1"
BEGAN = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_record_in_sync_writes_only_rows_the_sweep_may_replace(seeded: Any) -> None:  # noqa: F811
    before = BEGAN - timedelta(minutes=5)
    seeded.record_drift(drift_record("ok", state="in-sync", checked_at=before, fields=[]))
    seeded.record_drift(drift_record("cap", state="captured", checked_at=before, revision=2))
    seeded.record_drift(drift_record("drifted", checked_at=before))
    seeded.record_drift(drift_record("later", state="in-sync", checked_at=BEGAN + timedelta(1)))
    seeded.record_drift(drift_record("newer", state="in-sync", checked_at=BEGAN + timedelta(1)))
    seeded.record_drift(drift_record("held", state="in-sync", checked_at=before, fields=[]))
    seeded.set_drift_paused(SPACE, "held", True)
    at = BEGAN + timedelta(seconds=30)

    recorded = seeded.record_in_sync(
        SPACE,
        {"ok": 3, "cap": 2, "drifted": 1, "later": 1, "newer": 2, "held": 1, "never": 1},
        sweep_id=SWEEP,
        checked_at=at,
        unless_after=BEGAN,
    )

    assert sorted(recorded) == ["cap", "later", "never", "ok"]
    rows = {r.unit: r for r in seeded.list_drift(SPACE)}
    # No row yet (its loop never recorded): the sweep's judgement is the first record.
    assert (rows["never"].state, rows["never"].message, rows["never"].revision) == (
        "in-sync",
        SWEEP_MESSAGE,
        1,
    )
    assert (rows["never"].sweep_id, rows["never"].checked_at, rows["never"].paused) == (
        SWEEP,
        at,
        False,
    )
    assert [
        (u, rows[u].state, rows[u].message, rows[u].revision, rows[u].fields) for u in ("cap", "ok")
    ] == [("cap", "in-sync", SWEEP_MESSAGE, 2, []), ("ok", "in-sync", SWEEP_MESSAGE, 3, [])]
    assert rows["ok"].checked_at == at
    assert rows["cap"].last_drift is not None  # the captured drift stays on record
    # Its loop checked after the sweep began: counted for the sweep, its record kept.
    assert (rows["later"].sweep_id, rows["later"].checked_at) == (SWEEP, BEGAN + timedelta(1))
    assert rows["later"].message != SWEEP_MESSAGE
    assert rows["newer"].sweep_id == ""  # in sync at revision 1, not the 2 the sweep saw
    assert (rows["drifted"].state, rows["drifted"].sweep_id, rows["held"].state) == (
        "drifted",
        "",
        "in-sync",
    )
    assert rows["held"].message != SWEEP_MESSAGE
    assert seeded.count_drift(SWEEP) == {"in-sync": 4}


def test_a_scheduled_sweep_records_its_cadence(seeded: Any) -> None:  # noqa: F811
    seeded.record_drift(drift_record("ok", state="in-sync", checked_at=BEGAN, fields=[]))
    at = BEGAN + timedelta(minutes=1)

    recorded = seeded.record_in_sync(
        SPACE,
        {"ok": 3, "new": 3},
        sweep_id=SWEEP,
        checked_at=at,
        unless_after=at,
        cadence_seconds=290,
    )

    assert sorted(recorded) == ["new", "ok"]
    rows = {r.unit: r for r in seeded.list_drift(SPACE)}
    assert {rows[u].message for u in ("new", "ok")} == {sweep_message(290)}
    assert sweep_cadence(rows["ok"].message) == 290


def test_ending_a_schedule_s_cover_takes_only_claims_it_no_longer_keeps(seeded: Any) -> None:  # noqa: F811
    at = BEGAN + timedelta(minutes=1)
    seeded.record_in_sync(
        SPACE, {"a": 1, "b": 1}, sweep_id=SWEEP, checked_at=at, unless_after=at, cadence_seconds=300
    )
    seeded.record_in_sync(
        SPACE, {"c": 1}, sweep_id=SWEEP, checked_at=at, unless_after=at, cadence_seconds=60
    )
    seeded.record_in_sync(SPACE, {"manual": 1}, sweep_id=SWEEP, checked_at=at, unless_after=at)
    old = BEGAN - timedelta(hours=2)
    seeded.record_in_sync(
        SPACE, {"old": 1}, sweep_id=SWEEP, checked_at=old, unless_after=old, cadence_seconds=300
    )
    seeded.record_in_sync(
        SPACE, {"held": 1}, sweep_id=SWEEP, checked_at=at, unless_after=at, cadence_seconds=300
    )
    seeded.set_drift_paused(SPACE, "held", True)
    seeded.record_drift(drift_record("drifted", checked_at=at, message=sweep_message(300)))
    before = {r.unit: r for r in seeded.list_drift(SPACE)}

    # The schedule now sweeps every 60 s: records claiming 300 s no longer hold.
    ended = seeded.end_sweep_cover(60, since=BEGAN)

    assert sorted(ended) == [(SPACE, "a"), (SPACE, "b")]
    rows = {r.unit: r for r in seeded.list_drift(SPACE)}
    assert {u: rows[u].message for u in ("a", "b", "c", "manual")} == {
        "a": SWEEP_MESSAGE,
        "b": SWEEP_MESSAGE,
        "c": sweep_message(60),
        "manual": SWEEP_MESSAGE,
    }
    # Only the claim goes: when, at which revision, for which sweep stay.
    assert [(rows[u].checked_at, rows[u].revision, rows[u].sweep_id) for u in ("a", "b")] == [
        (at, 1, SWEEP),
        (at, 1, SWEEP),
    ]
    # Older than ``since``, paused, or not in sync: no loop sleeps on it; left alone.
    for unit in ("old", "held", "drifted"):
        assert rows[unit].message == before[unit].message, unit

    # The schedule is gone: the 60 s claim ends too; then nothing is left to end.
    assert seeded.end_sweep_cover(None, since=BEGAN) == [(SPACE, "c")]
    assert seeded.end_sweep_cover(None, since=BEGAN) == []


def test_a_manual_sweep_keeps_the_claim_a_loop_may_sleep_on(seeded: Any) -> None:  # noqa: F811
    """The schedule's watch finds the loops to wake by the claim alone: a manual sweep
    in between must not hide one (it refreshes the judgement, not the claim)."""
    at = BEGAN + timedelta(minutes=1)
    seeded.record_in_sync(
        SPACE, {"a": 1}, sweep_id=SWEEP, checked_at=at, unless_after=at, cadence_seconds=300
    )
    later = at + timedelta(minutes=2)

    seeded.record_in_sync(
        SPACE, {"a": 1, "b": 1}, sweep_id="manual", checked_at=later, unless_after=later
    )

    rows = {r.unit: r for r in seeded.list_drift(SPACE)}
    assert (rows["a"].message, rows["a"].checked_at, rows["a"].sweep_id) == (
        sweep_message(300),
        later,
        "manual",
    )
    assert rows["b"].message == SWEEP_MESSAGE
    assert seeded.end_sweep_cover(None, since=BEGAN) == [(SPACE, "a")]
