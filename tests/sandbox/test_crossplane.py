"""The Crossplane stand-in between the API peer and moto, driven through real clients only:
the official kubernetes client and kubectl on one side, boto3 on the other."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from kubernetes import client

from sandbox import crossplane as crossplane_module
from sandbox.crossplane import (
    XRD_GROUP,
    XRD_PLURAL,
    XRD_VERSION,
    CrossplaneStandIn,
    claim_conditions,
    definition_crds,
)
from sandbox.kubeapi import KubeApiPeerThread
from sandbox.moto_server import AwsClients, MotoServer
from tests.sandbox.conftest import Kubectl, kubectl_binary

FIXTURES = Path(__file__).parents[1] / "fixtures"
MESSAGEWALL_XRD = FIXTURES / "messagewall/platform/crossplane/xrd/serverlesseventapp.yaml"
MESSAGEWALL_COMPOSITION = (
    FIXTURES / "messagewall/platform/crossplane/composition/serverlesseventapp-aws.yaml"
)
ARTIFACT_KEY = "artifacts/api-handler.zip"
MESSAGEWALL_CLAIM = FIXTURES / "messagewall/infra/claims/base/claim.yaml"
DATABASE_XRD = FIXTURES / "orders/platform/xrds/database.yaml"
DATABASE_CLAIM = FIXTURES / "orders/deploy/base/database.yaml"
DATABASE_COMPOSITION = FIXTURES / "orders/platform/compositions/database.yaml"

MW, MW_VERSION, MW_CLAIMS = "messagewall.demo", "v1alpha1", "serverlesseventappclaims"
NS = "default"
ACCOUNT = "123456789012"

T = TypeVar("T")


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def eventually(probe: Callable[[], T], timeout: float = 10.0) -> T:
    """``probe()``'s first truthy result; AssertionError (with the last one) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            assert result, f"still {result!r} after {timeout}s"
            return result
        time.sleep(0.05)


def establish(
    custom: client.CustomObjectsApi,
    crossplane: CrossplaneStandIn,
    path: Path,
    *compositions: Path,
) -> str:
    """Create an XRD (and Compositions) through the API; wait until the stand-in has
    established the XRD."""
    for composition in compositions:
        custom.create_cluster_custom_object(
            XRD_GROUP, XRD_VERSION, "compositions", load(composition)
        )
    xrd = load(path)
    custom.create_cluster_custom_object(XRD_GROUP, XRD_VERSION, XRD_PLURAL, xrd)
    crossplane.wait_established(xrd["metadata"]["name"])
    return str(xrd["metadata"]["name"])


def establish_messagewall(custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn) -> str:
    return establish(custom, crossplane, MESSAGEWALL_XRD, MESSAGEWALL_COMPOSITION)


def apply_claim(custom: client.CustomObjectsApi, claim: dict[str, Any]) -> None:
    """Server-side apply as Tributary's apply arrow does (field manager ``tributary``)."""
    meta = claim["metadata"]
    custom.patch_namespaced_custom_object(
        MW, MW_VERSION, meta.get("namespace", NS), MW_CLAIMS, meta["name"], claim,
        field_manager="tributary", _content_type="application/apply-patch+yaml",
    )  # fmt: skip


def get_claim(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(MW, MW_VERSION, NS, MW_CLAIMS, name)
    return obj


def messagewall_claim(name: str, **spec: Any) -> dict[str, Any]:
    claim = load(MESSAGEWALL_CLAIM)
    claim["metadata"]["name"] = name
    claim["spec"].update(spec)
    return claim


def reconciled(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, name: str, generation: int
) -> dict[str, Any]:
    crossplane.wait_reconciled(MW_CLAIMS, NS, name, generation, timeout=20)
    return get_claim(custom, name)


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj["status"]["conditions"]}


def generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["generation"])


