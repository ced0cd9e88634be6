"""``tributary render --space S --live``: the space's live revisions as a YAML stream.

The generate command of Tributary's Argo CD Config Management Plugin
(deploy/argocd/). Only the objects go to stdout — progress and errors go to stderr —
so Argo CD can read the stream as it is. Each object is exactly what Tributary's own
apply would send (labelled ``tributary.dev/space``), so Argo CD and Tributary agree on
who owns it. *Live* revisions, not heads: a change waiting at its gate is not rendered.

Read through the worker (``RenderLiveWorkflow``): the CMP sidecar needs only Temporal.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import TYPE_CHECKING

import yaml

from client import contract
from client.settings import Settings
from domain.change import LiveObjectsInput, LiveObjectsResult
from domain.errors import BadInput
from domain.naming import kubernetes_name_problem
from starter import runner
from starter.output import Output

if TYPE_CHECKING:
    from starter.commands import Subparsers


def add_parser(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "render",
        parents=[common],
        help="print a space's live revisions as a YAML stream (Argo CD CMP generate)",
        description=(
            "Print the live revision of every unit of SPACE as a YAML stream on stdout, "
            "each object labelled tributary.dev/space as Tributary's apply labels it "
            "(units never applied, and deleted ones, are left out). Progress goes to "
            "stderr. The generate command of the Argo CD plugin in deploy/argocd/."
        ),
    )
    p.add_argument("--space", required=True, help="the space to render")
    p.add_argument(
        "--live",
        action="store_true",
        help="render live revisions (required: heads may hold changes not approved yet)",
    )
    p.set_defaults(func=render)


async def render(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    problem = kubernetes_name_problem(args.space)
    if problem:
        raise BadInput(f"space name {problem}", field="--space")
    if not args.live:
        raise BadInput(
            "only --live is rendered: head revisions may hold changes that wait at a gate",
            field="--live",
        )
    client = await runner.client_for(settings)
    handle = await runner.start(
        client,
        settings,
        out,
        contract.RENDER_LIVE_WORKFLOW,
        LiveObjectsInput(space=args.space),
        result_type=LiveObjectsResult,
        workflow_id=f"render-live:{args.space}:{uuid.uuid4().hex[:12]}",
        summary=f"render the live revisions of {args.space}",
        attributes=contract.search_attributes(args.space),
    )
    result: LiveObjectsResult = await runner.wait(handle)
    if result.not_live:
        out.progress(f"not live yet (never applied), left out: {', '.join(result.not_live)}")
    out.progress(f"{args.space}: {len(result.objects)} live object(s)")
    if out.as_json:
        out.result(result)
        return 0
    sys.stdout.write(
        yaml.safe_dump_all(result.objects, sort_keys=False, explicit_start=True)
        if result.objects
        else ""
    )
    return 0
