"""The Kubernetes adapter and activities against a bare API peer (no Crossplane stand-in)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.kube import KubeActivities
from adapters.kube import KubeClient, KubeUnavailable, Resource
from domain.errors import Rejected
from domain.kube import KubeApplyInput, KubeDeleteInput, KubeWaitInput, ObjectRef
from sandbox.kubeapi import KubeApiPeerThread
from tests.support import HANG

GROUP, VERSION, KIND, PLURAL = "example.org", "v1", "Widget", "widgets"
API_VERSION = f"{GROUP}/{VERSION}"
WIDGETS = Resource(GROUP, VERSION, KIND, PLURAL, True)


@pytest.fixture
def peer() -> Iterator[KubeApiPeerThread]:
    thread = KubeApiPeerThread()
    thread.start()
    thread.peer.register_kind(GROUP, VERSION, KIND, PLURAL)
    yield thread
    thread.stop()


@pytest.fixture
def kube(peer: KubeApiPeerThread, tmp_path: Path) -> Iterator[KubeClient]:
    kubeconfig = peer.peer.write_kubeconfig(tmp_path / "kubeconfig")
    k = KubeClient(str(kubeconfig))
    yield k
    k.close()


@pytest.fixture
def custom(peer: KubeApiPeerThread, tmp_path: Path) -> Iterator[client.CustomObjectsApi]:
    """Another actor (Crossplane, kubectl) with a client of its own."""
    kubeconfig = peer.peer.write_kubeconfig(tmp_path / "other-kubeconfig")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield client.CustomObjectsApi(api)
    api.close()


@pytest.fixture
def heartbeats() -> list[Any]:
    return []


@pytest.fixture
def act_env(heartbeats: list[Any]) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    return env


def widget(name: str = "w1", memory: int = 128, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": {"lambdaMemory": memory},
    }


def ref(name: str = "w1") -> ObjectRef:
    return ObjectRef(api_version=API_VERSION, kind=KIND, name=name, namespace="default")


# ---- discovery ---------------------------------------------------------------------------


def test_discovery_finds_a_served_kind(kube: KubeClient) -> None:
    res = kube.resource(API_VERSION, KIND)
    assert res == WIDGETS
    assert res.api_version == API_VERSION
    assert res.path("w1", "default") == "/apis/example.org/v1/namespaces/default/widgets/w1"
    assert res.path() == "/apis/example.org/v1/widgets"


def test_discovery_hit_is_cached(peer: KubeApiPeerThread, kube: KubeClient) -> None:
    assert kube.resource(API_VERSION, KIND) == WIDGETS
    # Discovery is now broken; a cached kind needs no request.
    rule = peer.peer.inject_faults(500, count=None, method="GET", path=r"^/apis/example\.org/v1$")
    assert kube.resource(API_VERSION, KIND) == WIDGETS
    assert rule.hits == 0


def test_discovery_miss_is_not_cached(peer: KubeApiPeerThread, kube: KubeClient) -> None:
    assert kube.resource(API_VERSION, "Gadget") is None  # the group is served, the kind not
    assert kube.resource("nowhere.example.org/v1", "Gadget") is None  # the group is not served
    peer.peer.register_kind(GROUP, VERSION, "Gadget", "gadgets", namespaced=False)
    peer.peer.register_kind("nowhere.example.org", "v1", "Gadget", "gadgets")
    assert kube.resource(API_VERSION, "Gadget") == Resource(
        GROUP, VERSION, "Gadget", "gadgets", False
    )
    assert kube.resource("nowhere.example.org/v1", "Gadget") == Resource(
        "nowhere.example.org", "v1", "Gadget", "gadgets", True
    )


# ---- objects -----------------------------------------------------------------------------


def test_apply_creates_then_updates(peer: KubeApiPeerThread, kube: KubeClient) -> None:
    created = kube.apply(WIDGETS, widget(memory=128, labels={"app": "x"}))
    assert created["metadata"]["generation"] == 1
    assert created["spec"] == {"lambdaMemory": 128}
    (managed,) = created["metadata"]["managedFields"]
    assert (managed["manager"], managed["operation"]) == ("tributary", "Apply")
    assert managed["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:lambdaMemory": {}},
    }
    first_rv = created["metadata"]["resourceVersion"]

    updated = kube.apply(WIDGETS, widget(memory=256, labels={"app": "x"}))
    assert updated["metadata"]["generation"] == 2
    assert updated["spec"] == {"lambdaMemory": 256}
    assert int(updated["metadata"]["resourceVersion"]) > int(first_rv)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]

    again = kube.apply(WIDGETS, widget(memory=256, labels={"app": "x"}))
    assert again["metadata"]["generation"] == 2  # the same configuration changes nothing

    stored = peer.peer.get_object(GROUP, PLURAL, "w1", "default")
    assert stored is not None
    assert stored["spec"] == {"lambdaMemory": 256}
    assert kube.get(WIDGETS, "w1", "default") == stored


def test_apply_forces_other_managers_off_its_fields(
    kube: KubeClient, custom: client.CustomObjectsApi
) -> None:
    kube.apply(WIDGETS, widget(memory=128))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"lambdaMemory": 512}},
        field_manager="kubectl-edit", _content_type="application/merge-patch+json",
    )  # fmt: skip
    with pytest.raises(Rejected) as err:
        kube.apply(WIDGETS, widget(memory=128), force=False)
    assert "(409 Conflict)" in err.value.message
    assert 'conflict with "kubectl-edit"' in err.value.message
    assert err.value.message.endswith(".spec.lambdaMemory")
    forced = kube.apply(WIDGETS, widget(memory=128))
    assert forced["spec"] == {"lambdaMemory": 128}
    assert {e["manager"] for e in forced["metadata"]["managedFields"]} == {"tributary"}


def test_request_sends_json_bodies(peer: KubeApiPeerThread, kube: KubeClient) -> None:
    """``request`` is the adapter's generic call: a JSON body (its default content type)
    must reach the server as the object, not as a JSON string holding the object."""
    kube.apply(WIDGETS, widget(memory=128))
    status, body = kube.request(
        "PATCH",
        WIDGETS.path("w1", "default"),
        query=[("fieldManager", "kubectl-edit")],
        body={"spec": {"lambdaMemory": 512}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert body["spec"] == {"lambdaMemory": 512}


def test_get_missing_object_is_none(kube: KubeClient) -> None:
    assert kube.get(WIDGETS, "nothing-here", "default") is None


def test_delete_twice(peer: KubeApiPeerThread, kube: KubeClient) -> None:
    kube.apply(WIDGETS, widget())
    assert kube.delete(WIDGETS, "w1", "default") is True
    assert peer.peer.get_object(GROUP, PLURAL, "w1", "default") is None
    assert kube.delete(WIDGETS, "w1", "default") is False


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_unavailable(
    peer: KubeApiPeerThread, kube: KubeClient, status: int
) -> None:
    rule = peer.peer.inject_faults(status, method="GET", path="/widgets/w1$", message="etcd is sad")
    with pytest.raises(KubeUnavailable) as err:
        kube.get(WIDGETS, "w1", "default")
    assert str(err.value) == (
        f"GET /apis/example.org/v1/namespaces/default/widgets/w1: {status} etcd is sad"
    )
    assert rule.hits == 1
    assert kube.get(WIDGETS, "w1", "default") is None  # the fault is used up


def test_invalid_object_is_rejected_with_the_server_message(
    peer: KubeApiPeerThread, kube: KubeClient
) -> None:
    with pytest.raises(Rejected) as err:
        kube.apply(WIDGETS, widget(name="Not_Valid"))
    message = err.value.message
    assert message.startswith(
        "PATCH /apis/example.org/v1/namespaces/default/widgets/Not_Valid was rejected "
        "(422 Invalid): "
    )
    assert 'Widget.example.org "Not_Valid" is invalid: metadata.name' in message
    assert peer.peer.get_object(GROUP, PLURAL, "Not_Valid", "default") is None


def test_injected_422_is_rejected_with_its_message(
    peer: KubeApiPeerThread, kube: KubeClient
) -> None:
    rule = peer.peer.inject_faults(
        422, method="PATCH", message='Widget.example.org "w1" is invalid: spec.lambdaMemory: no'
    )
    with pytest.raises(Rejected) as err:
        kube.apply(WIDGETS, widget())
    assert err.value.message == (
        "PATCH /apis/example.org/v1/namespaces/default/widgets/w1 was rejected (422 Invalid): "
        'Widget.example.org "w1" is invalid: spec.lambdaMemory: no'
    )
    assert rule.hits == 1


def test_refused_connection_is_unavailable(peer: KubeApiPeerThread, kube: KubeClient) -> None:
    kube.apply(WIDGETS, widget())  # the pool holds a kept-alive connection now
    peer.refuse_connections(1.0)
    try:
        with pytest.raises(KubeUnavailable) as err:
            kube.get(WIDGETS, "w1", "default")
        assert str(err.value).startswith("GET /apis/example.org/v1/namespaces/default/widgets/w1: ")
    finally:
        peer.wait_listening()
    obj = kube.get(WIDGETS, "w1", "default")
    assert obj is not None
    assert obj["spec"] == {"lambdaMemory": 128}


# ---- activities --------------------------------------------------------------------------


def set_status(custom: client.CustomObjectsApi, name: str, status: dict[str, Any]) -> None:
    """What Crossplane does: write conditions through the status subresource."""
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, name, {"status": status},
        field_manager="crossplane", _content_type="application/merge-patch+json",
    )  # fmt: skip


def conditions(generation: int, synced: str, ready: str, **synced_extra: str) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Synced", "status": synced, "observedGeneration": generation, **synced_extra},
            {
                "type": "Ready",
                "status": ready,
                "observedGeneration": generation,
                "reason": "Available" if ready == "True" else "Creating",
                "message": "all composed resources are ready" if ready == "True" else "",
            },
        ]
    }


def later(delay: float, fn: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), fn(*args)), daemon=True)
    t.start()
    return t


class AfterHeartbeat(threading.Thread):
    """Calls ``fn`` once the activity has heartbeated (it saw not-ready and waits), and
    notes when: a fixed delay can pass before a loaded machine's first GET."""

    def __init__(self, heartbeats: list[Any], fn: Any, *args: Any) -> None:
        super().__init__(daemon=True)
        self.heartbeats, self.fn, self.args = heartbeats, fn, args
        self.seen = len(heartbeats)  # only a heartbeat from now on
        self.at = 0.0
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + HANG
        while len(self.heartbeats) <= self.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        self.fn(*self.args)
        self.at = time.monotonic()


