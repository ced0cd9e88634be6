"""adapters/watcher.py: a Claim edit reaches its unit's drift loop in about a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from adapters.kube import KubeClient, Resource
from adapters.watcher import ClaimWatcher, content_hash
from authority.sql import SqlStore
from domain.authority import SpaceSpec, UnitChange
from domain.naming import drift_id
from sandbox.kubeapi import KubeApiPeerThread

GROUP, VERSION, KIND, PLURAL = "platform.acme.io", "v1beta1", "DatabaseClaim", "databaseclaims"
API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACE = "orders"
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
pytestmark = SQLITE_ONLY


@pytest.fixture
def peer() -> Iterator[KubeApiPeerThread]:
    thread = KubeApiPeerThread()
    thread.start()
    thread.peer.register_kind(GROUP, VERSION, KIND, PLURAL)
    yield thread
    thread.stop()


@pytest.fixture
def kube(peer: KubeApiPeerThread, tmp_path: Path) -> Iterator[KubeClient]:
    k = KubeClient(str(peer.peer.write_kubeconfig(tmp_path / "kubeconfig")))
    yield k
    k.close()


@pytest.fixture
def kubectl(peer: KubeApiPeerThread, tmp_path: Path) -> Iterator[client.CustomObjectsApi]:
    """Someone else editing the cluster (an operator, Crossplane), with a client of their own."""
    api = config.new_client_from_config(
        config_file=str(peer.peer.write_kubeconfig(tmp_path / "other"))
    )
    yield client.CustomObjectsApi(api)
    api.close()


@pytest.fixture
async def watcher(
    env: WorkflowEnvironment, store: SqlStore, kube: KubeClient
) -> AsyncIterator[ClaimWatcher]:
    w = ClaimWatcher(store, kube, env.client, f"tq-{uuid.uuid4()}", asyncio.get_running_loop())
    yield w
    w.stop()


def claim(name: str, storage: int = 20) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "orders"}},
        "spec": {"engine": "postgres", "storageGB": storage},
    }


def resource(kube: KubeClient) -> Resource:
    res = kube.resource(API_VERSION, KIND)
    assert res is not None
    return res


async def patch(
    kubectl: client.CustomObjectsApi, name: str, body: dict[str, Any], *, status: bool = False
) -> None:
    fn = (
        kubectl.patch_namespaced_custom_object_status
        if status
        else kubectl.patch_namespaced_custom_object
    )
    await asyncio.to_thread(
        fn,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        name,
        body,
        field_manager="kubectl-patch",
        _content_type="application/merge-patch+json",
    )


async def signals(env: WorkflowEnvironment, space: str, unit: str) -> list[str]:
    """The reasons of the ``check`` signals ``drift:{space}:{unit}`` received (none: no run)."""
    try:
        history = await env.client.get_workflow_handle(drift_id(space, unit)).fetch_history()
    except RPCError:
        return []
    converter = env.client.data_converter.payload_converter
    out = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            assert attrs.signal_name == "check"
            [payload] = attrs.input.payloads
            out.append(converter.from_payload(payload)["reason"])
    return out


async def wait_for_signals(
    env: WorkflowEnvironment, space: str, unit: str, n: int, limit: float = 5.0
) -> float:
    """Seconds until ``drift:{space}:{unit}`` has ``n`` check signals."""
    start = time.monotonic()
    while len(await signals(env, space, unit)) < n:
        if time.monotonic() - start > limit:
            raise AssertionError(f"{n} signal(s) to {space}/{unit} not seen in {limit}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def watching(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
    space: str,
) -> str:
    """Make sure the watch of the kind is live: edit a probe object until its loop hears."""
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    res = resource(kube)
    watcher.notice(res, kube.apply(res, claim(probe)), space, probe)
    for storage in range(21, 60):
        await patch(kubectl, probe, {"spec": {"storageGB": storage}})
        try:
            await wait_for_signals(env, space, probe, 1, limit=0.5)
            return probe
        except AssertionError:
            continue  # edited before the watch listed the kind: edit again
    raise AssertionError("the watch never saw the probe")


async def test_a_spec_edit_of_an_applied_claim_signals_its_drift_loop_within_2s(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
) -> None:
    space, unit = f"orders-{uuid.uuid4().hex[:6]}", "staging-orders-db"
    res = resource(kube)
    watcher.notice(res, kube.apply(res, claim(unit)), space, unit)
    await watching(env, watcher, kube, kubectl, space)
    assert await signals(env, space, unit) == []

    await patch(kubectl, unit, {"spec": {"storageGB": 100}})

    assert await wait_for_signals(env, space, unit, 1) < 2.0
    assert await signals(env, space, unit) == ["watch"]
    # A label is content too.
    await patch(kubectl, unit, {"metadata": {"labels": {"team": "payments"}}})
    assert await wait_for_signals(env, space, unit, 2) < 2.0


async def barrier(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
    space: str,
) -> None:
    """Return once the watch has handled every event before this call: a new object edited
    now is heard only after them."""
    name = f"barrier-{uuid.uuid4().hex[:6]}"
    res = resource(kube)
    kube.apply(res, claim(name))
    watcher.notice(res, claim(name), space, name)
    await patch(kubectl, name, {"spec": {"storageGB": 77}})
    await wait_for_signals(env, space, name, 1)


async def test_a_status_write_does_not_signal(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
) -> None:
    space, unit = f"orders-{uuid.uuid4().hex[:6]}", "staging-orders-db"
    res = resource(kube)
    watcher.notice(res, kube.apply(res, claim(unit)), space, unit)
    await watching(env, watcher, kube, kubectl, space)

    # Crossplane reports on the claim.
    await patch(
        kubectl,
        unit,
        {"status": {"conditions": [{"type": "Ready", "status": "True"}], "endpoint": "db:5432"}},
        status=True,
    )
    await barrier(env, watcher, kube, kubectl, space)

    assert await signals(env, space, unit) == []
    status = await asyncio.to_thread(
        kubectl.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL, unit
    )
    assert status["status"]["endpoint"] == "db:5432"


async def test_objects_of_no_unit_are_ignored(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
) -> None:
    space = f"orders-{uuid.uuid4().hex[:6]}"
    res = resource(kube)
    kube.apply(res, claim("someone-elses-db"))
    await watching(env, watcher, kube, kubectl, space)

    await patch(kubectl, "someone-elses-db", {"spec": {"storageGB": 500}})
    await barrier(env, watcher, kube, kubectl, space)

    assert await signals(env, space, "someone-elses-db") == []
    assert ("platform.acme.io", KIND, NAMESPACE, "someone-elses-db") not in watcher.units


async def test_claims_of_units_in_the_authority_are_watched_without_an_apply(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    store: SqlStore,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
) -> None:
    """A worker that restarts learns from the authority which claims belong to units."""
    space, unit = f"orders-{uuid.uuid4().hex[:6]}", "production-orders-db"
    store.commit(
        [
            UnitChange(
                space=space,
                slug=unit,
                expected_version=None,
                data=claim(unit),
                description="publish",
                source="ci",
            )
        ],
        spaces=[SpaceSpec(name=space, environment="production")],
    )
    kube.apply(resource(kube), claim(unit))
    watcher.start()  # lists the authority's units and watches their kinds

    deadline = time.monotonic() + 10
    for storage in range(101, 200):
        await patch(kubectl, unit, {"spec": {"storageGB": storage}})
        try:
            await wait_for_signals(env, space, unit, 1, limit=0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the unit's claim was never watched"
    assert (await signals(env, space, unit))[0] == "watch"


async def test_an_edit_between_two_watches_signals_at_the_next_list(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
) -> None:
    """The watch ends every WATCH_SECONDS (or on an outage) and lists again: an edit made
    in between shows only in that list. It used to be taken as a first sighting and
    ignored, leaving the edit to the drift loop's next tick."""
    space, unit = f"orders-{uuid.uuid4().hex[:6]}", "staging-orders-db"
    res = resource(kube)
    applied = kube.apply(res, claim(unit))
    watcher.units[("platform.acme.io", KIND, NAMESPACE, unit)] = (space, unit)
    seen: dict[Any, str] = {}
    # what the earlier watch had seen
    await asyncio.to_thread(watcher._observe, res, applied, seen, initial=True)
    await patch(kubectl, unit, {"spec": {"storageGB": 100}})
    items, _ = await asyncio.to_thread(kube.list_kind, res)
    [edited] = [o for o in items if o["metadata"]["name"] == unit]

    # the list that starts the next watch
    await asyncio.to_thread(watcher._observe, res, edited, seen, initial=True)

    assert await signals(env, space, unit) == ["watch"]
    # An unchanged object in the next list is no edit.
    await asyncio.to_thread(watcher._observe, res, edited, seen, initial=True)
    assert await signals(env, space, unit) == ["watch"]


