"""Compositions, pure: patch-and-transform forward (compose) and backward (drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.composition import (
    Composition,
    CompositionError,
    NotInvertible,
    apply_transform,
    get_field,
    go_sprintf,
    invert_transforms,
    parse_composition,
    parse_field_path,
    patch_composite,
    render,
    resource_drift,
    select_composition,
    set_field,
)
from domain.paths import MISSING

FIXTURES = Path(__file__).parents[1] / "fixtures"
MW_COMPOSITION = (
    FIXTURES / "messagewall/platform/crossplane/composition/serverlesseventapp-aws.yaml"
)
ACCOUNT = "123456789012"


def messagewall() -> Composition:
    return parse_composition(yaml.safe_load(MW_COMPOSITION.read_text()))


def composite(**spec: Any) -> dict[str, Any]:
    base = {
        "awsAccountId": ACCOUNT,
        "environment": "dev",
        "resourcePrefix": "messagewall",
        "region": "us-east-1",
        "lambdaMemory": 128,
        "lambdaTimeout": 10,
        "eventSource": "messagewall.api-handler",
        "artifactBucket": "",
    }
    return {
        "apiVersion": "messagewall.demo/v1alpha1",
        "kind": "ServerlessEventApp",
        "metadata": {"name": "wall-abcde"},
        "spec": {**base, **spec},
    }


def by_name(c: Composition, xr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r.name: r.body for r in render(c, xr)}


# ---- field paths ------------------------------------------------------------------------------


def test_field_paths() -> None:
    assert parse_field_path("metadata.annotations[crossplane.io/external-name]") == (
        "metadata",
        "annotations",
        "crossplane.io/external-name",
    )
    assert parse_field_path("spec.items[2].name") == ("spec", "items", 2, "name")
    assert parse_field_path('metadata.labels["a.b/c"]') == ("metadata", "labels", "a.b/c")
    with pytest.raises(CompositionError):
        parse_field_path(".spec")


def test_set_field_creates_maps_and_lists() -> None:
    obj: dict[str, Any] = {}
    set_field(obj, parse_field_path("spec.env[0].variables.A"), "x")
    assert obj == {"spec": {"env": [{"variables": {"A": "x"}}]}}
    assert get_field(obj, ("spec", "env", 1)) is MISSING


def test_go_sprintf() -> None:
    assert go_sprintf("%s-%s-%d", "a", "b", 3) == "a-b-3"
    assert go_sprintf("100%% %v", True) == "100% true"
    assert go_sprintf("%s %s", "a") == "a %!s(MISSING)"


# ---- transforms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transform", "value", "out"),
    [
        ({"type": "map", "map": {"dev": "small", "prod": "large"}}, "prod", "large"),
        ({"type": "math", "math": {"type": "Multiply", "multiply": 1024}}, 2, 2048),
        ({"type": "math", "math": {"multiply": 2}}, 3, 6),
        ({"type": "math", "math": {"type": "ClampMin", "clampMin": 128}}, 64, 128),
        ({"type": "string", "string": {"type": "Format", "fmt": "%s-x"}}, "a", "a-x"),
        ({"type": "string", "string": {"type": "Convert", "convert": "ToUpper"}}, "a", "A"),
        ({"type": "string", "string": {"type": "Convert", "convert": "ToBase64"}}, "a", "YQ=="),
        ({"type": "string", "string": {"type": "TrimPrefix", "trim": "arn:"}}, "arn:x", "x"),
        ({"type": "string", "string": {"type": "TrimSuffix", "trim": ".com"}}, "a.com", "a"),
        (
            {
                "type": "string",
                "string": {"type": "Regexp", "regexp": {"match": "b(.)", "group": 1}},
            },
            "abc",
            "c",
        ),
        ({"type": "convert", "convert": {"toType": "string"}}, 128, "128"),
        ({"type": "convert", "convert": {"toType": "int64"}}, "128", 128),
        ({"type": "convert", "convert": {"toType": "bool"}}, "true", True),
        (
            {
                "type": "match",
                "match": {
                    "patterns": [{"type": "regexp", "regexp": "^pr", "result": 3}],
                    "fallbackValue": 1,
                },
            },
            "prod",
            3,
        ),
    ],
)
def test_transforms(transform: dict[str, Any], value: Any, out: Any) -> None:
    assert apply_transform(transform, value) == out


def test_a_transform_that_cannot_apply_names_the_problem() -> None:
    with pytest.raises(CompositionError, match="no entry for 'staging'"):
        apply_transform({"type": "map", "map": {"dev": "x"}}, "staging")
    with pytest.raises(CompositionError, match="unsupported transform"):
        apply_transform({"type": "bogus"}, 1)


@pytest.mark.parametrize(
    ("transforms", "output", "before", "expected"),
    [
        ([], 512, 128, 512),
        ([{"type": "math", "math": {"type": "Multiply", "multiply": 1024}}], 4096, 2, 4),
        ([{"type": "string", "string": {"type": "Format", "fmt": "%s-api"}}], "b-api", "a", "b"),
        ([{"type": "convert", "convert": {"toType": "string"}}], "256", 128, 256),
        ([{"type": "map", "map": {"dev": "small", "prod": "large"}}], "large", "dev", "prod"),
        (
            [
                {"type": "math", "math": {"multiply": 60}},
                {"type": "convert", "convert": {"toType": "string"}},
            ],
            "120",
            1,
            2,
        ),
    ],
)
def test_inverse_transforms(
    transforms: list[dict[str, Any]], output: Any, before: Any, expected: Any
) -> None:
    found = invert_transforms(transforms, output, before)
    assert found == expected
    assert type(found) is type(expected)


@pytest.mark.parametrize(
    "transforms",
    [
        [{"type": "string", "string": {"type": "Convert", "convert": "ToUpper"}}],
        [{"type": "map", "map": {"a": "x", "b": "x"}}],
        [{"type": "math", "math": {"multiply": 1024}}],  # 1000 is no multiple of 1024
    ],
)
def test_transforms_without_an_inverse(transforms: list[dict[str, Any]]) -> None:
    with pytest.raises(NotInvertible):
        invert_transforms(transforms, "x", 1)
    if transforms[0]["type"] == "math":
        with pytest.raises(NotInvertible):
            invert_transforms(transforms, 1000, 1)


# ---- the message wall's composition -----------------------------------------------------------


def test_the_message_wall_composes_the_reference_scenario() -> None:
    c = messagewall()
    assert (c.composite_api_version, c.composite_kind) == (
        "messagewall.demo/v1alpha1",
        "ServerlessEventApp",
    )
    out = by_name(c, composite(lambdaMemory=256, lambdaTimeout=30))
    name = f"messagewall-dev-{ACCOUNT}"

    def external(r: str) -> str:
        return str(out[r]["metadata"]["annotations"]["crossplane.io/external-name"])

    assert external("website-bucket") == external("messages-table") == name
    assert external("api-handler") == "messagewall-api-handler"
    assert external("snapshot-writer") == "messagewall-snapshot-writer"
    assert external("api-role") == "messagewall-api-role"
    assert external("snapshot-rule") == "messagewall-message-posted"
    api = out["api-handler"]["spec"]["forProvider"]
    assert (api["memorySize"], api["timeout"], api["region"]) == (256, 30, "us-east-1")
    assert api["environment"] == [{"variables": {"TABLE_NAME": name}}]
    assert api["s3Bucket"] == name
    writer = out["snapshot-writer"]["spec"]["forProvider"]
    assert writer["environment"] == [{"variables": {"TABLE_NAME": name, "BUCKET_NAME": name}}]
    role = out["api-role"]["spec"]["forProvider"]
    assert role["permissionsBoundary"] == f"arn:aws:iam::{ACCOUNT}:policy/MessageWallRoleBoundary"
    assert json.loads(role["inlinePolicy"][0]["policy"])["Statement"][1]["Resource"] == (
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{name}"
    )
    pattern = json.loads(out["snapshot-rule"]["spec"]["forProvider"]["eventPattern"])
    assert pattern == {"source": ["messagewall.api-handler"], "detail-type": ["MessagePosted"]}
    assert out["website-bucket"]["metadata"]["annotations"][
        "crossplane.io/composition-resource-name"
    ] == ("website-bucket")
    assert "deletionPolicy" not in out["website-bucket"]["spec"]  # Crossplane's default: Delete


def test_artifact_bucket_overrides_the_website_bucket() -> None:
    out = by_name(messagewall(), composite(artifactBucket="shared-artifacts"))
    assert out["api-handler"]["spec"]["forProvider"]["s3Bucket"] == "shared-artifacts"


@pytest.mark.parametrize(
    ("annotations", "orphaned"),
    [
        ({}, set()),
        ({"confighub.io/precious": "false", "confighub.io/precious-resources": "s3"}, set()),
        ({"confighub.io/precious": "true", "confighub.io/precious-resources": " S3 "}, {"s3"}),
        (
            {"confighub.io/precious": "true", "confighub.io/precious-resources": "dynamodb,s3"},
            {"s3", "dynamodb"},
        ),
        ({"confighub.io/precious": "true"}, {"s3", "dynamodb"}),  # no list: keep the data
    ],
)
def test_precious_claims_orphan_their_data_stores(
    annotations: dict[str, str], orphaned: set[str]
) -> None:
    xr = composite()
    xr["metadata"]["annotations"] = annotations
    out = by_name(messagewall(), xr)
    policies = {
        "s3": out["website-bucket"]["spec"].get("deletionPolicy", "Delete"),
        "dynamodb": out["messages-table"]["spec"].get("deletionPolicy", "Delete"),
    }
    assert {k for k, v in policies.items() if v == "Orphan"} == orphaned


def test_to_composite_patches_fill_the_status() -> None:
    c = messagewall()
    observed = {
        "website-bucket": {"status": {"atProvider": {"id": "b", "region": "us-west-2"}}},
        "api-handler-url": {"status": {"atProvider": {"functionUrl": "https://u/"}}},
    }
    xr = patch_composite(c, composite(), observed)
    assert xr["status"] == {
        "bucketName": "b",
        "websiteEndpoint": "http://b.s3-website-us-west-2.amazonaws.com",
        "apiEndpoint": "https://u/",
    }


def test_select_composition() -> None:
    c = messagewall()
    assert select_composition([c], "messagewall.demo/v1alpha1", "ServerlessEventApp") is c
    assert select_composition([c], "messagewall.demo/v1", "ServerlessEventApp", name="x") is None
    assert select_composition([c], "other.demo/v1", "ServerlessEventApp") is None


def test_bad_compositions_are_named() -> None:
    doc = yaml.safe_load(MW_COMPOSITION.read_text())
    doc["spec"]["pipeline"][0]["input"]["resources"][0]["patches"][0]["patchSetName"] = "nope"
    with pytest.raises(CompositionError, match="no patchSet named 'nope'") as err:
        parse_composition(doc, file="c.yaml")
    assert "c.yaml" in str(err.value)
    assert "website-bucket" in str(err.value)
    del doc["spec"]["compositeTypeRef"]
    with pytest.raises(CompositionError, match="compositeTypeRef"):
        parse_composition(doc)


# ---- drift: atProvider against what the patches derive ------------------------------------


def observed(c: Composition, xr: dict[str, Any], name: str, **at: Any) -> dict[str, Any]:
    body = by_name(c, xr)[name]
    body["status"] = {"atProvider": {**body["spec"]["forProvider"], **at}}
    return body


def test_a_patched_field_maps_back_to_the_claim_field() -> None:
    c, xr = messagewall(), composite(lambdaMemory=256)
    (drift,) = resource_drift(c, xr, observed(c, xr, "api-handler", memorySize=1024))
    assert drift.path == "spec.forProvider.memorySize"
    assert (drift.wanted, drift.observed) == (256, 1024)
    assert (drift.claim_path, drift.claim_live) == (("spec", "lambdaMemory"), 1024)


def test_a_formatted_field_maps_back_through_the_format() -> None:
    c, xr = messagewall(), composite()
    pattern = '{"source": ["other.source"], "detail-type": ["MessagePosted"]}'
    (drift,) = resource_drift(c, xr, observed(c, xr, "snapshot-rule", eventPattern=pattern))
    assert (drift.claim_path, drift.claim_live) == (("spec", "eventSource"), "other.source")


def test_a_field_no_patch_maps_is_drift_of_the_managed_resource() -> None:
    c, xr = messagewall(), composite()
    found = resource_drift(
        c, xr, observed(c, xr, "api-handler", runtime="python3.13", environment=[{"variables": {}}])
    )
    paths = {d.path: d for d in found}
    assert set(paths) == {
        "spec.forProvider.runtime",
        "spec.forProvider.environment[0].variables.TABLE_NAME",
    }
    assert paths["spec.forProvider.runtime"].observed == "python3.13"
    assert all(d.claim_path == () for d in found)  # a base value; a combine has no inverse


def test_the_same_json_differently_spelled_is_no_drift() -> None:
    c, xr = messagewall(), composite()
    pattern = '{"detail-type": ["MessagePosted"], "source": ["messagewall.api-handler"]}'
    assert resource_drift(c, xr, observed(c, xr, "snapshot-rule", eventPattern=pattern)) == []
    assert resource_drift(c, xr, observed(c, xr, "api-handler", memorySize=128.0)) == []


def test_fields_the_provider_does_not_report_are_not_compared() -> None:
    c, xr = messagewall(), composite()
    body = by_name(c, xr)["api-handler"]
    body["status"] = {"atProvider": {"memorySize": 128}}
    assert resource_drift(c, xr, body) == []
