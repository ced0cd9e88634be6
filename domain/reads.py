"""What the CLI reads from the authority, through the worker (``ReadWorkflow``).

The CLI holds only Temporal's address and key (CLI.md): every read is a short
workflow whose one activity reads the store on the worker. A query and its answer
are one pair of models per read; lists come a page at a time, each page bounded in
items and in bytes, so no answer outgrows Temporal's payload limit however large a
space or a unit's history grows. The CLI follows ``next`` until it is ``None`` and
prints the pages as one list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from domain.authority import RevisionRecord, UnitRecord
from domain.drift import DriftRecord
from domain.sync import PullRequest

# One page holds at most this many items and, past its first item, at most this many
# bytes of JSON (Temporal refuses payloads over 2 MB and warns from 512 KB).
PAGE_ITEMS = 500
PAGE_BYTES = 256 * 1024
T = TypeVar("T")

# Spaces named in "space … does not exist (known: …)".
KNOWN_SPACES_SHOWN = 20


class UnitsQuery(BaseModel):
    """``tributary units SPACE``: the space's units in slug order."""

    kind: Literal["units"] = "units"
    space: str
    after: str | None = None  # the last slug of the previous page
    limit: int = Field(default=PAGE_ITEMS, ge=1, le=PAGE_ITEMS)


class UnitsPage(BaseModel):
    kind: Literal["units"] = "units"
    units: list[UnitRecord]
    next: str | None = None


class RevisionsQuery(BaseModel):
    """``tributary revisions SPACE UNIT``: the unit's revisions, oldest first."""

    kind: Literal["revisions"] = "revisions"
    space: str
    unit: str
    after: int | None = None  # the last revision number of the previous page
    limit: int = Field(default=PAGE_ITEMS, ge=1, le=PAGE_ITEMS)


class RevisionsPage(BaseModel):
    kind: Literal["revisions"] = "revisions"
    revisions: list[RevisionRecord]
    next: int | None = None


class ShowQuery(BaseModel):
    """``tributary show SPACE UNIT [--revision N]``: one revision, head by default."""

    kind: Literal["show"] = "show"
    space: str
    unit: str
    revision: int | None = None


class ShowAnswer(BaseModel):
    kind: Literal["show"] = "show"
    unit: UnitRecord
    revision: RevisionRecord


class HeadQuery(BaseModel):
    """Which revision ``apply`` means: ``revision`` if the unit has it, else its head."""

    kind: Literal["head"] = "head"
    space: str
    unit: str
    revision: int | None = None


class HeadAnswer(BaseModel):
    kind: Literal["head"] = "head"
    revision: int


class ActiveUnitsQuery(BaseModel):
    """The active units of a space (``unit``: that one, which must be active) — what
    ``drift check|capture|pause|resume`` act on; ``limit=1`` only checks the space."""

    kind: Literal["active-units"] = "active-units"
    space: str
    unit: str | None = None
    after: str | None = None
    limit: int = Field(default=PAGE_ITEMS, ge=1, le=PAGE_ITEMS)


class ActiveUnitsPage(BaseModel):
    kind: Literal["active-units"] = "active-units"
    units: list[str]
    next: str | None = None


class DriftStatusQuery(BaseModel):
    """``tributary drift status SPACE [UNIT]``: active units and their drift records."""

    kind: Literal["drift-status"] = "drift-status"
    space: str
    unit: str | None = None
    after: str | None = None
    limit: int = Field(default=PAGE_ITEMS, ge=1, le=PAGE_ITEMS)


class DriftStatusPage(BaseModel):
    kind: Literal["drift-status"] = "drift-status"
    units: list[str]
    records: list[DriftRecord]  # of those units that have been checked
    next: str | None = None


class PullRequestsQuery(BaseModel):
    """``tributary prs [SPACE]``: sync pull requests, newest first."""

    kind: Literal["prs"] = "prs"
    space: str | None = None
    after: int | None = None  # the last PR number of the previous page (older ones follow)
    limit: int = Field(default=PAGE_ITEMS, ge=1, le=PAGE_ITEMS)


class PullRequestsPage(BaseModel):
    kind: Literal["prs"] = "prs"
    prs: list[PullRequest]
    next: int | None = None


class LiveQuery(BaseModel):
    """``tributary render --space SPACE --live``: what runs — each active unit's live
    revision (units never applied have none and are left out), in slug order."""

    kind: Literal["live"] = "live"
    space: str
    after: str | None = None
    limit: int = Field(default=PAGE_ITEMS, ge=1, le=PAGE_ITEMS)


class LiveUnit(BaseModel):
    unit: str
    revision: int
    data: dict[str, Any]


class LivePage(BaseModel):
    kind: Literal["live"] = "live"
    units: list[LiveUnit]
    next: str | None = None


AnyQuery = (
    UnitsQuery
    | RevisionsQuery
    | ShowQuery
    | HeadQuery
    | ActiveUnitsQuery
    | DriftStatusQuery
    | PullRequestsQuery
    | LiveQuery
)
Query = Annotated[AnyQuery, Field(discriminator="kind")]
Answer = Annotated[
    UnitsPage
    | RevisionsPage
    | ShowAnswer
    | HeadAnswer
    | ActiveUnitsPage
    | DriftStatusPage
    | PullRequestsPage
    | LivePage,
    Field(discriminator="kind"),
]


class ReadInput(BaseModel):
    """Input of ``ReadWorkflow`` and of its activity ``authority.read``."""

    query: Query


class ReadResult(BaseModel):
    answer: Answer


def describe(query: AnyQuery) -> str:
    """One line for the Web UI: what was read."""
    where = "/".join(p for p in (getattr(query, "space", None), getattr(query, "unit", None)) if p)
    return f"read {query.kind} of {where}" if where else f"read {query.kind}"


def take_page(items: Sequence[T], size: Callable[[T], int], limit: int) -> tuple[list[T], bool]:
    """The first of ``items`` that fit a page — at most ``limit`` of them and, past the
    first, at most ``PAGE_BYTES`` by ``size`` — and whether any are left over."""
    taken: list[T] = []
    used = 0
    for item in items[:limit]:
        cost = size(item)
        if taken and used + cost > PAGE_BYTES:
            break
        taken.append(item)
        used += cost
    return taken, len(taken) < len(items)
