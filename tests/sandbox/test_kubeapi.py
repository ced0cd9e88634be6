"""The Kubernetes API peer, driven by the official client and the real kubectl binary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException

from sandbox import kubeapi_ssa as ssa
from sandbox.kubeapi import KubeApiPeer, KubeApiPeerThread
from tests.sandbox.conftest import GROUP, PLURAL, VERSION, Kubectl

NS = "default"


def widget(
    name: str, spec: dict[str, Any] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": metadata,
        "spec": spec or {"lambdaMemory": 128},
    }


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def failure(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


def create(custom: client.CustomObjectsApi, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, body, **kw
    )
    return created


def get(custom: client.CustomObjectsApi, name: str, ns: str = NS) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return obj


def patch(
    custom: client.CustomObjectsApi, name: str, body: Any, content_type: str, **kw: Any
) -> dict[str, Any]:
    patched: dict[str, Any] = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, name, body, _content_type=content_type, **kw
    )
    return patched


def apply(
    custom: client.CustomObjectsApi, body: dict[str, Any], manager: str, force: bool = False
) -> dict[str, Any]:
    name = body["metadata"]["name"]
    data, status, _ = custom.patch_namespaced_custom_object_with_http_info(
        GROUP, VERSION, NS, PLURAL, name, body,
        field_manager=manager, force=force, _content_type="application/apply-patch+yaml",
    )  # fmt: skip
    if status == 201:
        # An apply that creates answers 201 (as a real apiserver does), and client v37 only
        # deserializes PATCH bodies for 200: read the object back.
        assert data is None
        return get(custom, name)
    assert status == 200
    result: dict[str, Any] = data
    return result


MERGE = "application/merge-patch+json"


# ---- discovery -------------------------------------------------------------------------------


def test_discovery_documents(peer: KubeApiPeerThread) -> None:
    assert http_get(f"{peer.url}/api") == (200, {"kind": "APIVersions", "versions": ["v1"]})

    status, core = http_get(f"{peer.url}/api/v1")
    assert status == 200
    assert core["groupVersion"] == "v1"
    namespaces = next(r for r in core["resources"] if r["name"] == "namespaces")
    assert namespaces["namespaced"] is False
    assert "list" in namespaces["verbs"]

    status, groups = http_get(f"{peer.url}/apis")
    by_name = {g["name"]: g for g in groups["groups"]}
    assert by_name[GROUP]["preferredVersion"] == {"groupVersion": f"{GROUP}/v1", "version": "v1"}
    assert "apiextensions.k8s.io" in by_name

    status, resources = http_get(f"{peer.url}/apis/{GROUP}/{VERSION}")
    names = {r["name"]: r for r in resources["resources"]}
    assert names["widgets"]["kind"] == "Widget"
    assert names["widgets"]["shortNames"] == ["wd"]
    assert names["widgets/status"]["verbs"] == ["get", "patch", "update"]
    assert http_get(f"{peer.url}/apis/nope.example/v1")[0] == 404


def test_kubectl_and_dynamic_client_discover_kinds(
    peer: KubeApiPeerThread, api: client.ApiClient, kubectl: Kubectl
) -> None:
    result = kubectl("get", "namespaces", "-o", "name")
    assert result.returncode == 0, result.stderr
    assert "namespace/default" in result.stdout.split()

    resources = kubectl("api-resources", "--api-group", GROUP, "-o", "name")
    assert resources.stdout.split() == ["widgets.example.org"]

    widgets = dynamic.DynamicClient(api).resources.get(
        api_version=f"{GROUP}/{VERSION}", kind="Widget"
    )
    widgets.create(body=widget("w1"), namespace=NS)
    assert widgets.get(name="w1", namespace=NS).spec.lambdaMemory == 128
    assert kubectl("get", "widgets.example.org", "-o", "name").stdout.split() == [
        "widget.example.org/w1"
    ]
    assert kubectl("get", "wd", "w1", "-o", "jsonpath={.spec.lambdaMemory}").stdout == "128"


def test_register_kind_cluster_scoped(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi
) -> None:
    peer.peer.register_kind(
        "infra.example.org",
        "v1alpha1",
        "Stack",
        "stacks",
        namespaced=False,
        list_kind="StackCollection",
        singular="stackie",
    )
    body = {"apiVersion": "infra.example.org/v1alpha1", "kind": "Stack", "metadata": {"name": "s"}}
    custom.create_cluster_custom_object("infra.example.org", "v1alpha1", "stacks", body)
    listed = custom.list_cluster_custom_object("infra.example.org", "v1alpha1", "stacks")
    assert listed["kind"] == "StackCollection"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["s"]
    assert "namespace" not in listed["items"][0]["metadata"]
    _, doc = http_get(f"{peer.url}/apis/infra.example.org/v1alpha1")
    assert doc["resources"][0]["singularName"] == "stackie"


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: functions.aws.example.org
spec:
  group: aws.example.org
  scope: Namespaced
  names: {plural: functions, singular: function, kind: Function, shortNames: [fn]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
"""


