"""Write the authority back into an overlay, so that rendering it gives the authority's claims.

For every field that differs between the overlay's render and the authority's head,
the editor tries, in order: change the value of an existing JSON-patch op or
strategic-merge patch field; add an op or a patch field; and only when no edit of
the overlay can express it, write the unit to ``tributary-sync/<space>/<unit>.yaml``.
Kustomize is the judge: every candidate edit is kept only if the re-render shows
exactly the intended change and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from activities.render import render_overlay
from domain import yamledit
from domain.diff import diff, json_equal
from domain.errors import BadInput
from domain.paths import MISSING, format_path, get_path, parse_path, set_path
from domain.paths import Path as FieldPath

SiteKind = Literal["json6902-inline", "json6902-file", "smp-inline", "smp-file"]
IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
SYNC_DIR = "tributary-sync"


@dataclass
class Site:
    """One place in an overlay that patches objects."""

    kind: SiteKind
    file: Path  # the file to edit (the kustomization itself for inline patches)
    index: int = -1  # position in the kustomization's patch list, for inline patches
    key: str = "patches"
    target_kind: str | None = None


@dataclass
class Edit:
    unit: str
    path: str
    value: Any
    where: str  # "file: how", or "tributary-sync/..." for a fallback


@dataclass
class WriteBack:
    edits: list[Edit] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)  # units written to tributary-sync/

    @property
    def changed(self) -> bool:
        return bool(self.edits or self.fallback)


class OverlayEditor:
    def __init__(self, tree: Path, overlay: str, kubectl: str) -> None:
        self.tree = tree.resolve()
        self.overlay = overlay
        self.dir = self.tree / overlay
        self.kubectl = kubectl

    def render(self) -> dict[str, dict[str, Any]]:
        objs = render_overlay(self.kubectl, self.tree, self.overlay)
        return {o["metadata"]["name"]: o for o in objs}

    # ---- the plan ------------------------------------------------------------------------

    def write_back(self, space: str, heads: dict[str, dict[str, Any]]) -> WriteBack:
        """Edit the overlay until its render equals ``heads`` (units Git renders)."""
        result = WriteBack()
        current = self.render()
        for unit in sorted(heads):
            if unit not in current:
                continue  # a unit Git does not render (yet) is not ours to write
            for change in diff(current[unit], heads[unit]):
                path = parse_path(change.path)
                value = change.new if change.new_present else MISSING
                if path in IDENTITY:
                    continue  # covered by the fallback below
                edit = self._try_edit(unit, path, value, current, heads[unit])
                if edit is None:
                    continue
                current = edit[1]
                result.edits.append(edit[0])
        for unit in sorted(heads):
            if unit in current and not json_equal(current[unit], heads[unit]):
                self._fallback(space, unit, heads[unit])
                result.fallback.append(unit)
        return result

    def verify(self, heads: dict[str, dict[str, Any]], fallback: list[str]) -> list[str]:
        """Units (and fields) whose render does not equal the authority's head."""
        rendered = self.render()
        problems = []
        for unit, head in sorted(heads.items()):
            if unit in fallback or unit not in rendered:
                continue
            for change in diff(rendered[unit], head):
                problems.append(f"{unit}: {change.path}")
        return problems

    # ---- candidates ------------------------------------------------------------------------

    def _try_edit(
        self,
        unit: str,
        path: FieldPath,
        value: Any,
        current: dict[str, dict[str, Any]],
        head: dict[str, Any],
    ) -> tuple[Edit, dict[str, dict[str, Any]]] | None:
        kind = str(current[unit].get("kind"))
        expected = dict(current)
        expected[unit] = _keep_empty_maps(set_path(current[unit], path, value), path, head)
        for where, apply_edit in self._candidates(kind, path, value):
            backup = {p: p.read_text() for p in apply_edit.files}
            if not apply_edit.run():
                continue
            try:
                rendered = self.render()
            except BadInput:
                rendered = None
            if rendered is not None and _same(rendered, expected):
                return Edit(unit, format_path(path), _show(value), where), rendered
            for p, text in backup.items():
                self._write(p, text)
        return None

    def _candidates(
        self, kind: str, path: FieldPath, value: Any
    ) -> Iterator[tuple[str, _FileEdit]]:
        ptr = yamledit.pointer(path)
        sites = self._sites()
        json_sites = [
            s for s in sites if s.kind.startswith("json6902") and s.target_kind in (None, kind)
        ]
        smp_sites = [s for s in sites if s.kind.startswith("smp")]
        for site in json_sites:
            yield (
                f"{self._rel(site.file)}: JSON-patch op {ptr}",
                self._json_edit(site, lambda ops: yamledit.set_op_value(ops, ptr, value)),
            )
            yield (
                f"{self._rel(site.file)}: inside a JSON-patch op on a parent of {ptr}",
                self._json_edit(site, lambda ops: yamledit.set_inside_op_value(ops, path, value)),
            )
            if value is not MISSING:
                continue
            yield (
                f"{self._rel(site.file)}: dropped the JSON-patch op {ptr}",
                self._json_edit(site, lambda ops: yamledit.drop_op(ops, ptr)),
            )
        for site in smp_sites:
            yield (
                f"{self._rel(site.file)}: patch field {format_path(path)}",
                self._smp_edit(site, kind, path, value, existing_only=True),
            )
        for site in json_sites:
            yield (
                f"{self._rel(site.file)}: new JSON-patch op {ptr}",
                self._json_edit(site, lambda ops: yamledit.append_op(ops, ptr, value)),
            )
        for site in smp_sites:
            yield (
                f"{self._rel(site.file)}: new patch field {format_path(path)}",
                self._smp_edit(site, kind, path, value, existing_only=False),
            )

    def _sites(self) -> list[Site]:
        kustomization = self._kustomization()
        doc = yaml.safe_load(kustomization.read_text()) or {}
        sites: list[Site] = []
        for i, entry in enumerate(doc.get("patches") or []):
            if not isinstance(entry, dict):
                continue
            target = (entry.get("target") or {}).get("kind")
            if "patch" in entry:
                is_list = isinstance(yaml.safe_load(entry["patch"]), list)
                kind: SiteKind = "json6902-inline" if is_list else "smp-inline"
                sites.append(Site(kind, kustomization, i, "patches", target))
            elif "path" in entry:
                file = (self.dir / entry["path"]).resolve()
                if file.is_file() and file.is_relative_to(self.tree):
                    is_list = isinstance(yaml.safe_load(file.read_text()), list)
                    sites.append(
                        Site("json6902-file" if is_list else "smp-file", file, i, "patches", target)
                    )
        for entry in doc.get("patchesStrategicMerge") or []:
            file = (self.dir / str(entry)).resolve()
            if file.is_file() and file.is_relative_to(self.tree):
                sites.append(Site("smp-file", file, -1, "patchesStrategicMerge"))
        for entry in doc.get("patchesJson6902") or []:
            if isinstance(entry, dict) and "path" in entry:
                file = (self.dir / entry["path"]).resolve()
                if file.is_file() and file.is_relative_to(self.tree):
                    target = (entry.get("target") or {}).get("kind")
                    sites.append(Site("json6902-file", file, -1, "patchesJson6902", target))
        return sites

    def _kustomization(self) -> Path:
        for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            if (self.dir / name).is_file():
                return self._inside(self.dir / name)
        raise BadInput("no kustomization file", file=self.overlay)

    def _json_edit(self, site: Site, change: Callable[[Any], bool]) -> _FileEdit:
        def run() -> bool:
            text = site.file.read_text()
            if site.kind == "json6902-file":
                ops = yamledit.load(text)
                if not change(ops):
                    return False
                self._write(site.file, yamledit.dump(ops, text))
                return True
            doc = yamledit.load(text)
            entry = doc[site.key][site.index]
            inner_text = str(entry["patch"])
            ops = yamledit.load(inner_text)
            if not change(ops):
                return False
            entry["patch"] = yamledit.literal(yamledit.dump(ops, inner_text))
            self._write(site.file, yamledit.dump(doc, text))
            return True

        return _FileEdit([site.file], run)

    def _smp_edit(
        self, site: Site, kind: str, path: FieldPath, value: Any, *, existing_only: bool
    ) -> _FileEdit:
        def patch_docs(docs: list[Any]) -> bool:
            done = False
            for doc in docs:
                if not isinstance(doc, dict) or doc.get("kind") != kind:
                    continue
                if existing_only and not yamledit.has_path(doc, path):
                    continue
                yamledit.smp_set(doc, path, value)
                done = True
            return done

        def run() -> bool:
            text = site.file.read_text()
            if site.kind == "smp-file":
                docs = yamledit.load_all(text)
                if not patch_docs(docs):
                    return False
                self._write(
                    site.file,
                    yamledit.dump_all(docs, text)
                    if len(docs) > 1
                    else yamledit.dump(docs[0], text),
                )
                return True
            doc = yamledit.load(text)
            entry = doc[site.key][site.index]
            inner_text = str(entry["patch"])
            inner = yamledit.load(inner_text)
            if not patch_docs([inner]):
                return False
            entry["patch"] = yamledit.literal(yamledit.dump(inner, inner_text))
            self._write(site.file, yamledit.dump(doc, text))
            return True

        return _FileEdit([site.file], run)

    def _fallback(self, space: str, unit: str, head: dict[str, Any]) -> None:
        target = self.tree / SYNC_DIR / space / f"{unit}.yaml"
        self._inside(target.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write(
            target,
            "# Written by Tributary: this unit's authority state could not be expressed\n"
            f"# in the overlay {self.overlay}. Fold it into the overlay by hand.\n"
            + yaml.safe_dump(head, sort_keys=False),
        )

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.tree))

    # ---- writes: never outside the clone -------------------------------------------------------

    def _inside(self, path: Path) -> Path:
        """``path`` with every link resolved, or ``BadInput`` when that leaves the clone.

        The clone is the commit's, links and all: a committed link must not make the
        worker write anywhere else (a ``.pth`` file in site-packages runs at the next
        start).
        """
        resolved = path.resolve()
        if not resolved.is_relative_to(self.tree):
            shown = str(path.relative_to(self.tree)) if path.is_relative_to(self.tree) else path
            raise BadInput(
                "is a link that leads out of the repository; nothing was written", file=str(shown)
            )
        return resolved

    def _write(self, path: Path, text: str) -> None:
        resolved = self._inside(path)
        # O_NOFOLLOW: the last component is checked again at the moment of the write.
        fd = os.open(resolved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)


@dataclass
class _FileEdit:
    files: list[Path]
    run: Callable[[], bool]


def _same(rendered: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> bool:
    return rendered.keys() == expected.keys() and all(
        json_equal(rendered[k], expected[k]) for k in rendered
    )


def _keep_empty_maps(obj: dict[str, Any], path: FieldPath, head: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the maps above ``path`` that a delete emptied put back where ``head``
    keeps them: ``set_path`` drops an emptied map, but kustomize's ``remove`` of the
    last key renders ``spec: {}``, and a head that says ``spec: {}`` wants exactly that
    (the render is then compared with this, and would never match)."""
    for depth in range(1, len(path)):
        prefix = path[:depth]
        if get_path(obj, prefix) is MISSING and isinstance(get_path(head, prefix), dict):
            obj = set_path(obj, prefix, {})
    return obj


def _show(value: Any) -> Any:
    return None if value is MISSING else value


def value_at(obj: dict[str, Any], path: str) -> Any:
    found = get_path(obj, parse_path(path))
    return None if found is MISSING else found
