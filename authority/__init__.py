"""The authority store: ``open_store(url)`` picks the implementation from the URL."""

from __future__ import annotations

import os

from authority.protocol import AuthorityStore
from domain.errors import BadInput
from domain.redact import redact_url

DEFAULT_URL = "sqlite:///.tributary/authority.db"


def authority_url() -> str:
    return os.environ.get("TRIBUTARY_AUTHORITY", DEFAULT_URL)


def open_store(url: str | None = None) -> AuthorityStore:
    url = url or authority_url()
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith(("sqlite", "postgresql")):
        from authority.sql import SqlStore

        return SqlStore(url)
    raise BadInput(
        f"{redact_url(url)!r}: expected sqlite:///…, postgresql://… "
        "(the ConfigHub client arrives with its own issue)",
        field="TRIBUTARY_AUTHORITY",
    )


__all__ = ["DEFAULT_URL", "AuthorityStore", "authority_url", "open_store"]
