"""The sync PR body stays below GitHub's 65,536 characters, saying what it left out."""

from __future__ import annotations

from activities.sync import _body
from adapters.forge_github import MAX_BODY
from domain.sync import SyncRow

SPACE = "messagewall-prod-east"


def rows(count: int, value: object = "x") -> list[SyncRow]:
    return [
        SyncRow(
            unit=f"unit-{n:05d}",
            path=f"spec.tags.key{n}",
            git=None,
            authority=value,
            revision=n + 2,
            source="drift-capture",
            incident="INC-42",
        )
        for n in range(count)
    ]


def table_rows(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("| unit-")]


def test_a_small_table_is_whole_and_says_nothing_more() -> None:
    body = _body(SPACE, rows(3), [], ["unit-00000 spec.tags.key0: patch op"])
    assert len(table_rows(body)) == 3
    assert "left out" not in body


def test_a_table_too_long_for_github_keeps_the_rows_that_fit_and_counts_the_rest() -> None:
    body = _body(SPACE, rows(5_000, "a fairly long value " * 5), ["unit-00001"], [])
    assert len(body) < MAX_BODY
    shown = table_rows(body)
    assert 0 < len(shown) < 5_000
    assert shown[0].startswith("| unit-00000 |")  # from the first row on, in order
    note = next(line for line in body.splitlines() if "rows were left out" in line)
    assert note.startswith(f"*{5_000 - len(shown)} of 5000 rows were left out")
    assert f"tributary drift status {SPACE}" in note
    assert f"tributary sync-pr {SPACE} --dry-run --json" in note
    assert "commit message of this branch" in note
    # what follows the table is still there
    assert "could not be expressed in the overlay" in body
    # every row shown keeps the table's shape
    assert all(line.count(" | ") == 6 for line in shown)


def test_a_huge_value_is_shortened_in_its_cell() -> None:
    body = _body(SPACE, rows(1, "y" * 100_000), [], [])
    [row] = table_rows(body)
    assert len(row) < 2_000
    assert row.count("y") < 400
    assert "&#8230;</code>" in row  # "…", escaped like every other character
    assert "left out" not in body


def test_many_edits_and_fallback_units_are_capped_too() -> None:
    fallback = [f"unit-{n:05d}" for n in range(5_000)]
    edits = [
        f"unit-{n:05d} spec.tags.key{n}: a patch op in patches/tags.yaml" for n in range(5_000)
    ]
    body = _body(SPACE, rows(10), fallback, edits)
    assert len(body) < MAX_BODY
    assert len(table_rows(body)) == 10
    assert "5000 units could not be expressed in the overlay" in body
    assert "more edits left out" in body
