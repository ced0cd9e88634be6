"""domain/schema.py: claim schemas from XRDs, defaulting and validation."""

from __future__ import annotations

import copy

import pytest
import yaml

from domain.errors import BadInput
from domain.schema import ClaimSchema, SchemaSet, apply_defaults, schemas_from_xrd, validate
from tests.support import FIXTURES

MW_XRD_FILE = "platform/crossplane/xrd/serverlesseventapp.yaml"


def _load(fixture: str, rel: str):
    return yaml.safe_load((FIXTURES / fixture / rel).read_text())


@pytest.fixture(scope="module")
def mw_schemas() -> list[ClaimSchema]:
    return schemas_from_xrd(_load("messagewall", MW_XRD_FILE), MW_XRD_FILE)


@pytest.fixture(scope="module")
def mw_claim(mw_schemas) -> ClaimSchema:
    return SchemaSet(mw_schemas).find("messagewall.demo/v1alpha1", "ServerlessEventAppClaim")


@pytest.fixture(scope="module")
def db_claim() -> ClaimSchema:
    found = schemas_from_xrd(_load("orders", "platform/xrds/database.yaml"), "db.yaml")
    return SchemaSet(found).find("platform.acme.io/v1beta1", "DatabaseClaim")


def _claim(**spec):
    base = {
        "apiVersion": "messagewall.demo/v1alpha1",
        "kind": "ServerlessEventAppClaim",
        "metadata": {"name": "m"},
        "spec": {"awsAccountId": "123456789012", "environment": "dev"},
    }
    base["spec"].update(spec)
    return base


# ---- schemas_from_xrd ----------------------------------------------------------------


def test_messagewall_xrd_defines_claim_and_composite(mw_schemas):
    assert [(s.api_version, s.kind, s.plural, s.composite_kind, s.source) for s in mw_schemas] == [
        (
            "messagewall.demo/v1alpha1",
            "ServerlessEventAppClaim",
            "serverlesseventappclaims",
            "ServerlessEventApp",
            MW_XRD_FILE,
        ),
        (
            "messagewall.demo/v1alpha1",
            "ServerlessEventApp",
            "serverlesseventapps",
            "ServerlessEventApp",
            MW_XRD_FILE,
        ),
    ]
    assert mw_schemas[0].schema_ == mw_schemas[1].schema_
    assert mw_schemas[0].schema_["properties"]["spec"]["required"] == [
        "awsAccountId",
        "environment",
    ]


def test_orders_xrds_define_claim_and_composite_keys():
    found = []
    for rel in ("platform/xrds/database.yaml", "platform/xrds/queue.yaml"):
        found += schemas_from_xrd(_load("orders", rel), rel)
    schemas = SchemaSet(found)
    assert len(schemas) == 4
    assert {(s.api_version, s.kind) for s in found} == {
        ("platform.acme.io/v1beta1", "DatabaseClaim"),
        ("platform.acme.io/v1beta1", "XDatabase"),
        ("messaging.acme.io/v1", "QueueClaim"),
        ("messaging.acme.io/v1", "XQueue"),
    }
    assert schemas.find("messaging.acme.io/v1", "QueueClaim").plural == "queueclaims"
    assert schemas.find("messaging.acme.io/v1", "QueueClaim").composite_kind == "XQueue"
    assert schemas.find("messaging.acme.io/v1beta1", "QueueClaim") is None
    assert schemas.find("platform.acme.io/v1beta1", "Database") is None


def _xrd(**spec_over):
    spec = {
        "group": "g.example",
        "names": {"kind": "XThing"},
        "versions": [
            {"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v2", "schema": {"openAPIV3Schema": {"type": "object"}}},
        ],
    }
    spec.update(spec_over)
    return {
        "apiVersion": "apiextensions.crossplane.io/v1",
        "kind": "CompositeResourceDefinition",
        "metadata": {"name": "xthings.g.example"},
        "spec": spec,
    }


def test_xrd_without_claim_names_only_defines_the_composite_with_derived_plural():
    found = schemas_from_xrd(_xrd(), "x.yaml")
    assert [(s.api_version, s.kind, s.plural) for s in found] == [
        ("g.example/v1", "XThing", "xthings"),
        ("g.example/v2", "XThing", "xthings"),
    ]


def test_claim_plural_is_derived_when_absent():
    found = schemas_from_xrd(_xrd(claimNames={"kind": "Thing"}), "x.yaml")
    assert [(s.api_version, s.kind, s.plural) for s in found] == [
        ("g.example/v1", "Thing", "things"),
        ("g.example/v1", "XThing", "xthings"),
        ("g.example/v2", "Thing", "things"),
        ("g.example/v2", "XThing", "xthings"),
    ]


