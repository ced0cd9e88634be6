"""The authority protocol, one suite on every backend: the embedded store on SQLite and
on PostgreSQL, and the ConfigHub client (authority/confighub.py) on the contract fake
of ConfigHub's REST API (tests/fakes/confighub.py).

The tests below are those of test_store.py that speak only the protocol (no SQL, no
migrations), collected here a second time with this module's ``store`` fixture, plus
the capture tests, written here once for all three.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from authority.confighub import ConfigHubStore
from authority.confighub_api import ConfigHubApi
from authority.sql import SqlStore
from domain.drift import DriftField
from domain.errors import NotFound, StaleVersion
from tests.authority import test_store
from tests.authority.test_store import (  # noqa: F401  (collected here, on every backend)
    SPACE,
    change,
    claim,
    drift_record,
    space_spec,
    test_a_base_that_moved_since_planning_is_stale_and_nothing_is_written,
    test_a_capture_is_live_without_being_applied,
    test_a_check_time_given_in_another_zone_is_kept_as_the_same_instant,
    test_a_publish_never_rewrites_the_gates_of_an_existing_space,
    test_a_publish_records_gits_render_and_the_commit_with_its_revisions,
    test_a_sweeps_answer_survives_later_checks_outside_the_sweep,
    test_an_older_apply_finishing_late_does_not_move_live_back,
    test_classify_a_missing_revision_is_not_found,
    test_classify_revision_relabels_source_and_merges_tags,
    test_concurrent_creators_of_one_unit_one_wins,
    test_concurrent_writers_one_winner_per_version_and_no_gaps,
    test_count_drift_counts_one_sweeps_records_by_state,
    test_creating_an_existing_unit_is_stale,
    test_drift_record_round_trips_fields_values_and_time,
    test_first_commit_creates_unit_revision_1,
    test_gates_are_seeded_when_a_space_is_created,
    test_get_revisions_is_scoped_to_the_space,
    test_get_revisions_with_more_than_400_keys,
    test_git_sources_set_git_revision,
    test_idempotency_key_only_matches_the_head,
    test_idempotency_key_replay_of_a_unit_creation,
    test_idempotency_key_replay_returns_the_same_revision,
    test_labels_are_kept_when_change_labels_is_none,
    test_last_applied_revision_never_moves_back,
    test_later_non_git_write_keeps_the_git_revision,
    test_list_drift_is_per_space_sorted_and_filtered_by_unit,
    test_list_prs_is_newest_first_and_filtered_by_space,
    test_list_revisions_is_sorted_by_number,
    test_list_spaces_is_sorted_by_name,
    test_list_unit_keys_pages_through_active_units_of_every_space,
    test_list_units_is_sorted_by_slug_and_scoped_to_the_space,
    test_multi_change_commit_returns_outcomes_in_order,
    test_new_unit_without_labels_has_empty_labels,
    test_non_git_sources_set_no_git_revision,
    test_other_idempotency_key_is_still_stale,
    test_pr_numbers_start_at_1_and_are_global_across_spaces,
    test_record_pr_without_timestamps_stamps_now_in_utc,
    test_same_content_as_head_creates_no_revision,
    test_same_content_with_bool_vs_int_is_a_change,
    test_same_content_with_int_vs_float_is_the_same,
    test_set_space_gates_changes_them_and_records_who_and_when,
    test_set_space_gates_of_an_unknown_space_writes_nothing,
    test_space_is_created,
    test_space_sync_settings_round_trip,
    test_space_upsert_updates_fields_and_policy_bundle,
    test_space_upsert_with_same_values_does_not_touch_it,
    test_stale_expected_version_raises_and_writes_nothing,
    test_stale_version_wins_over_same_content,
    test_the_base_is_the_render_even_when_the_revision_is_a_merge,
    test_timestamps_are_timezone_aware_utc,
    test_unicode_and_nested_data_round_trip,
    test_unknown_space_reads_are_empty,
    test_update_bumps_version_and_head,
    test_updating_a_missing_unit_is_stale,
)
from tests.conftest import PG_URL, _pg_schema_url
from tests.fakes.confighub import FakeConfigHub

BACKENDS = ["sqlite", "postgresql", "confighub"]
seeded = test_store.seeded  # the fixture, on this module's ``store``


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty authority on one backend (the state store of ConfigHub's: SQLite)."""
    if request.param == "sqlite":
        s = SqlStore(f"sqlite:///{tmp_path / 'authority.db'}")
        yield s
        s.close()
        return
    if request.param == "confighub":
        hub = FakeConfigHub().start()
        s2 = ConfigHubStore(
            ConfigHubApi(hub.url, hub.token), SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
        )
        s2.fake = hub  # type: ignore[attr-defined]
        yield s2
        s2.close()
        hub.stop()
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    s3 = SqlStore(_pg_schema_url(schema))
    try:
        yield s3
    finally:
        s3.close()
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# ---- capture (DESIGN.md "Capture"), on every backend ---------------------------------------