def test_apply_activity(kube: KubeClient, act_env: ActivityEnvironment) -> None:
    acts = KubeActivities(kube)
    first = act_env.run(acts.apply, KubeApplyInput(data=widget()))
    assert first.ref == ref()
    assert first.generation == 1
    assert first.resource_version != ""
    second = act_env.run(acts.apply, KubeApplyInput(data=widget(memory=256)))
    assert second.generation == 2
    assert int(second.resource_version) > int(first.resource_version)


def test_apply_activity_rejects_an_unserved_kind_without_xrds(
    kube: KubeClient, act_env: ActivityEnvironment
) -> None:
    acts = KubeActivities(kube)
    data = {**widget(), "kind": "Gadget"}
    with pytest.raises(ApplicationError) as err:
        act_env.run(acts.apply, KubeApplyInput(data=data))
    assert err.value.type == "Rejected"
    assert err.value.non_retryable is True
    assert err.value.message == (
        "the cluster does not serve Gadget (example.org/v1) and no XRD in the space's "
        "schemas defines it"
    )


def test_apply_activity_without_crossplane_cannot_install_an_xrd(
    kube: KubeClient, act_env: ActivityEnvironment
) -> None:
    acts = KubeActivities(kube)
    data = {**widget(), "kind": "Gadget"}
    xrd = {"apiVersion": "apiextensions.crossplane.io/v1", "kind": "CompositeResourceDefinition"}
    with pytest.raises(ApplicationError) as err:
        act_env.run(acts.apply, KubeApplyInput(data=data, xrds=[xrd]))
    assert (err.value.type, err.value.non_retryable) == ("Rejected", True)
    assert err.value.message == (
        "the cluster does not serve Gadget (example.org/v1) and has no Crossplane to install "
        "its XRD"
    )


