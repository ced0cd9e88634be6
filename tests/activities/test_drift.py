"""activities/drift.py: checks against the sandbox cluster and moto; captures in the store."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.drift import DriftActivities
from activities.kube import KubeActivities
from activities.policy import load_bundle
from activities.render import find_kubectl, render_overlay
from adapters.kube import KubeClient
from adapters.watcher import content_hash
from authority.sql import SqlStore
from domain.authority import (
    Approval,
    GatesUpdate,
    PolicyBundle,
    SpaceSpec,
    UnitChange,
    UnitStateChange,
)
from domain.drift import (
    CaptureInput,
    DriftCheckInput,
    DriftCheckResult,
    DriftField,
    DriftPauseInput,
    DriftRecord,
    TagCaptureInput,
    check_row,
)
from domain.kube import KubeApplyInput
from domain.normalize import RECONCILE_ANNOTATION
from tests.conftest import Sandbox
from tests.support import FIXTURES

MW = FIXTURES / "messagewall"
SPACE = UNIT = "messagewall-dev-east"
TABLE = BUCKET = "messagewall-east-dev-123456789012"
API_HANDLER = "messagewall-east-api-handler"
PLURAL = "serverlesseventappclaims"
IGNORE = ['metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]']
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def bundle() -> PolicyBundle:
    return load_bundle(
        MW,
        ["platform/policies"],
        ["platform/crossplane/xrd"],
        commit="c0ffee",
        compositions=["platform/crossplane/composition"],
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    (obj,) = render_overlay(find_kubectl(), MW, "infra/claims/overlays/dev-east")
    return obj


def with_spec(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["spec"].update(spec)
    return out


def seed(store: SqlStore, bundle: PolicyBundle, data: dict[str, Any], **space: Any) -> None:
    """The space and revision 1 of its unit, as a publish writes them."""
    values: dict[str, Any] = {
        "name": SPACE,
        "environment": "dev",
        "drift": "capture",
        "ignore": IGNORE,
        "policy": bundle,
        **space,
    }
    spec = SpaceSpec(**values)
    store.commit(
        [
            UnitChange(
                space=SPACE,
                slug=UNIT,
                expected_version=None,
                data=data,
                description="publish",
                source="ci",
                tags={"commit": "c0ffee"},
                author="Dana Developer <dana@example.com>",
            )
        ],
        spaces=[spec],
    )


def write(store: SqlStore, data: dict[str, Any], expected: int) -> int:
    [out] = store.commit(
        [
            UnitChange(
                space=SPACE,
                slug=UNIT,
                expected_version=expected,
                data=data,
                description="publish",
                source="ci",
            )
        ]
    )
    return out.revision


class Cluster:
    """The sandbox with the unit's claim applied and reconciled."""

    def __init__(self, sandbox: Sandbox, bundle: PolicyBundle) -> None:
        self.sandbox = sandbox
        self.xrds = [x for docs in bundle.xrds.values() for x in docs]
        self.compositions = [c for docs in bundle.compositions.values() for c in docs]
        self.kube = KubeActivities(sandbox.kube)

    def apply(self, data: dict[str, Any], *, reconciled: bool = True) -> int:
        applied = ActivityEnvironment().run(
            self.kube.apply,
            KubeApplyInput(data=data, xrds=self.xrds, compositions=self.compositions),
        )
        if reconciled:
            self.sandbox.crossplane.wait_reconciled(
                PLURAL, "default", data["metadata"]["name"], applied.generation
            )
        return applied.generation

    def patch(self, patch: dict[str, Any], manager: str = "kubectl-patch") -> dict[str, Any]:
        body: dict[str, Any] = client.CustomObjectsApi(
            self.sandbox.kube.api
        ).patch_namespaced_custom_object(
            "messagewall.demo",
            "v1alpha1",
            "default",
            PLURAL,
            UNIT,
            patch,
            field_manager=manager,
            _content_type="application/merge-patch+json",
        )
        return body