def _published_and_live(store: Any, memory: int = 128) -> None:
    store.commit([change(claim(memory), None)], spaces=[space_spec()])
    store.record_applied(SPACE, "u", 1, live=True)


def _capture(data: dict[str, Any], expected: int, *, key: str = "", **kw: Any) -> Any:
    return change(data, expected, source="drift-capture", key=key, description="drift-capture: x")


def test_a_capture_of_an_applied_head_is_the_new_head_and_live(store):
    _published_and_live(store)

    got = store.capture(_capture(claim(512), 1), record=drift_record(state="captured"))

    assert (got.revision, got.head_revision, got.created) == (2, 2, True)
    assert (got.rebased_revision, got.pending_revision, got.conflicts) == (None, None, [])
    unit = store.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.live_revision, unit.last_applied_revision) == (2, 2, 1)
    assert unit.version == 2
    rev = store.get_revision(SPACE, "u", 2)
    assert (rev.data, rev.source, rev.description) == (
        claim(512),
        "drift-capture",
        "drift-capture: x",
    )
    [drift] = store.list_drift(SPACE, "u")
    assert (drift.state, drift.revision) == ("captured", 2)


def test_a_capture_rebases_a_pending_head_onto_what_runs(store):
    _published_and_live(store)
    pending = {**claim(), "spec": {**claim()["spec"], "region": "eu-west-1"}}
    store.commit([change(pending, 1, description="CI: move region")])

    got = store.capture(_capture(claim(512), 2))

    assert got.pending_revision == 2
    assert got.rebased_revision == got.head_revision == 4
    assert got.revision == 3
    unit = store.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.live_revision) == (4, 3)
    head = store.get_revision(SPACE, "u", 4)
    assert head.data["spec"] == {"lambdaMemory": 512, "region": "eu-west-1"}
    assert head.source == "rebase"
    assert head.tags["rebased_from"] == "2"
    assert store.get_revision(SPACE, "u", 3).data == claim(512)


def test_a_capture_that_conflicts_with_the_pending_head_keeps_its_content(store):
    _published_and_live(store)
    store.commit([change(claim(256), 1, description="CI: memory 256")])

    got = store.capture(_capture(claim(512), 2))

    assert [c.path for c in got.conflicts] == ["spec.lambdaMemory"]
    assert got.rebased_revision is None
    unit = store.get_unit(SPACE, "u")
    assert unit.live_revision == got.revision
    assert store.get_revision(SPACE, "u", got.revision).data == claim(512)
    # the head still holds the pending change (ConfigHub: restored as its newest revision)
    assert unit.head_revision == got.head_revision
    assert store.get_revision(SPACE, "u", unit.head_revision).data == claim(256)


def test_a_retried_capture_writes_nothing_more(store):
    _published_and_live(store)
    first = store.capture(_capture(claim(512), 1, key="drift:1"))

    again = store.capture(_capture(claim(512), 1, key="drift:1"))

    assert (again.revision, again.created) == (first.revision, False)
    assert len(store.list_revisions(SPACE, "u")) == 2


def test_a_capture_planned_on_a_moved_unit_is_stale(store):
    _published_and_live(store)
    store.commit([change(claim(256), 1, source="bulk")])
    store.record_applied(SPACE, "u", 2, live=True)

    with pytest.raises(StaleVersion):
        store.capture(_capture(claim(512), 1), expected_live=1)
    assert len(store.list_revisions(SPACE, "u")) == 2