def test_apply_activity_retries_unavailable(
    peer: KubeApiPeerThread, kube: KubeClient, act_env: ActivityEnvironment
) -> None:
    # Not decided: a plain exception, which Temporal retries with backoff.
    peer.peer.inject_faults(503, method="PATCH")
    with pytest.raises(KubeUnavailable):
        act_env.run(KubeActivities(kube).apply, KubeApplyInput(data=widget()))


def test_wait_ready_sees_conditions_written_meanwhile(
    kube: KubeClient,
    custom: client.CustomObjectsApi,
    act_env: ActivityEnvironment,
    heartbeats: list[Any],
) -> None:
    kube.apply(WIDGETS, widget())
    writer = AfterHeartbeat(heartbeats, set_status, custom, "w1", conditions(1, "True", "True"))
    result = act_env.run(
        KubeActivities(kube).wait_ready, KubeWaitInput(ref=ref(), generation=1, timeout_seconds=30)
    )
    returned = time.monotonic()
    writer.join()
    assert (result.state, result.message) == ("ready", "all composed resources are ready")
    # Woken by the watch event, not by the end of a watch slice (10 s).
    assert returned - writer.at < 5
    assert heartbeats[0] == ("waiting for Crossplane to report Ready and Synced",)


def test_wait_ready_returns_at_once_when_ready(
    kube: KubeClient,
    custom: client.CustomObjectsApi,
    act_env: ActivityEnvironment,
    heartbeats: list[Any],
) -> None:
    kube.apply(WIDGETS, widget())
    set_status(custom, "w1", conditions(1, "True", "True"))
    result = act_env.run(
        KubeActivities(kube).wait_ready, KubeWaitInput(ref=ref(), generation=1, timeout_seconds=30)
    )
    assert result.state == "ready"
    assert heartbeats == []