def summary(obj: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    return {
        t: (c["status"], c["reason"], c["observedGeneration"]) for t, c in conditions(obj).items()
    }


def composite(custom: client.CustomObjectsApi, claim: dict[str, Any]) -> dict[str, Any]:
    """The composite the claim's ``spec.resourceRef`` names."""
    ref = claim["spec"]["resourceRef"]
    group, version = ref["apiVersion"].split("/")
    plural = ref["kind"].lower() + "s"
    obj: dict[str, Any] = custom.get_cluster_custom_object(group, version, plural, ref["name"])
    return obj


def managed(
    custom: client.CustomObjectsApi, claim: dict[str, Any], kind: str, index: int = 0
) -> dict[str, Any]:
    """The ``index``-th managed resource of ``kind`` among the composite's resourceRefs."""
    refs = [r for r in composite(custom, claim)["spec"]["resourceRefs"] if r["kind"] == kind]
    group, version = refs[index]["apiVersion"].split("/")
    obj: dict[str, Any] = custom.get_cluster_custom_object(
        group, version, kind.lower() + "s", refs[index]["name"]
    )
    return obj


def gone(call: Callable[..., object], **params: Any) -> bool:
    """Whether an AWS read says "not found" (any other error fails the test)."""
    try:
        call(**params)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        assert code in {"404", "NoSuchBucket", "NoSuchEntity", "ResourceNotFoundException"}
        return True
    return False


# ---- XRDs ------------------------------------------------------------------------------------


def test_xrd_establishes_claim_and_composite_crds(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, kubectl: Kubectl
) -> None:
    # Installing Crossplane installed the XRD kind itself.
    assert kubectl("get", "xrd").returncode == 0

    name = establish(custom, crossplane, MESSAGEWALL_XRD)

    xrd = custom.get_cluster_custom_object(XRD_GROUP, XRD_VERSION, XRD_PLURAL, name)
    assert {c["type"]: c["status"] for c in xrd["status"]["conditions"]} == {
        "Established": "True",
        "Offered": "True",
    }
    crds = client.ApiextensionsV1Api(custom.api_client)
    claim_crd = crds.read_custom_resource_definition(f"{MW_CLAIMS}.{MW}")
    assert claim_crd.spec.scope == "Namespaced"
    assert claim_crd.spec.names.kind == "ServerlessEventAppClaim"
    (version,) = claim_crd.spec.versions
    assert (version.name, version.storage, version.subresources.status) == (MW_VERSION, True, {})
    spec_schema = version.schema.open_apiv3_schema.properties["spec"]
    assert spec_schema.properties["lambdaMemory"].default == 128  # the XRD's schema, as is
    composite = crds.read_custom_resource_definition(f"serverlesseventapps.{MW}")
    assert composite.spec.scope == "Cluster"

    listed = kubectl("get", f"{MW_CLAIMS}.{MW}", "-A")
    assert listed.returncode == 0, listed.stderr
    assert "No resources found" in listed.stderr


def test_a_broken_xrd_does_not_hold_up_the_others(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn
) -> None:
    broken = load(DATABASE_XRD)
    broken["spec"]["names"]["plural"] = "Not A Plural"  # the CRD it implies is invalid
    custom.create_cluster_custom_object(XRD_GROUP, XRD_VERSION, XRD_PLURAL, broken)

    establish(custom, crossplane, MESSAGEWALL_XRD)

    with pytest.raises(TimeoutError):
        crossplane.wait_established(broken["metadata"]["name"], timeout=0.5)


def test_definition_crds_without_claim_names() -> None:
    xrd = load(MESSAGEWALL_XRD)
    del xrd["spec"]["claimNames"]
    (composite,) = definition_crds(xrd)
    assert composite["metadata"]["name"] == f"serverlesseventapps.{MW}"
    status = composite["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert {"conditions", "observedGeneration", "apiEndpoint"} <= set(status["properties"])


def test_condition_transition_time_moves_only_with_status() -> None:
    first = claim_conditions(1, None, [], "2026-01-01T00:00:00Z")
    again = claim_conditions(2, None, first, "2026-01-02T00:00:00Z")
    failed = claim_conditions(3, "boom", again, "2026-01-03T00:00:00Z")
    assert [c["lastTransitionTime"] for c in again] == ["2026-01-01T00:00:00Z"] * 2
    assert [c["observedGeneration"] for c in again] == [2, 2]
    assert [c["lastTransitionTime"] for c in failed] == ["2026-01-03T00:00:00Z"] * 2
    assert failed[0]["message"] == "boom"


# ---- the message wall ------------------------------------------------------------------------


def test_claim_composes_the_message_wall(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, aws: AwsClients
) -> None:
    establish_messagewall(custom, crossplane)
    apply_claim(custom, messagewall_claim("wall", lambdaMemory=256, lambdaTimeout=30))

    claim = reconciled(custom, crossplane, "wall", 1)

    name = f"messagewall-dev-{ACCOUNT}"
    status = claim["status"]
    assert (status["bucketName"], status["tableName"]) == (name, name)
    assert status["websiteEndpoint"] == f"http://{name}.s3-website-us-east-1.amazonaws.com"
    # Crossplane wrote the composite's reference into the claim's spec: a new generation.
    assert generation(claim) == 2
    assert status["observedGeneration"] == 2
    assert summary(claim) == {
        "Synced": ("True", "ReconcileSuccess", 2),
        "Ready": ("True", "Available", 2),
    }

    s3 = aws.s3()
    assert s3.get_bucket_website(Bucket=name)["IndexDocument"] == {"Suffix": "index.html"}
    assert s3.get_bucket_cors(Bucket=name)["CORSRules"][0]["AllowedOrigins"] == ["*"]
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])["Statement"]
    assert (statement["Principal"], statement["Action"]) == ("*", "s3:GetObject")
    assert s3.head_object(Bucket=name, Key=ARTIFACT_KEY)["ContentLength"] > 0

    table = aws.dynamodb().describe_table(TableName=name)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "PK": "HASH",
        "SK": "RANGE",
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    iam = aws.iam()
    boundary = f"arn:aws:iam::{ACCOUNT}:policy/MessageWallRoleBoundary"
    for role in ("messagewall-api-role", "messagewall-snapshot-role"):
        attached = iam.get_role(RoleName=role)["Role"]["PermissionsBoundary"]
        assert attached["PermissionsBoundaryArn"] == boundary

    lam = aws.lambda_()
    api = lam.get_function_configuration(FunctionName="messagewall-api-handler")
    writer = lam.get_function_configuration(FunctionName="messagewall-snapshot-writer")
    for function in (api, writer):
        assert (function["MemorySize"], function["Timeout"]) == (256, 30)
        assert (function["Runtime"], function["Handler"]) == ("python3.12", "handler.handler")
    assert api["Environment"]["Variables"] == {"TABLE_NAME": name}
    assert writer["Environment"]["Variables"] == {"TABLE_NAME": name, "BUCKET_NAME": name}
    assert api["Role"].endswith(":role/messagewall-api-role")
    url = lam.get_function_url_config(FunctionName="messagewall-api-handler")
    assert status["apiEndpoint"] == url["FunctionUrl"]

    events = aws.events()
    rule = events.describe_rule(Name="messagewall-message-posted")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["messagewall.api-handler"],
        "detail-type": ["MessagePosted"],
    }
    (target,) = events.list_targets_by_rule(Rule="messagewall-message-posted")["Targets"]
    assert target["Arn"] == writer["FunctionArn"]


