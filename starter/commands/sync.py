"""Arrow 4 from the CLI: ``sync-pr`` and ``prs``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from temporalio.client import WorkflowUpdateFailedError

from client.contract import error_info
from client.loops import sync_now
from client.settings import Settings
from domain.naming import sync_pr_id
from domain.reads import ActiveUnitsPage, ActiveUnitsQuery, PullRequestsPage, PullRequestsQuery
from domain.sync import SyncNowInput
from starter import runner
from starter.output import Output
from starter.reading import pages, read

if TYPE_CHECKING:
    from starter.commands import Subparsers


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sync-pr",
        parents=[common],
        help="arrow 4 now: write the authority back into the overlay and open/update the PR",
        description=(
            "Edit the space's overlay so that rendering it gives the authority's claims, "
            "verify that by rendering, push branch tributary/sync/<space> and open or "
            "update its pull request (forge: TRIBUTARY_FORGE on the worker). The action is "
            "opened, updated or unchanged (the PR already proposes it, or Git already "
            "renders the authority: then there is no PR, and open ones are closed or "
            "marked merged)."
        ),
    )
    p.add_argument("space")
    p.add_argument("--dry-run", action="store_true", help="show the edits and fields, push nothing")
    p.set_defaults(func=sync_pr)
    p = sub.add_parser("prs", parents=[common], help="list the sync pull requests and their state")
    p.add_argument("space", nargs="?")
    p.set_defaults(func=prs)


async def sync_pr(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    # Only that the space exists (a sync loop for a typo is never started).
    await read(client, settings, ActiveUnitsQuery(space=args.space, limit=1), ActiveUnitsPage)
    workflow_id = sync_pr_id(args.space)
    out.progress(f"sync {args.space}: {workflow_id}")
    link = settings.workflow_link(workflow_id)
    if link:
        out.progress(f"  Web UI: {link}")
    # Starts the space's sync loop if it is not running; a loop that completes just
    # then is started again (client.loops.update_with_start).
    try:
        result = await sync_now(
            client, settings.task_queue, args.space, SyncNowInput(dry_run=args.dry_run)
        )
    except WorkflowUpdateFailedError as e:
        # A decided failure (bad input in the clone, say) keeps its type and exit code.
        info = error_info(e.cause)
        raise runner.WorkflowFailed(info.type, info.message) from e
    out.result(
        {
            "space": result.space,
            "action": result.action,
            "branch": result.branch,
            "pr": result.pr.model_dump(mode="json") if result.pr else None,
            "head_commit": result.head_commit,
            "fields": [r.model_dump(mode="json") for r in result.rows],
            "fallback": result.fallback,
            "warnings": result.warnings,
            **({"diff": result.diff} if args.dry_run else {}),
        }
    )
    for warning in result.warnings:
        out.progress(f"warning: {warning}")
    if result.pr:
        out.line(f"{args.space}: PR #{result.pr.number} {result.action} — {result.pr.url}")
    elif result.action == "unchanged":
        out.line(f"{args.space}: unchanged — Git already renders the authority")
    else:
        out.line(f"{args.space}: {result.action} ({result.branch})")
    out.table(
        ["unit", "path", "git", "authority", "rev", "source", "incident"],
        [
            [r.unit, r.path, r.git, r.authority, r.revision, r.source, r.incident]
            for r in result.rows
        ],
    )
    if result.fallback:
        out.line(
            f"written to tributary-sync/{args.space}/ (not expressible in the overlay): "
            + ", ".join(result.fallback)
        )
    if args.dry_run and result.diff:
        out.line(result.diff)
    return 0


async def prs(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    query = PullRequestsQuery(space=args.space)
    found = [p async for page in pages(client, settings, query, PullRequestsPage) for p in page.prs]
    out.result({"prs": [pr.model_dump(mode="json") for pr in found]})
    out.table(
        ["number", "space", "state", "branch", "head", "updated", "url"],
        [
            [
                pr.number,
                pr.space,
                pr.state,
                pr.branch,
                pr.head_commit[:12],
                pr.updated_at.strftime("%Y-%m-%d %H:%M:%S") if pr.updated_at else None,
                pr.url,
            ]
            for pr in found
        ],
    )
    if not found:
        out.line("(no sync pull requests yet)")
    return 0