@pytest.fixture
def cluster(
    store: SqlStore, sandbox: Sandbox, bundle: PolicyBundle, rendered: dict[str, Any]
) -> Cluster:
    """Revision 1 published, applied, Ready and live."""
    seed(store, bundle, rendered)
    c = Cluster(sandbox, bundle)
    c.apply(rendered)
    store.record_applied(SPACE, UNIT, 1, live=True)
    return c


@pytest.fixture
def drift(store: SqlStore, sandbox: Sandbox) -> DriftActivities:
    return DriftActivities(store, sandbox.kube)


@pytest.fixture
def offline(store: SqlStore, tmp_path: Path) -> DriftActivities:
    """For what needs the authority only: a cluster that is never reached."""
    return DriftActivities(store, KubeClient(str(tmp_path / "no-kubeconfig")))


def check(drift: DriftActivities, sweep_id: str = "", *, record: bool = False) -> DriftCheckResult:
    result: DriftCheckResult = ActivityEnvironment().run(
        drift.check, DriftCheckInput(space=SPACE, unit=UNIT, sweep_id=sweep_id, record=record)
    )
    return result


def row(result: DriftCheckResult, sweep_id: str = "") -> DriftRecord:
    """The row the drift loop records for what the check saw."""
    assert result.checked_at is not None
    return check_row(SPACE, UNIT, sweep_id, result, result.checked_at)


# ---- check ----------------------------------------------------------------------------------


@SQLITE_ONLY
def test_a_claim_as_applied_is_in_sync(cluster: Cluster, drift: DriftActivities, store: SqlStore):
    result = check(drift, sweep_id="sweep-1")

    assert result.state == "in-sync"
    assert (result.fields, result.claim_data, result.fingerprint) == ([], None, "")
    assert (result.live_revision, result.expected_version, result.mode) == (1, 1, "capture")
    assert result.interval_seconds == 300
    # Read-only: the loop records what the check saw.
    assert store.list_drift(SPACE, UNIT) == []
    record = row(result, "sweep-1")
    assert (record.state, record.revision, record.sweep_id) == ("in-sync", 1, "sweep-1")


@SQLITE_ONLY
def test_a_check_for_a_loop_run_started_before_one_owner_writes_what_it_saw(
    cluster: Cluster, drift: DriftActivities, store: SqlStore
):
    result = check(drift, sweep_id="sweep-1", record=True)

    [record] = store.list_drift(SPACE, UNIT)
    assert record == row(result, "sweep-1")
    assert (record.state, record.revision, record.sweep_id) == ("in-sync", 1, "sweep-1")


@SQLITE_ONLY
def test_a_live_edit_is_drift_named_with_its_manager(
    cluster: Cluster, drift: DriftActivities, store: SqlStore, rendered: dict[str, Any]
):
    cluster.patch({"spec": {"lambdaMemory": 512}})

    result = check(drift)

    assert result.state == "drifted"
    assert result.fields == [
        DriftField(
            path="spec.lambdaMemory",
            authority=128,
            live=512,
            manager="kubectl-patch",
            source="kubernetes-live",
            capturable=True,
        )
    ]
    assert result.claim_data == with_spec(rendered, lambdaMemory=512)
    assert result.fingerprint
    assert store.list_drift(SPACE, UNIT) == []
    # Asked to write by an old loop run: in a capture space the capture writes the drift
    # record ("captured"), so a sweep never counts the unit as merely drifted in between.
    check(drift, record=True)
    assert store.list_drift(SPACE, UNIT) == []
    # Seen twice, it is the same drift.
    assert check(drift).fingerprint == result.fingerprint