def test_a_claim_whose_composition_the_watch_has_not_seen_yet_is_composed(
    kubeconfig: Path, custom: client.CustomObjectsApi, moto_server: MotoServer, aws: AwsClients
) -> None:
    """An apply installs the Composition, then the claim; the two watch events race to
    different threads. Under load the claim's can win: the stand-in must read the
    Compositions from the API rather than turn the claim Ready with nothing composed
    (real Crossplane never makes a claim Ready without its Composition)."""
    stand_in = CrossplaneStandIn(kubeconfig, moto_server.endpoint)
    # The Compositions' watch sees nothing at all: the widest possible lag.
    stand_in._on_compositions_listed = lambda items: None  # type: ignore[method-assign]
    stand_in._on_composition = lambda event_type, doc: None  # type: ignore[method-assign]
    with stand_in:
        establish_messagewall(custom, stand_in)
        apply_claim(custom, messagewall_claim("wall", lambdaMemory=256, lambdaTimeout=30))

        claim = reconciled(custom, stand_in, "wall", 2)

        assert summary(claim)["Ready"] == ("True", "Available", 2)
        assert claim["status"]["bucketName"] == f"messagewall-dev-{ACCOUNT}"
        lam = aws.lambda_()
        api = lam.get_function_configuration(FunctionName="messagewall-api-handler")
        assert (api["MemorySize"], api["Timeout"]) == (256, 30)


