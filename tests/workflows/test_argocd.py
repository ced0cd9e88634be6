"""Actuator argocd (issue 12): a space whose gates name an Argo CD Application applies by
recording the live revision and syncing that Application (a contract fake of Argo CD's
REST API, tests/fakes/argocd.py), whose CMP renders the live revisions into the cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.authority import AuthorityActivities
from activities.kube import XRD_API_VERSION, XRD_KIND, _installable
from adapters.argocd import ArgoCDClient
from adapters.source import SourceCache
from authority.sql import SqlStore
from client.contract import error_info
from domain.authority import GatesUpdate
from domain.change import LiveObjectsInput
from domain.gates import OWNER_LABEL
from starter.applying import exit_code
from tests.conftest import Sandbox
from tests.fakes.argocd import FakeApp, FakeArgoCD
from tests.support import AuthoringRepo
from tests.workflows.helpers import publish, running_worker, set_gates, settle_slow

DEV = "messagewall-dev-east"
APP = "messagewall-dev-east"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.worker-argocd-token.sig"
CLAIM_API = "messagewall.demo/v1alpha1"
CLAIM_KIND = "ServerlessEventAppClaim"

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    with FakeArgoCD(TOKEN) as fake:
        yield fake


@pytest.fixture
async def argo_worker(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
    argo: FakeArgoCD,
) -> AsyncIterator[Worker]:
    client = ArgoCDClient(argo.url, TOKEN)
    async with running_worker(env, store, cache, executor, sandbox, argocd=client) as w:
        yield w
    client.close()


def argo_cd_applies_the_cmp_output(store: SqlStore, sandbox: Sandbox, argo: FakeArgoCD) -> list:
    """What Argo CD does on a sync: render the plugin (the live objects, read as the
    render command reads them) and apply the stream to the cluster. Records what it saw."""
    seen: list[dict[str, Any]] = []

    def on_sync(app: FakeApp, body: dict[str, Any]) -> None:
        space = app.name
        rendered = AuthorityActivities(store).live_objects(LiveObjectsInput(space=space))
        unit = store.get_unit(space, space)
        seen.append({"live_at_sync": unit.live_revision if unit else None, "body": body})
        for obj in rendered.objects:
            res = sandbox.kube.resource(obj["apiVersion"], obj["kind"])
            assert res is not None
            sandbox.kube.apply(res, obj)

    argo.on_sync = on_sync
    return seen


def install_xrds(store: SqlStore, sandbox: Sandbox, space: str) -> None:
    """The platform team's Crossplane setup, which Argo CD expects to find."""
    record = store.get_space(space)
    assert record is not None
    xrd_res = sandbox.kube.resource(XRD_API_VERSION, XRD_KIND)
    assert xrd_res is not None
    for docs in record.policy.xrds.values():
        for xrd in docs:
            sandbox.kube.apply(xrd_res, _installable(xrd), force=False)
    deadline = time.monotonic() + 60
    while sandbox.kube.resource(CLAIM_API, CLAIM_KIND) is None:
        assert time.monotonic() < deadline, "the claim kind is not served"
        time.sleep(0.2)


