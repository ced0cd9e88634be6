"""The CLI's reads of the authority (``units``, ``revisions``, ``show``, ``drift status``,
``prs``…), answered on the worker: the CLI needs no database credentials.

One activity serves every read (``domain.reads``): the store is read once per page,
and each page is bounded in items and bytes.
"""

from __future__ import annotations

from temporalio import activity

from activities._errors import decided
from authority.protocol import AuthorityStore
from domain.errors import NotFound
from domain.reads import (
    KNOWN_SPACES_SHOWN,
    ActiveUnitsPage,
    ActiveUnitsQuery,
    DriftStatusPage,
    DriftStatusQuery,
    HeadAnswer,
    HeadQuery,
    LivePage,
    LiveQuery,
    LiveUnit,
    PullRequestsPage,
    PullRequestsQuery,
    ReadInput,
    ReadResult,
    RevisionsPage,
    RevisionsQuery,
    ShowAnswer,
    ShowQuery,
    UnitsPage,
    UnitsQuery,
    take_page,
)


def _size(item: object) -> int:
    dump = getattr(item, "model_dump_json", None)
    return len(dump()) if dump else len(repr(item))


def _following(slugs: list[str], after: str | None) -> int:
    """Where the page after slug ``after`` starts, in the store's own order (a database
    collation may not sort names as Python does)."""
    if after is None:
        return 0
    if after in slugs:
        return slugs.index(after) + 1
    return next((i for i, s in enumerate(slugs) if s > after), len(slugs))


class ReadActivities:
    def __init__(self, store: AuthorityStore) -> None:
        self.store = store

    @activity.defn(name="authority.read")
    @decided
    def read(self, inp: ReadInput) -> ReadResult:
        q = inp.query
        if isinstance(q, UnitsQuery):
            return ReadResult(answer=self._units(q))
        if isinstance(q, RevisionsQuery):
            return ReadResult(answer=self._revisions(q))
        if isinstance(q, ShowQuery):
            return ReadResult(answer=self._show(q))
        if isinstance(q, HeadQuery):
            return ReadResult(answer=self._head(q))
        if isinstance(q, ActiveUnitsQuery):
            return ReadResult(answer=self._active_units(q))
        if isinstance(q, DriftStatusQuery):
            return ReadResult(answer=self._drift_status(q))
        if isinstance(q, LiveQuery):
            return ReadResult(answer=self._live(q))
        return ReadResult(answer=self._prs(q))

    def _space_or_fail(self, space: str) -> None:
        if self.store.get_space(space) is None:
            names = [s.name for s in self.store.list_spaces()]
            known = ", ".join(names[:KNOWN_SPACES_SHOWN]) or "none yet"
            if len(names) > KNOWN_SPACES_SHOWN:
                known += f", … ({len(names)} in all)"
            raise NotFound(f"space {space!r} does not exist (known: {known})")

    def _units(self, q: UnitsQuery) -> UnitsPage:
        self._space_or_fail(q.space)
        every = self.store.list_units(q.space)
        rest = every[_following([u.slug for u in every], q.after) :]
        units, more = take_page(rest, _size, q.limit)
        return UnitsPage(units=units, next=units[-1].slug if more else None)

    def _revisions(self, q: RevisionsQuery) -> RevisionsPage:
        self._space_or_fail(q.space)
        if self.store.get_unit(q.space, q.unit) is None:
            raise NotFound(f"unit {q.space}/{q.unit} does not exist")
        rest = [
            r
            for r in self.store.list_revisions(q.space, q.unit)
            if q.after is None or r.number > q.after
        ]
        revisions, more = take_page(rest, _size, q.limit)
        return RevisionsPage(revisions=revisions, next=revisions[-1].number if more else None)

    def _show(self, q: ShowQuery) -> ShowAnswer:
        self._space_or_fail(q.space)
        unit = self.store.get_unit(q.space, q.unit)
        if unit is None:
            raise NotFound(f"unit {q.space}/{q.unit} does not exist")
        number = q.revision or unit.head_revision
        rev = self.store.get_revision(q.space, q.unit, number)
        if rev is None:
            raise NotFound(f"unit {q.space}/{q.unit} has no revision {number}")
        return ShowAnswer(unit=unit, revision=rev)

    def _head(self, q: HeadQuery) -> HeadAnswer:
        unit = self.store.get_unit(q.space, q.unit)
        if unit is None:
            raise NotFound(f"unit {q.space}/{q.unit} does not exist")
        number = q.revision or unit.head_revision
        if self.store.get_revision(q.space, q.unit, number) is None:
            raise NotFound(f"unit {q.space}/{q.unit} has no revision {number}")
        return HeadAnswer(revision=number)

    def _active(self, space: str, unit: str | None, after: str | None) -> list[str]:
        if self.store.get_space(space) is None:
            raise NotFound(f"space {space!r} does not exist")
        active = [u.slug for u in self.store.list_units(space) if u.state == "active"]
        if unit is not None:
            if unit not in active:
                raise NotFound(f"unit {space}/{unit} does not exist or is not active")
            active = [unit]
        return active[_following(active, after) :]

    def _active_units(self, q: ActiveUnitsQuery) -> ActiveUnitsPage:
        rest = self._active(q.space, q.unit, q.after)
        units, more = take_page(rest, len, q.limit)
        return ActiveUnitsPage(units=units, next=units[-1] if more else None)

    def _drift_status(self, q: DriftStatusQuery) -> DriftStatusPage:
        rest = self._active(q.space, q.unit, q.after)
        records = {r.unit: r for r in self.store.list_drift(q.space, q.unit)}
        units, more = take_page(
            rest, lambda u: len(u) + (_size(records[u]) if u in records else 0), q.limit
        )
        return DriftStatusPage(
            units=units,
            records=[records[u] for u in units if u in records],
            next=units[-1] if more else None,
        )

    def _prs(self, q: PullRequestsQuery) -> PullRequestsPage:
        rest = [p for p in self.store.list_prs(q.space) if q.after is None or p.number < q.after]
        prs, more = take_page(rest, _size, q.limit)
        return PullRequestsPage(prs=prs, next=prs[-1].number if more else None)

    def _live(self, q: LiveQuery) -> LivePage:
        self._space_or_fail(q.space)
        running = [
            u
            for u in self.store.list_units(q.space)
            if u.state == "active" and u.live_revision is not None
        ]
        rest = running[_following([u.slug for u in running], q.after) :][: q.limit + 1]
        revisions = {
            r.unit: r
            for r in self.store.get_revisions(
                q.space, [(u.slug, u.live_revision or 0) for u in rest]
            )
        }
        live = [
            LiveUnit(unit=u.slug, revision=revisions[u.slug].number, data=revisions[u.slug].data)
            for u in rest
            if u.slug in revisions
        ]
        units, more = take_page(live, _size, q.limit)
        return LivePage(units=units, next=units[-1].unit if more else None)
