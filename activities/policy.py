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
from temporalio import activity

from activities._errors import decided
from adapters.rego import SANDBOX, RegoSandbox
from adapters.source import SourceCache
from domain.authority import PolicyBundle
from domain.bounds import MAX_FILE_BYTES, check_text, check_yaml
from domain.composition import COMPOSITION_KIND, parse_composition
from domain.errors import BadInput
from domain.policy import CheckObjectsInput, CheckObjectsResult, LoadBundleInput, LoadBundleResult
from domain.publish import RenderedUnit
from domain.schema import SchemaSet, apply_defaults, schemas_from_xrd, validate

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)


class PolicyActivities:
    def __init__(self, cache: SourceCache, sandbox: RegoSandbox | None = None) -> None:
        self.cache = cache
        self.sandbox = sandbox or SANDBOX

    @activity.defn(name="policy.load_bundle")
    @decided
    def load_bundle(self, inp: LoadBundleInput) -> LoadBundleResult:
        tree = self.cache.tree(inp.source)
        return LoadBundleResult(
            bundle=load_bundle(
                tree,
                inp.policies,
                inp.schemas,
                commit=inp.source.commit,
                sandbox=self.sandbox,
                compositions=inp.compositions,
            )
        )

    @activity.defn(name="policy.check")
    @decided
    def check(self, inp: CheckObjectsInput) -> CheckObjectsResult:
        return CheckObjectsResult(units=check_objects(inp, sandbox=self.sandbox))


def load_bundle(
    tree: Path,
    policies: list[str],
    schemas: list[str],
    *,
    commit: str,
    sandbox: RegoSandbox | None = None,
    compositions: list[str] | None = None,
) -> PolicyBundle:
    tree = tree.resolve()
    modules: dict[str, str] = {}
    for folder in policies:
        for path in _files(tree, folder, (".rego",), kind="policies"):
            if path.name.endswith("_test.rego"):
                continue  # Rego unit tests are for `opa test`, not for gating
            rel = str(path.relative_to(tree))
            modules[rel] = check_text(_read(path, rel), file=rel)
    xrds = _documents(tree, schemas, "CompositeResourceDefinition", field="schemas")
    found = _documents(tree, compositions or [], COMPOSITION_KIND, field="compositions")
    for rel, docs in found.items():
        for doc in docs:
            parse_composition(doc, file=rel)  # unusable: bad input now, naming the file
    bundle = PolicyBundle(commit=commit, modules=modules, xrds=xrds, compositions=found)
    # Compile once here so a broken policy fails the publish as bad input, naming
    # the file, before anything is planned.
    _evaluate(sandbox or SANDBOX, bundle, space="", environment="", inputs=[])
    _schema_set(bundle)
    hashed: list[Any] = [modules, xrds, found] if found else [modules, xrds]
    digest = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]
    return bundle.model_copy(update={"digest": digest})


def _documents(
    tree: Path, folders: list[str], kind: str, *, field: str
) -> dict[str, list[dict[str, Any]]]:
    """Every YAML/JSON document of ``kind`` in ``folders``, by file."""
    out: dict[str, list[dict[str, Any]]] = {}
    for folder in folders:
        for path in _files(tree, folder, (".yaml", ".yml", ".json"), kind=field):
            rel = str(path.relative_to(tree))
            text = check_text(_read(path, rel), file=rel)
            check_yaml(text, file=rel)
            try:
                docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f"{rel}:{mark.line + 1}" if mark else rel
                raise BadInput(f"malformed YAML: {getattr(e, 'problem', e)}", file=where) from e
            found = [d for d in docs if d.get("kind") == kind]
            if found:
                out[rel] = found
    return out


def _read(path: Path, rel: str) -> bytes:
    # Bounded before reading: a 10 GB file is refused, not loaded.
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadInput(f"{size} bytes is more than the limit of {MAX_FILE_BYTES} bytes", file=rel)
    return path.read_bytes()