def test_crd_applied_through_the_api_registers_its_kind(
    kubectl: Kubectl, custom: client.CustomObjectsApi
) -> None:
    applied = kubectl("apply", "-f", "-", stdin=CRD)
    assert applied.returncode == 0, applied.stderr
    established = kubectl(
        "wait", "--for=condition=Established", "crd/functions.aws.example.org", "--timeout=5s"
    )
    assert established.returncode == 0, established.stderr

    fn = {"apiVersion": "aws.example.org/v1alpha1", "kind": "Function", "metadata": {"name": "f"}}
    custom.create_namespaced_custom_object("aws.example.org", "v1alpha1", NS, "functions", fn)
    assert kubectl("get", "fn", "-o", "name").stdout.split() == ["function.aws.example.org/f"]

    deleted = kubectl("delete", "crd", "functions.aws.example.org")
    assert deleted.returncode == 0, deleted.stderr
    with pytest.raises(ApiException) as gone:
        custom.list_namespaced_custom_object("aws.example.org", "v1alpha1", NS, "functions")
    assert gone.value.status == 404


def test_invalid_crd_is_rejected(kubectl: Kubectl) -> None:
    result = kubectl("create", "-f", "-", stdin=CRD.replace("name: functions.aws", "name: fns.aws"))
    assert result.returncode != 0
    assert "metadata.name" in result.stderr


# ---- create, get, list ----------------------------------------------------------------------


def test_create_returns_the_created_object(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi
) -> None:
    data, status_code, _ = custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, NS, PLURAL, widget("w1")
    )
    assert status_code == 201
    meta = data["metadata"]
    assert (meta["name"], meta["namespace"]) == ("w1", NS)
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) == peer.peer.store.resource_version
    assert get(custom, "w1") == data


