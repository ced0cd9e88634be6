"""domain/drift.py: field-level drift, who changed it, and what a capture writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from domain.drift import (
    CaptureRequest,
    DriftField,
    DriftReport,
    capture_description,
    capture_source,
    captured_data,
    comparable,
    kubernetes_drift,
    manager_of,
    rebase_pending,
)
from domain.normalize import ARGOCD_TRACKING_ANNOTATION, RECONCILE_ANNOTATION, is_ignored
from domain.schema import SchemaSet, schemas_from_xrd
from tests.support import FIXTURES

MW_XRD = "platform/crossplane/xrd/serverlesseventapp.yaml"
IGNORE = ['metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]']


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    xrd = yaml.safe_load((FIXTURES / "messagewall" / MW_XRD).read_text())
    found = SchemaSet(schemas_from_xrd(xrd, MW_XRD)).find(
        "messagewall.demo/v1alpha1", "ServerlessEventAppClaim"
    )
    assert found is not None
    return found.schema_


def authority(**spec: Any) -> dict[str, Any]:
    """A claim as the authority holds it: what kustomize rendered, defaults left out."""
    return {
        "apiVersion": "messagewall.demo/v1alpha1",
        "kind": "ServerlessEventAppClaim",
        "metadata": {
            "name": "messagewall-dev-east",
            "namespace": "default",
            "labels": {"app.kubernetes.io/name": "messagewall", "environment": "dev"},
        },
        "spec": {
            "awsAccountId": "123456789012",
            "environment": "dev",
            "resourcePrefix": "messagewall-east",
            "lambdaMemory": 128,
            **spec,
        },
    }


def managed(manager: str, time: str, *paths: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """A managedFields entry owning ``paths``."""
    fields: dict[str, Any] = {}
    for path in paths:
        cur = fields
        for seg in path:
            cur = cur.setdefault(f"f:{seg}", {})
    return {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "messagewall.demo/v1alpha1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


def live_from(obj: dict[str, Any], *entries: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server returns it: server-owned metadata and a status."""
    out = copy.deepcopy(obj)
    out["metadata"].update(
        uid="0b7c5f1e-7d1f-4a42-9a8e-0d6c2b1f9c11",
        resourceVersion="4711",
        generation=3,
        creationTimestamp="2024-05-01T10:00:00Z",
        managedFields=list(entries),
        finalizers=["finalizer.apiextensions.crossplane.io"],
        ownerReferences=[{"kind": "X", "name": "x", "uid": "1", "apiVersion": "v1"}],
    )
    out["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 3}],
        "bucketName": "messagewall-east-dev-123456789012",
    }
    return out


# ---- kubernetes_drift -------------------------------------------------------------------


def test_server_owned_fields_and_status_are_not_drift(schema):
    live = live_from(authority(), managed("tributary", "2024-05-01T10:00:00Z", ("spec",)))

    assert kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema) == []


def test_a_default_the_server_filled_in_is_not_drift(schema):
    live = live_from(authority())
    live["spec"].update(
        region="us-east-1",
        lambdaTimeout=10,
        eventSource="messagewall.api-handler",
        artifactBucket="",
    )

    assert kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema) == []


def test_an_absent_field_equal_to_its_default_is_not_drift(schema):
    live = live_from(authority())
    del live["spec"]["lambdaMemory"]  # the XRD default is 128, as the authority says

    assert kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema) == []


def test_an_absent_field_whose_default_differs_is_drift_to_the_default(schema):
    live = live_from(authority(lambdaMemory=512))
    del live["spec"]["lambdaMemory"]

    [field] = kubernetes_drift(authority(lambdaMemory=512), live, ignore=IGNORE, schema=schema)

    assert (field.path, field.authority, field.live) == ("spec.lambdaMemory", 512, 128)


def test_without_a_schema_an_absent_field_is_drift():
    live = live_from(authority())
    del live["spec"]["lambdaMemory"]

    [field] = kubernetes_drift(authority(), live, ignore=IGNORE, schema=None)

    assert (field.path, field.authority, field.live) == ("spec.lambdaMemory", 128, None)