def test_claim_becomes_a_composite_and_managed_resources_with_references(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, kubectl: Kubectl
) -> None:
    establish_messagewall(custom, crossplane)
    apply_claim(custom, messagewall_claim("wall", lambdaMemory=256))

    claim = reconciled(custom, crossplane, "wall", 1)

    ref = claim["spec"]["resourceRef"]
    assert (ref["apiVersion"], ref["kind"]) == (f"{MW}/{MW_VERSION}", "ServerlessEventApp")
    xr = composite(custom, claim)
    assert xr["spec"]["claimRef"] == {
        "apiVersion": f"{MW}/{MW_VERSION}",
        "kind": "ServerlessEventAppClaim",
        "namespace": NS,
        "name": "wall",
    }
    assert xr["spec"]["compositionRef"] == {"name": "serverlesseventapp-aws"}
    assert xr["spec"]["lambdaMemory"] == 256
    assert xr["spec"]["region"] == "us-east-1"  # the XRD's default, as an API server applies it
    kinds = sorted(r["kind"] for r in xr["spec"]["resourceRefs"])
    assert kinds.count("Function") == 2
    assert kinds.count("Role") == 2
    assert {"Bucket", "Table", "FunctionURL", "Rule", "Target"} <= set(kinds)
    assert xr["status"]["bucketName"] == claim["status"]["bucketName"]

    api = managed(custom, claim, "Function")
    assert api["apiVersion"] == "lambda.aws.upbound.io/v1beta1"
    assert api["metadata"]["labels"]["crossplane.io/composite"] == xr["metadata"]["name"]
    assert api["metadata"]["annotations"]["crossplane.io/external-name"] == (
        "messagewall-api-handler"
    )
    assert api["spec"]["forProvider"]["memorySize"] == 256
    at = api["status"]["atProvider"]
    assert (at["memorySize"], at["timeout"], at["id"]) == (256, 10, "messagewall-api-handler")
    assert at["role"].endswith(":role/messagewall-api-role")  # the resolved roleSelector
    assert conditions(api)["Ready"]["status"] == "True"
    # kubectl sees them as it sees any provider's managed resources
    listed = kubectl("get", "functions.lambda.aws.upbound.io")
    assert listed.returncode == 0, listed.stderr
    assert api["metadata"]["name"] in listed.stdout


def test_an_aws_side_edit_shows_in_at_provider(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, aws: AwsClients
) -> None:
    establish_messagewall(custom, crossplane)
    apply_claim(custom, messagewall_claim("wall"))
    claim = reconciled(custom, crossplane, "wall", 1)

    aws.lambda_().update_function_configuration(
        FunctionName="messagewall-api-handler", MemorySize=1024
    )
    aws.dynamodb().delete_table(TableName=f"messagewall-dev-{ACCOUNT}")
    crossplane.observe_now()  # (or its own poll, meanwhile)

    api = managed(custom, claim, "Function")
    assert api["status"]["atProvider"]["memorySize"] == 1024
    assert api["spec"]["forProvider"]["memorySize"] == 128  # the claim still says 128
    table = managed(custom, claim, "Table")
    assert (conditions(table)["Ready"]["status"], conditions(table)["Ready"]["reason"]) == (
        "False",
        "Unavailable",
    )
    assert crossplane.observe_now() == 0  # nothing changed since: nothing written
    function = aws.lambda_().get_function_configuration(FunctionName="messagewall-api-handler")
    assert function["MemorySize"] == 1024  # observed, never reverted