async def test_an_edit_right_after_an_apply_signals_even_before_the_first_list(
    env: WorkflowEnvironment,
    watcher: ClaimWatcher,
    kube: KubeClient,
    kubectl: client.CustomObjectsApi,
) -> None:
    """The apply starts the kind's watch; under load the watch may list the kind only
    after an edit that follows the apply. That list compares with what was applied."""
    space, unit = f"orders-{uuid.uuid4().hex[:6]}", "staging-orders-db"
    res = resource(kube)
    applied = kube.apply(res, claim(unit))
    watcher.units[("platform.acme.io", KIND, NAMESPACE, unit)] = (space, unit)
    watcher._applied[("platform.acme.io", KIND, NAMESPACE, unit)] = content_hash(applied)
    items, _ = await asyncio.to_thread(kube.list_kind, res)
    [unchanged] = [o for o in items if o["metadata"]["name"] == unit]
    await asyncio.to_thread(watcher._observe, res, unchanged, {}, initial=True)
    assert await signals(env, space, unit) == []  # as applied: no edit

    await patch(kubectl, unit, {"spec": {"storageGB": 100}})
    items, _ = await asyncio.to_thread(kube.list_kind, res)
    [edited] = [o for o in items if o["metadata"]["name"] == unit]
    await asyncio.to_thread(watcher._observe, res, edited, {}, initial=True)

    assert await signals(env, space, unit) == ["watch"]
