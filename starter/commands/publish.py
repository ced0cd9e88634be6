"""``tributary publish``: arrow 1 for the spaces of a repo's ``tributary.yaml``."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from temporalio.client import Client

from client import contract
from client.settings import Settings
from domain.apply import ApplyOutcome
from domain.naming import publish_options, publish_run_id
from domain.publish import PublishRunInput, PublishRunResult
from domain.repos import SourceRef
from starter import applying, gitref, runner
from starter.commands import apply as apply_cmd
from starter.output import Output

if TYPE_CHECKING:
    from starter.commands import Subparsers

# gates: a commit that would loosen a space's gates is held, like a policy denial
EXIT_ORDER = (("BadInput", 2), ("denied", 3), ("gates", 3), ("conflict", 4))


def add_parser(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "publish",
        parents=[common],
        help="publish rendered claims from Git into the authority (arrow 1)",
        description=(
            "Render each space's overlay at a commit, validate it against the XRD schemas "
            "and Rego policies, and write new head revisions where Git changed since its "
            "last render of each unit (the merge base). Conflicts with changes made in the "
            "authority are merged when they touch different fields and reported (exit 4) "
            "when they touch the same ones. Re-running a commit already published to a "
            "space, or publishing an ancestor of one, writes nothing (except with "
            "--force). A retry attaches to a run in flight with the same options; --apply "
            "also applies what an earlier run of the same commit published."
        ),
    )
    p.add_argument(
        "--repo",
        required=True,
        help="repository path or URL: https://, http://, ssh://, git://, file://, user@host:path "
        "(no credentials, nothing starting with '-')",
    )
    p.add_argument("--ref", default="HEAD", help="branch, tag or commit (default HEAD)")
    p.add_argument(
        "--space", action="append", default=[], metavar="NAME", help="only this space (repeatable)"
    )
    p.add_argument(
        "--message", default="", help="revision description instead of the commit subject"
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite authority-side changes (ci-forced)"
    )
    p.add_argument("--apply", action="store_true", help="apply what changed (arrow 2)")
    p.add_argument("--dry-run", action="store_true", help="plan and report, write nothing")
    p.add_argument("--no-wait", action="store_true", help="start and exit 5 without waiting")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    if args.apply and args.dry_run:
        out.error("BadInput", "--apply and --dry-run exclude each other")
        return 2
    repo, commit = gitref.resolve(args.repo, args.ref)
    client = await runner.client_for(settings)
    spaces = sorted(set(args.space))
    inp = PublishRunInput(
        source=SourceRef(repo=repo, commit=commit),
        ref=args.ref,
        spaces=spaces,
        message=args.message,
        force=args.force,
        dry_run=args.dry_run,
        apply=args.apply,
    )
    # The options are in the id: a retry attaches only to a run that does the same.
    options = publish_options(force=args.force, apply=args.apply, message=args.message)
    workflow_id = publish_run_id(commit, spaces, dry_run=args.dry_run, options=options)
    handle = await runner.start(
        client,
        settings,
        out,
        contract.PUBLISH_RUN_WORKFLOW,
        inp,
        result_type=PublishRunResult,
        workflow_id=workflow_id,
        summary=f"publish {commit[:12]} ({args.ref})"
        + (f" → {', '.join(spaces)}" if spaces else "")
        + (" — dry run" if args.dry_run else ""),
    )
    if args.no_wait:
        out.result({"workflow_id": workflow_id, "commit": commit, "state": "running"})
        return runner.EXIT_WAITING
    seen: set[str] = set()

    async def tick() -> None:
        try:
            done: list[str] = await handle.query(contract.PROGRESS_QUERY, result_type=list[str])
        except Exception:
            return
        for space in done:
            if space not in seen:
                seen.add(space)
                out.progress(f"  ✓ {space}")

    result: PublishRunResult = await runner.wait(handle, on_tick=None if out.as_json else tick)
    show(result, out)
    code = exit_code(result)
    if not args.apply:
        out.result(result)
        return code
    applies = await follow_applies(client, result, out)
    payload = result.model_dump(mode="json")
    for space in payload["spaces"]:
        for unit in space["units"]:
            outcome = applies.get((space["space"], unit["unit"]))
            if outcome is not None:
                unit["apply"] = {
                    "state": outcome.state,
                    "message": outcome.message,
                    "reason": outcome.reason,
                    "workflow_id": unit["apply_workflow_id"],
                }
    out.result(payload)
    return code or apply_exit_code(list(applies.values()))


async def follow_applies(
    client: Client, result: PublishRunResult, out: Output
) -> dict[tuple[str, str], ApplyOutcome]:
    """The outcome of every apply the publish requested, side by side, each followed
    until it settles (``--no-wait`` returns before the publish itself is done)."""
    targets = [(s.space, u) for s in result.spaces for u in s.units if u.apply_workflow_id]
    outcomes = await asyncio.gather(
        *(
            applying.follow(
                client,
                u.apply_workflow_id,
                u.apply_request_id,
                on_change=apply_cmd.progress(out, space, u.unit),
            )
            for space, u in targets
        )
    )
    found = {(space, u.unit): o for (space, u), o in zip(targets, outcomes, strict=True)}
    if found:
        out.table(
            ["space", "unit", "apply", "rev", "message"],
            [[s, unit, o.state, o.revision, o.message] for (s, unit), o in found.items()],
        )
    return found


def apply_exit_code(outcomes: list[ApplyOutcome]) -> int:
    codes: set[int] = {applying.exit_code(o) for o in outcomes}
    failures = sorted(c for c in codes if c not in (0, 5))
    if failures:
        return failures[0]
    return 5 if 5 in codes else 0


def exit_code(result: PublishRunResult) -> int:
    kinds = {s.error.type for s in result.spaces if s.error}
    kinds |= {s.blocked for s in result.spaces if s.blocked}
    for kind, code in EXIT_ORDER:
        if kind in kinds:
            return code
    return 1 if kinds else 0


def show(result: PublishRunResult, out: Output) -> None:
    mode = " (dry run: nothing written)" if result.dry_run else ""
    out.line(f"commit {result.commit[:12]} ({result.ref}) {result.subject}{mode}")
    rows: list[list[Any]] = []
    for space in result.spaces:
        if space.error:
            rows.append(
                [space.space, "-", f"error ({space.error.type})", None, space.error.message]
            )
        for u in space.units:
            note = "; ".join(u.violations) or (
                "fields: " + ", ".join(u.conflict_fields) if u.conflict_fields else ""
            )
            if not note and u.action in ("published", "merged", "forced", "authority-ahead"):
                note = ", ".join(u.changed_fields[:6]) + (" …" if len(u.changed_fields) > 6 else "")
            if u.action == "held":
                note = u.reason or f"held back: {space.blocked} elsewhere in the space"
            if space.seen and not note:
                note = "already published here (or older than what was): nothing written"
            rows.append([space.space, u.unit, u.action, u.revision, note])
            rows.extend(["", "", "warning", None, w] for w in u.warnings)
    out.table(["space", "unit", "action", "rev", "notes"], rows)
    for space in result.spaces:
        if space.error:
            out.progress(f"error in {space.space}: {space.error.message}")
        for reason in space.gate_reasons:
            out.progress(f"held in {space.space}: {reason}")
        for note in space.gate_notes:
            out.progress(f"note for {space.space}: {note}")