def test_create_conflicts_when_the_object_exists(custom: client.CustomObjectsApi) -> None:
    create(custom, widget("w1"))
    with pytest.raises(ApiException) as error:
        create(custom, widget("w1"))
    assert error.value.status == 409
    assert failure(error.value)["reason"] == "AlreadyExists"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["metadata"].pop("name"), "metadata.name"),
        (lambda b: b["metadata"].update(name="Not_Valid"), "metadata.name"),
        (lambda b: b.update(kind="Gadget"), "kind"),
        (lambda b: b.update(apiVersion="example.org/v2"), "apiVersion"),
    ],
)
def test_create_rejects_invalid_objects(
    custom: client.CustomObjectsApi, change: Any, field: str
) -> None:
    body = widget("w1")
    change(body)
    with pytest.raises(ApiException) as error:
        create(custom, body)
    assert error.value.status == 422
    status = failure(error.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == field


def test_get_missing_object_is_404(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as error:
        get(custom, "nope")
    assert error.value.status == 404
    assert failure(error.value)["message"] == 'widgets.example.org "nope" not found'


def test_list_with_label_and_field_selectors(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi, kubectl: Kubectl
) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}
    created = kubectl("create", "-f", "-", stdin=json.dumps(namespace))
    assert created.returncode == 0, created.stderr
    create(custom, widget("a", labels={"tier": "web", "env": "dev"}))
    create(custom, widget("b", labels={"tier": "db", "env": "prod"}))
    create(custom, widget("c", labels={"tier": "web"}))
    custom.create_namespaced_custom_object(GROUP, VERSION, "other", PLURAL, widget("d"))

    def names(**kw: Any) -> list[str]:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, **kw)
        return [i["metadata"]["name"] for i in listed["items"]]

    assert names() == ["a", "b", "c"]
    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier==web,env=dev") == ["a"]
    assert names(label_selector="env!=dev") == ["b", "c"]  # a missing label matches !=
    assert names(label_selector="env in (dev, prod)") == ["a", "b"]
    assert names(label_selector="tier notin (web)") == ["b"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    with pytest.raises(ApiException) as error:
        names(field_selector="spec.lambdaMemory=1")
    assert error.value.status == 400

    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("default", "a"),
        ("default", "b"),
        ("default", "c"),
        ("other", "d"),
    ]
    assert everywhere["kind"] == "WidgetList"
    assert everywhere["metadata"]["resourceVersion"] == str(peer.peer.store.resource_version)
    in_other = custom.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, field_selector="metadata.namespace=other"
    )
    assert [i["metadata"]["name"] for i in in_other["items"]] == ["d"]


# ---- updates ----------------------------------------------------------------------------------


def test_resource_version_and_optimistic_concurrency(custom: client.CustomObjectsApi) -> None:
    first = create(custom, widget("w1"))
    rv1 = int(first["metadata"]["resourceVersion"])
    second = patch(custom, "w1", {"spec": {"lambdaMemory": 256}}, MERGE)
    assert int(second["metadata"]["resourceVersion"]) > rv1

    stale = {**first, "spec": {"lambdaMemory": 512}}  # still carries rv1
    with pytest.raises(ApiException) as error:
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1", stale)
    assert error.value.status == 409
    assert "the object has been modified" in failure(error.value)["message"]

    stale_patch = {"metadata": {"resourceVersion": str(rv1)}, "spec": {"lambdaMemory": 1}}
    with pytest.raises(ApiException) as error:
        patch(custom, "w1", stale_patch, MERGE)
    assert error.value.status == 409

    fresh = {**second, "spec": {"lambdaMemory": 512}}
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1", fresh)
    assert replaced["spec"] == {"lambdaMemory": 512}
    assert int(replaced["metadata"]["resourceVersion"]) > int(second["metadata"]["resourceVersion"])


def test_generation_bumps_only_on_spec_changes(custom: client.CustomObjectsApi) -> None:
    create(custom, widget("w1"))
    labelled = patch(custom, "w1", {"metadata": {"labels": {"a": "b"}}}, MERGE)
    assert labelled["metadata"]["generation"] == 1
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "w1", {"status": {"ready": True}}
    )
    assert status["metadata"]["generation"] == 1
    changed = patch(custom, "w1", {"spec": {"lambdaMemory": 256}}, MERGE)
    assert changed["metadata"]["generation"] == 2


def test_no_op_writes_keep_the_resource_version(custom: client.CustomObjectsApi) -> None:
    applied = apply(custom, widget("w1"), "tributary")
    again = apply(custom, widget("w1"), "tributary")
    same = patch(custom, "w1", {"spec": {"lambdaMemory": 128}}, MERGE)
    assert applied["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    assert same["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]