def test_a_changed_field_names_path_values_and_manager(schema):
    live = live_from(
        authority(lambdaMemory=512),
        managed("tributary", "2024-05-01T10:00:00Z", ("spec", "awsAccountId"), ("spec", "region")),
        managed("kubectl-patch", "2024-05-01T11:00:00Z", ("spec", "lambdaMemory")),
    )

    fields = kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema)

    assert fields == [
        DriftField(
            path="spec.lambdaMemory",
            authority=128,
            live=512,
            manager="kubectl-patch",
            source="kubernetes-live",
            capturable=True,
        )
    ]


def test_every_changed_field_is_reported_once(schema):
    live = live_from(authority(lambdaMemory=512, lambdaTimeout=30))
    live["metadata"]["labels"]["team"] = "payments"
    del live["metadata"]["labels"]["environment"]

    fields = kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema)

    assert sorted((f.path, f.authority, f.live) for f in fields) == [
        ("metadata.labels.environment", "dev", None),
        ("metadata.labels.team", None, "payments"),
        ("spec.lambdaMemory", 128, 512),
        ("spec.lambdaTimeout", 10, 30),
    ]


def test_an_ignored_path_is_never_drift(schema):
    live = live_from(authority())
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {"lambdaMemory": 1}}'
    }

    assert kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema) == []


def test_an_annotation_that_is_not_ignored_is_drift(schema):
    live = live_from(
        authority(),
        managed(
            "kubectl-annotate", "2024-05-01T12:00:00Z", ("metadata", "annotations", "ops/owner")
        ),
    )
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "ops/owner": "sre",
    }

    [field] = kubernetes_drift(authority(), live, ignore=IGNORE, schema=schema)

    assert (field.path, field.authority, field.live, field.manager) == (
        'metadata.annotations["ops/owner"]',
        None,
        "sre",
        "kubectl-annotate",
    )


