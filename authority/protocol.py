"""The authority behind one protocol: the embedded SQL store and the ConfigHub client.

Methods are synchronous: they are called from sync activities on the worker's
thread pool and from the CLI.
"""

from __future__ import annotations

from typing import Protocol

from domain.authority import (
    ChangeOutcome,
    RevisionRecord,
    SpaceRecord,
    SpaceSpec,
    UnitChange,
    UnitRecord,
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
        self, changes: list[UnitChange], *, spaces: list[SpaceSpec] | None = None
    ) -> list[ChangeOutcome]:
        """Upsert ``spaces`` and write ``changes`` atomically: all or nothing.

        A change whose content equals the unit's head writes no revision. A change
        whose ``expected_version`` no longer matches raises ``StaleVersion`` —
        unless the head revision carries the same ``idempotency_key``, which means
        this very change was already written by an earlier attempt.
        """
        ...

    def close(self) -> None: ...