def test_merge_json_and_strategic_patches(custom: client.CustomObjectsApi) -> None:
    create(custom, widget("w1", spec={"lambdaMemory": 128, "env": {"A": "1", "B": "2"}}))
    merged = patch(custom, "w1", {"spec": {"env": {"A": None, "C": "3"}}}, MERGE)
    assert merged["spec"] == {"lambdaMemory": 128, "env": {"B": "2", "C": "3"}}

    ops = [
        {"op": "test", "path": "/spec/lambdaMemory", "value": 128},
        {"op": "replace", "path": "/spec/lambdaMemory", "value": 256},
        {"op": "add", "path": "/spec/tags", "value": ["x"]},
        {"op": "add", "path": "/spec/tags/-", "value": "y"},
        {"op": "remove", "path": "/spec/env/B"},
    ]
    jsoned = patch(custom, "w1", ops, "application/json-patch+json")
    assert jsoned["spec"] == {"lambdaMemory": 256, "env": {"C": "3"}, "tags": ["x", "y"]}
    with pytest.raises(ApiException) as error:
        patch(
            custom,
            "w1",
            [{"op": "test", "path": "/spec/lambdaMemory", "value": 1}],
            "application/json-patch+json",
        )
    assert error.value.status == 422

    strategic = patch(
        custom,
        "w1",
        {"spec": {"tags": ["z"], "$retainKeys": ["tags"]}},
        "application/strategic-merge-patch+json",
    )
    assert strategic["spec"] == {"lambdaMemory": 256, "env": {"C": "3"}, "tags": ["z"]}


def test_kubectl_patch_and_edit_style_writes(
    custom: client.CustomObjectsApi, kubectl: Kubectl
) -> None:
    create(custom, widget("w1", spec={"lambdaMemory": 128, "timeout": 30}))
    result = kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"lambdaMemory":512}}')
    assert result.returncode == 0, result.stderr
    result = kubectl("label", "widget", "w1", "team=payments")
    assert result.returncode == 0, result.stderr
    obj = get(custom, "w1")
    assert obj["spec"]["lambdaMemory"] == 512
    assert obj["metadata"]["labels"] == {"team": "payments"}
    managers = {(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]}
    assert managers == {
        ("OpenAPI-Generator", "Update"),  # the Python client's User-Agent prefix
        ("kubectl-patch", "Update"),
        ("kubectl-label", "Update"),
    }


# ---- server-side apply -----------------------------------------------------------------------


def entry(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    return next(e for e in obj["metadata"]["managedFields"] if e["manager"] == manager)


def test_apply_creates_and_records_managed_fields(custom: client.CustomObjectsApi) -> None:
    applied = apply(custom, widget("w1", labels={"app": "x"}), "tributary")
    assert applied["metadata"]["generation"] == 1
    (only,) = applied["metadata"]["managedFields"]
    assert (only["manager"], only["operation"]) == ("tributary", "Apply")
    assert (only["apiVersion"], only["fieldsType"]) == (f"{GROUP}/{VERSION}", "FieldsV1")
    assert only["time"].endswith("Z")
    assert only["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:lambdaMemory": {}},
    }

    edited = patch(
        custom, "w1", {"spec": {"lambdaMemory": 256}}, MERGE, field_manager="kubectl-edit"
    )
    assert entry(edited, "kubectl-edit")["operation"] == "Update"
    assert entry(edited, "kubectl-edit")["fieldsV1"] == {"f:spec": {"f:lambdaMemory": {}}}
    assert entry(edited, "tributary")["fieldsV1"] == {"f:metadata": {"f:labels": {"f:app": {}}}}