@SQLITE_ONLY
def test_edits_made_in_aws_are_capturable_drift_of_claim_fields(
    cluster: Cluster, drift: DriftActivities, sandbox: Sandbox, rendered: dict[str, Any]
):
    sandbox.aws.lambda_().update_function_configuration(FunctionName=API_HANDLER, Timeout=45)
    events = sandbox.aws.events()
    events.put_rule(
        Name="messagewall-east-message-posted",
        EventPattern='{"source": ["messagewall.other"], "detail-type": ["MessagePosted"]}',
    )
    sandbox.crossplane.observe_now()  # the provider's poll: AWS into status.atProvider

    result = check(drift)

    assert result.state == "drifted"
    assert sorted(result.fields, key=lambda f: f.path) == [
        DriftField(
            path="spec.eventSource",
            authority="messagewall.api-handler",
            live="messagewall.other",
            manager="aws (cloudwatchevents messagewall-east-message-posted)",
            source="aws-live",
            capturable=True,
        ),
        DriftField(
            path="spec.lambdaTimeout",
            authority=10,
            live=45,
            manager=f"aws (lambda {API_HANDLER})",
            source="aws-live",
            capturable=True,
        ),
    ]
    assert result.claim_data == with_spec(
        rendered, lambdaTimeout=45, eventSource="messagewall.other"
    )


@SQLITE_ONLY
def test_a_missing_table_is_drift_no_claim_field_can_capture(
    cluster: Cluster, drift: DriftActivities, sandbox: Sandbox, store: SqlStore
):
    sandbox.aws.dynamodb().delete_table(TableName=TABLE)
    sandbox.crossplane.observe_now()

    result = check(drift)

    assert result.state == "drifted"
    assert result.fields == [
        DriftField(
            path=f'managed["Table/{TABLE}"]',
            authority="present",
            live="missing in AWS",
            manager="aws",
            source="aws-live",
            capturable=False,
        )
    ]
    assert result.claim_data is None
    assert row(result).state == "drifted"


@SQLITE_ONLY
def test_a_field_no_patch_maps_is_drift_of_the_managed_resource_never_captured(
    cluster: Cluster, drift: DriftActivities, sandbox: Sandbox, store: SqlStore
):
    """The runtime is the Composition's (its base), not the claim's: changed in AWS it is
    reported against the Lambda's managed resource and nothing is captured into the claim."""
    sandbox.aws.lambda_().update_function_configuration(
        FunctionName=API_HANDLER, Runtime="python3.13"
    )
    sandbox.crossplane.observe_now()

    result = check(drift)

    assert result.state == "drifted"
    assert result.fields == [
        DriftField(
            path=f'managed["Function/{API_HANDLER}"].spec.forProvider.runtime',
            authority="python3.12",
            live="python3.13",
            manager=f"aws (lambda {API_HANDLER})",
            source="aws-live",
            capturable=False,
        )
    ]
    assert result.claim_data is None


@SQLITE_ONLY
def test_an_apply_in_flight_is_not_drift(
    cluster: Cluster, drift: DriftActivities, store: SqlStore, rendered: dict[str, Any]
):
    """Revision 2 reached the cluster but is not Ready yet: live is still revision 1."""
    newer = with_spec(rendered, lambdaMemory=256)
    assert write(store, newer, 1) == 2
    cluster.apply(newer, reconciled=False)
    store.record_applied(SPACE, UNIT, 2, live=False)

    result = check(drift)

    assert result.state == "applying"
    assert result.fields == []
    record = row(result)
    assert (record.state, record.message) == ("unknown", "applying")

    # An edit on top of the apply in flight is drift again.
    cluster.patch({"spec": {"lambdaTimeout": 30}})
    edited = check(drift)
    assert edited.state == "drifted"
    assert {f.path for f in edited.fields} == {"spec.lambdaMemory", "spec.lambdaTimeout"}


def test_an_apply_whose_record_was_lost_is_not_drift(
    cluster: Cluster, drift: DriftActivities, store: SqlStore, rendered: dict[str, Any]
):
    """The worker died after the apply reached the cluster, before it recorded it: the
    cluster runs exactly the head, which may run. Not drift, so not captured a second
    time (the crash test's stray capture)."""
    newer = with_spec(rendered, lambdaMemory=256)
    assert write(store, newer, 1) == 2
    cluster.apply(newer, reconciled=False)  # no record_applied

    assert check(drift).state == "applying"


