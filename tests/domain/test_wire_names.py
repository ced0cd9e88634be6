"""Renamed fields keep their first names on the wire: running workflows' histories
(signals, continue-as-new inputs) and the CLI's JSON hold the old names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.apply import ApplyHistory, ApplyRequest
from domain.drift import DriftCheckResult, DriftInput, DriftStatus
from domain.sync import SyncPRInput

CONVERTER = pydantic_data_converter.payload_converter


def _wire(value: BaseModel) -> dict[str, Any]:
    (payload,) = CONVERTER.to_payloads([value])
    found: dict[str, Any] = json.loads(payload.data)
    return found


def _from_wire(data: dict[str, Any], cls: type[BaseModel]) -> Any:
    (payload,) = CONVERTER.to_payloads([data])
    (value,) = CONVERTER.from_payloads([payload], [cls])
    return value


@pytest.mark.parametrize(
    ("model", "attribute", "wire_name", "value"),
    [
        (ApplyRequest(revision=3, ungated=True), "ungated", "sync_only", True),
        (SyncPRInput(space="s", syncs=99), "syncs", "runs", 99),
        (
            DriftCheckResult(state="drifted", claim_data={"spec": {"x": 1}}),
            "claim_data",
            "captured",
            {"spec": {"x": 1}},
        ),
    ],
)
def test_a_renamed_field_keeps_its_wire_name(
    model: BaseModel, attribute: str, wire_name: str, value: Any
) -> None:
    wire = _wire(model)
    assert wire[wire_name] == value
    assert attribute not in wire
    assert model.model_dump(mode="json")[wire_name] == value  # the CLI's JSON
    back = _from_wire(wire, type(model))
    assert getattr(back, attribute) == value
    assert back == model


def test_an_old_history_s_payload_reads_into_the_new_name() -> None:
    # What a worker before the rename carried across continue-as-new.
    history = _from_wire(
        {"outcomes": [], "pending": [{"revision": 7, "sync_only": True, "request_ids": ["r"]}]},
        ApplyHistory,
    )
    assert history.pending[0].ungated is True
    assert _wire(history)["pending"][0]["sync_only"] is True
    old = {"space": "s", "runs": 41, "requests": 2, "reasons": ["capture"]}
    sync = _from_wire(old, SyncPRInput)
    assert (sync.syncs, sync.requests, sync.reasons) == (41, 2, ["capture"])


def test_both_names_construct_the_model() -> None:
    assert ApplyRequest(revision=1, sync_only=True) == ApplyRequest(revision=1, ungated=True)
    assert SyncPRInput(space="s", runs=5) == SyncPRInput(space="s", syncs=5)


def test_a_drift_status_of_an_old_history_with_last_fingerprint_still_reads() -> None:
    """``DriftStatus.last_fingerprint`` is gone; continue-as-new inputs that carry it
    (and the old loop state fields of DriftInput) still decode."""
    old = {
        "space": "s",
        "unit": "u",
        "status": {"space": "s", "unit": "u", "state": "captured", "last_fingerprint": "f"},
        "check_first": True,
        "sweep_id": "sweep-1",
    }
    inp = _from_wire(old, DriftInput)
    loop = inp.loop_state()
    assert (loop.status.state, loop.wake, loop.sweep_id) == ("captured", True, "sweep-1")
    assert "last_fingerprint" not in _wire(loop.status)
    assert loop.status == DriftStatus(space="s", unit="u", state="captured")