def test_new_generation_updates_the_lambdas(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, aws: AwsClients
) -> None:
    establish_messagewall(custom, crossplane)
    apply_claim(custom, messagewall_claim("wall"))
    first = generation(reconciled(custom, crossplane, "wall", 1))

    apply_claim(custom, messagewall_claim("wall", lambdaMemory=512, eventSource="wall.api"))

    claim = reconciled(custom, crossplane, "wall", first + 1)
    assert claim["metadata"]["generation"] == first + 1
    assert claim["status"]["observedGeneration"] == first + 1
    assert {c["observedGeneration"] for c in claim["status"]["conditions"]} == {first + 1}
    for function in ("messagewall-api-handler", "messagewall-snapshot-writer"):
        assert aws.lambda_().get_function_configuration(FunctionName=function)["MemorySize"] == 512
    rule = aws.events().describe_rule(Name="messagewall-message-posted")
    assert json.loads(rule["EventPattern"])["source"] == ["wall.api"]


def test_aws_side_edit_is_not_reverted(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, aws: AwsClients
) -> None:
    establish_messagewall(custom, crossplane)
    apply_claim(custom, messagewall_claim("wall"))
    before = reconciled(custom, crossplane, "wall", 1)
    lam = aws.lambda_()

    # Break-glass in AWS, then writes that change no generation: status, a label.
    lam.update_function_configuration(FunctionName="messagewall-api-handler", MemorySize=1024)
    custom.patch_namespaced_custom_object_status(
        MW, MW_VERSION, NS, MW_CLAIMS, "wall", {"status": {"message": "looked at by an operator"}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    custom.patch_namespaced_custom_object(
        MW, MW_VERSION, NS, MW_CLAIMS, "wall", {"metadata": {"labels": {"incident": "inc-42"}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    # A barrier: the stand-in handles one claim kind's events in order, so once a claim created
    # after those writes is reconciled, any reaction to them would have happened.
    apply_claim(custom, messagewall_claim("barrier", resourcePrefix="barrier"))
    reconciled(custom, crossplane, "barrier", 1)

    function = lam.get_function_configuration(FunctionName="messagewall-api-handler")
    assert function["MemorySize"] == 1024  # the drift stays visible
    after = get_claim(custom, "wall")
    assert generation(after) == generation(before)
    assert after["status"]["conditions"] == before["status"]["conditions"]
    assert after["status"]["message"] == "looked at by an operator"  # not rewritten either


def test_a_changed_annotation_reconciles_the_claim_again(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, aws: AwsClients
) -> None:
    """As Crossplane's controllers reconcile on every watch event: an annotation change
    (a revert's reconcile request) converges AWS without a new generation."""
    establish_messagewall(custom, crossplane)
    apply_claim(custom, messagewall_claim("wall", lambdaMemory=256))
    before = generation(reconciled(custom, crossplane, "wall", 1))
    lam = aws.lambda_()
    lam.update_function_configuration(FunctionName="messagewall-api-handler", MemorySize=1024)

    custom.patch_namespaced_custom_object(
        MW, MW_VERSION, NS, MW_CLAIMS, "wall",
        {"metadata": {"annotations": {"tributary.dev/reconcile-requested-at": "t1"}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip

    deadline = time.monotonic() + 10
    memory = 1024
    while time.monotonic() < deadline and memory != 256:
        memory = lam.get_function_configuration(FunctionName="messagewall-api-handler")[
            "MemorySize"
        ]
        time.sleep(0.1)
    assert memory == 256
    assert generation(get_claim(custom, "wall")) == before


def test_aws_rejection_is_reported_and_not_retried(
    custom: client.CustomObjectsApi,
    crossplane: CrossplaneStandIn,
    aws: AwsClients,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sandbox.crossplane")
    establish_messagewall(custom, crossplane)
    long_prefix = "messagewall-" + "x" * 40  # bucket name: 69 characters, AWS allows 63

    apply_claim(custom, messagewall_claim("wall", resourcePrefix=long_prefix))

    claim = reconciled(custom, crossplane, "wall", 1)
    failed = generation(claim)
    synced, ready = conditions(claim)["Synced"], conditions(claim)["Ready"]
    assert (synced["status"], synced["reason"], synced["observedGeneration"]) == (
        "False",
        "ReconcileError",
        failed,
    )
    assert "InvalidBucketName" in synced["message"]
    assert "The specified bucket is not valid" in synced["message"]
    assert (ready["status"], ready["reason"]) == ("False", "Creating")
    assert aws.s3().list_buckets()["Buckets"] == []
    # The managed resource says so too, as a provider's does.
    bucket = managed(custom, claim, "Bucket")
    assert conditions(bucket)["Synced"]["status"] == "False"

    # Not retried on its own (barrier as above) ...
    apply_claim(custom, messagewall_claim("barrier", resourcePrefix="barrier"))
    reconciled(custom, crossplane, "barrier", 1)
    failures = [r for r in caplog.records if f"wall generation {failed} failed" in r.getMessage()]
    assert len(failures) == 1

    # ... but a new generation is reconciled again.
    apply_claim(custom, messagewall_claim("wall", resourcePrefix="wall"))
    claim = reconciled(custom, crossplane, "wall", failed + 1)
    assert conditions(claim)["Synced"]["status"] == "True"
    assert conditions(claim)["Ready"]["status"] == "True"


def test_deleting_a_precious_claim_keeps_table_and_bucket(
    custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn, aws: AwsClients
) -> None:
    establish_messagewall(custom, crossplane)
    precious = messagewall_claim("prod", environment="prod")
    precious["metadata"]["annotations"] = {
        "confighub.io/precious": "true",
        "confighub.io/precious-resources": "dynamodb,s3",
    }
    ordinary = messagewall_claim("scratch", resourcePrefix="scratch")
    apply_claim(custom, precious)
    apply_claim(custom, ordinary)
    reconciled(custom, crossplane, "prod", 1)
    reconciled(custom, crossplane, "scratch", 1)
    s3, ddb, lam, iam = aws.s3(), aws.dynamodb(), aws.lambda_(), aws.iam()

    for name in ("prod", "scratch"):
        custom.delete_namespaced_custom_object(MW, MW_VERSION, NS, MW_CLAIMS, name)

    # Teardown runs after the claims are gone: wait until everything composed is gone.
    for prefix in ("messagewall", "scratch"):
        for check in (
            partial(gone, lam.get_function, FunctionName=f"{prefix}-api-handler"),
            partial(gone, lam.get_function, FunctionName=f"{prefix}-snapshot-writer"),
            partial(gone, iam.get_role, RoleName=f"{prefix}-api-role"),
            partial(gone, iam.get_role, RoleName=f"{prefix}-snapshot-role"),
            partial(gone, aws.events().describe_rule, Name=f"{prefix}-message-posted"),
        ):
            eventually(check)
    eventually(partial(gone, ddb.describe_table, TableName=f"scratch-dev-{ACCOUNT}"))
    eventually(partial(gone, s3.head_bucket, Bucket=f"scratch-dev-{ACCOUNT}"))
    # The precious data stores stay (orphaned).
    assert not gone(ddb.describe_table, TableName=f"messagewall-prod-{ACCOUNT}")
    assert not gone(s3.head_bucket, Bucket=f"messagewall-prod-{ACCOUNT}")


# ---- other kinds, outages -------------------------------------------------------------------


def test_other_claim_kinds_become_ready_without_aws(
    kubeconfig: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    # AWS is unreachable here: a single AWS call would make the claim fail.
    with CrossplaneStandIn(kubeconfig, "http://127.0.0.1:9") as crossplane:
        establish(custom, crossplane, DATABASE_XRD)
        client.CoreV1Api(api).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "orders"}}
        )
        custom.create_namespaced_custom_object(
            "platform.acme.io", "v1beta1", "orders", "databaseclaims", load(DATABASE_CLAIM)
        )

        crossplane.wait_reconciled("databaseclaims", "orders", "orders-db", 1)

        obj = custom.get_namespaced_custom_object(
            "platform.acme.io", "v1beta1", "orders", "databaseclaims", "orders-db"
        )
        assert obj["status"]["observedGeneration"] == generation(obj)
        assert summary(obj) == {
            "Synced": ("True", "ReconcileSuccess", generation(obj)),
            "Ready": ("True", "Available", generation(obj)),
        }
        assert set(obj["status"]) == {"conditions", "observedGeneration"}


def test_managed_kinds_without_a_provider_become_ready_without_aws(
    kubeconfig: Path, api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    with CrossplaneStandIn(kubeconfig, "http://127.0.0.1:9") as crossplane:
        establish(custom, crossplane, DATABASE_XRD, DATABASE_COMPOSITION)
        client.CoreV1Api(api).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "orders"}}
        )
        custom.create_namespaced_custom_object(
            "platform.acme.io", "v1beta1", "orders", "databaseclaims", load(DATABASE_CLAIM)
        )

        crossplane.wait_reconciled("databaseclaims", "orders", "orders-db", 1)

        obj = custom.get_namespaced_custom_object(
            "platform.acme.io", "v1beta1", "orders", "databaseclaims", "orders-db"
        )
        assert conditions(obj)["Ready"]["status"] == "True"
        instance = managed(custom, obj, "Instance")
        assert instance["apiVersion"] == "rds.aws.upbound.io/v1beta1"
        assert instance["spec"]["forProvider"]["engine"] == "postgres"
        assert instance["spec"]["forProvider"]["allocatedStorage"] == 20  # the XRD default
        assert instance["spec"]["forProvider"]["tags"] == {"namespace": "orders"}
        assert conditions(instance)["Ready"]["status"] == "True"
        assert instance["status"]["atProvider"] == {}


def test_unreachable_aws_is_retried_a_few_times(
    kubeconfig: Path,
    custom: client.CustomObjectsApi,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(crossplane_module, "RETRY_DELAYS", (0.05, 0.05))
    caplog.set_level(logging.WARNING, logger="sandbox.crossplane")

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if "default/wall" in r.getMessage()]

    with CrossplaneStandIn(kubeconfig, "http://127.0.0.1:9") as crossplane:
        establish_messagewall(custom, crossplane)
        apply_claim(custom, messagewall_claim("wall"))
        eventually(lambda: any("generation 2 failed: " in m for m in messages()), timeout=20)

    assert sum("retrying in" in m for m in messages()) == 2  # then it gave up
    synced = conditions(get_claim(custom, "wall"))["Synced"]
    assert (synced["status"], synced["reason"]) == ("False", "ReconcileError")
    assert "Could not connect to the endpoint URL" in synced["message"]


def test_claims_are_picked_up_after_an_api_outage(
    peer: KubeApiPeerThread, custom: client.CustomObjectsApi, crossplane: CrossplaneStandIn
) -> None:
    establish_messagewall(custom, crossplane)
    peer.refuse_connections(0.5)
    peer.wait_listening()

    apply_claim(custom, messagewall_claim("wall"))

    claim = reconciled(custom, crossplane, "wall", 1)
    assert conditions(claim)["Ready"]["status"] == "True"


# ---- the sandbox process ---------------------------------------------------------------------


def test_sandbox_process_serves_until_sigterm(tmp_path: Path) -> None:
    ready_file, kubeconfig = tmp_path / "ready.json", tmp_path / "sandbox" / "kubeconfig"
    log_file = tmp_path / "sandbox.log"  # a file, not a pipe nobody reads while it runs
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--kube-port", "0", "--aws-port", "0",
             "--kubeconfig", str(kubeconfig), "--ready-file", str(ready_file)],
            stderr=log, cwd=Path(__file__).parents[2],
        )  # fmt: skip
    try:
        eventually(lambda: ready_file.exists() or process.poll() is not None, timeout=30)
        assert process.poll() is None, log_file.read_text()
        ready = json.loads(ready_file.read_text())
        assert ready["kubeconfig"] == str(kubeconfig.resolve())
        assert (
            yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
            == (ready["kube_url"])
        )

        namespaces = subprocess.run(
            [kubectl_binary(), "--kubeconfig", ready["kubeconfig"], "get", "ns"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")},
        )  # fmt: skip
        assert namespaces.returncode == 0, namespaces.stderr
        assert "default" in namespaces.stdout
        xrds = subprocess.run(
            [kubectl_binary(), "--kubeconfig", ready["kubeconfig"], "get", "xrd"],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")},
        )  # fmt: skip
        assert xrds.returncode == 0, xrds.stderr  # the stand-in installed its CRD
        s3 = boto3.client(
            "s3", endpoint_url=ready["aws_endpoint"], region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        assert s3.list_buckets()["Buckets"] == []

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log_file.read_text()
        assert "sandbox stopped" in log_file.read_text()
        assert not ready_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
