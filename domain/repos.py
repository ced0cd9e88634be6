"""Repository URLs: normalized for the worker, and never carrying credentials onward;
the commit of a repo (``SourceRef``) and the git activities' messages."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from domain.errors import BadInput
from domain.redact import redact_url, url_has_credentials

# What ``--repo`` may be. git reads a leading "-" anywhere on its command line as an
# option (``--upload-pack=<command>`` runs a command), ``ext::`` runs one too, and
# ``ssh://-oProxyCommand=…`` is the same trick through ssh: so only these forms pass.
_SCHEMES = ("https", "http", "ssh", "git", "file")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9_][\w.-]*)@(?P<host>[A-Za-z0-9_][\w.-]*):(?P<path>.*)$")


def redact(url: str) -> str:
    """``url`` without any user:password part or token parameter, for messages and history."""
    return redact_url(url)


def has_credentials(url: str) -> bool:
    # One detector for every credential shape, including ``?access_token=``.
    return url_has_credentials(url)


def repo_problem(repo: str) -> str | None:
    """Why ``repo`` is not a repository git may be given, or None.

    Accepted: ``https://``, ``http://``, ``ssh://``, ``git://`` and ``file://`` URLs with
    a plain host, ``user@host:path``, and local paths.
    """
    if not isinstance(repo, str) or not repo.strip():
        return "missing"
    if any(ord(c) < 32 or ord(c) == 127 for c in repo):
        return "contains a control character"
    if repo.startswith("-"):
        return "must not start with '-' (git would read it as an option)"
    if "://" in repo:
        parts = urlsplit(repo)
        if parts.scheme not in _SCHEMES:
            return f"scheme {parts.scheme!r} is not one of {', '.join(_SCHEMES)}"
        if parts.scheme != "file" and not _HOST.fullmatch(parts.hostname or ""):
            return "has no valid host name"
        if parts.path.startswith("-") or (parts.username or "").startswith("-"):
            return "must not have a part starting with '-'"
        return None
    if "::" in repo.split("/", 1)[0]:
        return "transport helpers (<transport>::<address>) are not accepted"
    m = _SCP.match(repo)
    if m and m.group("path").startswith("-"):
        return "must not have a path starting with '-'"
    return None


def check_repo(repo: str) -> None:
    problem = repo_problem(repo)
    if problem:
        raise BadInput(problem, file=redact(repo) if problem != "missing" else None, field="repo")


def normalize_repo(repo: str) -> str:
    """Local paths become absolute ``file://`` URLs; URLs stay as they are.

    ``BadInput`` for anything else (``repo_problem``), before git ever sees it.
    """
    check_repo(repo)
    if "://" in repo or _SCP.match(repo):
        return repo
    return Path(repo).expanduser().resolve().as_uri()


# ---- the git activities' messages ----------------------------------------------------


class SourceRef(BaseModel):
    """A commit of an authoring repo. ``repo`` never carries credentials."""

    repo: str
    commit: str


class CheckoutInput(BaseModel):
    source: SourceRef


class CheckoutResult(BaseModel):
    commit: str
    subject: str
    author: str
    committed_at: str


class NewerCommitsInput(BaseModel):
    source: SourceRef
    commits: list[str]  # commits Git last published to the space's units


class NewerCommitsResult(BaseModel):
    newer: list[str]  # those that descend from ``source.commit`` (and differ from it)