async def test_a_space_with_actuator_argocd_applies_through_argo_cd(
    env: WorkflowEnvironment,
    argo_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    argo: FakeArgoCD,
    messagewall: AuthoringRepo,
) -> None:
    await publish(env, argo_worker, messagewall, spaces=[DEV])
    shown = await set_gates(
        env,
        argo_worker,
        GatesUpdate(space=DEV, actuator="argocd", argocd_app=APP, by="platform-admin"),
    )
    assert (shown.gates.actuator, shown.gates.argocd_app) == ("argocd", APP)
    assert shown.changed == ["actuator", "argocd_app"]
    argo.add(FakeApp(APP))
    install_xrds(store, sandbox, DEV)
    seen = argo_cd_applies_the_cmp_output(store, sandbox, argo)

    outcome = await settle_slow(env, argo_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    assert outcome.message == "Argo CD: Synced and Healthy at 4e1a9c0d5b6f"
    # The live revision was recorded before the sync, so the plugin rendered it.
    assert len(seen) == 1
    assert seen[0]["live_at_sync"] == 1
    assert seen[0]["body"]["name"] == APP
    assert seen[0]["body"]["prune"] is False
    assert {"name": "tributary-unit", "value": f"{DEV}/{DEV}"} in seen[0]["body"]["infos"]
    unit = store.get_unit(DEV, DEV)
    assert unit is not None
    assert (unit.live_revision, unit.last_applied_revision) == (1, 1)
    # Polled with a hard refresh, with the worker's token.
    gets = [r for r in argo.requests if r.method == "GET"]
    assert len(gets) >= 3
    assert all(r.query == {"refresh": ["hard"]} for r in gets)
    assert {r.authorization for r in argo.requests} == {f"Bearer {TOKEN}"}
    # Argo CD applied the object Tributary's apply would have: owned by the space.
    res = sandbox.kube.resource(CLAIM_API, CLAIM_KIND)
    assert res is not None
    live = sandbox.kube.get(res, DEV, "default")
    assert live is not None
    assert live["metadata"]["labels"][OWNER_LABEL] == DEV
    # The token is nowhere in the workflow's history.
    history = await env.client.get_workflow_handle(f"apply:{DEV}:{DEV}").fetch_history()
    assert TOKEN not in history.to_json()

    # A delete drops the unit from the render and syncs with prune.
    deleted = await settle_slow(env, argo_worker, DEV, DEV, 1, action="delete")

    assert (deleted.state, deleted.message) == ("deleted", f"pruned by Argo CD ({APP})")
    assert seen[-1]["body"]["prune"] is True
    unit = store.get_unit(DEV, DEV)
    assert unit is not None
    assert unit.state == "deleted"
    rendered = AuthorityActivities(store).live_objects(LiveObjectsInput(space=DEV))
    assert (rendered.objects, rendered.units) == ([], [])


async def test_a_failed_argo_cd_operation_is_a_failed_apply_with_its_message(
    env: WorkflowEnvironment,
    argo_worker: Worker,
    store: SqlStore,
    argo: FakeArgoCD,
    messagewall: AuthoringRepo,
) -> None:
    await publish(env, argo_worker, messagewall, spaces=[DEV])
    await set_gates(
        env,
        argo_worker,
        GatesUpdate(space=DEV, actuator="argocd", argocd_app=APP, by="platform-admin"),
    )
    argo.add(
        FakeApp(
            APP,
            plan="fail",
            fail_message="one or more synchronization tasks completed unsuccessfully",
            fail_resource={
                "kind": CLAIM_KIND,
                "name": DEV,
                "status": "SyncFailed",
                "message": "the server could not find the requested resource",
            },
        )
    )

    outcome = await settle_slow(env, argo_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "rejected")
    assert outcome.message == (
        "Argo CD sync Failed: one or more synchronization tasks completed unsuccessfully; "
        f"{CLAIM_KIND}/{DEV}: the server could not find the requested resource"
    )
    assert len(argo.syncs()) == 1


async def test_an_unknown_application_fails_the_apply_clearly(
    env: WorkflowEnvironment, argo_worker: Worker, argo: FakeArgoCD, messagewall: AuthoringRepo
) -> None:
    await publish(env, argo_worker, messagewall, spaces=[DEV])
    await set_gates(
        env,
        argo_worker,
        GatesUpdate(space=DEV, actuator="argocd", argocd_app="nope", by="platform-admin"),
    )

    outcome = await settle_slow(env, argo_worker, DEV, DEV, 1)

    # a refusal for good (exit 2), not an unexpected error (exit 1)
    assert (outcome.state, outcome.reason) == ("failed", "rejected")
    assert exit_code(outcome) == 2
    assert outcome.message.startswith(f"Argo CD at {argo.url}, Application nope: no such")
    assert not argo.syncs()


async def test_argo_cd_refusing_the_worker_is_a_rejected_apply(
    env: WorkflowEnvironment, argo_worker: Worker, argo: FakeArgoCD, messagewall: AuthoringRepo
) -> None:
    """A token without rights on the Application (403): ArgoCDRefused is decided, so
    the apply is rejected (exit 2), not an unexpected error (exit 1)."""
    await publish(env, argo_worker, messagewall, spaces=[DEV])
    await set_gates(
        env,
        argo_worker,
        GatesUpdate(space=DEV, actuator="argocd", argocd_app=APP, by="platform-admin"),
    )
    argo.add(FakeApp(APP))
    argo.limited.add(TOKEN)

    outcome = await settle_slow(env, argo_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "rejected")
    assert exit_code(outcome) == 2
    assert outcome.message.startswith(f"Argo CD at {argo.url}, Application {APP}: permission")
    assert TOKEN not in outcome.message
    assert not argo.syncs()


async def test_actuator_confighub_is_refused_by_the_embedded_store_and_nothing_changes(
    env: WorkflowEnvironment, argo_worker: Worker, store: SqlStore, messagewall: AuthoringRepo
) -> None:
    await publish(env, argo_worker, messagewall, spaces=[DEV])
    before = store.get_space(DEV)

    with pytest.raises(WorkflowFailureError) as caught:
        await set_gates(env, argo_worker, GatesUpdate(space=DEV, actuator="confighub", by="olu"))
    with pytest.raises(WorkflowFailureError) as no_app:
        await set_gates(env, argo_worker, GatesUpdate(space=DEV, actuator="argocd", by="olu"))

    info = error_info(caught.value)
    assert info.type == "BadInput"
    assert info.message.startswith(
        "--actuator: actuator confighub applies through ConfigHub, but this worker's "
        "authority is the embedded store"
    )
    assert error_info(no_app.value).message == (
        f"--argocd-app: actuator argocd needs the Argo CD Application that delivers space "
        f"{DEV}: give --argocd-app NAME"
    )
    assert store.get_space(DEV) == before
    shown = await set_gates(env, argo_worker, GatesUpdate(space=DEV, approval="none", by="olu"))
    assert (shown.gates.actuator, shown.gates.argocd_app) == ("kubernetes", "")


async def test_a_kind_the_space_may_not_apply_is_denied_before_it_becomes_live(
    env: WorkflowEnvironment,
    argo_worker: Worker,
    store: SqlStore,
    argo: FakeArgoCD,
    messagewall: AuthoringRepo,
) -> None:
    await publish(env, argo_worker, messagewall, spaces=[DEV])
    await set_gates(
        env,
        argo_worker,
        GatesUpdate(space=DEV, actuator="argocd", argocd_app=APP, kinds=["/ConfigMap"], by="admin"),
    )
    argo.add(FakeApp(APP))

    outcome = await settle_slow(env, argo_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "denied")
    assert outcome.message.startswith(
        f"{CLAIM_KIND}/{DEV}: kind messagewall.demo/{CLAIM_KIND} is not allowed in space {DEV}"
    )
    unit = store.get_unit(DEV, DEV)
    assert unit is not None
    assert unit.live_revision is None
    assert argo.requests == []