def test_apply_conflicts_with_another_manager_unless_forced(
    custom: client.CustomObjectsApi,
) -> None:
    apply(custom, widget("w1"), "tributary")
    patch(custom, "w1", {"spec": {"lambdaMemory": 256}}, MERGE, field_manager="kubectl-edit")

    with pytest.raises(ApiException) as error:
        apply(custom, widget("w1", spec={"lambdaMemory": 128}), "tributary")
    assert error.value.status == 409
    status = failure(error.value)
    assert status["reason"] == "Conflict"
    assert status["message"].startswith(
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using example.org/v1'
    )
    assert status["message"].endswith(": .spec.lambdaMemory")
    (cause,) = status["details"]["causes"]
    assert (cause["type"], cause["field"]) == ("FieldManagerConflict", ".spec.lambdaMemory")
    assert '"kubectl-edit"' in cause["message"]
    assert get(custom, "w1")["spec"]["lambdaMemory"] == 256  # nothing written

    # Agreeing on the value is shared ownership, not a conflict.
    shared = apply(custom, widget("w1", spec={"lambdaMemory": 256}), "other-applier")
    assert "f:lambdaMemory" in entry(shared, "other-applier")["fieldsV1"]["f:spec"]

    forced = apply(custom, widget("w1", spec={"lambdaMemory": 128}), "tributary", force=True)
    assert forced["spec"]["lambdaMemory"] == 128
    assert "kubectl-edit" not in {e["manager"] for e in forced["metadata"]["managedFields"]}
    assert "f:lambdaMemory" in entry(forced, "tributary")["fieldsV1"]["f:spec"]


def test_apply_removes_fields_dropped_from_its_configuration(
    custom: client.CustomObjectsApi,
) -> None:
    apply(
        custom,
        widget("w1", spec={"lambdaMemory": 128, "timeout": 30, "env": {"A": "1"}}),
        "tributary",
    )
    apply(custom, widget("w1", spec={"lambdaMemory": 128, "timeout": 30, "env": {"A": "1"}}), "ops")
    pruned = apply(custom, widget("w1", spec={"lambdaMemory": 128}), "tributary")
    assert pruned["spec"] == {"lambdaMemory": 128, "timeout": 30, "env": {"A": "1"}}  # "ops" holds

    gone = apply(custom, widget("w1", spec={"lambdaMemory": 128}), "ops")
    assert gone["spec"] == {"lambdaMemory": 128}


def test_kubectl_server_side_apply(custom: client.CustomObjectsApi, kubectl: Kubectl) -> None:
    manifest = json.dumps(widget("w1"))
    first = kubectl(
        "apply", "--server-side", "--field-manager=tributary", "-f", "-", stdin=manifest
    )
    assert first.returncode == 0, first.stderr
    kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"lambdaMemory":256}}')

    again = kubectl(
        "apply", "--server-side", "--field-manager=tributary", "-f", "-", stdin=manifest
    )
    assert again.returncode != 0
    assert 'conflict with "kubectl-patch"' in again.stderr
    assert ".spec.lambdaMemory" in again.stderr

    forced = kubectl(
        "apply", "--server-side", "--field-manager=tributary", "--force-conflicts", "-f", "-",
        stdin=manifest,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert get(custom, "w1")["spec"]["lambdaMemory"] == 128


def test_field_sets_round_trip_through_fields_v1() -> None:
    paths = {("spec", "lambdaMemory"), ("metadata", "labels", "app"), ("spec",)}
    encoded = ssa.encode_fields_v1(paths)
    assert encoded["f:spec"] == {".": {}, "f:lambdaMemory": {}}
    assert ssa.decode_fields_v1(encoded) == paths
    # What a real apiserver writes for list elements reads back as ownership of the list.
    assert ssa.decode_fields_v1({"f:spec": {"f:ports": {'k:{"port":80}': {".": {}}}}}) == {
        ("spec", "ports")
    }


# ---- status subresource ----------------------------------------------------------------------


def test_status_subresource(custom: client.CustomObjectsApi) -> None:
    create(custom, {**widget("w1"), "status": {"ignored": True}})
    assert "status" not in get(custom, "w1")

    # Through /status only .status changes; spec and metadata in the body are ignored.
    body = {
        "spec": {"lambdaMemory": 1},
        "metadata": {"labels": {"x": "y"}},
        "status": {"ready": True},
    }
    status = custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "w1", body)
    assert status["status"] == {"ready": True}
    assert status["spec"] == {"lambdaMemory": 128}
    assert "labels" not in status["metadata"]
    by_subresource = {
        e.get("subresource", ""): e["fieldsV1"]
        for e in status["metadata"]["managedFields"]
        if e["manager"] == "OpenAPI-Generator"
    }
    assert by_subresource == {
        "": {"f:spec": {"f:lambdaMemory": {}}},
        "status": {"f:status": {"f:ready": {}}},
    }

    main = patch(custom, "w1", {"spec": {"lambdaMemory": 256}, "status": {"ready": False}}, MERGE)
    assert main["status"] == {"ready": True}  # the main resource ignores .status
    assert main["spec"]["lambdaMemory"] == 256

    read = custom.get_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "w1")
    replaced = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "w1", {**read, "status": {"ready": False}}
    )
    assert replaced["status"] == {"ready": False}

    applied = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "w1", {**widget("w1"), "status": {"phase": "Ready"}},
        field_manager="crossplane", _content_type="application/apply-patch+yaml",
    )  # fmt: skip
    assert applied["status"] == {"ready": False, "phase": "Ready"}
    assert entry(applied, "crossplane")["subresource"] == "status"


