"""Reading the authority: ``units``, ``revisions``, ``show``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from authority import AuthorityStore, open_store
from domain.errors import BadInput, NotFound
from starter.output import Output
from starter.settings import Settings

if TYPE_CHECKING:
    from starter.commands import Subparsers


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("units", parents=[common], help="list a space's units")
    p.add_argument("space")
    p.set_defaults(func=units)
    p = sub.add_parser("revisions", parents=[common], help="list a unit's revisions")
    p.add_argument("space")
    p.add_argument("unit")
    p.set_defaults(func=revisions)
    p = sub.add_parser("show", parents=[common], help="print a unit's data at head or a revision")
    p.add_argument("space")
    p.add_argument("unit")
    p.add_argument("--revision", type=int, help="revision number (default: head)")
    p.set_defaults(func=show)


def open_existing(settings: Settings) -> AuthorityStore:
    """The store, refusing to create an empty SQLite file as a side effect of a read."""
    # Imported here: commands that do not read the authority start faster without it.
    from sqlalchemy.engine import make_url

    url = settings.authority
    if url.lower().startswith(("http://", "https://")):
        # ConfigHub: the CLI reads the worker's state store beside it (README)
        from authority.confighub import state_url

        state = state_url()
        db = make_url(state).database if state.startswith("sqlite") else None
        if db and db != ":memory:" and not Path(db).exists():
            raise BadInput(
                f"no state store at {db}; with ConfigHub as the authority, set "
                "TRIBUTARY_STATE to the worker's (see README, ConfigHub as the authority)",
                field="TRIBUTARY_STATE",
            )
    if url.startswith("sqlite"):
        db = make_url(url).database
        if db and db != ":memory:" and not Path(db).exists():
            raise BadInput(
                f"no authority database at {db}; start `tributary dev` (and `source` the "
                "export lines it prints) or set TRIBUTARY_AUTHORITY",
                file=db,
            )
    return open_store(url)


def _space_or_fail(store: AuthorityStore, space: str) -> None:
    if store.get_space(space) is None:
        known = ", ".join(s.name for s in store.list_spaces()) or "none yet"
        raise NotFound(f"space {space!r} does not exist (known: {known})")


async def units(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    store = open_existing(settings)
    try:
        _space_or_fail(store, args.space)
        found = store.list_units(args.space)
    finally:
        store.close()
    out.result({"space": args.space, "units": [u.model_dump(mode="json") for u in found]})
    out.table(
        ["unit", "head", "live", "applied", "git", "version", "state", "last change"],
        [
            [
                u.slug,
                u.head_revision,
                u.live_revision,
                u.last_applied_revision,
                u.git_revision,
                u.version,
                u.state,
                u.last_change_description,
            ]
            for u in found
        ],
    )
    if not found:
        out.line(f"(no units in {args.space})")
    return 0


async def revisions(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    store = open_existing(settings)
    try:
        _space_or_fail(store, args.space)
        if store.get_unit(args.space, args.unit) is None:
            raise NotFound(f"unit {args.space}/{args.unit} does not exist")
        found = store.list_revisions(args.space, args.unit)
    finally:
        store.close()
    out.result(
        {
            "space": args.space,
            "unit": args.unit,
            "revisions": [r.model_dump(mode="json") for r in found],
        }
    )
    out.table(
        ["rev", "source", "created", "author", "description", "tags"],
        [
            [
                r.number,
                r.source,
                r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                r.author,
                r.description,
                {
                    k: (v[:12] if k == "commit" else v)
                    for k, v in r.tags.items()
                    if k != "workflow_id"
                },
            ]
            for r in found
        ],
    )
    return 0


async def show(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    store = open_existing(settings)
    try:
        _space_or_fail(store, args.space)
        unit = store.get_unit(args.space, args.unit)
        if unit is None:
            raise NotFound(f"unit {args.space}/{args.unit} does not exist")
        number = args.revision or unit.head_revision
        rev = store.get_revision(args.space, args.unit, number)
    finally:
        store.close()
    if rev is None:
        raise NotFound(f"unit {args.space}/{args.unit} has no revision {number}")
    out.result({"unit": unit.model_dump(mode="json"), "revision": rev.model_dump(mode="json")})
    out.line(f"# {args.space}/{args.unit} revision {rev.number} ({rev.source}) — {rev.description}")
    if rev.policy.warnings:
        for w in rev.policy.warnings:
            out.line(f"# warning: {w}")
    out.line(yaml.safe_dump(rev.data, sort_keys=False).rstrip())
    return 0


def _short_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: (v[:12] if k == "commit" else v) for k, v in tags.items() if k != "workflow_id"}