def test_a_gated_head_in_the_cluster_without_its_approval_is_drift(
    cluster: Cluster, drift: DriftActivities, store: SqlStore, rendered: dict[str, Any]
):
    """The same picture with a required gate nobody passed: someone bypassed the gate,
    and that shows as drift until the head is approved."""
    store.set_space_gates(GatesUpdate(space=SPACE, approval="required", by="admin"))
    newer = with_spec(rendered, lambdaMemory=256)
    assert write(store, newer, 1) == 2
    cluster.apply(newer, reconciled=False)

    assert check(drift).state == "drifted"

    store.record_approval(
        SPACE, UNIT, 2, Approval(by="olu@example.com", at=datetime.now(UTC), gate="required")
    )
    assert check(drift).state == "applying"


@SQLITE_ONLY
def test_aws_is_not_compared_before_crossplane_reconciled_the_generation(
    cluster: Cluster, drift: DriftActivities, store: SqlStore, sandbox: Sandbox, rendered
):
    sandbox.crossplane.stop()  # the new generation stays unreconciled
    newer = with_spec(rendered, lambdaMemory=512)
    assert write(store, newer, 1) == 2
    cluster.apply(newer, reconciled=False)
    store.record_applied(SPACE, UNIT, 2, live=True)
    config = sandbox.aws.lambda_().get_function_configuration(FunctionName=API_HANDLER)
    assert config["MemorySize"] == 128  # AWS lags behind the claim

    result = check(drift)

    assert (result.state, result.fields) == ("in-sync", [])


# ---- check without the cluster --------------------------------------------------------------


def test_a_unit_never_applied_is_not_checked_against_the_cluster(
    offline: DriftActivities, store: SqlStore, bundle: PolicyBundle, rendered: dict[str, Any]
):
    seed(store, bundle, rendered, drift="report", drift_interval_seconds=600)

    result = check(offline)

    assert (result.state, result.live_revision, result.mode) == ("not-applied", None, "report")
    assert result.interval_seconds == 600


@pytest.mark.parametrize("state", ["orphaned", "deleted"])
def test_an_inactive_unit_ends_its_checks_and_records_nothing(
    offline: DriftActivities,
    store: SqlStore,
    bundle: PolicyBundle,
    rendered: dict[str, Any],
    state: str,
):
    seed(store, bundle, rendered)
    store.record_applied(SPACE, UNIT, 1, live=True)
    store.commit([], states=[UnitStateChange(space=SPACE, slug=UNIT, state=state)])  # type: ignore[arg-type]

    assert check(offline, record=True).state == "inactive"
    assert store.list_drift(SPACE, UNIT) == []


def test_an_unknown_unit_is_a_decided_not_found(offline: DriftActivities):
    with pytest.raises(ApplicationError) as err:
        check(offline)

    assert err.value.type == "NotFound"
    assert err.value.non_retryable


# ---- capture and classify -------------------------------------------------------------------


def capture_input(data: dict[str, Any], **over: Any) -> CaptureInput:
    values: dict[str, Any] = {
        "space": SPACE,
        "unit": UNIT,
        "expected_version": 1,
        "data": data,
        "source": "drift-capture",
        "description": "drift-capture: spec.lambdaMemory=512 (kubectl-patch)",
        "tags": {
            "capture_time": "2024-05-01T10:00:00+00:00",
            "source": "kubernetes-live",
            "workflow_id": f"drift:{SPACE}:{UNIT}",
            "fields": "spec.lambdaMemory",
        },
        "author": "tributary drift capture",
        "idempotency_key": f"drift:{SPACE}:{UNIT}/spec.lambdaMemory=512",
        "fields": [
            DriftField(path="spec.lambdaMemory", authority=128, live=512, manager="kubectl-patch")
        ],
        "sweep_id": "sweep-9",
    }
    values.update(over)
    return CaptureInput(**values)