def test_kinds_without_status_subresource(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi
) -> None:
    peer.peer.register_kind("plain.example.org", "v1", "Note", "notes", status_subresource=False)
    body = {
        "apiVersion": "plain.example.org/v1",
        "kind": "Note",
        "metadata": {"name": "n"},
        "status": {"a": 1},
    }
    created = custom.create_namespaced_custom_object("plain.example.org", "v1", NS, "notes", body)
    assert created["status"] == {"a": 1}
    with pytest.raises(ApiException) as error:
        custom.get_namespaced_custom_object_status("plain.example.org", "v1", NS, "notes", "n")
    assert error.value.status == 404


# ---- delete ----------------------------------------------------------------------------------


def test_delete(custom: client.CustomObjectsApi) -> None:
    created = create(custom, widget("w1"))
    deleted = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    assert deleted["status"] == "Success"
    assert deleted["details"]["uid"] == created["metadata"]["uid"]
    for attempt in (
        lambda: get(custom, "w1"),
        lambda: custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1"),
    ):
        with pytest.raises(ApiException) as error:
            attempt()
        assert error.value.status == 404


def test_delete_waits_for_finalizers(custom: client.CustomObjectsApi) -> None:
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.org/cleanup"]
    create(custom, body)
    marked = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    assert marked["metadata"]["deletionTimestamp"]
    assert get(custom, "w1")["metadata"]["deletionTimestamp"]
    patch(custom, "w1", {"metadata": {"finalizers": None}}, MERGE)
    with pytest.raises(ApiException) as error:
        get(custom, "w1")
    assert error.value.status == 404


# ---- watch -----------------------------------------------------------------------------------


def collect_events(
    custom: client.CustomObjectsApi, count: int, **kw: Any
) -> tuple[list[dict[str, Any]], threading.Thread]:
    """Watch in a thread (the client blocks) until ``count`` events arrived."""
    events: list[dict[str, Any]] = []
    started = threading.Event()

    def run() -> None:
        w = watch.Watch()
        started.set()
        for event in w.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            timeout_seconds=5,
            **kw,
        ):
            events.append(event)
            if len(events) >= count:
                w.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait()
    return events, thread


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_watch_streams_added_modified_deleted(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi
) -> None:
    create(custom, widget("existing"))
    events, thread = collect_events(custom, 4)
    wait_for(lambda: len(events) >= 1)  # the synthetic ADDED of what already exists
    create(custom, widget("w1"))
    patch(custom, "w1", {"spec": {"lambdaMemory": 256}}, MERGE)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    thread.join(5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "existing"),
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
    ]
    assert events[2]["object"]["spec"]["lambdaMemory"] == 256
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


