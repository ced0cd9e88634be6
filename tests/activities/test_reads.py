"""activities/reads.py: the CLI's reads, answered on the worker, a bounded page at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.reads import ReadActivities
from authority.sql import SqlStore
from domain.authority import UnitStateChange
from domain.reads import (
    PAGE_BYTES,
    ActiveUnitsPage,
    ActiveUnitsQuery,
    AnyQuery,
    DriftStatusPage,
    DriftStatusQuery,
    HeadAnswer,
    HeadQuery,
    LivePage,
    LiveQuery,
    ReadInput,
    RevisionsPage,
    RevisionsQuery,
    UnitsPage,
    UnitsQuery,
    take_page,
)
from tests.authority.test_store import SPACE, change, claim, space_spec


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    s = SqlStore(f"sqlite:///{tmp_path / 'authority.db'}")
    s.commit(
        [change(claim(name=f"u{i:02d}"), None, slug=f"u{i:02d}") for i in range(7)],
        spaces=[space_spec()],
    )
    for memory in (256, 512, 1024):
        unit = s.get_unit(SPACE, "u00")
        assert unit is not None
        s.commit([change(claim(memory, name="u00"), unit.version, slug="u00")])
    s.commit([], states=[UnitStateChange(space=SPACE, slug="u03", state="orphaned")])
    return s


def every_page(reads: ReadActivities, query: AnyQuery) -> list[object]:
    out: list[object] = []
    while True:
        page = reads.read(ReadInput(query=query)).answer
        out.append(page)
        following = getattr(page, "next", None)
        if following is None:
            return out
        query = query.model_copy(update={"after": following})


def test_pages_add_up_to_the_whole_list(store: SqlStore) -> None:
    reads = ReadActivities(store)
    pages = every_page(reads, UnitsQuery(space=SPACE, limit=3))
    assert [len(p.units) for p in pages if isinstance(p, UnitsPage)] == [3, 3, 1]
    slugs = [u.slug for p in pages if isinstance(p, UnitsPage) for u in p.units]
    assert slugs == [u.slug for u in store.list_units(SPACE)]

    pages = every_page(reads, RevisionsQuery(space=SPACE, unit="u00", limit=2))
    numbers = [r.number for p in pages if isinstance(p, RevisionsPage) for r in p.revisions]
    assert numbers == [1, 2, 3, 4]

    pages = every_page(reads, ActiveUnitsQuery(space=SPACE, limit=4))
    active = [u for p in pages if isinstance(p, ActiveUnitsPage) for u in p.units]
    assert active == ["u00", "u01", "u02", "u04", "u05", "u06"]  # u03 is orphaned

    pages = every_page(reads, DriftStatusQuery(space=SPACE, limit=5))
    assert [u for p in pages if isinstance(p, DriftStatusPage) for u in p.units] == active


def test_live_reads_what_runs_a_page_at_a_time(store: SqlStore) -> None:
    """``render --live``: each active unit's live revision; never-applied units are left out."""
    store.record_applied(SPACE, "u00", 2, live=True)  # an older revision runs than head (4)
    for slug in ("u01", "u03", "u05"):  # u03 is orphaned
        store.record_applied(SPACE, slug, 1, live=True)
    reads = ReadActivities(store)
    pages = every_page(reads, LiveQuery(space=SPACE, limit=1))
    live = [(u.unit, u.revision) for p in pages if isinstance(p, LivePage) for u in p.units]
    assert live == [("u00", 2), ("u01", 1), ("u05", 1)]
    assert len(pages) == 3
    first = pages[0]
    assert isinstance(first, LivePage)
    assert first.units[0].data == claim(256, name="u00")


def test_errors_are_decided_and_name_what_is_missing(store: SqlStore) -> None:
    reads = ReadActivities(store)
    with pytest.raises(ApplicationError) as e:
        reads.read(ReadInput(query=UnitsQuery(space="nope")))
    assert (e.value.type, e.value.message, e.value.non_retryable) == (
        "NotFound",
        f"space 'nope' does not exist (known: {SPACE})",
        True,
    )
    with pytest.raises(ApplicationError, match=f"unit {SPACE}/u03 does not exist or is not"):
        reads.read(ReadInput(query=ActiveUnitsQuery(space=SPACE, unit="u03")))
    with pytest.raises(ApplicationError, match=f"unit {SPACE}/u01 has no revision 9"):
        reads.read(ReadInput(query=HeadQuery(space=SPACE, unit="u01", revision=9)))
    assert reads.read(ReadInput(query=HeadQuery(space=SPACE, unit="u00"))).answer == HeadAnswer(
        revision=4
    )


def test_a_page_stays_within_its_byte_bound() -> None:
    big = ["x" * (PAGE_BYTES // 3)] * 10
    taken, more = take_page(big, len, 500)
    assert (len(taken), more) == (3, True)
    # One item over the bound still comes alone: a page is never empty.
    taken, more = take_page(["y" * (PAGE_BYTES * 2), "z"], len, 500)
    assert (len(taken), more) == (1, True)
    assert take_page(["a", "b"], len, 500) == (["a", "b"], False)
