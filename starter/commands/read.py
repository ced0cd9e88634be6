"""Reading the authority: ``units``, ``revisions``, ``show`` — through the worker
(``starter.reading``): the CLI opens no database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import yaml

from client.settings import Settings
from domain.reads import RevisionsPage, RevisionsQuery, ShowAnswer, ShowQuery, UnitsPage, UnitsQuery
from starter import runner
from starter.output import Output
from starter.reading import pages, read

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


async def units(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    query = UnitsQuery(space=args.space)
    found = [u async for page in pages(client, settings, query, UnitsPage) for u in page.units]
    out.result({"space": args.space, "units": [u.model_dump(mode="json") for u in found]})
    out.table(
        ["unit", "head", "live", "applied", "last CI", "version", "state", "last change"],
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
    client = await runner.client_for(settings)
    query = RevisionsQuery(space=args.space, unit=args.unit)
    found = [
        r async for page in pages(client, settings, query, RevisionsPage) for r in page.revisions
    ]
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
    client = await runner.client_for(settings)
    query = ShowQuery(space=args.space, unit=args.unit, revision=args.revision)
    shown = await read(client, settings, query, ShowAnswer)
    unit, rev = shown.unit, shown.revision
    out.result({"unit": unit.model_dump(mode="json"), "revision": rev.model_dump(mode="json")})
    out.line(f"# {args.space}/{args.unit} revision {rev.number} ({rev.source}) — {rev.description}")
    if rev.policy.warnings:
        for w in rev.policy.warnings:
            out.line(f"# warning: {w}")
    out.line(yaml.safe_dump(rev.data, sort_keys=False).rstrip())
    return 0