def test_capture_of_a_missing_unit_is_not_found(store):
    store.commit([], spaces=[space_spec()])
    with pytest.raises(NotFound):
        store.capture(_capture(claim(512), 1))


def test_orphaned_units_leave_the_sweep_and_come_back_with_the_same_content(seeded):
    from domain.authority import UnitStateChange

    seeded.commit([change(claim(), None)])
    seeded.commit([], states=[UnitStateChange(space=SPACE, slug="u", state="orphaned")])
    assert seeded.get_unit(SPACE, "u").state == "orphaned"
    assert seeded.list_unit_keys(None, 10) == []

    seeded.commit([change(claim(), 1)])

    assert seeded.get_unit(SPACE, "u").state == "active"
    assert seeded.list_unit_keys(None, 10) == [(SPACE, "u")]


def test_a_deleted_unit_is_gone_and_a_later_unit_of_its_name_starts_clean(seeded):
    """The apply's orphan → delete on request path: the embedded store marks the unit
    deleted, ConfigHub deletes it (``DELETE /space/{space}/unit/{unit}``). Either way it
    leaves the sweep, a retried delete changes nothing, and a unit Git renders again
    under the name inherits nothing: no approval, nothing live."""
    from datetime import UTC, datetime

    from domain.authority import Approval, UnitStateChange

    deleted = UnitStateChange(space=SPACE, slug="u", state="deleted")
    seeded.commit([change(claim(), None)])
    seeded.record_approval(SPACE, "u", 1, Approval(by="ana", at=datetime.now(UTC)))
    seeded.record_applied(SPACE, "u", 1, live=True)

    seeded.commit([], states=[deleted])

    gone = seeded.get_unit(SPACE, "u")
    assert gone is None or (gone.state, gone.live_revision) == ("deleted", None)
    assert seeded.list_unit_keys(None, 10) == []
    seeded.commit([], states=[deleted])  # a retried activity
    again = seeded.get_unit(SPACE, "u")
    assert (again is None) == (gone is None)
    if gone is not None and again is not None:
        assert (again.state, again.head_revision, again.version) == ("deleted", 1, gone.version)
    with pytest.raises(NotFound):
        seeded.commit([], states=[UnitStateChange(space=SPACE, slug="v", state="deleted")])

    seeded.commit([change(claim(512), gone.version if gone else None)])

    back = seeded.get_unit(SPACE, "u")
    assert (back.state, back.live_revision, back.last_applied_revision) == (
        "active",
        None,
        None if gone is None else 1,
    )
    head = seeded.get_revision(SPACE, "u", back.head_revision)
    assert (head.data, head.approvals) == (claim(512), [])
    assert seeded.list_unit_keys(None, 10) == [(SPACE, "u")]


def test_approvals_are_kept_once_per_approver(seeded):
    from datetime import UTC, datetime

    from domain.authority import Approval

    seeded.commit([change(claim(), None)])
    for who in ("ana", "bo", "ana"):
        got = seeded.record_approval(SPACE, "u", 1, Approval(by=who, at=datetime.now(UTC)))
    assert [a.by for a in got.approvals] == ["ana", "bo"]
    assert seeded.get_revision(SPACE, "u", 1).approvals == got.approvals
    with pytest.raises(NotFound):
        seeded.record_approval(SPACE, "u", 9, Approval(by="x", at=datetime.now(UTC)))


def test_drift_pause_is_kept(seeded):
    seeded.set_drift_paused(SPACE, "u", True)
    assert [r.paused for r in seeded.list_drift(SPACE, "u")] == [True]
    seeded.set_drift_paused(SPACE, "u", False)
    assert [r.paused for r in seeded.list_drift(SPACE, "u")] == [False]


def test_drift_fields_survive_a_capture_record(seeded):
    seeded.commit([change(claim(), None)])
    seeded.record_applied(SPACE, "u", 1, live=True)
    field = DriftField(path="spec.lambdaMemory", authority=128, live=512)
    seeded.capture(_capture(claim(512), 1), record=drift_record(state="captured", fields=[field]))
    [got] = seeded.list_drift(SPACE, "u")
    assert got.last_drift is not None
    assert (got.last_drift.fields, got.last_drift.revision) == ([field], 2)


