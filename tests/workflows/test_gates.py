"""A space's gates live in the authority (issue 10, hole 4): publish holds a commit that
would loosen them, `space set` changes them, and the apply enforces them on the cluster."""

from __future__ import annotations

import uuid

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from domain.authority import GatesUpdate, SpaceSpec, UnitChange
from domain.change import SpaceGatesInput, SpaceGatesResult
from domain.gates import OWNER_LABEL
from tests.conftest import Sandbox
from tests.support import AuthoringRepo, set_patch_value
from tests.workflows.helpers import actions, publish, settle, snapshot
from workflows.change import SpaceGatesWorkflow

PROD = "messagewall-prod-east"
DEV = "messagewall-dev-east"
PROD_EAST = "infra/claims/overlays/prod-east/kustomization.yaml"
DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"
CLAIM = "messagewall.demo/ServerlessEventAppClaim"
CRB = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: dev-is-cluster-admin
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: Group, name: developers, apiGroup: rbac.authorization.k8s.io}]
"""

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


async def gates(
    env: WorkflowEnvironment, worker: Worker, space: str, update: GatesUpdate | None = None
) -> SpaceGatesResult:
    result: SpaceGatesResult = await env.client.execute_workflow(
        SpaceGatesWorkflow.run,
        SpaceGatesInput(space=space, update=update),
        id=f"space-gates-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )
    return result


# ---- publish: the commit never holds the gates ---------------------------------------------


async def test_first_publish_seeds_the_gates(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=[PROD])
    shown = await gates(env, worker, PROD)
    assert shown.gates.model_dump() == {
        "approval": "required",
        "kinds": [CLAIM],
        "namespaces": ["default"],
        "destination": "",
        "base": "",
        "actuator": "kubernetes",
        "argocd_app": "",
        "set_by": "",
        "set_at": None,
        "asserted": "",
    }


async def test_a_commit_setting_prod_to_approval_none_is_held(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=[PROD])
    messagewall.edit(
        "tributary.yaml",
        lambda t: t.replace(
            "environment: prod\n    approval: required", "environment: prod\n    approval: none", 1
        ),
    )
    messagewall.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "1024"))
    messagewall.commit("prod: no more approvals")
    before = snapshot(store)

    result = await publish(env, worker, messagewall, spaces=[PROD])

    [space] = result.spaces
    assert (space.blocked, space.written) == ("gates", False)
    assert actions(result) == {PROD: ("held", 1)}
    assert space.gate_reasons == [
        "tributary.yaml: spaces.messagewall-prod-east.approval: none is weaker than the "
        "authority's required; only `tributary space set messagewall-prod-east --approval none` "
        "can loosen a gate"
    ]
    assert space.units[0].reason == space.gate_reasons[0]
    assert snapshot(store) == before
    assert store.get_space(PROD).approval == "required"  # type: ignore[union-attr]


async def test_after_space_set_the_same_commit_publishes(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=[PROD])
    messagewall.edit(
        "tributary.yaml",
        lambda t: t.replace(
            "environment: prod\n    approval: required", "environment: prod\n    approval: none", 1
        ),
    )
    messagewall.commit("prod: no more approvals")
    changed = await gates(
        env,
        worker,
        PROD,
        GatesUpdate(space=PROD, approval="none", by="olu", asserted="env:TRIBUTARY_ACTOR"),
    )
    assert changed.changed == ["approval"]
    assert (changed.gates.set_by, changed.gates.asserted) == ("olu", "env:TRIBUTARY_ACTOR")

    result = await publish(env, worker, messagewall, spaces=[PROD])

    assert result.spaces[0].blocked == ""
    assert result.spaces[0].gate_reasons == []


async def test_a_stricter_approval_in_git_is_noted_not_applied(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=[DEV])
    messagewall.edit(
        "tributary.yaml",
        lambda t: t.replace(
            "environment: dev\n    approval: none", "environment: dev\n    approval: required", 1
        ),
    )
    messagewall.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "256"))
    messagewall.commit("dev: approvals please")

    result = await publish(env, worker, messagewall, spaces=[DEV])

    [space] = result.spaces
    assert actions(result) == {DEV: ("published", 2)}
    assert space.gate_notes == [
        "tributary.yaml: spaces.messagewall-dev-east.approval: required is stricter than the "
        "authority's none and was not applied: the authority decides gates; run "
        "`tributary space set messagewall-dev-east --approval required`"
    ]
    assert store.get_space(DEV).approval == "none"  # type: ignore[union-attr]


async def test_a_commit_adding_a_cluster_role_binding_is_held(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=[DEV])
    messagewall.write("infra/claims/overlays/dev-east/crb.yaml", CRB)
    messagewall.edit(
        DEV_EAST, lambda t: t.replace("  - ../../base\n", "  - ../../base\n  - crb.yaml\n")
    )
    messagewall.commit("dev: a little more access")
    before = snapshot(store)

    result = await publish(env, worker, messagewall, spaces=[DEV])

    [space] = result.spaces
    assert space.blocked == "gates"
    assert actions(result)["dev-is-cluster-admin"] == ("held", None)
    assert space.gate_reasons == [
        "ClusterRoleBinding/dev-is-cluster-admin: kind "
        "rbac.authorization.k8s.io/ClusterRoleBinding is not allowed in space "
        "messagewall-dev-east (allowed: messagewall.demo/ServerlessEventAppClaim; "
        "`tributary space set messagewall-dev-east --allow-kind "
        "rbac.authorization.k8s.io/ClusterRoleBinding …` allows it)"
    ]
    assert snapshot(store) == before


async def test_a_new_space_cannot_be_created_with_a_cluster_role_binding(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    """The creating commit seeds the gates, but kinds only from its XRDs: the space is
    created held, with no units, so an admin can decide (`space set --allow-kind`)."""
    messagewall.write("infra/claims/overlays/dev-east/crb.yaml", CRB)
    messagewall.edit(
        DEV_EAST, lambda t: t.replace("  - ../../base\n", "  - ../../base\n  - crb.yaml\n")
    )
    messagewall.commit("dev: born with cluster-admin")

    result = await publish(env, worker, messagewall, spaces=[DEV])

    [space] = result.spaces
    assert (space.blocked, space.written) == ("gates", False)
    assert actions(result)["dev-is-cluster-admin"] == ("held", None)
    assert store.list_units(DEV) == []
    assert store.get_space(DEV).kinds == [CLAIM]  # type: ignore[union-attr]

    await gates(
        env,
        worker,
        DEV,
        GatesUpdate(
            space=DEV,
            kinds=[CLAIM, "rbac.authorization.k8s.io/ClusterRoleBinding"],
            by="admin",
        ),
    )
    again = await publish(env, worker, messagewall, spaces=[DEV])
    assert again.spaces[0].blocked == ""
    assert actions(again)["dev-is-cluster-admin"][0] == "published"


async def test_a_commit_changing_the_sync_base_is_held(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, worker, messagewall, spaces=[DEV])
    messagewall.edit("tributary.yaml", lambda t: t + "sync:\n  base: attacker\n")
    messagewall.commit("sync elsewhere")

    result = await publish(env, worker, messagewall, spaces=[DEV])

    assert result.spaces[0].blocked == "gates"
    assert (
        result.spaces[0]
        .gate_reasons[0]
        .startswith(
            "tributary.yaml: sync.base: attacker differs from the authority's (default branch)"
        )
    )
    assert store.get_space(DEV).sync.base == ""  # type: ignore[union-attr]


async def test_space_set_of_an_unknown_space_fails_and_writes_nothing(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore
) -> None:
    from temporalio.client import WorkflowFailureError

    from client.contract import error_info

    with pytest.raises(WorkflowFailureError) as caught:
        await gates(env, worker, "nope", GatesUpdate(space="nope", approval="none", by="olu"))
    info = error_info(caught.value)
    assert (info.type, info.message) == ("NotFound", "space 'nope' does not exist in the authority")
    assert store.list_spaces() == []


# ---- apply: the cluster side ---------------------------------------------------------------


def live_claim(sandbox: Sandbox, name: str) -> dict:
    res = sandbox.kube.resource("messagewall.demo/v1alpha1", "ServerlessEventAppClaim")
    assert res is not None
    found = sandbox.kube.get(res, name, "default")
    assert found is not None
    return found


@SQLITE_ONLY
async def test_apply_labels_the_object_and_refuses_another_spaces_object(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await publish(env, cluster_worker, messagewall, spaces=[DEV])
    assert (await settle(env, cluster_worker, DEV, DEV, 1)).state == "ready"
    live = live_claim(sandbox, DEV)
    assert live["metadata"]["labels"][OWNER_LABEL] == DEV
    # Another space, allowed the same kind and namespace, carries the same object.
    dev = store.get_space(DEV)
    assert dev is not None
    rev = store.get_revision(DEV, DEV, 1)
    assert rev is not None
    taken = {**rev.data, "spec": {**rev.data["spec"], "lambdaMemory": 3008}}
    store.commit(
        [
            UnitChange(
                space="intruder",
                slug=DEV,
                expected_version=None,
                data=taken,
                description="take it",
                source="operator",
            )
        ],
        spaces=[
            SpaceSpec(
                name="intruder",
                environment="dev",
                kinds=["*/*"],
                namespaces=["*"],
                policy=dev.policy,
            )
        ],
    )

    outcome = await settle(env, cluster_worker, "intruder", DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "denied")
    assert outcome.message == (
        f"ServerlessEventAppClaim/{DEV} belongs to space {DEV} (label {OWNER_LABEL}); "
        "space intruder may not apply over it"
    )
    live = live_claim(sandbox, DEV)
    assert live["spec"]["lambdaMemory"] == 128
    assert live["metadata"]["labels"][OWNER_LABEL] == DEV

    deleted = await settle(env, cluster_worker, "intruder", DEV, 1, action="delete")

    assert (deleted.state, deleted.reason) == ("failed", "denied")
    assert deleted.message.endswith("space intruder may not delete it")
    assert live_claim(sandbox, DEV)["metadata"]["labels"][OWNER_LABEL] == DEV


@SQLITE_ONLY
async def test_apply_refuses_a_kind_or_namespace_the_space_does_not_allow(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    await publish(env, cluster_worker, messagewall, spaces=[DEV])
    store.set_space_gates(GatesUpdate(space=DEV, kinds=["/ConfigMap"], by="olu"))

    outcome = await settle(env, cluster_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "denied")
    assert outcome.message.startswith(
        f"ServerlessEventAppClaim/{DEV}: kind {CLAIM} is not allowed in space {DEV}"
    )
    res = sandbox.kube.resource("messagewall.demo/v1alpha1", "ServerlessEventAppClaim")
    assert res is None or sandbox.kube.get(res, DEV, "default") is None

    store.set_space_gates(GatesUpdate(space=DEV, kinds=[CLAIM], namespaces=["team-a"], by="olu"))
    outcome = await settle(env, cluster_worker, DEV, DEV, 1)
    assert (outcome.state, outcome.reason) == ("failed", "denied")
    assert "namespace default is not allowed" in outcome.message

    store.set_space_gates(
        GatesUpdate(space=DEV, namespaces=["default"], destination="other-cluster", by="olu")
    )
    outcome = await settle(env, cluster_worker, DEV, DEV, 1)
    assert (outcome.state, outcome.reason) == ("failed", "denied")
    assert outcome.message.startswith(
        f"space {DEV} applies to destination other-cluster, but this worker's cluster is "
    )
    context = sandbox.kube.context_name()
    assert context
    store.set_space_gates(GatesUpdate(space=DEV, destination=context, by="olu"))
    assert (await settle(env, cluster_worker, DEV, DEV, 1)).state == "ready"