def test_comparable_drops_server_fields_and_ignored_paths_and_applies_defaults(schema):
    live = live_from(authority())
    live["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}

    out = comparable(live, IGNORE, schema)

    assert "status" not in out
    assert set(out["metadata"]) == {"name", "namespace", "labels"}
    assert out["spec"]["eventSource"] == "messagewall.api-handler"
    assert out["spec"]["lambdaTimeout"] == 10
    assert live["status"]  # the input is left alone


# ---- manager_of -------------------------------------------------------------------------


def test_manager_of_a_nested_path():
    entries = [
        managed("tributary", "2024-05-01T10:00:00Z", ("spec", "lambdaMemory")),
        managed("ops", "2024-05-01T10:00:00Z", ("metadata", "annotations", "a.b/c")),
    ]

    assert manager_of(("metadata", "annotations", "a.b/c"), entries) == "ops"
    assert manager_of(("spec", "lambdaMemory"), entries) == "tributary"


def test_manager_of_an_unowned_path_is_empty():
    entries = [managed("tributary", "2024-05-01T10:00:00Z", ("spec", "lambdaMemory"))]

    assert manager_of(("spec", "lambdaTimeout"), entries) == ""
    assert manager_of(("metadata", "labels", "x"), entries) == ""
    assert manager_of(("spec", "lambdaMemory"), []) == ""


def test_manager_of_a_field_several_managers_own_is_the_latest_writer():
    older = managed(
        "tributary", "2024-05-01T10:00:00Z", ("spec", "lambdaMemory"), ("spec", "region")
    )
    newer = managed("kubectl-edit", "2024-05-01T10:05:00Z", ("spec", "lambdaMemory"))
    status = managed(
        "crossplane", "2024-05-01T11:00:00Z", ("status", "ready"), subresource="status"
    )

    for entries in ([older, newer, status], [status, newer, older]):
        assert manager_of(("spec", "lambdaMemory"), entries) == "kubectl-edit"
        assert manager_of(("spec", "region"), entries) == "tributary"
        assert manager_of(("status", "ready"), entries) == "crossplane"


def test_an_entry_with_a_time_beats_one_without():
    timeless = {"manager": "old-tool", "fieldsV1": {"f:spec": {"f:lambdaMemory": {}}}}
    timed = managed("kubectl-patch", "2024-05-01T10:00:00Z", ("spec", "lambdaMemory"))

    assert manager_of(("spec", "lambdaMemory"), [timeless, timed]) == "kubectl-patch"
    assert manager_of(("spec", "lambdaMemory"), [timed, timeless]) == "kubectl-patch"


# ---- what a capture writes --------------------------------------------------------------


def test_captured_data_takes_the_live_values_in():
    fields = [
        DriftField(path="spec.lambdaMemory", authority=128, live=512),
        DriftField(path='metadata.annotations["ops/owner"]', authority=None, live="sre"),
    ]
    before = authority()

    out = captured_data(before, fields)

    assert out["spec"] == {**before["spec"], "lambdaMemory": 512}
    assert out["metadata"]["annotations"] == {"ops/owner": "sre"}
    assert before == authority()  # not modified in place


def test_captured_data_deletes_a_field_that_is_gone_live():
    fields = [DriftField(path="metadata.labels.environment", authority="dev", live=None)]

    out = captured_data(authority(), fields)

    assert out["metadata"]["labels"] == {"app.kubernetes.io/name": "messagewall"}


def test_captured_data_skips_what_no_claim_field_says():
    fields = [
        DriftField(
            path='aws.dynamodb["messagewall-east-dev-123456789012"]',
            authority="present",
            live="missing",
            source="aws-live",
            capturable=False,
        ),
        DriftField(path="spec.lambdaTimeout", authority=10, live=30, source="aws-live"),
    ]

    out = captured_data(authority(), fields)

    assert "aws" not in out
    assert out == {**authority(), "spec": {**authority()["spec"], "lambdaTimeout": 30}}


def test_capture_description_names_fields_and_managers():
    fields = [
        DriftField(path="spec.lambdaMemory", authority=128, live=512, manager="kubectl-patch"),
        DriftField(path="spec.lambdaTimeout", authority=10, live=30),
        DriftField(path='aws.s3["b"]', live="missing", capturable=False, manager="aws"),
    ]

    text = capture_description(fields, None)

    assert text == "drift-capture: spec.lambdaMemory=512 (kubectl-patch), spec.lambdaTimeout=30"


def test_break_glass_description_carries_the_incident():
    fields = [DriftField(path="spec.lambdaMemory", authority=128, live=512, manager="kubectl-edit")]

    with_incident = capture_description(fields, CaptureRequest(tag="break-glass", incident="INC-7"))
    without = capture_description(fields, CaptureRequest(tag="break-glass"))
    other_tag = capture_description(fields, CaptureRequest(tag="hotfix", incident="INC-7"))

    assert with_incident == (
        "drift-capture: break-glass (INC-7): spec.lambdaMemory=512 (kubectl-edit)"
    )
    assert without == "drift-capture: break-glass: spec.lambdaMemory=512 (kubectl-edit)"
    assert other_tag == "drift-capture: spec.lambdaMemory=512 (kubectl-edit)"


def test_capture_source_is_break_glass_only_for_that_tag():
    assert capture_source("break-glass") == "break-glass"
    assert capture_source("") == "drift-capture"
    assert capture_source("hotfix") == "drift-capture"


# ---- fingerprints ------------------------------------------------------------------------


def _fields() -> list[DriftField]:
    return [
        DriftField(path="spec.lambdaMemory", authority=128, live=512, manager="kubectl-patch"),
        DriftField(path="metadata.labels.team", authority=None, live="payments"),
        DriftField(path='aws.s3["b"]', live="missing", capturable=False, source="aws-live"),
    ]


def test_fingerprint_is_stable_under_field_order():
    fields = _fields()

    assert (
        DriftReport(fields=fields).fingerprint()
        == DriftReport(fields=list(reversed(fields))).fingerprint()
    )
    assert (
        DriftReport(fields=fields).fingerprint()
        == DriftReport(fields=[fields[1], fields[2], fields[0]]).fingerprint()
    )


def test_fingerprint_is_the_drift_not_who_made_it_or_when():
    fields = _fields()
    other_manager = [f.model_copy(update={"manager": "someone-else"}) for f in fields]

    assert (
        DriftReport(fields=fields).fingerprint()
        == DriftReport(fields=other_manager, checked_at=None).fingerprint()
    )


def test_fingerprint_differs_when_the_live_value_differs():
    fields = _fields()
    moved = [fields[0].model_copy(update={"live": 1024}), *fields[1:]]

    assert DriftReport(fields=fields).fingerprint() != DriftReport(fields=moved).fingerprint()
    assert DriftReport(fields=fields).fingerprint() != DriftReport(fields=fields[:2]).fingerprint()


# ---- ignore after defaults (issue 9, defect 5) --------------------------------------------


def test_an_ignored_field_with_a_default_stays_out_of_the_comparison(schema):
    """Dropped before the defaults went in, an ignored field came back as its default."""
    out = comparable(authority(lambdaTimeout=30), [*IGNORE, "spec.lambdaTimeout"], schema)

    assert "lambdaTimeout" not in out["spec"]
    assert out["spec"]["eventSource"] == "messagewall.api-handler"  # other defaults stay


def test_an_ignored_field_is_no_drift_even_when_live_lacks_it(schema):
    live = live_from(authority())
    del live["spec"]["lambdaMemory"]  # default 128 on one side, 128 set on the other

    assert kubernetes_drift(authority(lambdaTimeout=30), live, ignore=IGNORE, schema=schema)
    assert (
        kubernetes_drift(
            authority(lambdaTimeout=30),
            live,
            ignore=[*IGNORE, "spec.lambdaTimeout"],
            schema=schema,
        )
        == []
    )


def test_is_ignored_covers_the_path_and_what_lies_inside_it():
    ignore = ["spec.lambdaMemory", 'metadata.annotations["a/b"]', "spec.tags"]

    assert is_ignored("spec.lambdaMemory", ignore)
    assert is_ignored('metadata.annotations["a/b"]', ignore)
    assert is_ignored("spec.tags.team", ignore)
    assert not is_ignored("spec.lambdaTimeout", ignore)
    assert not is_ignored('aws.s3["bucket"]', ignore)
    assert not is_ignored("spec.", ignore)  # not a path: never ignored


def test_a_reconcile_request_annotation_is_never_drift(schema):
    live = live_from(authority())
    live["metadata"]["annotations"] = {RECONCILE_ANNOTATION: "2024-05-01T10:00:00Z"}

    assert kubernetes_drift(authority(), live, ignore=[], schema=schema) == []


def test_argo_cds_tracking_annotation_is_never_drift(schema):
    live = live_from(authority())
    live["metadata"]["annotations"] = {
        ARGOCD_TRACKING_ANNOTATION: "wall-dev:messagewall.demo/ServerlessEventAppClaim:default/x"
    }

    assert kubernetes_drift(authority(), live, ignore=[], schema=schema) == []
    live["metadata"]["annotations"]["team"] = "a"
    assert [f.path for f in kubernetes_drift(authority(), live, ignore=[], schema=schema)] == [
        "metadata.annotations.team"
    ]


# ---- rebase_pending (issue 9, defect 2) ---------------------------------------------------


def test_a_pending_change_is_re_based_onto_the_capture():
    live, head = authority(), authority(lambdaTimeout=30)
    captured = authority(lambdaMemory=512)

    plan = rebase_pending(live, head, captured)

    assert plan.conflicts == []
    assert plan.data == authority(lambdaMemory=512, lambdaTimeout=30)


def test_the_same_field_on_both_sides_is_a_conflict_and_nothing_is_re_based():
    plan = rebase_pending(authority(), authority(lambdaMemory=256), authority(lambdaMemory=512))

    assert plan.data is None
    assert [(c.path, c.base, c.ours, c.theirs) for c in plan.conflicts] == [
        ("spec.lambdaMemory", 128, 256, 512)
    ]


def test_the_same_change_on_both_sides_is_agreement():
    plan = rebase_pending(authority(), authority(lambdaMemory=512), authority(lambdaMemory=512))

    assert (plan.data, plan.conflicts) == (authority(lambdaMemory=512), [])


def test_a_field_the_pending_change_removed_stays_removed():
    head = authority()
    del head["spec"]["lambdaMemory"]

    plan = rebase_pending(authority(), head, authority(lambdaTimeout=45))

    assert plan.data is not None
    assert "lambdaMemory" not in plan.data["spec"]
    assert plan.data["spec"]["lambdaTimeout"] == 45


def test_changed_at_is_the_newest_write_of_the_drifted_fields() -> None:
    from datetime import UTC, datetime

    from domain.drift import changed_at

    managed = [
        {
            "manager": "tributary",
            "time": "2026-01-01T10:00:00Z",
            "fieldsV1": {"f:spec": {"f:lambdaMemory": {}, "f:region": {}}},
        },
        {
            "manager": "kubectl-patch",
            "time": "2026-01-01T10:05:00Z",
            "fieldsV1": {"f:spec": {"f:lambdaMemory": {}}},
        },
        {"manager": "other", "time": "not a time", "fieldsV1": {"f:spec": {}}},
    ]
    assert changed_at(["spec.lambdaMemory"], managed) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert changed_at(["spec.region"], managed) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert changed_at(["spec.gone"], managed) is None
    assert changed_at(["spec.lambdaMemory"], []) is None


# ---- capture_over_pending: one plan for every store -----------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from domain.drift import (  # noqa: E402
    PendingHead,
    capture_conflict,
    capture_over_pending,
    conflict_paths,
    conflict_tags,
)
from domain.paths import MISSING, get_path, parse_path  # noqa: E402

