"""client/contract.py: every name the clients use is the one a workflow defines."""

from __future__ import annotations

import re

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

import worker
from adapters.argocd import ArgoCDRefused
from adapters.forge_github import ForgeRejected
from client import contract
from domain.errors import BadInput, Rejected


def _definitions() -> dict[str, workflow._Definition]:
    found = (workflow._Definition.must_from_class(cls) for cls in worker.WORKFLOWS)
    return {d.name: d for d in found if d.name}


def _constants(suffix: str) -> dict[str, str]:
    return {
        name: value
        for name, value in vars(contract).items()
        if re.fullmatch(rf"[A-Z_]+_{suffix}", name) and isinstance(value, str)
    }


def test_the_workflow_types_are_the_worker_s_exactly() -> None:
    assert sorted(_constants("WORKFLOW").values()) == sorted(_definitions())


def test_each_signal_update_and_query_is_defined_by_its_workflow() -> None:
    definitions = _definitions()
    expected = {
        contract.APPLY_WORKFLOW: (
            {contract.APPLY_REQUEST_SIGNAL},
            {contract.APPROVE_UPDATE},
            {contract.APPLY_STATUS_QUERY},
        ),
        contract.DRIFT_WORKFLOW: (
            {
                contract.DRIFT_CHECK_SIGNAL,
                contract.DRIFT_PAUSE_SIGNAL,
                contract.DRIFT_RESUME_SIGNAL,
                contract.DRIFT_COVER_ENDED_SIGNAL,
            },
            {contract.CHECK_NOW_UPDATE, contract.CAPTURE_NOW_UPDATE},
            {contract.DRIFT_STATUS_QUERY},
        ),
        contract.SYNC_PR_WORKFLOW: (
            {contract.SYNC_REQUEST_SIGNAL},
            {contract.SYNC_NOW_UPDATE},
            {contract.SYNC_STATUS_QUERY},
        ),
        contract.PUBLISH_RUN_WORKFLOW: (set(), set(), {contract.PROGRESS_QUERY}),
        contract.SWEEP_WORKFLOW: (set(), set(), {contract.PROGRESS_QUERY}),
    }
    for name, definition in definitions.items():
        signals, updates, queries = expected.get(name, (set(), set(), set()))
        assert {k for k in definition.signals if k} == signals, name
        assert {k for k in definition.updates if k} == updates, name
        assert {k for k in definition.queries if k} == queries, name
    named = {
        *_constants("SIGNAL").values(),
        *_constants("UPDATE").values(),
        *_constants("QUERY").values(),
    }
    assert named == {n for triple in expected.values() for group in triple for n in group}


def test_search_attributes_carry_only_what_is_given() -> None:
    both = contract.search_attributes("space-a", "unit-b")
    assert both.get(contract.SPACE_KEY) == "space-a"
    assert both.get(contract.UNIT_KEY) == "unit-b"
    only_space = contract.search_attributes("space-a")
    assert only_space.get(contract.UNIT_KEY) is None
    assert len(contract.search_attributes()) == 0
    assert contract.SEARCH_ATTRIBUTES == ("TributarySpace", "TributaryUnit", "TributaryDriftState")


def test_a_decided_failure_is_read_through_the_activity_error() -> None:
    decided = ApplicationError("bad file", type=BadInput.__name__, non_retryable=True)
    wrapped = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="test",
        activity_type="render.space",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    wrapped.__cause__ = decided
    assert contract.decided_type(wrapped) == "BadInput"
    info = contract.error_info(wrapped)
    assert (info.type, info.message) == ("BadInput", "bad file")
    assert contract.EXIT_CODES[info.type] == BadInput.exit_code == 2
    plain = contract.error_info(RuntimeError("boom"))
    assert (plain.type, plain.message) == ("RuntimeError", "boom")
    assert contract.decided_type(RuntimeError("boom")) is None


def test_the_adapters_refusals_exit_as_rejections() -> None:
    for cls in (ForgeRejected, ArgoCDRefused):
        assert issubclass(cls, Rejected)
        assert contract.EXIT_CODES[cls.__name__] == Rejected.exit_code