@pytest.fixture
def applied(store: SqlStore, bundle: PolicyBundle, rendered: dict[str, Any]) -> dict[str, Any]:
    seed(store, bundle, rendered)
    store.record_applied(SPACE, UNIT, 1, live=True)
    return rendered


def test_capture_writes_head_and_live_but_not_last_applied(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any], bundle: PolicyBundle
):
    data = with_spec(applied, lambdaMemory=512)

    result = ActivityEnvironment().run(offline.capture, capture_input(data))

    assert (result.revision, result.created) == (2, True)
    unit = store.get_unit(SPACE, UNIT)
    assert unit is not None
    assert (unit.head_revision, unit.live_revision, unit.last_applied_revision) == (2, 2, 1)
    rev = store.get_revision(SPACE, UNIT, 2)
    assert rev is not None
    assert rev.data == data
    assert (rev.source, rev.author) == ("drift-capture", "tributary drift capture")
    assert rev.tags["source"] == "kubernetes-live"
    assert rev.description == "drift-capture: spec.lambdaMemory=512 (kubectl-patch)"
    assert (rev.policy.violations, rev.policy.policy_digest) == ([], bundle.digest)
    [record] = store.list_drift(SPACE, UNIT)
    assert (record.state, record.revision, record.sweep_id) == ("captured", 2, "sweep-9")
    assert [f.path for f in record.fields] == ["spec.lambdaMemory"]