def test_not_an_xrd_defines_nothing():
    assert schemas_from_xrd({"kind": "Composition", "spec": {}}, "c.yaml") == []


def _xrd_error(xrd) -> BadInput:
    with pytest.raises(BadInput) as e:
        schemas_from_xrd(xrd, "platform/xrd/x.yaml")
    return e.value


def test_xrd_without_spec():
    xrd = _xrd()
    del xrd["spec"]
    e = _xrd_error(xrd)
    assert (e.file, e.obj, e.field) == (
        "platform/xrd/x.yaml",
        "CompositeResourceDefinition/xthings.g.example",
        "spec",
    )
    assert e.message == (
        "platform/xrd/x.yaml: CompositeResourceDefinition/xthings.g.example: spec: missing"
    )


def test_xrd_without_group():
    assert _xrd_error(_xrd(group="")).field == "spec.group"


def test_xrd_without_names_kind():
    assert _xrd_error(_xrd(names={"plural": "xs"})).field == "spec.names.kind"


def test_xrd_version_without_schema():
    xrd = _xrd()
    del xrd["spec"]["versions"][1]["schema"]
    e = _xrd_error(xrd)
    assert e.field == "spec.versions[1].schema.openAPIV3Schema"
    assert e.message.endswith("spec.versions[1].schema.openAPIV3Schema: missing")


def test_xrd_with_an_invalid_schema():
    xrd = _xrd()
    xrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {"spec": {"type": "banana"}},
    }
    e = _xrd_error(xrd)
    assert e.field == "spec.versions[0].schema.openAPIV3Schema"
    assert "invalid schema: " in e.message
    assert "banana" in e.message


@pytest.mark.parametrize(
    ("spec_over", "field_prefix"),
    [
        ({"versions": ["v1"]}, "spec.versions[0]"),
        ({"versions": [{"name": "v1", "schema": "openAPIV3Schema"}]}, "spec.versions[0]"),
        ({"names": "XThing"}, "spec.names"),
    ],
    ids=["version-not-a-map", "schema-not-a-map", "names-not-a-map"],
)
def test_structurally_wrong_xrd_is_bad_input_not_a_crash(spec_over, field_prefix):
    """A typo in an XRD must be BadInput (non-retryable), never an AttributeError."""
    e = _xrd_error(_xrd(**spec_over))
    assert e.file == "platform/xrd/x.yaml"
    assert e.field is not None
    assert e.field.startswith(field_prefix)


# ---- nullable --------------------------------------------------------------------------


def _schema(props):
    xrd = _xrd()
    xrd["spec"]["versions"] = [
        {
            "name": "v1",
            "schema": {
                "openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": props}},
                }
            },
        }
    ]
    return schemas_from_xrd(xrd, "x.yaml")[0]


def test_nullable_becomes_a_type_union():
    s = _schema({"note": {"type": "string", "nullable": True}})
    assert s.schema_["properties"]["spec"]["properties"]["note"] == {"type": ["string", "null"]}
    assert validate(s, {"spec": {"note": None}}) == []
    assert validate(s, {"spec": {"note": "x"}}) == []
    assert validate(s, {"spec": {"note": 5}}) == ["spec.note: 5 is not of type 'string', 'null'"]


def test_not_nullable_rejects_null():
    s = _schema({"note": {"type": "string"}})
    assert validate(s, {"spec": {"note": None}}) == ["spec.note: None is not of type 'string'"]


def test_nullable_false_is_dropped_and_changes_nothing():
    s = _schema({"note": {"type": "string", "nullable": False}})
    assert s.schema_["properties"]["spec"]["properties"]["note"] == {"type": "string"}


def test_nullable_inside_lists_and_items():
    s = _schema({"tags": {"type": "array", "items": {"type": "integer", "nullable": True}}})
    assert validate(s, {"spec": {"tags": [1, None]}}) == []
    assert validate(s, {"spec": {"tags": [1, "x"]}}) == [
        "spec.tags[1]: 'x' is not of type 'integer', 'null'"
    ]


# ---- apply_defaults -------------------------------------------------------------------


def test_apply_defaults_fills_spec_defaults(mw_claim):
    out = apply_defaults(mw_claim.schema_, _claim(lambdaMemory=512))
    assert out["spec"] == {
        "awsAccountId": "123456789012",
        "environment": "dev",
        "lambdaMemory": 512,
        "resourcePrefix": "messagewall",
        "region": "us-east-1",
        "lambdaTimeout": 10,
        "eventSource": "messagewall.api-handler",
        "artifactBucket": "",
    }


def test_apply_defaults_does_not_create_a_missing_parent(mw_claim):
    obj = {"apiVersion": "messagewall.demo/v1alpha1", "kind": "ServerlessEventAppClaim"}
    assert apply_defaults(mw_claim.schema_, obj) == obj


