"""Arrow 2 from the CLI: ``apply``, ``approve``, ``delete``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from client import contract
from client.loops import until_ready
from client.settings import Settings
from domain.apply import (
    DEFAULT_READY_TIMEOUT,
    ApplyOutcome,
    ApplyRequest,
    ApproveInput,
    ApproveResult,
)
from domain.errors import BadInput, CaptureConflict
from domain.identity import resolve_actor
from domain.naming import apply_id
from domain.reads import HeadAnswer, HeadQuery
from starter import applying, runner
from starter.commands.change import author
from starter.output import Output
from starter.reading import read

if TYPE_CHECKING:
    from starter.commands import Subparsers


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "apply",
        parents=[common],
        help="apply a unit's revision to the cluster (arrow 2)",
        description=(
            "Server-side apply (field manager tributary) of a revision — head by default — "
            "after the space's approval gate, then wait until the Claim is Ready and Synced. "
            "Exits 5 while an approval is pending."
        ),
    )
    p.add_argument("space")
    p.add_argument("unit")
    p.add_argument("--revision", type=int, help="revision to apply (default: head)")
    p.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_READY_TIMEOUT,
        metavar="SECONDS",
        help=(
            f"how long to wait for Ready (default {DEFAULT_READY_TIMEOUT}); a ReconcileError "
            "Crossplane retries (an AWS outage) is waited through until then"
        ),
    )
    p.add_argument("--no-wait", action="store_true", help="request the apply and exit 5")
    p.set_defaults(func=apply)

    p = sub.add_parser(
        "approve",
        parents=[common],
        help="satisfy an approval gate",
        description=(
            "Approve the revision waiting at a unit's approval gate. The approver is the "
            "identity of the environment: TRIBUTARY_ACTOR, else the CI actor (GITHUB_ACTOR "
            "in GitHub Actions, GITLAB_USER_LOGIN in GitLab CI), else the OS user. --by WHO "
            "that names the same person keeps that assertion; any other --by is recorded as "
            "asserted by the flag alone. A required gate refuses the revision's author "
            "(by name, e-mail or login: see the README's 'Approvals and identity')."
        ),
    )
    p.add_argument("space")
    p.add_argument("unit")
    p.add_argument("--revision", type=int, required=True, metavar="N")
    p.add_argument(
        "--by",
        default=None,
        metavar="WHO",
        help="the approver (default: the environment's identity; recorded with how it "
        "was asserted)",
    )
    p.add_argument("--comment", default="")
    p.set_defaults(func=approve)

    p = sub.add_parser(
        "delete",
        parents=[common],
        help="delete a unit's object from the cluster (precious units need approval)",
    )
    p.add_argument("space")
    p.add_argument("unit")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted")
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=delete)


async def _head(settings: Settings, space: str, unit: str, revision: int | None) -> int:
    """``revision`` if the unit has it, else its head (read on the worker)."""
    client = await runner.client_for(settings)
    query = HeadQuery(space=space, unit=unit, revision=revision)
    return (await read(client, settings, query, HeadAnswer)).revision


def report(out: Output, space: str, unit: str, outcome: ApplyOutcome, workflow_id: str) -> None:
    out.result(
        {
            "space": space,
            "unit": unit,
            "revision": outcome.revision,
            "state": outcome.state,
            "message": outcome.message,
            "reason": outcome.reason,
            "approved_by": outcome.approved_by,
            "workflow_id": workflow_id,
        }
    )
    out.line(f"{space}/{unit} revision {outcome.revision}: {outcome.state} — {outcome.message}")


def progress(out: Output, space: str, unit: str) -> Callable[[ApplyOutcome], None]:
    def show(outcome: ApplyOutcome) -> None:
        out.progress(f"  {space}/{unit} r{outcome.revision}: {outcome.state} {outcome.message}")

    return show


async def _request(
    args: argparse.Namespace, out: Output, settings: Settings, req: ApplyRequest
) -> int:
    client = await runner.client_for(settings)
    workflow_id = await applying.request(client, settings.task_queue, args.space, args.unit, req)
    out.progress(
        f"requested {req.action} of {args.space}/{args.unit} r{req.revision}: {workflow_id}"
    )
    link = settings.workflow_link(workflow_id)
    if link:
        out.progress(f"  Web UI: {link}")
    outcome = await applying.follow(
        client,
        workflow_id,
        req.request_ids[0],
        on_change=progress(out, args.space, args.unit),
        wait=not args.no_wait,
    )
    report(out, args.space, args.unit, outcome, workflow_id)
    return 5 if args.no_wait else applying.exit_code(outcome)


async def apply(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    revision = await _head(settings, args.space, args.unit, args.revision)
    req = ApplyRequest(
        revision=revision,
        requested_by=author(None),
        ready_timeout_seconds=args.timeout,
        request_ids=[applying.new_request_id()],
    )
    return await _request(args, out, settings, req)


async def delete(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    revision = await _head(settings, args.space, args.unit, None)
    if args.dry_run:
        out.result(
            {"space": args.space, "unit": args.unit, "revision": revision, "state": "dry-run"}
        )
        out.line(f"would delete {args.space}/{args.unit} (revision {revision}) from the cluster")
        return 0
    req = ApplyRequest(
        revision=revision,
        action="delete",
        requested_by=author(None),
        request_ids=[applying.new_request_id()],
    )
    return await _request(args, out, settings, req)


async def approve(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    actor = resolve_actor(args.by, os.environ)
    client = await runner.client_for(settings)
    workflow_id = apply_id(args.space, args.unit)
    handle = client.get_workflow_handle(workflow_id)
    try:
        approval = ApproveInput(
            revision=args.revision, by=actor.name, comment=args.comment, asserted=actor.asserted
        )
        result = await until_ready(
            lambda: handle.execute_update(
                contract.APPROVE_UPDATE, approval, result_type=ApproveResult
            )
        )
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        message = getattr(cause, "message", None) or str(cause)
        if getattr(cause, "type", None) == "CaptureConflict":
            raise CaptureConflict(message) from e
        raise BadInput(message, obj=f"{args.space}/{args.unit}", field="--revision") from e
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise BadInput(
                f"nothing awaits approval for {args.space}/{args.unit}", field="--revision"
            ) from e
        raise
    out.result(
        {
            "space": args.space,
            "unit": args.unit,
            "revision": result.revision,
            "approved_by": result.by,
            "asserted": actor.asserted,
            "workflow_id": workflow_id,
        }
    )
    out.line(
        f"approved {args.space}/{args.unit} revision {result.revision} as {result.by} "
        f"(identity asserted by {actor.asserted})"
    )
    return 0