def test_a_retried_capture_writes_one_revision(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    inp = capture_input(with_spec(applied, lambdaMemory=512))
    first = ActivityEnvironment().run(offline.capture, inp)

    again = ActivityEnvironment().run(offline.capture, inp)

    assert (again.revision, again.created) == (first.revision, False)
    assert [r.number for r in store.list_revisions(SPACE, UNIT)] == [1, 2]


def test_what_runs_is_captured_even_when_it_breaks_the_schema(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    data = with_spec(applied, lambdaMemory=64)  # the XRD's minimum is 128

    result = ActivityEnvironment().run(offline.capture, capture_input(data))

    rev = store.get_revision(SPACE, UNIT, result.revision)
    assert rev is not None
    assert rev.data["spec"]["lambdaMemory"] == 64
    assert any("lambdaMemory" in v for v in rev.policy.violations), rev.policy


def test_classify_relabels_a_capture_and_keeps_its_data_and_tags(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    data = with_spec(applied, lambdaMemory=512)
    ActivityEnvironment().run(offline.capture, capture_input(data))

    result = ActivityEnvironment().run(
        offline.tag_capture,
        TagCaptureInput(
            space=SPACE,
            unit=UNIT,
            revision=2,
            source="break-glass",
            tags={"tag": "break-glass", "incident": "INC-7"},
        ),
    )

    assert result.revision == 2
    rev = store.get_revision(SPACE, UNIT, 2)
    assert rev is not None
    assert (rev.source, rev.data) == ("break-glass", data)
    assert rev.tags["incident"] == "INC-7"
    assert rev.tags["tag"] == "break-glass"
    assert rev.tags["source"] == "kubernetes-live"  # the capture's own tags stay
    assert [r.number for r in store.list_revisions(SPACE, UNIT)] == [1, 2]


def test_classify_refuses_a_revision_that_is_not_a_capture(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(
            offline.tag_capture,
            TagCaptureInput(
                space=SPACE, unit=UNIT, revision=1, source="break-glass", tags={"tag": "x"}
            ),
        )

    assert err.value.type == "NotFound"
    rev = store.get_revision(SPACE, UNIT, 1)
    assert rev is not None
    assert (rev.source, rev.tags) == ("ci", {"commit": "c0ffee"})


# ---- ignore on every side (issue 9, defect 5) -----------------------------------------------


@SQLITE_ONLY
def test_an_ignored_field_is_not_compared_in_aws_with_its_default(
    store: SqlStore, sandbox: Sandbox, bundle: PolicyBundle, rendered: dict[str, Any]
):
    """Ignored paths used to be dropped before XRD defaults went in, so the AWS observer
    compared the ignored lambdaMemory (256 in AWS) with its default (128): drift every
    interval."""
    data = with_spec(rendered, lambdaMemory=256)
    seed(store, bundle, data, ignore=[*IGNORE, "spec.lambdaMemory"])
    Cluster(sandbox, bundle).apply(data)
    store.record_applied(SPACE, UNIT, 1, live=True)
    drift = DriftActivities(store, sandbox.kube)

    assert check(drift).state == "in-sync"

    # …and a real AWS-side edit of an ignored field is no drift either.
    sandbox.aws.lambda_().update_function_configuration(FunctionName=API_HANDLER, MemorySize=512)
    sandbox.crossplane.observe_now()
    assert check(drift).state == "in-sync"
    # A field that is not ignored still is.
    sandbox.aws.lambda_().update_function_configuration(FunctionName=API_HANDLER, Timeout=45)
    sandbox.crossplane.observe_now()
    result = check(drift)
    assert [(f.path, f.live) for f in result.fields] == [("spec.lambdaTimeout", 45)]


# ---- capture over a pending head (issue 9, defect 2) -----------------------------------------


def pending(store: SqlStore, data: dict[str, Any]) -> int:
    """A change published after revision 1 went live, waiting at its gate."""
    unit = store.get_unit(SPACE, UNIT)
    assert unit is not None
    return write(store, data, unit.version)


def test_a_capture_over_a_pending_head_re_bases_the_pending_change(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    assert pending(store, with_spec(applied, lambdaTimeout=30)) == 2
    captured = with_spec(applied, lambdaMemory=512)  # what runs: revision 1 + the live edit

    result = ActivityEnvironment().run(
        offline.capture, capture_input(captured, expected_version=2, live_revision=1)
    )

    # The capture records what runs and becomes live; the pending change is not lost:
    # it is re-based onto the capture as the new head, with no approvals.
    assert (result.revision, result.head_revision, result.rebased_revision) == (3, 4, 4)
    assert result.conflicts == []
    unit = store.get_unit(SPACE, UNIT)
    assert unit is not None
    assert (unit.head_revision, unit.live_revision, unit.last_applied_revision) == (4, 3, 1)
    capture = store.get_revision(SPACE, UNIT, 3)
    rebased = store.get_revision(SPACE, UNIT, 4)
    assert capture is not None
    assert rebased is not None
    assert (capture.data, capture.source) == (captured, "drift-capture")
    assert rebased.data == with_spec(applied, lambdaMemory=512, lambdaTimeout=30)
    # Not Git's render (a publish must never take it as its base), and not approved.
    assert (rebased.source, rebased.approvals) == ("rebase", [])
    assert rebased.tags["rebased_source"] == "ci"
    assert rebased.tags["rebased_from"] == "2"
    assert rebased.tags["rebased_onto"] == "3"
    [record] = store.list_drift(SPACE, UNIT)
    assert record.last_drift is not None
    assert (record.last_drift.revision, record.last_drift.rebased_revision) == (3, 4)

    # A retry of the same capture writes nothing more.
    again = ActivityEnvironment().run(
        offline.capture, capture_input(captured, expected_version=2, live_revision=1)
    )
    assert (again.revision, again.created, again.rebased_revision) == (3, False, 4)
    assert [r.number for r in store.list_revisions(SPACE, UNIT)] == [1, 2, 3, 4]


def test_a_capture_that_touches_the_pending_field_records_a_conflict_and_keeps_the_head(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    assert pending(store, with_spec(applied, lambdaMemory=256)) == 2
    captured = with_spec(applied, lambdaMemory=512)

    result = ActivityEnvironment().run(
        offline.capture, capture_input(captured, expected_version=2, live_revision=1)
    )

    assert (result.revision, result.head_revision, result.rebased_revision) == (3, 2, None)
    assert [(c.path, c.base, c.ours, c.theirs) for c in result.conflicts] == [
        ("spec.lambdaMemory", 128, 256, 512)
    ]
    unit = store.get_unit(SPACE, UNIT)
    assert unit is not None
    assert (unit.head_revision, unit.live_revision) == (2, 3)
    assert "conflict in spec.lambdaMemory" in unit.last_change_description
    [record] = store.list_drift(SPACE, UNIT)
    assert record.last_drift is not None
    assert [c.path for c in record.last_drift.conflicts] == ["spec.lambdaMemory"]
    assert record.last_drift.head_revision == 2


def test_a_capture_that_already_holds_the_pending_change_becomes_the_head(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    assert pending(store, with_spec(applied, lambdaMemory=512)) == 2

    result = ActivityEnvironment().run(
        offline.capture,
        capture_input(with_spec(applied, lambdaMemory=512), expected_version=2, live_revision=1),
    )

    assert (result.revision, result.head_revision, result.rebased_revision) == (3, 3, None)


# ---- a capture racing a publish or `set` (issue 9, defect 4) --------------------------------


def test_a_capture_planned_before_a_publish_is_re_based_not_stale(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    """The check read version 1; a publish wrote revision 2 before the capture landed.
    Live is still revision 1, so the capture still says what runs."""
    pending(store, with_spec(applied, lambdaTimeout=30))

    result = ActivityEnvironment().run(
        offline.capture,
        capture_input(with_spec(applied, lambdaMemory=512), expected_version=1, live_revision=1),
    )

    assert (result.revision, result.head_revision) == (3, 4)


def test_a_capture_planned_on_a_live_revision_that_moved_is_stale(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    pending(store, with_spec(applied, lambdaTimeout=30))
    store.record_applied(SPACE, UNIT, 2, live=True)  # an apply finished meanwhile

    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(
            offline.capture,
            capture_input(
                with_spec(applied, lambdaMemory=512), expected_version=1, live_revision=1
            ),
        )

    assert (err.value.type, err.value.non_retryable) == ("StaleVersion", True)
    assert [r.number for r in store.list_revisions(SPACE, UNIT)] == [1, 2]


def test_the_same_drift_coming_back_after_something_else_ran_is_captured_again(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    inp = capture_input(with_spec(applied, lambdaMemory=512))
    assert ActivityEnvironment().run(offline.capture, inp).revision == 2
    back = pending(store, applied)  # a publish puts 128 back, and it is applied
    store.record_applied(SPACE, UNIT, back, live=True)
    unit = store.get_unit(SPACE, UNIT)
    assert unit is not None

    again = ActivityEnvironment().run(
        offline.capture, inp.model_copy(update={"expected_version": unit.version})
    )

    assert (again.revision, again.created) == (4, True)


# ---- pause (issue 9, defect 4) ---------------------------------------------------------------


def test_a_paused_unit_is_not_checked_unless_forced(
    offline: DriftActivities, store: SqlStore, applied: dict[str, Any]
):
    ActivityEnvironment().run(
        offline.set_paused, DriftPauseInput(space=SPACE, unit=UNIT, paused=True)
    )

    result = check(offline)  # the cluster is never reached

    assert (result.state, result.paused) == ("paused", True)
    [record] = store.list_drift(SPACE, UNIT)
    assert (record.paused, record.state) == (True, "paused")
    ActivityEnvironment().run(
        offline.set_paused, DriftPauseInput(space=SPACE, unit=UNIT, paused=False)
    )
    [record] = store.list_drift(SPACE, UNIT)
    assert not record.paused


def test_a_reconcile_request_is_no_content_change_for_the_watch(rendered: dict[str, Any]):
    """A revert annotates the Claim to make Crossplane reconcile; the watch must not
    take that for an edit and wake the drift loop."""
    annotated = copy.deepcopy(rendered)
    annotated["metadata"].setdefault("annotations", {})[RECONCILE_ANNOTATION] = "t1"

    assert content_hash(annotated) == content_hash(rendered)
