"""The authority behind one protocol: the embedded SQL store and the ConfigHub client.

Methods are synchronous: they are called from sync activities on the worker's
thread pool and from the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from domain.authority import (
    Approval,
    ChangeOutcome,
    GatesUpdate,
    RevisionRecord,
    Source,
    SpaceRecord,
    SpaceSpec,
    UnitChange,
    UnitRecord,
    UnitStateChange,
)
from domain.drift import CaptureResult, DriftRecord
from domain.publish import GitBase, GitRecord
from domain.sync import PullRequest


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

    def git_bases(self, space: str) -> dict[str, GitBase]:
        """What Git last rendered for each unit of the space: the publish merge bases."""
        ...

    def is_published(self, space: str, commit: str) -> bool:
        """Whether a publish of ``commit`` into ``space`` was written already."""
        ...

    def commit(
        self,
        changes: list[UnitChange],
        *,
        spaces: list[SpaceSpec] | None = None,
        states: list[UnitStateChange] | None = None,
        git: GitRecord | None = None,
    ) -> list[ChangeOutcome]:
        """Upsert ``spaces``, write ``changes``, ``states`` and Git's side of a publish
        (``git``: new merge bases, the commit) atomically: all or nothing.

        A change whose content equals the unit's head writes no revision. A change
        whose ``expected_version`` no longer matches raises ``StaleVersion`` —
        unless the head revision carries the same ``idempotency_key``, which means
        this very change was already written by an earlier attempt. A merge base
        that moved since ``git.expected`` also raises ``StaleVersion``.
        """
        ...

    def set_space_gates(self, change: GatesUpdate) -> tuple[SpaceRecord, list[str]]:
        """Change a space's gates (``tributary space set``), recording who and when.

        ``commit(spaces=…)`` writes gates only when it creates a space; this is the
        only way to change them afterwards. Returns the space and the gates changed.
        """
        ...

    def record_approval(
        self, space: str, slug: str, number: int, approval: Approval
    ) -> RevisionRecord:
        """Add ``approval`` to a revision (once per approver)."""
        ...

    def record_applied(
        self, space: str, slug: str, number: int, *, live: bool, applied: bool = True
    ) -> UnitRecord:
        """Revision ``number`` reached the cluster (``applied``) and/or runs (``live``).

        Neither number ever moves back: an older revision arriving late is recorded
        as nothing; the unit is returned as it stands.
        """
        ...

    def capture(
        self,
        change: UnitChange,
        *,
        expected_live: int | None = None,
        record: DriftRecord | None = None,
    ) -> CaptureResult:
        """Write what runs as the live revision; re-base a pending head onto it
        (DESIGN.md "Capture"). Applies and approves nothing."""
        ...

    def set_drift_paused(self, space: str, unit: str, paused: bool) -> None:
        """Keep a unit's drift pause in the authority, across restarts of its loop."""
        ...

    def classify_revision(
        self, space: str, slug: str, number: int, *, source: Source, tags: dict[str, str]
    ) -> RevisionRecord:
        """Re-label a capture (e.g. as break-glass with an incident); its data never changes."""
        ...

    def list_prs(self, space: str | None = None) -> list[PullRequest]:
        """Pull requests the sync arrow opened, newest first."""
        ...

    def record_pr(self, pr: PullRequest, *, repo: str, body: str | None) -> None:
        """Insert or update a pull request by its number (``body=None`` keeps the body)."""
        ...

    def next_pr_number(self) -> int: ...

    def record_drift(self, record: DriftRecord) -> None:
        """Upsert the last drift check of a unit."""
        ...

    def list_drift(self, space: str, unit: str | None = None) -> list[DriftRecord]: ...

    def count_drift(self, sweep_id: str) -> dict[str, int]:
        """Units checked by a sweep, by state."""
        ...

    def record_in_sync(
        self,
        space: str,
        units: dict[str, int],
        *,
        sweep_id: str,
        checked_at: datetime,
        unless_after: datetime,
        cadence_seconds: int | None = None,
    ) -> list[str]:
        """A sweep's bulk record: these units (unit → live revision) are in sync. Only
        rows in a state the sweep may replace (``domain.sweep.BULK_STATES``), not
        paused, and not written after ``unless_after`` change; a row written after it
        that says in sync at the same revision (the loop's own newer check) is only
        counted for the sweep; a unit with no row yet gets one. The message is
        ``domain.sweep.sweep_message(cadence_seconds)``. Returns the units recorded or
        counted."""
        ...

    def end_sweep_cover(self, cadence: int | None, *, since: datetime) -> list[tuple[str, str]]:
        """In-sync sweep records checked since ``since`` that claim a cadence the sweep
        schedule no longer keeps (``domain.sweep.ends_cover``; ``cadence`` None: no
        schedule runs) lose the claim: their message becomes the plain sweep message,
        which covers a loop for one interval only. Returns the (space, unit) of the
        rows changed, whose loops sleep on the claim and must be told."""
        ...

    def list_unit_keys(self, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str]]:
        """Active units in (space, slug) order, a page at a time."""
        ...

    def close(self) -> None: ...