def test_wait_ready_reports_a_failed_sync(
    kube: KubeClient, custom: client.CustomObjectsApi, act_env: ActivityEnvironment
) -> None:
    kube.apply(WIDGETS, widget())
    failed = conditions(1, "False", "False", reason="ReconcilePaused", message="paused")
    writer = later(0.3, set_status, custom, "w1", failed)
    result = act_env.run(
        KubeActivities(kube).wait_ready, KubeWaitInput(ref=ref(), generation=1, timeout_seconds=30)
    )
    writer.join()
    assert (result.state, result.message) == ("failed", "ReconcilePaused: paused")


def test_wait_ready_reports_a_new_reconcile_error_and_waits_through_a_known_one(
    kube: KubeClient,
    custom: client.CustomObjectsApi,
    act_env: ActivityEnvironment,
    heartbeats: list[Any],
) -> None:
    kube.apply(WIDGETS, widget())
    error = conditions(1, "False", "False", reason="ReconcileError", message="AWS unreachable")
    set_status(custom, "w1", error)
    acts = KubeActivities(kube)
    first = act_env.run(acts.wait_ready, KubeWaitInput(ref=ref(), generation=1, timeout_seconds=30))
    assert (first.state, first.message) == ("waiting", "ReconcileError: AWS unreachable")

    # Reported already: the wait goes on (Crossplane retries) until it clears.
    writer = AfterHeartbeat(heartbeats, set_status, custom, "w1", conditions(1, "True", "True"))
    second = act_env.run(
        acts.wait_ready,
        KubeWaitInput(ref=ref(), generation=1, timeout_seconds=30, seen=first.message),
    )
    writer.join()
    assert (second.state, second.message) == ("ready", "all composed resources are ready")
    assert heartbeats[0] == ("waiting: Crossplane reports ReconcileError: AWS unreachable",)


def test_wait_ready_times_out_on_a_reconcile_error_with_its_message(
    kube: KubeClient, custom: client.CustomObjectsApi, act_env: ActivityEnvironment
) -> None:
    kube.apply(WIDGETS, widget())
    error = conditions(1, "False", "False", reason="ReconcileError", message="AWS unreachable")
    set_status(custom, "w1", error)
    result = act_env.run(
        KubeActivities(kube).wait_ready,
        KubeWaitInput(
            ref=ref(), generation=1, timeout_seconds=1, seen="ReconcileError: AWS unreachable"
        ),
    )
    assert (result.state, result.message) == (
        "pending",
        "not Ready after 1s: ReconcileError: AWS unreachable",
    )


def test_wait_ready_times_out(
    kube: KubeClient, act_env: ActivityEnvironment, heartbeats: list[Any]
) -> None:
    kube.apply(WIDGETS, widget())
    started = time.monotonic()
    result = act_env.run(
        KubeActivities(kube).wait_ready, KubeWaitInput(ref=ref(), generation=1, timeout_seconds=1)
    )
    elapsed = time.monotonic() - started
    assert result.state == "pending"
    assert result.message == (
        "not Ready after 1s: waiting for Crossplane to report Ready and Synced"
    )
    assert 1 <= elapsed < 5
    assert heartbeats  # it heartbeated while waiting


def test_wait_ready_ignores_conditions_of_the_previous_generation(
    kube: KubeClient, custom: client.CustomObjectsApi, act_env: ActivityEnvironment
) -> None:
    kube.apply(WIDGETS, widget(memory=128))
    set_status(custom, "w1", conditions(1, "True", "True"))
    applied = kube.apply(WIDGETS, widget(memory=256))
    assert applied["metadata"]["generation"] == 2
    result = act_env.run(
        KubeActivities(kube).wait_ready, KubeWaitInput(ref=ref(), generation=2, timeout_seconds=1)
    )
    assert result.state == "pending"
    assert result.message.startswith("not Ready after 1s: ")


def test_wait_ready_for_an_unserved_kind_is_rejected(
    kube: KubeClient, act_env: ActivityEnvironment
) -> None:
    gadget = ObjectRef(api_version=API_VERSION, kind="Gadget", name="g", namespace="default")
    with pytest.raises(ApplicationError) as err:
        act_env.run(
            KubeActivities(kube).wait_ready,
            KubeWaitInput(ref=gadget, generation=1, timeout_seconds=1),
        )
    assert (err.value.type, err.value.non_retryable) == ("Rejected", True)
    assert err.value.message == "the cluster does not serve Gadget (example.org/v1)"


def test_delete_activity(
    peer: KubeApiPeerThread, kube: KubeClient, act_env: ActivityEnvironment
) -> None:
    kube.apply(WIDGETS, widget())
    acts = KubeActivities(kube)
    assert act_env.run(acts.delete, KubeDeleteInput(ref=ref())).existed is True
    assert peer.peer.get_object(GROUP, PLURAL, "w1", "default") is None
    assert act_env.run(acts.delete, KubeDeleteInput(ref=ref())).existed is False
