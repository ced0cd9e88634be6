"""The apply arrow's pure rules: gates, approvals, readiness, settled outcomes."""

from __future__ import annotations

from typing import Any

import pytest

from domain.apply import (
    ApplyOutcome,
    ApproveInput,
    approval_problem,
    gate_for,
    is_precious,
    readiness,
    synced_false_verdict,
    waiting_message,
)

AUTHOR = "Dana Developer <dana@example.com>"


# ---- gates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "action", "precious", "gate"),
    [
        ("none", "apply", False, ""),
        ("acknowledge", "apply", False, "acknowledge"),
        ("required", "apply", False, "required"),
        # precious only matters for deletes
        ("none", "apply", True, ""),
        ("acknowledge", "apply", True, "acknowledge"),
        ("none", "delete", False, ""),
        ("acknowledge", "delete", False, "acknowledge"),
        ("required", "delete", False, "required"),
        # deleting a precious unit always needs a required approval
        ("none", "delete", True, "required"),
        ("acknowledge", "delete", True, "required"),
        ("required", "delete", True, "required"),
    ],
)
def test_gate_for(mode: Any, action: Any, precious: bool, gate: str) -> None:
    assert gate_for(mode, action, precious=precious) == gate


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"confighub.io/precious": "true"}, True),
        ({"confighub.io/precious": "True"}, True),
        ({"confighub.io/precious": "false"}, False),
        ({"confighub.io/precious": "yes"}, False),
        ({"other": "true"}, False),
        (None, False),
    ],
)
def test_is_precious(annotations: dict[str, str] | None, expected: bool) -> None:
    meta: dict[str, Any] = {"name": "x"}
    if annotations is not None:
        meta["annotations"] = annotations
    assert is_precious({"metadata": meta}) is expected


def test_is_precious_without_metadata() -> None:
    assert is_precious({}) is False
    assert is_precious({"metadata": None}) is False


# ---- approvals ---------------------------------------------------------------------------


def test_nothing_awaiting_approval() -> None:
    problem = approval_problem("required", None, ApproveInput(revision=1, by="Olu"), AUTHOR)
    assert problem == "nothing is awaiting approval"


def test_wrong_revision_names_the_waiting_one() -> None:
    problem = approval_problem("required", 3, ApproveInput(revision=2, by="Olu"), AUTHOR)
    assert problem == "revision 2 is not awaiting approval; revision 3 is"


@pytest.mark.parametrize("by", ["", "   "])
def test_approval_needs_someone(by: str) -> None:
    problem = approval_problem("acknowledge", 1, ApproveInput(revision=1, by=by), AUTHOR)
    assert problem == "an approval needs --by WHO"


@pytest.mark.parametrize(
    "by",
    [
        "Dana Developer",
        "dana developer",
        "  DANA DEVELOPER  ",
        "dana@example.com",
        "Dana@Example.com",
        "Dana Developer <dana@example.com>",
        # issue 10, hole 9: a login that is the author's e-mail local part is the author
        "dana",
        "DANA",
        "D. <dana@example.com>",
    ],
)
def test_required_approval_rejects_the_author(by: str) -> None:
    problem = approval_problem("required", 4, ApproveInput(revision=4, by=by), AUTHOR)
    assert problem == (f"{by} wrote revision 4; a required approval must come from someone else")


@pytest.mark.parametrize(
    "by", ["Olu Operator", "Developer", "dana@example.org", "olu@example.com", "danae"]
)
def test_required_approval_by_someone_else(by: str) -> None:
    assert approval_problem("required", 4, ApproveInput(revision=4, by=by), AUTHOR) is None


def test_author_may_acknowledge() -> None:
    approve = ApproveInput(revision=2, by="Dana Developer")
    assert approval_problem("acknowledge", 2, approve, AUTHOR) is None


def test_unknown_author_is_nobody() -> None:
    # A revision without an author (e.g. written by an operator tool) has no author to exclude.
    approve = ApproveInput(revision=1, by="Dana Developer")
    assert approval_problem("required", 1, approve, "") is None


def test_author_without_email() -> None:
    approve = ApproveInput(revision=1, by="dana developer")
    assert approval_problem("required", 1, approve, "Dana Developer") == (
        "dana developer wrote revision 1; a required approval must come from someone else"
    )
    other = ApproveInput(revision=1, by="Olu Operator")
    assert approval_problem("required", 1, other, "Dana Developer") is None


def test_wrong_revision_is_checked_before_the_author() -> None:
    approve = ApproveInput(revision=9, by="Dana Developer")
    assert approval_problem("required", 4, approve, AUTHOR) == (
        "revision 9 is not awaiting approval; revision 4 is"
    )


# ---- readiness ---------------------------------------------------------------------------


def claim(generation: int, *conditions: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "c", "generation": generation}}
    if conditions:
        obj["status"] = {"conditions": list(conditions)}
    return obj


def cond(kind: str, status: str, observed: int | None = None, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"type": kind, "status": status, **extra}
    if observed is not None:
        c["observedGeneration"] = observed
    return c


WAITING = "waiting for Crossplane to report Ready and Synced"


def test_no_object() -> None:
    r = readiness(None, 1)
    assert (r.state, r.message) == ("pending", "the object is not there")


def test_no_status_or_no_conditions() -> None:
    assert readiness(claim(1), 1).model_dump() == {"state": "pending", "message": WAITING}
    empty = {"metadata": {"name": "c"}, "status": {"conditions": []}}
    assert readiness(empty, 1).model_dump() == {"state": "pending", "message": WAITING}
    odd = {"metadata": {"name": "c"}, "status": {"conditions": ["Ready", None]}}
    assert readiness(odd, 1).model_dump() == {"state": "pending", "message": WAITING}


