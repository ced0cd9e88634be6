"""Repository URLs: normalized for the worker, and never carrying credentials onward."""

from __future__ import annotations

import re
from pathlib import Path

from domain.redact import redact_url, url_has_credentials


def redact(url: str) -> str:
    """``url`` without any user:password part or token parameter, for messages and history."""
    return redact_url(url)


def has_credentials(url: str) -> bool:
    # One detector for every credential shape, including ``?access_token=``.
    return url_has_credentials(url)


def normalize_repo(repo: str) -> str:
    """Local paths become absolute ``file://`` URLs; URLs stay as they are."""
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return repo
    return Path(repo).expanduser().resolve().as_uri()
