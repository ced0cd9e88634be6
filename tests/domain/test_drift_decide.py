"""domain/drift.py ``decide``: the drift loop's decision table, without Temporal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from domain.drift import (
    RECORDS_CHECK,
    STATE_OF_CHECK,
    CaptureRequest,
    CheckState,
    DriftCheckResult,
    DriftField,
    DriftStateName,
    DriftStatus,
    check_row,
    decide,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
FIELD = DriftField(path="spec.lambdaMemory", authority=256, live=512)
MODES = ["capture", "revert", "report"]


def result(
    state: CheckState = "drifted",
    mode: str = "capture",
    *,
    capturable: bool = True,
    live_revision: int | None = 1,
) -> DriftCheckResult:
    drifted = state == "drifted"
    return DriftCheckResult(
        state=state,
        mode=mode,
        live_revision=live_revision,
        fields=[FIELD] if drifted else [],
        claim_data={"spec": {"lambdaMemory": 512}} if drifted and capturable else None,
        fingerprint="spec.lambdaMemory=512" if drifted else "",
    )


def status(**kw: object) -> DriftStatus:
    return DriftStatus.model_validate({"space": "s", "unit": "u", **kw})


def test_every_check_state_maps_to_a_loop_state():
    assert set(STATE_OF_CHECK) == set(get_args(CheckState))
    assert set(STATE_OF_CHECK.values()) <= set(get_args(DriftStateName))


# ---- drifted, by mode --------------------------------------------------------------------


def test_capture_mode_captures_drift():
    d = decide(result(mode="capture"), status(), [], NOW)
    assert (d.action, d.state, d.request) == ("capture", "captured", None)


def test_revert_mode_reverts_drift():
    d = decide(result(mode="revert"), status(), [], NOW)
    assert (d.action, d.state) == ("revert", "reverting")
    assert d.message == "re-applying revision 1: spec.lambdaMemory"


def test_report_mode_records_drift():
    d = decide(result(mode="report"), status(), [], NOW)
    assert (d.action, d.state, d.message) == (
        "report",
        "drifted",
        "drift recorded (report): spec.lambdaMemory",
    )


def test_drift_no_claim_field_says_is_not_capturable():
    d = decide(result(capturable=False), status(), [], NOW)
    assert (d.action, d.state) == ("nothing-capturable", "drifted")


def test_a_request_captures_in_any_mode_and_the_last_one_is_carried():
    first, last = CaptureRequest(tag="a"), CaptureRequest(tag="break-glass", incident="INC-1")
    for mode in MODES:
        d = decide(result(mode=mode), status(paused=True), [first, last], NOW)
        assert (d.action, d.request) == ("capture", last)


def test_a_paused_loop_without_a_request_only_reports():
    for mode in MODES:
        d = decide(result(mode=mode), status(paused=True), [], NOW)
        assert (d.action, d.state) == ("report", "drifted")


# ---- not drifted ---------------------------------------------------------------------------


def test_in_sync_is_recorded():
    d = decide(result("in-sync"), status(state="drifted"), [], NOW)
    assert (d.action, d.state, d.message) == ("record", "in-sync", "in-sync")


def test_an_apply_in_flight_or_nothing_applied_reads_unknown():
    for state in ("applying", "not-applied"):
        d = decide(result(state), status(), [], NOW)
        assert (d.action, d.state, d.message) == ("record", "unknown", state)


def test_in_sync_after_a_revert_counts_it():
    d = decide(result("in-sync"), status(state="reverting"), [], NOW)
    assert (d.action, d.state) == ("reverted", "reverted")
    # only in sync confirms it: an apply in flight does not
    assert decide(result("applying"), status(state="reverting"), [], NOW).action == "record"


def test_the_authority_paused_or_the_unit_gone():
    assert decide(result("paused"), status(), [], NOW).action == "stay-paused"
    gone = decide(result("inactive"), status(), [CaptureRequest()], NOW)
    assert (gone.action, gone.state) == ("end", "paused")


# ---- tagging the watch's capture -----------------------------------------------------------


def captured_at(ago: timedelta, revision: int = 1) -> DriftStatus:
    return status(last_revision=revision, last_capture_at=NOW - ago, interval_seconds=300)


def test_a_tagged_request_after_the_watch_captured_tags_that_capture():
    req = CaptureRequest(tag="break-glass", incident="INC-7")
    d = decide(result("in-sync"), captured_at(timedelta(seconds=60)), [req], NOW)
    assert (d.action, d.state, d.request) == ("tag-capture", "in-sync", req)


def test_an_old_or_superseded_capture_is_not_tagged():
    req = CaptureRequest(tag="break-glass")
    old = decide(result("in-sync"), captured_at(timedelta(seconds=301)), [req], NOW)
    superseded = decide(
        result("in-sync", live_revision=2), captured_at(timedelta(seconds=1)), [req], NOW
    )
    assert (old.action, superseded.action) == ("record", "record")


def test_an_untagged_request_tags_nothing():
    d = decide(result("in-sync"), captured_at(timedelta(seconds=1)), [CaptureRequest()], NOW)
    assert (d.action, d.request) == ("record", None)


def test_a_revert_confirmed_still_tags_the_current_capture():
    req = CaptureRequest(incident="INC-2")
    loop = captured_at(timedelta(seconds=1)).model_copy(update={"state": "reverting"})
    d = decide(result("in-sync"), loop, [req], NOW)
    assert (d.action, d.request) == ("reverted", req)


# ---- properties over every input -----------------------------------------------------------

check_results = st.builds(
    result,
    state=st.sampled_from(get_args(CheckState)),
    mode=st.sampled_from(MODES),
    capturable=st.booleans(),
    live_revision=st.one_of(st.none(), st.integers(1, 3)),
)
loops = st.builds(
    status,
    state=st.sampled_from(get_args(DriftStateName)),
    paused=st.booleans(),
    last_revision=st.one_of(st.none(), st.integers(1, 3)),
    last_capture_at=st.one_of(
        st.none(), st.integers(0, 900).map(lambda s: NOW - timedelta(seconds=s))
    ),
)
requests = st.lists(
    st.builds(
        CaptureRequest,
        tag=st.sampled_from(["", "break-glass", "t"]),
        incident=st.sampled_from(["", "INC-1"]),
    ),
    max_size=3,
)


@given(check_results, loops)
def test_a_paused_loop_with_no_request_never_captures_or_reverts(
    res: DriftCheckResult, loop: DriftStatus
):
    loop = loop.model_copy(update={"paused": True})
    assert decide(res, loop, [], NOW).action not in ("capture", "revert")


@given(check_results, loops, requests)
def test_report_mode_never_writes_a_revision_unasked(
    res: DriftCheckResult, loop: DriftStatus, reqs: list[CaptureRequest]
):
    res = res.model_copy(update={"mode": "report"})
    action = decide(res, loop, reqs, NOW).action
    assert action != "revert"
    assert action != "capture" or reqs


@given(check_results, loops, requests)
def test_only_drift_captures_or_reverts_and_only_what_is_capturable_is_captured(
    res: DriftCheckResult, loop: DriftStatus, reqs: list[CaptureRequest]
):
    d = decide(res, loop, reqs, NOW)
    if d.action in ("capture", "revert", "nothing-capturable", "report"):
        assert res.state == "drifted"
    if d.action == "capture":
        assert res.claim_data is not None
        assert d.request == (reqs[-1] if reqs else None)
    if res.state == "drifted" and reqs:
        assert d.action == ("capture" if res.claim_data is not None else "nothing-capturable")


@given(check_results, loops, requests)
def test_a_tag_goes_only_on_the_current_capture(
    res: DriftCheckResult, loop: DriftStatus, reqs: list[CaptureRequest]
):
    d = decide(res, loop, reqs, NOW)
    if d.action in ("tag-capture", "reverted") and d.request is not None:
        assert loop.last_revision is not None
        assert loop.last_revision == res.live_revision
        assert loop.last_capture_at is not None
        assert NOW - loop.last_capture_at <= timedelta(seconds=loop.interval_seconds)
        assert d.request.tag or d.request.incident


@given(check_results, loops, requests)
def test_what_the_unit_reads_is_the_mapped_check_state_unless_the_loop_acted(
    res: DriftCheckResult, loop: DriftStatus, reqs: list[CaptureRequest]
):
    d = decide(res, loop, reqs, NOW)
    acted = {"capture": "captured", "revert": "reverting", "reverted": "reverted"}
    assert d.state == acted.get(d.action, STATE_OF_CHECK[res.state])


@given(check_results, loops, requests)
def test_the_check_row_says_what_the_check_saw_for_decisions_that_record_it(
    res: DriftCheckResult, loop: DriftStatus, reqs: list[CaptureRequest]
):
    d = decide(res, loop, reqs, NOW)
    if d.action not in RECORDS_CHECK:
        # the loop (paused, reverted, reverting), the capture, or nobody (the loop ends)
        assert d.action in ("stay-paused", "reverted", "revert", "capture", "end")
        return
    r = check_row("s", "u", "sweep-1", res, NOW)
    assert (r.state, r.message, r.revision, r.sweep_id) == (
        d.state,
        res.state,
        res.live_revision,
        "sweep-1",
    )
    assert (r.fields, r.checked_at) == (res.fields, NOW)


# ---- after_capture: what the loop does once a capture is written --------------------------

from domain.diff import FieldConflict  # noqa: E402
from domain.drift import CaptureResult, after_capture  # noqa: E402


def test_a_capture_that_is_the_head_syncs_the_claim_ungated():
    follow = after_capture(CaptureResult(revision=3, created=True, head_revision=3), "spec.x")

    assert follow.apply is not None
    assert (follow.apply.revision, follow.apply.ungated, follow.apply.follows) == (3, True, None)
    assert follow.state_message == "revision 3: spec.x"
    assert follow.outcome_message == "captured as revision 3"


def test_a_re_based_pending_change_takes_over_the_old_heads_request_and_its_gate():
    written = CaptureResult(
        revision=3, created=True, head_revision=4, rebased_revision=4, pending_revision=2
    )

    follow = after_capture(written, "spec.x")

    assert follow.apply is not None
    assert (follow.apply.revision, follow.apply.ungated, follow.apply.follows) == (4, False, 2)
    assert "re-based as revision 4, awaiting its gate" in follow.state_message
    assert follow.outcome_message == follow.state_message


def test_a_pending_change_in_conflict_is_kept_and_nothing_is_applied():
    conflict = FieldConflict(path="spec.lambdaMemory", base=128, ours=256, theirs=512)
    written = CaptureResult(
        revision=3, created=True, head_revision=2, pending_revision=2, conflicts=[conflict]
    )

    follow = after_capture(written, "spec.lambdaMemory")

    assert follow.apply is None
    assert follow.state_message.endswith(
        "conflict with pending head 2 in spec.lambdaMemory, head kept"
    )


@given(
    head=st.integers(1, 6),
    rebased=st.none() | st.integers(1, 6),
    pending=st.none() | st.integers(1, 6),
    conflicted=st.booleans(),
)
def test_a_capture_below_a_pending_head_never_applies_past_its_gate(
    head: int, rebased: int | None, pending: int | None, conflicted: bool
) -> None:
    """Only a capture that is itself the head is applied ungated; anything else that is
    applied is the re-based head, following the request of the head it replaces."""
    conflicts = [FieldConflict(path="spec.a", base=1, ours=2, theirs=3)] if conflicted else []
    written = CaptureResult(
        revision=3,
        created=True,
        head_revision=head,
        rebased_revision=rebased,
        pending_revision=pending,
        conflicts=conflicts,
    )

    follow = after_capture(written, "spec.a")

    if follow.apply is None:
        return
    if follow.apply.ungated:
        assert follow.apply.revision == written.revision == head
    else:
        assert not conflicts
        assert (follow.apply.revision, follow.apply.follows) == (rebased, pending)
