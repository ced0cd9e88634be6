"""Resolve ``--repo`` and ``--ref`` to a commit before starting any workflow.

Workflow ids name the commit (``publish:{space}:{commit}``), so the CLI needs it
first; this is also where an unknown ref or a path that is not a repository is
reported, with exit code 2 and nothing started.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from domain.errors import BadInput
from domain.repos import has_credentials, normalize_repo, redact

_SHA = re.compile(r"[0-9a-f]{40}")


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        # Never wait for a password prompt in CI.
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot be handed to git, or None (git checks the rest)."""
    if not ref or not ref.strip():
        return "missing"
    if ref.startswith("-"):
        return "must not start with '-' (git would read it as an option)"
    if any(ord(c) < 32 or ord(c) == 127 for c in ref):
        return "contains a control character"
    return None


def resolve(repo: str, ref: str) -> tuple[str, str]:
    """``(repo URL for the worker, full commit id)`` or ``BadInput``."""
    problem = ref_problem(ref)
    if problem:
        raise BadInput(f"{ref!r} {problem}", field="--ref")
    if has_credentials(repo):
        raise BadInput(
            "the repo URL carries credentials, which would be stored in workflow history; "
            "give the worker access through a git credential helper instead",
            file=redact(repo),
        )
    url = normalize_repo(repo)
    if url.startswith("file://"):
        return url, _resolve_local(Path(unquote(urlsplit(url).path)), ref, repo)
    return url, _resolve_remote(url, ref)


def _resolve_local(path: Path, ref: str, shown: str) -> str:
    if not path.exists():
        raise BadInput("no such file or directory", file=shown)
    probe = _git("rev-parse", "--git-dir", cwd=path)
    if probe.returncode != 0:
        raise BadInput("not a git repository", file=shown)
    found = _git(
        "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", cwd=path
    )
    if found.returncode != 0:
        raise BadInput(f"unknown ref {ref!r}", file=shown)
    return found.stdout.strip()


def _resolve_remote(url: str, ref: str) -> str:
    if _SHA.fullmatch(ref):
        return ref
    # "--": neither the URL nor the ref can become an option (``--upload-pack=…``).
    listed = _git("ls-remote", "--", url, ref)
    if listed.returncode != 0:
        detail = redact(listed.stderr.strip().splitlines()[-1] if listed.stderr.strip() else "")
        raise BadInput(f"cannot read the repository: {detail}", file=redact(url))
    refs: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        sha, name = line.split("\t", 1)
        refs[name] = sha
    for candidate in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"):
        if candidate in refs:
            return refs[candidate]
    raise BadInput(f"unknown ref {ref!r}", file=redact(url))
