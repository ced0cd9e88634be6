"""The bad-input corpus: cases as data (``cases/<id>/case.yaml``), and what "nothing was
written" means, measured.

A case folder holds ``case.yaml`` (format in ``README.md``) and optionally ``files/``,
whose files are copied byte for byte into the authoring repo before its commit (BOMs,
non-UTF-8 bytes, tabs survive). Adding a case is adding a folder.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import sysconfig
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
import yaml

from adapters.kube import KubeClient
from authority import tables as t
from tests.support import REPO_ROOT, AuthoringRepo, git, make_repo

CASES = Path(__file__).parent / "cases"
AUTHORITY_TABLES = (t.spaces, t.units, t.revisions, t.pull_requests, t.drift_status)


@dataclass
class Generated:
    """A large file described by its parts: ``head + item * count + tail`` (``{i}`` in
    ``item`` is the item's index), so 10 MB files and 10,000 objects stay data."""

    path: str
    item: str
    count: int
    head: str = ""
    tail: str = ""
    close: str = ""  # repeated ``count`` times after the items (closing brackets)

    def text(self) -> str:
        items = "".join(self.item.replace("{i}", str(i)) for i in range(self.count))
        return self.head + items + self.close * self.count + self.tail


@dataclass
class Case:
    id: str
    folder: Path
    about: str
    command: list[str]
    exit: int
    message: list[str]
    hole: int | None = None
    fixture: str = "messagewall"
    repo: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    replace: list[dict[str, str]] = field(default_factory=list)
    generate: list[Generated] = field(default_factory=list)
    # symbolic links committed into the repo: path -> target (placeholders filled)
    links: dict[str, str] = field(default_factory=dict)
    setup: list[list[str]] = field(default_factory=list)
    setup_exits: list[int] = field(default_factory=list)  # per setup command; default 0
    env: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    json: bool = True  # run with --json and require one JSON error object on stdout
    timeout: float = 120
    # Where the CLI cannot send a value (another client, a signal): the workflow or
    # activity input model ``module:Class`` must refuse ``input`` naming the field.
    model: str = ""
    input: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Case:
        raw: dict[str, Any] = yaml.safe_load((folder / "case.yaml").read_text())
        raw["generate"] = [Generated(**g) for g in raw.get("generate", [])]
        raw["command"] = [str(a) for a in raw.get("command", [])]
        raw["setup"] = [[str(a) for a in cmd] for cmd in raw.get("setup", [])]
        return cls(id=folder.name, folder=folder, **raw)


def all_cases() -> list[Case]:
    return [Case.load(d) for d in sorted(CASES.iterdir()) if (d / "case.yaml").exists()]


@dataclass
class Prepared:
    """A case's authoring repo and the values of its placeholders."""

    repo: AuthoringRepo
    outside: Path
    values: dict[str, str]

    def fill(self, text: str) -> str:
        for key, value in self.values.items():
            text = text.replace("{" + key + "}", value)
        return text


def prepare(case: Case, tmp: Path) -> Prepared:
    """A fresh authoring repo from ``tests/fixtures`` with the case's files committed."""
    suffix = f"-{uuid.uuid4().hex[:6]}"
    repo = make_repo(tmp / "work", case.fixture, space_suffix=suffix)
    config = yaml.safe_load(repo.read("tributary.yaml"))
    spaces = list(config["spaces"])
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("files outside the work directory stay as they are\n")
    values = {
        "repo": str(repo.work),
        "url": repo.url,
        "suffix": suffix,
        "space": spaces[0],
        "unit": spaces[0].removesuffix(suffix),
        "outside": str(outside),
        "tmp": str(tmp),
    }
    prepared = Prepared(repo=repo, outside=outside, values=values)
    changed = False
    for rel in case.remove:
        repo.remove(rel)
        changed = True
    for edit in case.replace:
        rel, old, new = edit["path"], prepared.fill(edit["old"]), prepared.fill(edit["new"])
        text = repo.read(rel)
        assert old in text, f"{case.id}: {old!r} is not in {rel}"
        repo.write(rel, text.replace(old, new))
        changed = True
    for rel, text in case.repo.items():
        repo.write(rel, prepared.fill(text))
        changed = True
    for gen in case.generate:
        repo.write(gen.path, gen.text())
        changed = True
    for rel, target in case.links.items():
        link = repo.work / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(prepared.fill(target))
        changed = True
    files = case.folder / "files"
    if files.is_dir():
        for src in sorted(p for p in files.rglob("*") if p.is_file()):
            dest = repo.work / src.relative_to(files)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        changed = True
    if changed:
        git(repo.work, "add", "-A")
        git(repo.work, "commit", "-q", "--no-verify", "-m", f"bad input: {case.id}")
        git(repo.work, "push", "-q", "origin", "HEAD:main")
    return prepared


# ---- what "nothing was written" means -------------------------------------------------


def authority_rows(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return {
                table.name: int(
                    conn.execute(
                        sqlalchemy.select(sqlalchemy.func.count()).select_from(table)
                    ).scalar_one()
                )
                for table in AUTHORITY_TABLES
            }
    finally:
        engine.dispose()


def cluster_objects(kubeconfig: str) -> dict[str, str]:
    """Every object the sandbox serves, by ``group/version/resource ns/name``, with its
    resourceVersion (or a digest when it has none): a write anywhere shows."""
    kube = KubeClient(kubeconfig)
    try:
        versions = ["/api/v1"]
        _, groups = kube.request("GET", "/apis")
        for group in groups.get("groups", []):
            versions += [f"/apis/{v['groupVersion']}" for v in group.get("versions", [])]
        seen: dict[str, str] = {}
        for base in versions:
            _, listing = kube.request("GET", base)
            for res in listing.get("resources", []):
                if "/" in res["name"] or "list" not in res.get("verbs", ["list"]):
                    continue
                status, items = kube.request("GET", f"{base}/{res['name']}")
                if status != 200:
                    continue
                for item in items.get("items", []):
                    meta = item.get("metadata", {})
                    key = f"{base}/{res['name']} {meta.get('namespace', '')}/{meta.get('name')}"
                    seen[key] = str(meta.get("resourceVersion") or _digest(item))
        return seen
    finally:
        kube.close()


def git_refs(remote: Path) -> str:
    return git(remote, "for-each-ref", "--format=%(refname) %(objectname)")


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def outside_files(outside: Path) -> dict[str, Any]:
    """Files a hostile input could reach outside the work directory: a folder beside the
    repo, this checkout's tracked and untracked files, and ``.pth`` files (which run
    code at the next interpreter start)."""
    site = Path(sysconfig.get_paths()["purelib"])
    return {
        "outside": tree_digest(outside),
        "checkout": git(REPO_ROOT, "status", "--porcelain", "--untracked-files=all"),
        "pth": sorted(p.name for p in site.glob("*.pth")),
        "python": sys.executable,
    }


def _digest(obj: Any) -> str:
    return hashlib.sha256(yaml.safe_dump(obj).encode()).hexdigest()[:16]