def test_ready_and_synced() -> None:
    obj = claim(
        2,
        cond("Synced", "True", 2, reason="ReconcileSuccess"),
        cond("Ready", "True", 2, reason="Available", message="all composed resources ready"),
    )
    r = readiness(obj, 2)
    assert (r.state, r.message) == ("ready", "all composed resources ready")


def test_ready_without_observed_generation_counts() -> None:
    obj = claim(1, cond("Synced", "True"), cond("Ready", "True"))
    assert readiness(obj, 1).model_dump() == {"state": "ready", "message": ""}


def test_newer_observed_generation_counts() -> None:
    obj = claim(3, cond("Synced", "True", 3), cond("Ready", "True", 3))
    assert readiness(obj, 2).state == "ready"


def test_conditions_of_an_older_generation_are_ignored() -> None:
    # Ready and Synced, but about generation 1: the new spec (2) is not reconciled yet.
    obj = claim(2, cond("Synced", "True", 1), cond("Ready", "True", 1))
    assert readiness(obj, 2).model_dump() == {"state": "pending", "message": WAITING}


def test_old_failure_is_ignored() -> None:
    obj = claim(
        2,
        cond("Synced", "False", 1, reason="ReconcileError", message="old problem"),
        cond("Ready", "False", 1, reason="Creating"),
    )
    assert readiness(obj, 2).model_dump() == {"state": "pending", "message": WAITING}


def test_a_reconcile_error_waits_with_reason_and_message() -> None:
    # Crossplane retries a ReconcileError itself (an unreachable AWS reads the same):
    # the apply waits for it to clear, up to its ready timeout, instead of failing.
    obj = claim(
        2,
        cond("Synced", "False", 2, reason="ReconcileError", message="connection refused"),
        cond("Ready", "False", 2, reason="Creating"),
    )
    r = readiness(obj, 2)
    assert (r.state, r.message) == ("waiting", "ReconcileError: connection refused")
    assert waiting_message(r.message) == (
        "waiting: Crossplane reports ReconcileError: connection refused"
    )


def test_a_paused_claim_fails_at_once() -> None:
    obj = claim(
        2,
        cond("Synced", "False", 2, reason="ReconcilePaused", message="paused by annotation"),
        cond("Ready", "False", 2, reason="Creating"),
    )
    r = readiness(obj, 2)
    assert (r.state, r.message) == ("failed", "ReconcilePaused: paused by annotation")


def test_synced_false_without_reason_or_message_is_a_reconcile_error() -> None:
    r = readiness(claim(1, cond("Synced", "False", 1)), 1)
    assert (r.state, r.message) == ("waiting", "ReconcileError:")


@pytest.mark.parametrize(
    ("reason", "verdict"),
    [
        ("ReconcileError", "wait"),  # Crossplane retries it with backoff
        ("ReconcilePaused", "fail"),  # nothing changes until someone unpauses
        ("SomethingNew", "wait"),  # not known to be permanent
        ("", "wait"),
        ("reconcilepaused", "wait"),  # reasons are exact CamelCase identifiers
    ],
)
def test_synced_false_verdict(reason: str, verdict: str) -> None:
    assert synced_false_verdict(reason) == verdict
    state = readiness(claim(1, cond("Synced", "False", 1, reason=reason or None)), 1).state
    assert state == {"wait": "waiting", "fail": "failed"}[verdict]


def test_synced_but_not_ready_is_pending_with_its_reason() -> None:
    obj = claim(
        1,
        cond("Synced", "True", 1, reason="ReconcileSuccess"),
        cond("Ready", "False", 1, reason="Creating", message="waiting for the bucket"),
    )
    r = readiness(obj, 1)
    assert (r.state, r.message) == ("pending", "Creating: waiting for the bucket")


def test_ready_without_synced_is_pending() -> None:
    obj = claim(1, cond("Ready", "True", 1, reason="Available", message="up"))
    r = readiness(obj, 1)
    assert (r.state, r.message) == ("pending", "Available: up")


def test_synced_unknown_is_pending() -> None:
    obj = claim(1, cond("Synced", "Unknown", 1, reason="Reconciling", message="in progress"))
    r = readiness(obj, 1)
    assert (r.state, r.message) == ("pending", "Reconciling: in progress")


# ---- outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "settled"),
    [
        ("queued", False),
        ("applying", False),
        ("applied", False),
        ("awaiting-approval", True),
        ("ready", True),
        ("failed", True),
        ("superseded", True),
        ("deleted", True),
    ],
)
def test_outcome_settled(state: Any, settled: bool) -> None:
    assert ApplyOutcome(revision=1, state=state).settled is settled


def test_refusals_of_every_actuator_are_rejected_and_exit_2() -> None:
    """By class name, as activities report them: a renamed class fails here."""
    from adapters.argocd import ArgoCDRefused
    from authority.confighub_api import ConfigHubRejected
    from domain.apply import ApplyOutcome, failure_reason
    from domain.errors import NotFound, PolicyDenied, Rejected
    from starter.applying import exit_code

    for cls in (Rejected, ArgoCDRefused, ConfigHubRejected):
        reason = failure_reason(cls.__name__)
        assert reason == "rejected", cls
        assert exit_code(ApplyOutcome(revision=1, state="failed", reason=reason)) == 2
    assert failure_reason(PolicyDenied.__name__) == "denied"
    for other in (NotFound.__name__, "RuntimeError", None):
        assert failure_reason(other) == "error"
