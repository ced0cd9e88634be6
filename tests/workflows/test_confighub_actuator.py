"""Actuator confighub (issue 12, the seed's main path): with ConfigHub as the worker's
authority (the client on the contract fake, tests/fakes/confighub.py), a space whose
actuator is confighub applies by ``POST …/unit/{u}/apply`` and follows the queued
operation's unit event; ``LiveRevisionNum`` is ConfigHub's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.source import SourceCache
from authority.confighub import ConfigHubStore
from authority.confighub_api import ConfigHubApi
from authority.sql import SqlStore
from domain.authority import GatesUpdate
from tests.conftest import Sandbox
from tests.fakes.confighub import FakeConfigHub
from tests.support import AuthoringRepo
from tests.workflows.helpers import ask, publish, running_worker, set_gates, settle_slow, until

DEV = "messagewall-dev-east"
TOKEN = "chk-actuator-secret-5e6f7a8b9c"


@pytest.fixture
def hub() -> Iterator[FakeConfigHub]:
    fake = FakeConfigHub(token=TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def hub_store(hub: FakeConfigHub, tmp_path: Path) -> Iterator[ConfigHubStore]:
    store = ConfigHubStore(
        ConfigHubApi(hub.url, TOKEN), SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    )
    yield store
    store.close()


@pytest.fixture
async def hub_worker(
    env: WorkflowEnvironment,
    hub_store: ConfigHubStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
) -> AsyncIterator[Worker]:
    async with running_worker(env, hub_store, cache, executor, sandbox) as w:
        yield w


def applies(hub: FakeConfigHub) -> list[str]:
    return [path for method, path, _, _ in hub.requests if method == "POST" and "/apply" in path]


async def confighub_space(env: WorkflowEnvironment, worker: Worker, repo: AuthoringRepo) -> None:
    await publish(env, worker, repo, spaces=[DEV])
    shown = await set_gates(
        env, worker, GatesUpdate(space=DEV, actuator="confighub", by="platform-admin")
    )
    assert (shown.gates.actuator, shown.changed) == ("confighub", ["actuator"])


async def test_a_space_with_actuator_confighub_applies_through_confighub(
    env: WorkflowEnvironment,
    hub_worker: Worker,
    hub_store: ConfigHubStore,
    hub: FakeConfigHub,
    messagewall: AuthoringRepo,
) -> None:
    await confighub_space(env, hub_worker, messagewall)
    hub.apply_polls = 3  # queued, still queued, then Completed
    raw = hub.unit_by_slug(DEV, DEV)
    assert raw is not None
    assert "LiveRevisionNum" not in raw or not raw["LiveRevisionNum"]

    outcome = await settle_slow(env, hub_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    assert outcome.message == "ConfigHub: applied, live revision 1 (applied)"
    assert applies(hub) == [f"/space/{raw['SpaceID']}/unit/{raw['UnitID']}/apply"]
    (operation,) = hub.operations.values()
    assert operation["Status"] == "Completed"
    polls = [
        query for method, query, _, _ in hub.requests if method == "GET" and "/unit_event" in query
    ]
    assert len(polls) == 3
    assert all(operation["QueuedOperationID"] in p for p in polls)
    # The live revision is ConfigHub's: moved by the fake on completion, nothing kept
    # beside the worker for it.
    assert (raw["LiveRevisionNum"], raw["LastAppliedRevisionNum"]) == (1, 1)
    unit = hub_store.get_unit(DEV, DEV)
    assert unit is not None
    assert (unit.live_revision, unit.last_applied_revision) == (1, 1)
    side = hub_store._side_units(DEV).get(DEV) or {}
    assert (side.get("live_revision"), side.get("last_applied_revision")) == (None, None)
    # The token is nowhere in the workflow's history.
    history = await env.client.get_workflow_handle(f"apply:{DEV}:{DEV}").fetch_history()
    assert TOKEN not in history.to_json()


async def test_a_failed_unit_event_is_a_failed_apply_with_confighubs_message(
    env: WorkflowEnvironment,
    hub_worker: Worker,
    hub_store: ConfigHubStore,
    hub: FakeConfigHub,
    messagewall: AuthoringRepo,
) -> None:
    await confighub_space(env, hub_worker, messagewall)
    hub.apply_result = "Failed"
    hub.apply_message = "bridge worker: admission webhook denied the request"

    outcome = await settle_slow(env, hub_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "rejected")
    assert outcome.message == (
        "ConfigHub apply Failed: bridge worker: admission webhook denied the request"
    )
    assert len(applies(hub)) == 1
    unit = hub_store.get_unit(DEV, DEV)
    assert unit is not None
    # Queued (LastAppliedRevisionNum moved), never live.
    assert (unit.live_revision, unit.last_applied_revision) == (None, 1)


async def test_an_apply_confighub_does_not_finish_in_time_is_not_ready(
    env: WorkflowEnvironment,
    hub_worker: Worker,
    hub_store: ConfigHubStore,
    hub: FakeConfigHub,
    messagewall: AuthoringRepo,
) -> None:
    await confighub_space(env, hub_worker, messagewall)
    hub.apply_polls = 10**6  # the bridge worker never reports

    outcome = await settle_slow(env, hub_worker, DEV, DEV, 1, ready_timeout_seconds=1)

    assert (outcome.state, outcome.reason) == ("failed", "not-ready")
    assert outcome.message == "ConfigHub's apply of revision 1 did not end within 1s"
    assert len(applies(hub)) == 1
    unit = hub_store.get_unit(DEV, DEV)
    assert unit is not None
    assert unit.live_revision is None


async def test_an_attempt_retried_after_the_queue_call_does_not_queue_twice(
    env: WorkflowEnvironment,
    hub_worker: Worker,
    hub_store: ConfigHubStore,
    hub: FakeConfigHub,
    messagewall: AuthoringRepo,
) -> None:
    await confighub_space(env, hub_worker, messagewall)
    # ConfigHub queues the apply, then its answer is lost (503): the activity fails
    # and Temporal retries it.
    hub.lose_apply_answers = 1

    outcome = await settle_slow(env, hub_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    assert len(applies(hub)) == 1
    assert len(hub.operations) == 1
    unit = hub_store.get_unit(DEV, DEV)
    assert unit is not None
    assert unit.live_revision == 1


async def test_a_revision_that_is_not_the_head_is_refused_before_queueing(
    env: WorkflowEnvironment,
    hub_worker: Worker,
    hub: FakeConfigHub,
    messagewall: AuthoringRepo,
) -> None:
    await confighub_space(env, hub_worker, messagewall)
    raw = hub.unit_by_slug(DEV, DEV)
    assert raw is not None
    raw["HeadRevisionNum"] = 2  # a newer head written in ConfigHub meanwhile

    outcome = await settle_slow(env, hub_worker, DEV, DEV, 1)

    assert (outcome.state, outcome.reason) == ("failed", "rejected")
    assert outcome.message.startswith(
        f"unit {DEV}/{DEV}: ConfigHub applies the unit's head revision (2), not revision 1"
    )
    assert applies(hub) == []


async def test_a_worker_whose_authority_is_not_confighub_does_not_schedule_its_activities(
    env: WorkflowEnvironment,
    tmp_path: Path,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    # A state store once beside ConfigHub, now opened as the embedded authority.
    store = SqlStore(f"sqlite:///{tmp_path / 'authority.db'}")
    try:
        async with running_worker(env, store, cache, executor, sandbox) as worker:
            await publish(env, worker, messagewall, spaces=[DEV])
            store.set_space_gates(
                GatesUpdate(space=DEV, actuator="confighub", by="admin"), confighub=True
            )

            outcome = await settle_slow(env, worker, DEV, DEV, 1)

            assert (outcome.state, outcome.reason) == ("failed", "error")
            assert outcome.message == (
                f"space {DEV} applies through ConfigHub (actuator confighub), "
                "which this worker does not drive"
            )
            history = await env.client.get_workflow_handle(f"apply:{DEV}:{DEV}").fetch_history()
            assert "confighub.apply" not in history.to_json()
            unit = store.get_unit(DEV, DEV)
            assert unit is not None
            assert (unit.live_revision, unit.last_applied_revision) == (None, None)
    finally:
        store.close()


# ---- ConfigHub as the authority, Tributary's own apply: orphan → delete on request ----------


async def test_a_unit_deleted_on_request_is_deleted_in_confighub(
    env: WorkflowEnvironment,
    hub_worker: Worker,
    hub_store: ConfigHubStore,
    hub: FakeConfigHub,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    """The path of test_apply's test_removed_unit_is_orphaned_then_deleted_on_request,
    with ConfigHub holding the units: the acknowledged delete removes the claim from
    the cluster, then the unit from ConfigHub (``DELETE /space/{space}/unit/{unit}``)."""
    from tests.workflows.test_apply import QUEUE_GONE, approve

    space, unit = "orders-staging", "staging-orders-queue"
    await publish(env, hub_worker, orders, spaces=[space])
    workflow_id, request_id = await ask(env, hub_worker, space, unit, 1)
    await until(env, workflow_id, request_id, {"awaiting-approval"})
    await approve(env, space, unit, 1, "Dana Developer")
    assert (await until(env, workflow_id, request_id, {"ready", "failed"})).state == ("ready")

    def queue() -> dict[str, Any] | None:
        return sandbox.peer.peer.get_object("messaging.acme.io", "queueclaims", unit, "orders")

    orders.write("deploy/envs/staging/queue.yaml", QUEUE_GONE)
    orders.commit("staging: drop the queue")
    result = await publish(env, hub_worker, orders, spaces=[space], apply=True)
    assert {u.unit: u.action for u in result.spaces[0].units}[unit] == "orphaned"
    raw = hub.unit_by_slug(space, unit)
    assert raw is not None  # orphaned is a state beside ConfigHub, never a delete
    assert queue() is not None

    workflow_id, request_id = await ask(env, hub_worker, space, unit, 1, action="delete")
    await until(env, workflow_id, request_id, {"awaiting-approval"})
    await approve(env, space, unit, 1, "Dana Developer")
    done = await until(env, workflow_id, request_id, {"deleted", "failed"})

    assert (done.state, done.message) == ("deleted", "removed from the cluster")
    assert queue() is None
    assert hub.unit_by_slug(space, unit) is None
    assert hub.deleted == [raw["UnitID"]]
    assert hub_store.get_unit(space, unit) is None
    db = hub_store.get_unit(space, "staging-orders-db")
    assert db is not None
    assert db.state == "active"
