"""Policy activities: XRD schemas (jsonschema) and Rego policies (regopy).

``deny`` blocks; ``warn`` is recorded on the revision. The bundle a publish loads
is stored with the space, so changes made outside Git meet the same gates.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from regopy import Interpreter, RegoError
from temporalio import activity

from activities._errors import decided
from activities.source import SourceCache
from domain.authority import PolicyBundle
from domain.errors import BadInput
from domain.messages import (
    CheckObjectsInput,
    CheckObjectsResult,
    LoadBundleInput,
    LoadBundleResult,
)
from domain.publish import RenderedUnit
from domain.schema import SchemaSet, apply_defaults, schemas_from_xrd, validate

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)


class PolicyActivities:
    def __init__(self, cache: SourceCache) -> None:
        self.cache = cache

    @activity.defn(name="policy.load_bundle")
    @decided
    def load_bundle(self, inp: LoadBundleInput) -> LoadBundleResult:
        tree = self.cache.tree(inp.source)
        return LoadBundleResult(
            bundle=load_bundle(tree, inp.policies, inp.schemas, commit=inp.source.commit)
        )

    @activity.defn(name="policy.check")
    @decided
    def check(self, inp: CheckObjectsInput) -> CheckObjectsResult:
        return CheckObjectsResult(units=check_objects(inp))


def load_bundle(
    tree: Path, policies: list[str], schemas: list[str], *, commit: str
) -> PolicyBundle:
    tree = tree.resolve()
    modules: dict[str, str] = {}
    for folder in policies:
        for path in _files(tree, folder, (".rego",), kind="policies"):
            if path.name.endswith("_test.rego"):
                continue  # Rego unit tests are for `opa test`, not for gating
            modules[str(path.relative_to(tree))] = path.read_text()
    xrds: dict[str, list[dict[str, Any]]] = {}
    for folder in schemas:
        for path in _files(tree, folder, (".yaml", ".yml", ".json"), kind="schemas"):
            rel = str(path.relative_to(tree))
            try:
                docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f"{rel}:{mark.line + 1}" if mark else rel
                raise BadInput(f"malformed YAML: {getattr(e, 'problem', e)}", file=where) from e
            found = [d for d in docs if d.get("kind") == "CompositeResourceDefinition"]
            if found:
                xrds[rel] = found
    bundle = PolicyBundle(commit=commit, modules=modules, xrds=xrds)
    # Compile once here so a broken policy fails the publish as bad input, naming
    # the file, before anything is planned.
    _interpreter(bundle, space="", environment="")
    _schema_set(bundle)
    digest = hashlib.sha256(json.dumps([modules, xrds], sort_keys=True).encode()).hexdigest()[:16]
    return bundle.model_copy(update={"digest": digest})


def _files(tree: Path, folder: str, suffixes: tuple[str, ...], *, kind: str) -> list[Path]:
    base = (tree / folder).resolve()
    if not base.is_relative_to(tree):
        raise BadInput("must be a path inside the repository", file="tributary.yaml", field=kind)
    if not base.is_dir():
        raise BadInput(f"{folder!r} is not a directory", file="tributary.yaml", field=kind)
    return sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in suffixes)


def _schema_set(bundle: PolicyBundle) -> SchemaSet:
    schemas = []
    for path, docs in bundle.xrds.items():
        for doc in docs:
            schemas.extend(schemas_from_xrd(doc, path))
    return SchemaSet(schemas)


def _interpreter(bundle: PolicyBundle, *, space: str, environment: str) -> Interpreter:
    rego = Interpreter()
    for path, text in bundle.modules.items():
        try:
            rego.add_module(path, text)
        except RegoError as e:
            raise BadInput(f"Rego does not compile: {_rego_message(e)}", file=path) from e
    rego.add_data({"tributary": {"space": {"name": space, "environment": environment}}})
    # Parsing is lazy: a first query surfaces syntax errors in every module.
    try:
        rego.set_input({})
        for package in _packages(bundle):
            rego.query(f"data.{package}")
    except RegoError as e:
        raise BadInput(f"Rego does not compile: {_rego_message(e)}", file=_guilty(bundle, e)) from e
    return rego


def _packages(bundle: PolicyBundle) -> list[str]:
    found: dict[str, None] = {}
    for text in bundle.modules.values():
        m = _PACKAGE.search(text)
        if m:
            found.setdefault(m.group(1), None)
    return list(found)


def _rego_message(e: RegoError) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if "errormsg" in ln]
    if lines:
        return "; ".join(re.sub(r"^\(errormsg \d+:", "", ln).rstrip(")") for ln in lines)
    return str(e).strip()


def _guilty(bundle: PolicyBundle, e: RegoError) -> str:
    text = str(e)
    for path in bundle.modules:
        if path in text:
            return path
    return ", ".join(bundle.modules) or "policies"


def _query_strings(rego: Interpreter, query: str) -> list[str]:
    out = rego.query(query)
    if not out.results or not out.results[0].expressions:
        return []  # undefined: the package has no such rule
    value = out.results[0].expressions[0]
    items = value if isinstance(value, list) else [value]
    return sorted(v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in items)


def check_objects(inp: CheckObjectsInput) -> list[RenderedUnit]:
    """Validate every object against its schema and evaluate every policy on it.

    Schema violations are bad input and raise, naming each object and field; policy
    denials are results, reported per unit.
    """
    schemas = _schema_set(inp.bundle)
    rego = _interpreter(inp.bundle, space=inp.space, environment=inp.environment)
    packages = _packages(inp.bundle)
    problems: list[str] = []
    units: list[RenderedUnit] = []
    for obj in inp.objects:
        name = str(obj.get("metadata", {}).get("name", ""))
        label = f"{obj.get('kind')}/{name}"
        schema = schemas.find(str(obj.get("apiVersion")), str(obj.get("kind")))
        warnings: list[str] = []
        effective = obj
        if schema is not None:
            errors = validate(schema, obj)
            problems.extend(f"{inp.origin}: {label}: {err}" for err in errors)
            effective = apply_defaults(schema.schema_, obj)
        elif len(schemas):
            kind = f"{obj.get('apiVersion')} {obj.get('kind')}"
            warnings.append(f"{label}: no XRD in the schemas folders defines {kind}")
        violations: list[str] = []
        rego.set_input(effective)
        for package in packages:
            violations.extend(_query_strings(rego, f"data.{package}.deny"))
            warnings.extend(_query_strings(rego, f"data.{package}.warn"))
        meta = obj.get("metadata", {})
        units.append(
            RenderedUnit(
                slug=name,
                api_version=str(obj.get("apiVersion")),
                kind=str(obj.get("kind")),
                labels=dict(meta.get("labels") or {}),
                data=obj,
                violations=violations,
                warnings=warnings,
            )
        )
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} schema violations"
        raise BadInput(head + ("" if len(problems) == 1 else ":\n  " + "\n  ".join(problems)))
    return units
