"""Changes made in the authority: ``set`` (bulk) and ``rollback``."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

import yaml

from client import contract
from client.settings import Settings
from domain.apply import ApplyRequest
from domain.change import Assignment, BulkSetInput, BulkSetResult, RollbackInput, RollbackResult
from domain.errors import BadInput
from domain.identity import actor_from_env
from domain.naming import bulk_set_id, rollback_id, short_digest
from domain.paths import identity_problem, parse_path
from starter import applying, runner
from starter.output import Output

if TYPE_CHECKING:
    from starter.commands import Subparsers


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "set",
        parents=[common],
        help="bulk change: one new revision per matching unit (source bulk)",
        description=(
            "Set fields on every unit of the given spaces whose labels match --where. "
            'PATH is dotted (spec.lambdaMemory, metadata.annotations["a/b"]); VALUE is '
            "read as YAML (256 is an integer, '256' a string). Changes are checked "
            "against the schemas and policies of each space's last publish; one denial "
            "writes nothing (exit 3)."
        ),
    )
    p.add_argument("assignments", nargs="+", metavar="PATH=VALUE")
    p.add_argument("--space", action="append", required=True, metavar="NAME")
    p.add_argument("--where", action="append", default=[], metavar="LABEL=VALUE")
    p.add_argument("--message", required=True)
    p.add_argument("--author", default=None, help="recorded on the revisions (default: $USER)")
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=set_)
    p = sub.add_parser(
        "rollback",
        parents=[common],
        help="new head revision with an earlier revision's data (source rollback)",
    )
    p.add_argument("space")
    p.add_argument("unit")
    p.add_argument("--to", type=int, required=True, metavar="N")
    p.add_argument("--message", default="")
    p.add_argument("--author", default=None)
    p.add_argument("--apply", action="store_true", help="apply the rolled-back revision")
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=rollback)


def author(explicit: str | None) -> str:
    """Who writes a revision: --author, TRIBUTARY_AUTHOR, else the environment's identity
    (TRIBUTARY_ACTOR, the CI actor, the OS user), the same one `approve` compares with."""
    return explicit or os.environ.get("TRIBUTARY_AUTHOR") or actor_from_env(os.environ).name


def parse_assignment(text: str) -> Assignment:
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise BadInput(f"expected PATH=VALUE, got {text!r}", field=text)
    problem = identity_problem(parse_path(path))
    if problem:
        # Refused here too, so nothing starts (the workflow checks again).
        raise BadInput(problem, field=path)
    try:
        value: Any = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise BadInput(f"value is not YAML: {e}", field=path) from e
    return Assignment(path=path, value=value)


def parse_where(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"expected LABEL=VALUE, got {item!r}", field="--where")
        out[key] = value
    return out


async def set_(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    inp = BulkSetInput(
        spaces=list(dict.fromkeys(args.space)),
        where=parse_where(args.where),
        assignments=[parse_assignment(a) for a in args.assignments],
        message=args.message,
        author=author(args.author),
        dry_run=args.dry_run,
    )
    digest = short_digest(inp.model_dump_json(exclude={"author"}), length=16)
    client = await runner.client_for(settings)
    workflow_id = bulk_set_id(digest)
    handle = await runner.start(
        client,
        settings,
        out,
        contract.BULK_SET_WORKFLOW,
        inp,
        result_type=BulkSetResult,
        workflow_id=workflow_id,
        summary=f"set {' '.join(args.assignments)} in {', '.join(inp.spaces)}"
        + (" — dry run" if args.dry_run else ""),
    )
    if args.no_wait:
        out.result({"workflow_id": workflow_id, "state": "running"})
        return runner.EXIT_WAITING
    result: BulkSetResult = await runner.wait(handle)
    out.result(result)
    out.table(
        ["space", "unit", "action", "rev", "fields"],
        [
            [u.space, u.unit, u.action, u.revision, "; ".join(u.violations) or u.changed_fields]
            for u in result.units
        ],
    )
    if not result.units:
        out.line("no unit matched")
    elif args.dry_run:
        out.line("dry run: nothing written")
    denied = any(u.action == "denied" for u in result.units)
    if denied:
        out.progress("denied by policy: nothing written")
    return 3 if denied else 0


async def rollback(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    inp = RollbackInput(
        space=args.space,
        unit=args.unit,
        to=args.to,
        author=author(args.author),
        message=args.message,
    )
    client = await runner.client_for(settings)
    workflow_id = rollback_id(args.space, args.unit, args.to)
    handle = await runner.start(
        client,
        settings,
        out,
        contract.ROLLBACK_WORKFLOW,
        inp,
        result_type=RollbackResult,
        workflow_id=workflow_id,
        summary=f"rollback {args.space}/{args.unit} to revision {args.to}",
        attributes=contract.search_attributes(args.space, args.unit),
    )
    if args.no_wait:
        out.result({"workflow_id": workflow_id, "state": "running"})
        return runner.EXIT_WAITING
    result: RollbackResult = await runner.wait(handle)
    if args.apply:
        return await _apply_after(args, out, settings, result)
    out.result(result)
    if result.action == "unchanged":
        out.line(f"{args.space}/{args.unit}: head already has revision {args.to}'s data")
    else:
        out.line(
            f"{args.space}/{args.unit}: revision {result.revision} restores revision {args.to} "
            f"({', '.join(result.changed_fields)})"
        )
    return 0


async def _apply_after(
    args: argparse.Namespace, out: Output, settings: Settings, result: RollbackResult
) -> int:
    """``rollback --apply``: arrow 2 for the rolled-back revision."""
    client = await runner.client_for(settings)
    req = ApplyRequest(
        revision=result.revision,
        requested_by=author(args.author),
        request_ids=[applying.new_request_id()],
    )
    workflow_id = await applying.request(client, settings.task_queue, args.space, args.unit, req)
    outcome = await applying.follow(client, workflow_id, req.request_ids[0], wait=not args.no_wait)
    out.result(
        {
            **result.model_dump(mode="json"),
            "apply": {**outcome.model_dump(mode="json"), "workflow_id": workflow_id},
        }
    )
    out.line(
        f"{args.space}/{args.unit}: revision {result.revision} restores revision {args.to}; "
        f"apply {outcome.state} {outcome.message}"
    )
    return 5 if args.no_wait else applying.exit_code(outcome)
