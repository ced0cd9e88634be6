"""Repository URLs: normalized for the worker, and never carrying credentials onward."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit


def redact(url: str) -> str:
    """``url`` without any user:password part, for messages and history."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return parts._replace(netloc=host).geturl()
    return url


def has_credentials(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or (bool(parts.username) and parts.scheme in ("http", "https"))


def normalize_repo(repo: str) -> str:
    """Local paths become absolute ``file://`` URLs; URLs stay as they are."""
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return repo
    return Path(repo).expanduser().resolve().as_uri()