def _files(tree: Path, folder: str, suffixes: tuple[str, ...], *, kind: str) -> list[Path]:
    if "\x00" in folder:
        raise BadInput("contains a NUL character", file="tributary.yaml", field=kind)
    base = (tree / folder).resolve()
    if not base.is_relative_to(tree):
        raise BadInput("must be a path inside the repository", file="tributary.yaml", field=kind)
    if not base.is_dir():
        raise BadInput(f"{folder!r} is not a directory", file="tributary.yaml", field=kind)
    found = []
    for p in sorted(base.rglob("*")):
        if p.is_file() and p.suffix in suffixes:
            # A link inside the folder may still point outside the repository.
            if not p.resolve().is_relative_to(tree):
                rel = str(p.relative_to(tree))
                raise BadInput("is a link to a file outside the repository", file=rel)
            found.append(p)
    return found


def _schema_set(bundle: PolicyBundle) -> SchemaSet:
    schemas = []
    for path, docs in bundle.xrds.items():
        for doc in docs:
            schemas.extend(schemas_from_xrd(doc, path))
    return SchemaSet(schemas)


def _evaluate(
    sandbox: RegoSandbox,
    bundle: PolicyBundle,
    *,
    space: str,
    environment: str,
    inputs: list[dict[str, Any]],
) -> list[dict[str, list[str]]]:
    """``deny`` and ``warn`` of every package for each input, evaluated in the sandbox."""
    if not bundle.modules:
        return [{"deny": [], "warn": []} for _ in inputs]
    blame = ", ".join(bundle.modules)
    answer = sandbox.evaluate(
        {
            "modules": bundle.modules,
            "data": {"tributary": {"space": {"name": space, "environment": environment}}},
            "packages": _packages(bundle),
            "inputs": inputs,
        },
        blame=blame,
    )
    error = answer.get("error")
    if error == "compile":
        message = str(answer.get("message", ""))
        where = answer.get("module") or _guilty(bundle, message)
        raise BadInput(f"Rego does not compile: {_rego_message(message)}", file=str(where))
    if error == "eval":
        message = _rego_message(str(answer.get("message", "")))
        raise BadInput(f"Rego evaluation failed: {message}", file=blame)
    if error:
        raise BadInput(f"policy evaluation failed: {answer.get('message')}", file=blame)
    results: list[dict[str, list[str]]] = answer["results"]
    return results


def _packages(bundle: PolicyBundle) -> list[str]:
    found: dict[str, None] = {}
    for text in bundle.modules.values():
        m = _PACKAGE.search(text)
        if m:
            found.setdefault(m.group(1), None)
    return list(found)


def _rego_message(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if "errormsg" in ln]
    if lines:
        return "; ".join(re.sub(r"^\(errormsg \d+:", "", ln).rstrip(")") for ln in lines)
    return text.strip()


def _guilty(bundle: PolicyBundle, text: str) -> str:
    for path in bundle.modules:
        if path in text:
            return path
    return ", ".join(bundle.modules) or "policies"


def check_objects(
    inp: CheckObjectsInput, *, sandbox: RegoSandbox | None = None
) -> list[RenderedUnit]:
    """Validate every object against its schema and evaluate every policy on it.

    Schema violations are bad input and raise, naming each object and field; policy
    denials are results, reported per unit. All objects go to the sandbox in one
    request, so a space costs one round trip however many units it has.
    """
    schemas = _schema_set(inp.bundle)
    problems: list[str] = []
    effective_objects: list[dict[str, Any]] = []
    warnings_of: list[list[str]] = []
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
        effective_objects.append(effective)
        warnings_of.append(warnings)
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} schema violations"
        raise BadInput(head + ("" if len(problems) == 1 else ":\n  " + "\n  ".join(problems)))
    results = _evaluate(
        sandbox or SANDBOX,
        inp.bundle,
        space=inp.space,
        environment=inp.environment,
        inputs=effective_objects,
    )
    units: list[RenderedUnit] = []
    for obj, warnings, result in zip(inp.objects, warnings_of, results, strict=True):
        meta = obj.get("metadata", {})
        units.append(
            RenderedUnit(
                slug=str(meta.get("name", "")),
                api_version=str(obj.get("apiVersion")),
                kind=str(obj.get("kind")),
                labels=dict(meta.get("labels") or {}),
                data=obj,
                violations=result["deny"],
                warnings=warnings + result["warn"],
            )
        )
    return units
