"""``tributary demo``: walk the loop on the reference scenario, step by step.

Uses the running stack named by the environment, or starts one under
``--data-dir``. The authoring repo is the message wall fixture, committed into a
bare repository on disk that plays the Git remote.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from domain.messages import (
    Assignment,
    BulkSetInput,
    BulkSetResult,
    PublishRunInput,
    PublishRunResult,
    SourceRef,
)
from domain.naming import bulk_set_id, publish_run_id, short_digest
from starter import gitref, runner
from starter.commands import dev as dev_cmd
from starter.commands import publish as publish_cmd
from starter.output import Output
from starter.settings import Settings
from starter.stack import DevStack
from workflows.change import BulkSetWorkflow
from workflows.publish import PublishRunWorkflow

if TYPE_CHECKING:
    from starter.commands import Subparsers

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "messagewall"
DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"


def add_parser(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="walk the GitOps loop on the reference scenario (starts a stack if none runs)",
    )
    dev_cmd.add_stack_arguments(p)
    p.add_argument(
        "--exit",
        action="store_true",
        help="when the demo started the stack, stop it at the end instead of serving until Ctrl-C",
    )
    p.set_defaults(func=run)


async def _reachable(settings: Settings) -> bool:
    try:
        client = await asyncio.wait_for(runner.client_for(settings), timeout=3)
        await asyncio.wait_for(client.service_client.check_health(), timeout=3)
    except Exception:
        return False
    return True


async def run(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    stack: DevStack | None = None
    env_file = Path(args.data_dir) / "dev.env"
    if "TEMPORAL_ADDRESS" not in os.environ and env_file.exists():
        settings = Settings.from_env_file(env_file)  # a `tributary dev` in another shell
    if not await _reachable(settings):
        stack = DevStack(dev_cmd.stack_config(args))
        out.progress(f"no stack at {settings.temporal_address}: starting one in {stack.data_dir}")
        await stack.start(out.progress)
        settings = stack.settings()
    try:
        await walk(settings, out, _demo_root(stack, args))
        if stack and not args.exit:
            dev_cmd.announce(stack, out)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stack.wait(stop)
    finally:
        if stack:
            out.progress("stopping the stack")
            await stack.stop()
    return 0


def _demo_root(stack: DevStack | None, args: argparse.Namespace) -> Path:
    data_dir = stack.data_dir if stack else Path(args.data_dir).resolve()
    return data_dir / "demo"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def prepare_repo(root: Path) -> tuple[Path, Path]:
    """(working clone, bare remote) of the reference authoring repo, made once."""
    if not FIXTURE.is_dir():
        raise RuntimeError(f"the reference scenario is missing: {FIXTURE} (run from a clone)")
    remote = root / "messagewall.git"
    work = root / "messagewall"
    if not remote.exists():
        shutil.rmtree(work, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        _git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
        shutil.copytree(FIXTURE, work)
        _git(work, "init", "--quiet", "--initial-branch=main")
        _git(work, "config", "user.name", "Dana Developer")
        _git(work, "config", "user.email", "dana@example.com")
        _git(work, "add", "-A")
        _git(work, "commit", "--quiet", "-m", "Message wall: four environments")
        _git(work, "remote", "add", "origin", str(remote))
        _git(work, "push", "--quiet", "origin", "main")
    return work, remote


async def _publish(settings: Settings, out: Output, remote: Path, message: str) -> PublishRunResult:
    repo, commit = gitref.resolve(str(remote), "main")
    client = await runner.client_for(settings)
    handle = await runner.start(
        client,
        settings,
        out,
        PublishRunWorkflow.run,
        PublishRunInput(source=SourceRef(repo=repo, commit=commit), ref="main"),
        workflow_id=publish_run_id(commit, [], dry_run=False),
        summary=f"demo: {message}",
    )
    result: PublishRunResult = await runner.wait(handle)
    publish_cmd.show(result, out)
    return result


async def walk(settings: Settings, out: Output, root: Path) -> None:
    work, remote = prepare_repo(root)
    steps: dict[str, object] = {}

    out.line("\n== 1. CI publishes the message wall (Git → authority)")
    steps["publish"] = (
        await _publish(settings, out, remote, "publish the message wall")
    ).model_dump(mode="json")

    out.line("\n== 2. CI runs again on the same commit: nothing new is written")
    steps["republish"] = (
        await _publish(settings, out, remote, "re-run on the same commit")
    ).model_dump(mode="json")

    out.line("\n== 3. An operator raises lambdaTimeout on every prod unit in the authority")
    client = await runner.client_for(settings)
    bulk = BulkSetInput(
        spaces=["messagewall-prod-east", "messagewall-prod-west"],
        where={"environment": "prod"},
        assignments=[Assignment(path="spec.lambdaTimeout", value=60)],
        message="Raise prod Lambda timeout for the holiday peak",
        author="oncall@example.com",
    )
    handle = await runner.start(
        client,
        settings,
        out,
        BulkSetWorkflow.run,
        bulk,
        workflow_id=bulk_set_id(short_digest(bulk.model_dump_json(), length=16)),
        summary="demo: bulk set spec.lambdaTimeout=60 on prod",
    )
    result: BulkSetResult = await runner.wait(handle)
    out.table(
        ["space", "unit", "action", "rev"],
        [[u.space, u.unit, u.action, u.revision] for u in result.units],
    )
    steps["bulk_set"] = result.model_dump(mode="json")

    out.line("\n== 4. A developer raises dev-east's memory in Git; CI publishes")
    kustomization = work / DEV_EAST
    text = kustomization.read_text()
    if "value: 512" not in text:
        kustomization.write_text(_set_patch_value(text, "/spec/lambdaMemory", "512"))
        _git(work, "commit", "--quiet", "-am", "dev-east: 512 MB for the load test")
        _git(work, "push", "--quiet", "origin", "main")
    steps["publish_change"] = (
        await _publish(settings, out, remote, "publish a Git change")
    ).model_dump(mode="json")
    out.line(
        "   prod shows authority-ahead: the bulk change lives in the authority and "
        "reaches Git through the sync PR arrow."
    )
    out.line("\n== Read the authority yourself")
    out.line("   tributary units messagewall-prod-east")
    out.line("   tributary revisions messagewall-prod-east messagewall-prod-east")
    if settings.ui_url:
        out.line(f"   Web UI: {settings.ui_url}/namespaces/{settings.namespace}/workflows")
    out.result({"steps": steps, "repo": str(remote)})


def _set_patch_value(text: str, path: str, value: str) -> str:
    """Change the ``value:`` of the JSON-patch op on ``path`` in a kustomization."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == f"path: {path}":
            for j in range(i + 1, min(i + 3, len(lines))):
                if lines[j].lstrip().startswith("value:"):
                    indent = lines[j][: len(lines[j]) - len(lines[j].lstrip())]
                    lines[j] = f"{indent}value: {value}\n"
                    return "".join(lines)
    raise RuntimeError(f"no JSON-patch op on {path} in the dev-east overlay")