# ---- a capture that conflicts with a pending head, on every backend ----------------------
# DESIGN.md "Capture": the head keeps the pending change, and neither an approval nor an
# apply may put its value back over what runs. The mark lives in the head's tags, where
# the apply gate (``authority.apply_context``) reads it, so every backend must set it.


def _spec(**spec: Any) -> dict[str, Any]:
    data = claim()
    data["spec"] = {**data["spec"], **spec}
    return data


def _pending_over_live(store: Any, **pending: Any) -> None:
    _published_and_live(store)
    store.commit([change(_spec(**pending), 1, description="CI: pending")])


def _capture_now(store: Any, **live: Any) -> Any:
    unit = store.get_unit(SPACE, "u")
    return store.capture(_capture(_spec(**live), unit.version))


def _head(store: Any) -> Any:
    return store.get_revision(SPACE, "u", store.get_unit(SPACE, "u").head_revision)


def test_a_conflicting_capture_marks_the_head_and_refuses_its_approval(seeded):
    from datetime import UTC, datetime

    from domain.authority import Approval
    from domain.drift import capture_conflict
    from domain.errors import CaptureConflict

    _pending_over_live(seeded, lambdaMemory=512)

    written = _capture_now(seeded, lambdaMemory=1024)

    head = _head(seeded)
    assert head.data["spec"]["lambdaMemory"] == 512  # the pending change is kept
    message = capture_conflict(SPACE, "u", head.number, head.tags)
    assert f"conflicts with drift capture r{written.revision}" in message
    assert "spec.lambdaMemory" in message
    with pytest.raises(CaptureConflict, match=r"spec\.lambdaMemory"):
        seeded.record_approval(SPACE, "u", head.number, Approval(by="olga", at=datetime.now(UTC)))
    assert seeded.get_revision(SPACE, "u", head.number).approvals == []


def test_a_later_capture_carries_the_mark_while_the_rebased_head_still_differs(seeded):
    from domain.drift import capture_conflict

    _pending_over_live(seeded, lambdaMemory=512, lambdaTimeout=45)
    _capture_now(seeded, lambdaMemory=1024)  # conflict on memory

    # An edit of another field: the head is re-based and would still put 512 back.
    written = _capture_now(seeded, lambdaMemory=1024, region="eu-west-1")

    head = _head(seeded)
    assert head.number == written.rebased_revision
    assert head.data["spec"] == {"lambdaMemory": 512, "lambdaTimeout": 45, "region": "eu-west-1"}
    assert f"drift capture r{written.revision} (what runs) in spec.lambdaMemory" in (
        capture_conflict(SPACE, "u", head.number, head.tags)
    )

    # What runs comes to agree with the head on memory: nothing is in conflict any more.
    written = _capture_now(seeded, lambdaMemory=512, region="eu-west-1")

    head = _head(seeded)
    assert head.number == written.rebased_revision
    assert head.data["spec"] == {"lambdaMemory": 512, "lambdaTimeout": 45, "region": "eu-west-1"}
    assert capture_conflict(SPACE, "u", head.number, head.tags) == ""


def test_a_rollback_to_a_marked_head_is_a_new_revision_free_of_the_mark(seeded):
    from domain.drift import capture_conflict

    _pending_over_live(seeded, lambdaMemory=512)
    _capture_now(seeded, lambdaMemory=1024)
    marked = _head(seeded)

    [outcome] = seeded.commit(
        [change(_spec(lambdaMemory=512), seeded.get_unit(SPACE, "u").version, source="rollback")]
    )

    # The embedded store writes a new revision; ConfigHub makes none for identical data,
    # so the rollback is recorded on the head itself. Either way the head is free.
    assert outcome.created
    assert outcome.revision >= marked.number
    assert outcome.revision == seeded.get_unit(SPACE, "u").head_revision
    assert _head(seeded).source == "rollback"
    assert capture_conflict(SPACE, "u", outcome.revision, _head(seeded).tags) == ""
    # Any other writer with the same content as head still writes nothing.
    unit = seeded.get_unit(SPACE, "u")
    [again] = seeded.commit([change(_spec(lambdaMemory=512), unit.version, source="bulk")])
    assert (again.revision, again.created) == (outcome.revision, False)
