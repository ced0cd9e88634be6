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


def open_store(url: str | None = None) -> AuthorityStore:
    url = url or authority_url()
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgresql")):
        from authority.sql import SqlStore

        return SqlStore(url)
    if scheme in ("http", "https"):
        # ConfigHub's REST API; what it has no object for stays in TRIBUTARY_STATE.
        from authority.confighub import ConfigHubStore

        return ConfigHubStore.open(url)
    raise BadInput(
        f"{redact_url(url)!r}: expected sqlite:///…, postgresql://… "
        "or a ConfigHub API URL https://…",
        field="TRIBUTARY_AUTHORITY",
    )


__all__ = ["DEFAULT_URL", "AuthorityStore", "authority_url", "open_store"]
