"""The authoring repo of the property test: a base, and an overlay with one JSON-patch
op file per unit (``patches: - path: u0.yaml, target: {kind, name}``).

``render`` is an in-process stand-in for ``kubectl kustomize`` for exactly this
shape (``resources`` of one base folder, ``patches`` with a ``target`` and an
RFC 6902 op list, inline or in a file), because the state machine renders thousands of times per
run and a ``kubectl`` process costs ~100 ms. Ops that kustomize refuses (remove of a
missing key, an op under a missing parent) raise ``BadInput`` here too,
which is what the write-back relies on to reject a candidate edit;
``test_renderer.py`` checks it against ``kubectl kustomize`` on generated overlays.
"""

from __future__ import annotations

import copy
import functools
import shutil
from pathlib import Path
from typing import Any

import yaml

from adapters.writeback import OverlayEditor
from domain.errors import BadInput

API_VERSION = "test.tributary.dev/v1"
KIND = "Widget"
OVERLAY = "overlay"
BASE = "base"
CLAIMS = "claims.yaml"


def claim(slug: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A base object as a developer writes it (labels come from the overlay)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": slug, "namespace": "default"},
        # ``spec`` may become empty: kustomize renders ``spec: {}`` after a remove of its
        # last field, which the write-back must reproduce (adapters/writeback.py).
        "spec": dict(spec),
    }


def labels_op(slug: str) -> dict[str, Any]:
    return {"op": "add", "path": "/metadata/labels", "value": {"env": "test", "app": slug}}


def write_repo(tree: Path, specs: dict[str, dict[str, Any]]) -> None:
    """A fresh repo: every unit in the base, one inline patch entry per unit."""
    (tree / BASE).mkdir(parents=True, exist_ok=True)
    (tree / OVERLAY).mkdir(parents=True, exist_ok=True)
    (tree / BASE / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [CLAIMS]}, sort_keys=False)
    )
    write_base(tree, {slug: claim(slug, spec) for slug, spec in specs.items()})
    write_kustomization(
        tree,
        {
            "resources": [f"../{BASE}"],
            "patches": [_patch_entry(tree, slug, [labels_op(slug)]) for slug in sorted(specs)],
        },
    )