MEMORY = st.sampled_from([128, 256, 512])
TIMEOUT = st.sampled_from([10, 30])
FIELDS = ("spec.lambdaMemory", "spec.lambdaTimeout")


def _spec(memory: int, timeout: int) -> dict[str, Any]:
    return authority(lambdaMemory=memory, lambdaTimeout=timeout)


@given(
    live=st.tuples(MEMORY, TIMEOUT),
    head=st.tuples(MEMORY, TIMEOUT),
    captured=st.tuples(MEMORY, TIMEOUT),
    marked=st.lists(st.sampled_from(FIELDS), unique=True, max_size=2),
)
def test_a_head_that_would_undo_what_runs_on_a_contested_field_stays_marked(
    live: tuple[int, int], head: tuple[int, int], captured: tuple[int, int], marked: list[str]
) -> None:
    """Whatever head a capture leaves (the kept one or the re-based one), every field
    that is contested — in conflict now, or marked by an earlier capture — and where
    that head differs from what runs is marked, so the gates refuse it; and the plan
    never both keeps and re-bases."""
    pending = PendingHead(
        number=2,
        data=_spec(*head),
        tags={"idempotency": "k", **conflict_tags(1, marked)},
        description="CI: change",
        source="ci",
    )
    runs = _spec(*captured)

    plan = capture_over_pending(_spec(*live), pending, runs, 3)

    if plan.conflicts:
        assert plan.rebased is None
        result, tags = pending.data, plan.kept_tags
        assert plan.note.startswith("; pending revision 2 kept, conflict in ")
    elif plan.rebased is not None:
        result, tags = plan.rebased, plan.rebased_tags
        assert "idempotency" not in tags
        assert (tags["rebased_from"], tags["rebased_onto"], tags["rebased_source"]) == (
            "2",
            "3",
            "ci",
        )
    else:
        return  # the capture already holds the pending change: it is the new head
    contested = {c.path for c in plan.conflicts} | set(marked)
    for path in contested:
        ours, theirs = get_path(result, parse_path(path)), get_path(runs, parse_path(path))
        if ours is not MISSING and ours != theirs:
            assert path in conflict_paths(tags)
            assert path in capture_conflict("s", "u", 9, tags)
    for path in conflict_paths(tags):  # and nothing in agreement stays marked
        ours, theirs = get_path(result, parse_path(path)), get_path(runs, parse_path(path))
        assert ours != theirs