def test_apply_defaults_keeps_explicit_values_including_null_and_falsy(db_claim):
    out = apply_defaults(
        db_claim.schema_,
        {"spec": {"engine": "mysql", "multiAZ": True, "storageGB": 0, "version": None}},
    )
    assert out["spec"]["engine"] == "mysql"
    assert out["spec"]["multiAZ"] is True
    assert out["spec"]["storageGB"] == 0
    assert out["spec"]["version"] is None
    assert out["spec"]["instanceClass"] == "db.t3.micro"
    assert out["spec"]["backupRetentionDays"] == 7


def test_apply_defaults_does_not_mutate_its_input(mw_claim):
    obj = _claim()
    before = copy.deepcopy(obj)
    apply_defaults(mw_claim.schema_, obj)
    assert obj == before


def test_apply_defaults_nested_and_defaulted_objects():
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "backup": {
                        "type": "object",
                        "default": {},
                        "properties": {
                            "days": {"type": "integer", "default": 7},
                            "window": {"type": "string", "default": "03:00"},
                        },
                    },
                    "network": {
                        "type": "object",
                        "properties": {"public": {"type": "boolean", "default": False}},
                    },
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"port": {"type": "integer", "default": 443}},
                        },
                    },
                    "extra": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"weight": {"type": "integer", "default": 1}},
                        },
                    },
                },
            }
        },
    }
    out = apply_defaults(
        schema,
        {
            "spec": {
                "backup": {"days": 14},
                "rules": [{}, {"port": 80}],
                "extra": {"a": {}, "b": {"weight": 3}},
            }
        },
    )
    assert out == {
        "spec": {
            "backup": {"days": 14, "window": "03:00"},
            "rules": [{"port": 443}, {"port": 80}],
            "extra": {"a": {"weight": 1}, "b": {"weight": 3}},
        }
    }
    # an object default is filled, then defaulted inside; a missing parent stays missing
    assert apply_defaults(schema, {"spec": {}}) == {
        "spec": {"backup": {"days": 7, "window": "03:00"}}
    }


def test_apply_defaults_copies_default_values():
    schema = {"type": "object", "properties": {"l": {"type": "array", "default": [1]}}}
    first = apply_defaults(schema, {})
    first["l"].append(2)
    assert apply_defaults(schema, {}) == {"l": [1]}
    assert schema["properties"]["l"]["default"] == [1]


# ---- validate --------------------------------------------------------------------------


def test_valid_claim_has_no_problems(mw_claim):
    assert validate(mw_claim, _claim()) == []


def test_minimum(mw_claim):
    assert validate(mw_claim, _claim(lambdaMemory=64)) == [
        "spec.lambdaMemory: 64 is less than the minimum of 128"
    ]


def test_maximum(mw_claim):
    assert validate(mw_claim, _claim(lambdaTimeout=901)) == [
        "spec.lambdaTimeout: 901 is greater than the maximum of 900"
    ]


def test_enum(mw_claim):
    assert validate(mw_claim, _claim(environment="qa")) == [
        "spec.environment: 'qa' is not one of ['dev', 'staging', 'prod']"
    ]


def test_pattern(mw_claim):
    assert validate(mw_claim, _claim(awsAccountId="12")) == [
        "spec.awsAccountId: '12' does not match '^[0-9]{12}$'"
    ]


def test_type(mw_claim):
    assert validate(mw_claim, _claim(awsAccountId=123456789012)) == [
        "spec.awsAccountId: 123456789012 is not of type 'string'"
    ]


def test_required(mw_claim):
    obj = _claim()
    obj["spec"] = {}
    assert validate(mw_claim, obj) == [
        "spec: 'awsAccountId' is a required property",
        "spec: 'environment' is a required property",
    ]


def test_problems_are_sorted_by_field(mw_claim):
    problems = validate(mw_claim, _claim(lambdaMemory=64, awsAccountId="x", environment="qa"))
    assert [p.split(":")[0] for p in problems] == [
        "spec.awsAccountId",
        "spec.environment",
        "spec.lambdaMemory",
    ]


def test_additional_properties_string_values(db_claim):
    assert validate(db_claim, {"spec": {"engine": "postgres", "parameters": {"a": 1}}}) == [
        "spec.parameters.a: 1 is not of type 'string'"
    ]


def test_root_level_problem_is_named_object(mw_claim):
    assert validate(mw_claim, []) == ["(object): [] is not of type 'object'"]  # type: ignore[arg-type]


def test_defaults_make_a_claim_valid_only_where_they_apply(db_claim):
    # engine is required but has a default: valid after defaulting, not before
    obj = {"spec": {"storageGB": 50}}
    assert validate(db_claim, obj) == ["spec: 'engine' is a required property"]
    assert validate(db_claim, apply_defaults(db_claim.schema_, obj)) == []