def _patch_entry(tree: Path, slug: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    (tree / OVERLAY / f"{slug}.yaml").write_text(yaml.safe_dump(ops, sort_keys=False))
    return {"path": f"{slug}.yaml", "target": {"kind": KIND, "name": slug}}


# libyaml where available: the state machine parses these files thousands of times.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def read_base(tree: Path) -> dict[str, dict[str, Any]]:
    docs = yaml.load_all((tree / BASE / CLAIMS).read_text(), Loader=_Loader)
    return {d["metadata"]["name"]: d for d in docs if d}


def write_base(tree: Path, objs: dict[str, dict[str, Any]]) -> None:
    text = yaml.safe_dump_all([objs[s] for s in sorted(objs)], sort_keys=False)
    (tree / BASE / CLAIMS).write_text(text if objs else "")


def read_kustomization(tree: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = _load((tree / OVERLAY / "kustomization.yaml").read_text())
    return loaded


def write_kustomization(tree: Path, doc: dict[str, Any]) -> None:
    (tree / OVERLAY / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


# ---- a developer's edits (plain YAML, as a person would make them) -----------------


def set_field(tree: Path, slug: str, field: str, value: Any) -> None:
    """Set (``None``: remove) ``spec.<field>`` of ``slug``: in the base, dropping any
    overlay op on that field so the base shows through."""
    objs = read_base(tree)
    spec = objs[slug].setdefault("spec", {})
    if value is None:
        spec.pop(field, None)
    else:
        spec[field] = value
    write_base(tree, objs)
    patch = tree / OVERLAY / f"{slug}.yaml"
    ops = _load(patch.read_text())
    kept = [op for op in ops if op.get("path") != f"/spec/{field}"]
    if kept != ops:
        patch.write_text(yaml.safe_dump(kept, sort_keys=False))


def add_unit(tree: Path, slug: str, spec: dict[str, Any]) -> None:
    objs = read_base(tree)
    objs[slug] = claim(slug, spec)
    write_base(tree, objs)
    doc = read_kustomization(tree)
    doc.setdefault("patches", []).append(_patch_entry(tree, slug, [labels_op(slug)]))
    write_kustomization(tree, doc)


def drop_unit(tree: Path, slug: str) -> None:
    objs = read_base(tree)
    objs.pop(slug)
    write_base(tree, objs)
    doc = read_kustomization(tree)
    doc["patches"] = [e for e in doc.get("patches") or [] if e["target"].get("name") != slug]
    write_kustomization(tree, doc)
    (tree / OVERLAY / f"{slug}.yaml").unlink()


def snapshot(tree: Path) -> dict[str, str]:
    return {str(p.relative_to(tree)): p.read_text() for p in sorted(tree.rglob("*")) if p.is_file()}


def restore(tree: Path, files: dict[str, str]) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    for rel, text in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ---- rendering -----------------------------------------------------------------------


def render(tree: Path, overlay: str = OVERLAY) -> list[dict[str, Any]]:
    """What ``kubectl kustomize <overlay>`` prints for this repo shape, as objects."""
    try:
        kustomization = (tree / overlay / "kustomization.yaml").read_text()
        doc = _load(kustomization) or {}
        bases = []
        for res in doc.get("resources") or []:
            base = (tree / overlay / res).resolve()
            base_doc = _load((base / "kustomization.yaml").read_text()) or {}
            bases.extend((base / name).read_text() for name in base_doc.get("resources") or [])
        patches = tuple(
            (tree / overlay / e["path"]).read_text() if "path" in e else e["patch"]
            for e in doc.get("patches") or []
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise BadInput(f"kustomize failed: {e}", file=overlay) from e
    return copy.deepcopy(_render(kustomization, tuple(bases), patches, overlay))


@functools.lru_cache(maxsize=4096)
def _render(
    kustomization: str, bases: tuple[str, ...], patches: tuple[str, ...], overlay: str
) -> list[dict[str, Any]]:
    try:
        doc = _load(kustomization) or {}
        objs: list[dict[str, Any]] = []
        for text in bases:
            objs.extend(d for d in yaml.load_all(text, Loader=_Loader) if d)
        for entry, text in zip(doc.get("patches") or [], patches, strict=True):
            target = entry.get("target") or {}
            ops = _load(text)
            if not isinstance(ops, list) or not ops:
                raise BadInput("not a JSON-patch op list", file=overlay)
            for obj in objs:
                if target.get("kind") not in (None, obj.get("kind")):
                    continue
                if target.get("name") not in (None, obj["metadata"]["name"]):
                    continue
                for op in ops:
                    _apply_op(obj, op)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise BadInput(f"kustomize failed: {e}", file=overlay) from e
    return objs


def _apply_op(obj: dict[str, Any], op: dict[str, Any]) -> None:
    segments = [s.replace("~1", "/").replace("~0", "~") for s in str(op["path"]).split("/")[1:]]
    parent: Any = obj
    for seg in segments[:-1]:
        if not isinstance(parent, dict) or seg not in parent:
            raise BadInput(f"{op['op']} {op['path']}: missing parent {seg}")
        parent = parent[seg]
    last = segments[-1]
    if not isinstance(parent, dict):
        raise BadInput(f"{op['op']} {op['path']}: parent is not a map")
    kind = op.get("op")
    if kind in ("add", "replace"):
        # kustomize's replace of a missing key adds it (unlike RFC 6902)
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if last not in parent:
            raise BadInput(f"remove {op['path']}: missing key")
        del parent[last]
    else:
        raise BadInput(f"unsupported op {kind!r}")


class InProcessEditor(OverlayEditor):
    """The real write-back (candidates, round-trip YAML edits, verification), judged by
    the in-process renderer instead of a ``kubectl`` process."""

    def render(self) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in render(self.tree, self.overlay)}
