"""The authority behind one protocol: the embedded SQL store and the ConfigHub client.

Methods are synchronous: they are called from sync activities on the worker's
thread pool and from the CLI.
"""

from __future__ import annotations

from typing import Protocol

from domain.authority import (
    Approval,
    ChangeOutcome,
    RevisionRecord,
    SpaceRecord,
    SpaceSpec,
    UnitChange,
    UnitRecord,
    UnitStateChange,
)


class AuthorityStore(Protocol):
    def get_space(self, name: str) -> SpaceRecord | None: ...

    def list_spaces(self) -> list[SpaceRecord]: ...

    def list_units(self, space: str) -> list[UnitRecord]: ...

    def get_unit(self, space: str, slug: str) -> UnitRecord | None: ...

    def list_revisions(self, space: str, slug: str) -> list[RevisionRecord]: ...

    def get_revision(self, space: str, slug: str, number: int) -> RevisionRecord | None: ...

    def get_revisions(self, space: str, keys: list[tuple[str, int]]) -> list[RevisionRecord]:
        """Several revisions of one space at once, by (unit, number)."""
        ...

    def commit(
        self,
        changes: list[UnitChange],
        *,
        spaces: list[SpaceSpec] | None = None,
        states: list[UnitStateChange] | None = None,
    ) -> list[ChangeOutcome]:
        """Upsert ``spaces``, write ``changes`` and ``states`` atomically: all or nothing.

        A change whose content equals the unit's head writes no revision. A change
        whose ``expected_version`` no longer matches raises ``StaleVersion`` —
        unless the head revision carries the same ``idempotency_key``, which means
        this very change was already written by an earlier attempt.
        """
        ...

    def record_approval(
        self, space: str, slug: str, number: int, approval: Approval
    ) -> RevisionRecord:
        """Add ``approval`` to a revision (once per approver)."""
        ...

    def record_applied(self, space: str, slug: str, number: int, *, live: bool) -> UnitRecord:
        """Revision ``number`` reached the cluster; ``live``: and it runs (Ready)."""
        ...

    def close(self) -> None: ...
