"""A space's gates: ``tributary space show SPACE`` / ``tributary space set SPACE …``.

Both go through the worker (``SpaceGatesWorkflow``): the CLI needs only Temporal.
"""

from __future__ import annotations

import argparse
import os
import uuid
from typing import TYPE_CHECKING

from client import contract
from client.settings import Settings
from domain.authority import GatesUpdate
from domain.change import SpaceGatesInput, SpaceGatesResult
from domain.errors import BadInput
from domain.gates import approval_mode, parse_kind_pattern, parse_namespace_pattern
from domain.identity import resolve_actor
from domain.naming import branch_name_problem, kubernetes_name_problem, short_digest
from starter import runner
from starter.output import Output

if TYPE_CHECKING:
    from starter.commands import Subparsers

APPROVAL_MODES = ("none", "acknowledge", "required")
ACTUATORS = ("kubernetes", "argocd", "confighub")


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "space",
        parents=[common],
        help="a space's gates, held in the authority: show, or set them (admins)",
        description=(
            "A space's gates — approval mode, the kinds (GROUP/KIND) and namespaces it may "
            "apply, its destination and its sync base branch — live in the authority. "
            "tributary.yaml seeds them when a space is created; after that only "
            "`tributary space set` changes them, and a commit that would loosen one is held."
        ),
    )
    actions = p.add_subparsers(dest="space_command", required=True, metavar="ACTION")
    s = actions.add_parser("show", parents=[common], help="print a space's gates")
    s.add_argument("space")
    s.set_defaults(func=show)
    s = actions.add_parser(
        "set",
        parents=[common],
        help="change a space's gates (recorded with who and when)",
        description=(
            "Change the gates of SPACE. --allow-kind and --namespace replace the lists "
            "(repeat them for several; '*' matches any group, kind or namespace, but a "
            "cluster-scoped kind is allowed only by its exact GROUP/KIND). The admin is "
            "the environment's identity (TRIBUTARY_ACTOR, the CI actor, the OS user); "
            "--by WHO is recorded with how it was asserted."
        ),
    )
    s.add_argument("space")
    s.add_argument("--approval", choices=APPROVAL_MODES, help="none | acknowledge | required")
    s.add_argument(
        "--allow-kind",
        action="append",
        default=None,
        metavar="GROUP/KIND",
        help="a kind the space may apply (core group: /ConfigMap); replaces the list",
    )
    s.add_argument(
        "--namespace",
        action="append",
        default=None,
        metavar="NS",
        help="a namespace the space may apply to ('*': any); replaces the list",
    )
    s.add_argument("--destination", metavar="CONTEXT", help="kubeconfig context ('' the worker's)")
    s.add_argument(
        "--base",
        metavar="BRANCH",
        help="the sync PR's base branch ('' the default; no leading '-', no '..')",
    )
    s.add_argument(
        "--actuator",
        choices=ACTUATORS,
        help="who applies the live revisions: kubernetes (Tributary's server-side apply, the "
        "default), argocd (an Argo CD Application syncs them), confighub (ConfigHub's apply; "
        "only with ConfigHub as the authority)",
    )
    s.add_argument(
        "--argocd-app",
        metavar="NAME",
        help="the Argo CD Application that delivers the space (needed for --actuator argocd)",
    )
    s.add_argument("--by", default=None, metavar="WHO", help="the admin (default: environment)")
    s.set_defaults(func=set_)


def _space_name(name: str) -> str:
    problem = kubernetes_name_problem(name)
    if problem:
        raise BadInput(f"space name {problem}", field="SPACE")
    return name


def build_update(args: argparse.Namespace) -> GatesUpdate:
    """The change ``space set`` asks for; ``BadInput`` (exit 2) before anything starts."""
    space = _space_name(args.space)
    actor = resolve_actor(args.by, os.environ)
    base_problem = branch_name_problem(args.base) if args.base is not None else None
    if base_problem:
        raise BadInput(base_problem, field="--base")
    app_problem = kubernetes_name_problem(args.argocd_app) if args.argocd_app else None
    if app_problem:
        raise BadInput(f"Argo CD Application name {app_problem}", field="--argocd-app")
    if args.actuator == "argocd" and args.argocd_app == "":
        raise BadInput("actuator argocd needs the Application's name", field="--argocd-app")
    update = GatesUpdate(
        space=space,
        approval=approval_mode(args.approval) if args.approval is not None else None,
        kinds=(
            sorted({parse_kind_pattern(k) for k in args.allow_kind})
            if args.allow_kind is not None
            else None
        ),
        namespaces=(
            sorted({parse_namespace_pattern(n) for n in args.namespace})
            if args.namespace is not None
            else None
        ),
        destination=args.destination,
        base=args.base,
        actuator=args.actuator,
        argocd_app=args.argocd_app,
        by=actor.name,
        asserted=actor.asserted,
    )
    if all(
        getattr(update, f) is None
        for f in (
            "approval",
            "kinds",
            "namespaces",
            "destination",
            "base",
            "actuator",
            "argocd_app",
        )
    ):
        raise BadInput(
            "nothing to set: give --approval, --allow-kind, --namespace, --destination, "
            "--base, --actuator or --argocd-app",
            field="space set",
        )
    return update


async def _run(settings: Settings, out: Output, inp: SpaceGatesInput) -> SpaceGatesResult:
    client = await runner.client_for(settings)
    if inp.update is None:
        workflow_id = f"space-show:{inp.space}:{uuid.uuid4().hex[:12]}"
    else:
        workflow_id = f"space-set:{inp.space}:{short_digest(inp.model_dump_json(), length=16)}"
    handle = await runner.start(
        client,
        settings,
        out,
        contract.SPACE_GATES_WORKFLOW,
        inp,
        result_type=SpaceGatesResult,
        workflow_id=workflow_id,
        summary=f"{'set' if inp.update else 'show'} the gates of {inp.space}",
        attributes=contract.search_attributes(inp.space),
    )
    result: SpaceGatesResult = await runner.wait(handle)
    return result


def _print(out: Output, result: SpaceGatesResult) -> None:
    g = result.gates
    out.result(result)
    out.table(
        ["gate", "value"],
        [
            ["approval", g.approval],
            ["kinds", ", ".join(g.kinds) or "(none)"],
            ["namespaces", ", ".join(g.namespaces) or "(none)"],
            ["destination", g.destination or "(the worker's cluster)"],
            ["sync base", g.base or "(the default branch)"],
            [
                "actuator",
                f"argocd (Application {g.argocd_app})" if g.actuator == "argocd" else g.actuator,
            ],
            [
                "set by",
                f"{g.set_by} ({g.asserted}) at {g.set_at:%Y-%m-%d %H:%M:%S}Z"
                if g.set_by and g.set_at
                else "(seeded from tributary.yaml when the space was created)",
            ],
        ],
    )


async def show(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    result = await _run(settings, out, SpaceGatesInput(space=_space_name(args.space)))
    _print(out, result)
    return 0


async def set_(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    update = build_update(args)
    result = await _run(settings, out, SpaceGatesInput(space=update.space, update=update))
    _print(out, result)
    out.line(
        f"{result.space}: changed {', '.join(result.changed)}"
        if result.changed
        else f"{result.space}: the gates already were so (the call is recorded)"
    )
    return 0
