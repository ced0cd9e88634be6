"""The authority store: ``open_store(url)`` picks the implementation from the URL."""

from __future__ import annotations

import os

from authority.protocol import AuthorityStore
from domain.errors import BadInput
from domain.redact import redact_url

DEFAULT_URL = "sqlite:///.tributary/authority.db"


def authority_url() -> str:
    """``TRIBUTARY_AUTHORITY``, else ``CONFIGHUB_URL``, else the embedded SQLite file."""
    return os.environ.get("TRIBUTARY_AUTHORITY") or os.environ.get("CONFIGHUB_URL") or DEFAULT_URL


def authority_variable() -> str:
    """The variable ``authority_url`` took its value from: errors name that one."""
    if not os.environ.get("TRIBUTARY_AUTHORITY") and os.environ.get("CONFIGHUB_URL"):
        return "CONFIGHUB_URL"
    return "TRIBUTARY_AUTHORITY"


def open_store(url: str | None = None, *, field: str = "TRIBUTARY_AUTHORITY") -> AuthorityStore:
    """The store ``url`` names; ``field`` is the setting it came from (for errors)."""
    url = url or authority_url()
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgresql")):
        from authority.sql import SqlStore

        return SqlStore(url, field=field)
    if scheme in ("http", "https"):
        # ConfigHub's REST API; what it has no object for stays in TRIBUTARY_STATE.
        from authority.confighub import ConfigHubStore

        return ConfigHubStore.open(url, field=field)
    raise BadInput(
        f"{redact_url(url)!r}: expected sqlite:///…, postgresql://… "
        "or a ConfigHub API URL https://…",
        field=field,
    )


__all__ = ["DEFAULT_URL", "AuthorityStore", "authority_url", "authority_variable", "open_store"]