def test_watch_resumes_from_a_resource_version(custom: client.CustomObjectsApi) -> None:
    create(custom, widget("before"))
    since = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["metadata"][
        "resourceVersion"
    ]
    create(custom, widget("after", labels={"pick": "me"}))
    patch(custom, "after", {"spec": {"lambdaMemory": 1}}, MERGE)
    events, thread = collect_events(custom, 2, resource_version=since, label_selector="pick=me")
    thread.join(5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
    ]


def test_watch_with_expired_resource_version_is_gone() -> None:
    with KubeApiPeerThread(KubeApiPeer(event_log_size=2)) as thread:
        thread.peer.register_kind(GROUP, VERSION, "Widget", PLURAL)
        url = f"{thread.url}/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
        for name in ("a", "b", "c", "d"):
            body = json.dumps(widget(name)).encode()
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=5).close()
        with urllib.request.urlopen(f"{url}?watch=true&resourceVersion=1", timeout=5) as stream:
            event = json.loads(stream.readline())
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


# ---- concurrency, dry-run, versions ---------------------------------------------------------


def test_concurrent_writers_with_optimistic_concurrency(custom: client.CustomObjectsApi) -> None:
    """Threads increment one counter through read-modify-write with resourceVersion checks:
    every 409 is retried, and no increment is lost."""
    create(custom, widget("counter", spec={"count": 0}))
    failures: list[int] = []

    def increment(times: int) -> None:
        for _ in range(times):
            while True:
                current = get(custom, "counter")
                current["spec"]["count"] += 1
                try:
                    custom.replace_namespaced_custom_object(
                        GROUP, VERSION, NS, PLURAL, "counter", current
                    )
                    break
                except ApiException as error:
                    failures.append(error.status)  # retried: only 409s are expected

    threads = [threading.Thread(target=increment, args=(10,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    final = get(custom, "counter")
    assert set(failures) <= {409}
    assert final["spec"]["count"] == 60
    assert final["metadata"]["generation"] == 61


def test_dry_run_and_generate_name(custom: client.CustomObjectsApi) -> None:
    body = widget("ignored")
    body["metadata"] = {"generateName": "w-"}
    dry = create(custom, body, dry_run="All")
    assert dry["metadata"]["name"].startswith("w-")
    assert custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"] == []
    real = create(custom, body)
    assert len(real["metadata"]["name"]) == len("w-") + 5
    patch(custom, real["metadata"]["name"], {"spec": {"lambdaMemory": 1}}, MERGE, dry_run="All")
    assert get(custom, real["metadata"]["name"])["spec"]["lambdaMemory"] == 128


def test_crd_versions_share_objects_and_prefer_the_newest(
    kubectl: Kubectl, custom: client.CustomObjectsApi
) -> None:
    two_versions = CRD.replace(
        "  - name: v1alpha1\n    served: true\n    storage: true\n",
        "  - name: v1beta1\n    served: true\n    storage: false\n"
        "    subresources: {}\n"
        "  - name: v1alpha1\n    served: true\n    storage: true\n",
    )
    applied = kubectl("apply", "-f", "-", stdin=two_versions)
    assert applied.returncode == 0, applied.stderr
    fn = {"apiVersion": "aws.example.org/v1alpha1", "kind": "Function", "metadata": {"name": "f"}}
    custom.create_namespaced_custom_object("aws.example.org", "v1alpha1", NS, "functions", fn)
    read = custom.get_namespaced_custom_object("aws.example.org", "v1beta1", NS, "functions", "f")
    assert read["apiVersion"] == "aws.example.org/v1beta1"
    # kubectl picks the preferred (newest) version; the beta declared no status subresource.
    got = kubectl("get", "functions", "f", "-o", "jsonpath={.apiVersion}")
    assert got.stdout == "aws.example.org/v1beta1"
    _, beta = http_get(f"{kubeconfig_server(kubectl)}/apis/aws.example.org/v1beta1")
    assert [r["name"] for r in beta["resources"]] == ["functions"]


def kubeconfig_server(kubectl: Kubectl) -> str:
    view = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    return view.stdout


# ---- faults ----------------------------------------------------------------------------------


def test_injected_faults_answer_the_next_requests(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi
) -> None:
    create(custom, widget("w1"))
    rule = peer.peer.inject_faults(503, count=2, method="GET", path=r"/widgets/w1$")
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            get(custom, "w1")
        assert error.value.status == 503
        assert failure(error.value)["reason"] == "ServiceUnavailable"
    assert custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]  # not matched
    assert get(custom, "w1")["metadata"]["name"] == "w1"
    assert rule.hits == 2

    # With Retry-After, urllib3 (under the client) retries a 503 GET by itself: worth knowing.
    retried = peer.peer.inject_faults(503, count=2, path=r"/widgets/w1$", retry_after=0)
    assert get(custom, "w1")["metadata"]["name"] == "w1"
    assert retried.hits == 2

    peer.peer.inject_faults(422, message="spec.lambdaMemory: must be at most 10240")
    with pytest.raises(ApiException) as error:
        patch(custom, "w1", {"spec": {"lambdaMemory": 1}}, MERGE)
    assert error.value.status == 422
    assert failure(error.value)["message"] == "spec.lambdaMemory: must be at most 10240"

    peer.peer.inject_faults(500, count=None)
    for _ in range(3):
        with pytest.raises(ApiException):
            get(custom, "w1")
    peer.peer.clear_faults()
    assert get(custom, "w1")


def test_kmock_reactions_take_priority(peer: KubeApiPeerThread) -> None:
    # The peer is a kmock handler: ad-hoc reactions win over the emulated API.
    peer.peer.emulator["get /apis/example.org/v1/namespaces/default/widgets"] << 418 << {"x": 1}
    assert http_get(f"{peer.url}/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}") == (
        418,
        {"x": 1},
    )
    assert http_get(f"{peer.url}/apis/{GROUP}/{VERSION}/{PLURAL}")[0] == 200


def test_refuse_connections_then_listen_again(peer: KubeApiPeerThread) -> None:
    url = f"{peer.url}/api/v1/namespaces/default"
    assert http_get(url)[0] == 200
    peer.refuse_connections(0.5)
    with pytest.raises(urllib.error.URLError) as error:
        urllib.request.urlopen(url, timeout=2)
    assert isinstance(error.value.reason, ConnectionRefusedError)
    peer.wait_listening()
    assert http_get(url)[0] == 200  # same port


async def test_async_start_stop_and_outage() -> None:
    peer = KubeApiPeer()
    url = await peer.start()
    try:
        peer.register_kind(GROUP, VERSION, "Widget", PLURAL)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/apis/{GROUP}/{VERSION}/{PLURAL}") as response:
                assert response.status == 200
                assert (await response.json())["kind"] == "WidgetList"
            await peer.refuse_connections(0.3)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.get(f"{url}/api"):
                    pass
            await peer.wait_listening()
            async with session.get(f"{url}/api") as response:
                assert response.status == 200
    finally:
        await peer.stop()


# ---- kubeconfig and standalone ---------------------------------------------------------------


def test_kubeconfig_is_usable_by_both_clients(
    peer: KubeApiPeerThread, kubeconfig: Path, kubectl: Kubectl
) -> None:
    loaded = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=loaded)
    assert loaded.host == peer.url
    namespaces = client.CoreV1Api(client.ApiClient(loaded)).list_namespace()
    assert "default" in [ns.metadata.name for ns in namespaces.items]
    view = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert view.stdout == peer.url


def test_standalone_process(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    command = [sys.executable, "-m", "sandbox.kubeapi", "--port", "0"]
    with subprocess.Popen(
        [*command, "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as process:
        try:
            assert process.stdout is not None
            assert "listening on http://127.0.0.1:" in process.stdout.readline()
            loaded = client.Configuration()
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=loaded)
            namespaces = client.CoreV1Api(client.ApiClient(loaded)).list_namespace().items
            assert "default" in [ns.metadata.name for ns in namespaces]
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
