"""Claim schemas from Crossplane CompositeResourceDefinitions.

An XRD's ``openAPIV3Schema`` is an OpenAPI 3.0 schema, which is JSON Schema draft 4
plus ``nullable`` and ``x-kubernetes-*`` extensions; draft 4 is the validator that
reads ``exclusiveMinimum: true`` the way OpenAPI means it.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from pydantic import BaseModel

from domain.errors import BadInput
from domain.paths import format_path


class ClaimSchema(BaseModel):
    """The schema of one claim (or composite) kind at one version."""

    api_version: str
    kind: str
    plural: str
    composite_kind: str
    source: str  # file the XRD came from, for error messages
    schema_: dict[str, Any]


def schemas_from_xrd(xrd: dict[str, Any], source: str) -> list[ClaimSchema]:
    """Every (apiVersion, kind) an XRD defines: the claim kind and the composite kind."""
    if xrd.get("kind") != "CompositeResourceDefinition":
        return []
    name = xrd.get("metadata", {}).get("name", "?")
    obj = f"CompositeResourceDefinition/{name}"
    spec = xrd.get("spec")
    if not isinstance(spec, dict):
        raise BadInput("missing", file=source, obj=obj, field="spec")
    group = spec.get("group")
    names = spec.get("names") or {}
    for field, value in (("spec.names", names), ("spec.claimNames", spec.get("claimNames") or {})):
        if not isinstance(value, dict):
            raise BadInput("must be a map with kind and plural", file=source, obj=obj, field=field)
    if not isinstance(spec.get("versions") or [], list):
        raise BadInput("must be a list", file=source, obj=obj, field="spec.versions")
    if not isinstance(group, str) or not group:
        raise BadInput("missing", file=source, obj=obj, field="spec.group")
    if not names.get("kind"):
        raise BadInput("missing", file=source, obj=obj, field="spec.names.kind")
    kinds = [(names["kind"], names.get("plural") or names["kind"].lower() + "s")]
    claim_names = spec.get("claimNames") or {}
    if claim_names.get("kind"):
        kinds.insert(
            0, (claim_names["kind"], claim_names.get("plural") or claim_names["kind"].lower() + "s")
        )
    out: list[ClaimSchema] = []
    for i, version in enumerate(spec.get("versions") or []):
        if not isinstance(version, dict) or not isinstance(version.get("schema") or {}, dict):
            raise BadInput(
                "must be a map with name and schema",
                file=source,
                obj=obj,
                field=f"spec.versions[{i}]",
            )
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            raise BadInput(
                "missing", file=source, obj=obj, field=f"spec.versions[{i}].schema.openAPIV3Schema"
            )
        schema = _openapi_to_jsonschema(schema)
        try:
            jsonschema.Draft4Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise BadInput(
                f"invalid schema: {e.message}",
                file=source,
                obj=obj,
                field=f"spec.versions[{i}].schema.openAPIV3Schema",
            ) from e
        for kind, plural in kinds:
            out.append(
                ClaimSchema(
                    api_version=f"{group}/{version.get('name')}",
                    kind=kind,
                    plural=plural,
                    composite_kind=names["kind"],
                    source=source,
                    schema_=schema,
                )
            )
    return out


def _openapi_to_jsonschema(schema: Any) -> Any:
    """Translate ``nullable: true`` into a JSON Schema type union, recursively."""
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _openapi_to_jsonschema(v) for k, v in schema.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of ``value`` with schema defaults filled in, as the API server would.

    Like Kubernetes structural defaulting, a default applies only where its parent
    object exists.
    """
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value and isinstance(sub, dict):
                _default(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    _default(extra, item)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                _default(items, item)


def validate(schema: ClaimSchema, obj: dict[str, Any]) -> list[str]:
    """Every schema violation of ``obj`` as ``field: message`` lines (empty when valid)."""
    validator = jsonschema.Draft4Validator(schema.schema_)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{format_path(tuple(e.absolute_path)) or '(object)'}: {e.message}" for e in errors]


class SchemaSet:
    """Lookup of claim schemas by (apiVersion, kind)."""

    def __init__(self, schemas: list[ClaimSchema]) -> None:
        self._by_key = {(s.api_version, s.kind): s for s in schemas}

    def find(self, api_version: str, kind: str) -> ClaimSchema | None:
        return self._by_key.get((api_version, kind))

    def __len__(self) -> int:
        return len(self._by_key)
