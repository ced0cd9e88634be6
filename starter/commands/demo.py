"""``tributary demo``: walk the loop on the reference scenario, step by step.

Each step is the command a person would type, run as its own process against the
stack (the running one named by the environment or ``dev.env``, or one the demo
starts), with its output shown. The authoring repo is the message wall fixture,
committed to a bare repository on disk that plays the Git remote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.settings import Settings
from domain.yamledit import set_inline_patch_value
from starter import runner
from starter.commands import dev as dev_cmd
from starter.output import Output
from starter.stack import DevStack

if TYPE_CHECKING:
    from starter.commands import Subparsers

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "messagewall"
DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"
PROD = "messagewall-prod-east"
INCIDENT = "INC-2026-1127"


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


def _env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            env[key.strip()] = value.strip()
    return env


async def run(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    stack: DevStack | None = None
    env = {k: v for k, v in os.environ.items() if k.startswith(("TEMPORAL_", "TRIBUTARY_", "AWS_"))}
    if "KUBECONFIG" in os.environ:
        env["KUBECONFIG"] = os.environ["KUBECONFIG"]
    env_file = Path(args.data_dir) / "dev.env"
    if "TEMPORAL_ADDRESS" not in os.environ and env_file.exists():
        env = _env_file(env_file)  # a `tributary dev` in another shell
        settings = Settings.from_env_file(env_file)
    if not await _reachable(settings) or "KUBECONFIG" not in env:
        stack = DevStack(dev_cmd.stack_config(args))
        out.progress(f"starting the embedded stack in {stack.data_dir}")
        await stack.start(out.progress)
        env = stack.env
        settings = stack.settings()
    try:
        data_dir: Path = stack.data_dir if stack else args.data_dir
        steps = await asyncio.to_thread(Walk(env, out, data_dir / "demo").run)
        out.result({"steps": steps})
        if stack and not args.exit:
            dev_cmd.announce(stack, out)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stack.wait(stop, out.progress)
    finally:
        if stack:
            out.progress("stopping the stack")
            await stack.stop()
    return 0


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


@dataclass
class Walk:
    env: dict[str, str]
    out: Output
    root: Path
    steps: dict[str, Any] = field(default_factory=dict)

    def tributary(self, key: str, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        """Run one CLI command as a user would, show it, and keep its JSON."""
        self.out.line(f"\n$ tributary {' '.join(args)}")
        proc = subprocess.run(
            [sys.executable, "-m", "starter", *args, "--json"],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode not in ok:
            raise RuntimeError(
                f"`tributary {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr}"
            )
        body = json.loads(proc.stdout) if proc.stdout.strip() else {}
        self.steps[key] = body
        if not self.out.as_json:
            for line in proc.stderr.splitlines():
                if "Web UI" in line or line.startswith("error"):
                    self.out.line(line)
            self.out.line(_summarise(args[0], body))
        return body

    def kubectl(self, *args: str) -> None:
        self.out.line(f"\n$ kubectl {' '.join(args)}")
        binary = Path(sys.executable).parent / "kubectl"
        done = subprocess.run(
            [str(binary if binary.exists() else "kubectl"), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.out.line((done.stdout or done.stderr).strip())

    def run(self) -> dict[str, Any]:
        work, remote = prepare_repo(self.root.resolve())
        repo = str(remote)
        self.out.line(
            "== 1. CI publishes the message wall and applies it (Git → authority → cluster)"
        )
        self.tributary("publish", "publish", "--repo", repo, "--ref", "main", "--apply", ok=(0, 5))
        self.out.line("   dev is Ready; prod waits for a required approval (four-eyes).")

        self.out.line("\n== 2. On-call approves prod-east; the apply finishes")
        self.tributary(
            "approve",
            "approve",
            PROD,
            PROD,
            "--revision",
            "1",
            "--by",
            "oncall@example.com",
            ok=(0, 2),
        )
        self.tributary("apply", "apply", PROD, PROD)
        self.show_aws()

        self.out.line("\n== 3. CI runs again on the same commit: nothing new is written")
        self.tributary("republish", "publish", "--repo", repo, "--ref", "main")

        self.out.line("\n== 4. Break-glass: during an incident, on-call raises memory with kubectl")
        self.kubectl(
            "patch",
            "serverlesseventappclaims.messagewall.demo",
            PROD,
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            '{"spec":{"lambdaMemory":1024}}',
        )
        time.sleep(1.5)  # the watch sees it within about a second
        self.tributary(
            "capture",
            "drift",
            "capture",
            PROD,
            PROD,
            "--tag",
            "break-glass",
            "--incident",
            INCIDENT,
            "--by",
            "oncall@example.com",
        )
        self.tributary("revisions", "revisions", PROD, PROD)

        self.out.line(
            "\n== 5. An operator raises lambdaTimeout on every prod unit in the authority"
        )
        self.tributary(
            "set",
            "set",
            "--space",
            PROD,
            "--space",
            "messagewall-prod-west",
            "--where",
            "environment=prod",
            "spec.lambdaTimeout=60",
            "--message",
            "Raise prod Lambda timeout for the holiday peak",
            "--author",
            "oncall@example.com",
        )

        self.out.line(
            "\n== 6. A developer raises dev-east's memory in Git; CI publishes and applies"
        )
        kustomization = work / DEV_EAST
        text = kustomization.read_text()
        if "value: 512" not in text:
            kustomization.write_text(set_inline_patch_value(text, "/spec/lambdaMemory", 512))
            _git(work, "commit", "--quiet", "-am", "dev-east: 512 MB for the load test")
            _git(work, "push", "--quiet", "origin", "main")
        self.tributary(
            "publish_change", "publish", "--repo", repo, "--ref", "main", "--apply", ok=(0, 5)
        )
        self.out.line(
            "   prod shows authority-ahead: the break-glass capture and the bulk change live\n"
            "   in the authority; the sync PR arrow brings them to Git."
        )

        self.out.line(
            "\n== 7. The sync PR edits the prod-east overlay so Git renders the authority"
        )
        synced = self.tributary("sync_pr", "sync-pr", PROD)
        branch = synced.get("branch", "")
        _git(work, "fetch", "--quiet", "origin")
        self.out.line(f"\n$ git diff main origin/{branch}")
        self.out.line(_git(work, "diff", "main", f"origin/{branch}"))

        self.out.line("\n== 8. A reviewer merges it; CI publishes the merge commit: nothing to do")
        _git(work, "merge", "--quiet", "--no-edit", f"origin/{branch}")
        _git(work, "push", "--quiet", "origin", "main")
        self.tributary(
            "publish_merged", "publish", "--repo", repo, "--ref", "main", "--space", PROD
        )
        self.tributary("sync_after_merge", "sync-pr", PROD)
        self.tributary("prs", "prs")
        self.out.line("   The loop is closed: Git, the authority and what runs agree.")
        ui = self.env.get("TRIBUTARY_UI_URL")
        if ui:
            self.out.line(f"\nEvery step is a workflow: {ui}/namespaces/default/workflows")
        return self.steps

    def show_aws(self) -> None:
        """What Crossplane composed in (sandbox) AWS for prod-east."""
        if "AWS_ENDPOINT_URL" not in self.env:
            return
        import boto3  # only the demo's AWS listing needs it

        lam = boto3.client(
            "lambda",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        )
        functions = [
            (f["FunctionName"], f["MemorySize"], f["Timeout"])
            for f in lam.list_functions()["Functions"]
        ]
        self.steps["aws_lambdas"] = functions
        self.out.line("\n   AWS (moto) now runs:")
        for name, memory, timeout in sorted(functions):
            self.out.line(f"     Lambda {name:40} {memory:>5} MB {timeout:>4} s")


def _summarise(command: str, body: dict[str, Any]) -> str:
    if "error" in body:
        return f"   error: {body['error']['message']}"
    if command == "publish":
        lines = []
        for space in body.get("spaces", []):
            for unit in space.get("units", []):
                applied = unit.get("apply", {}).get("state")
                tail = f", apply: {applied}" if applied else ""
                lines.append(
                    f"   {space['space']:24} {unit['action']:16} r{unit['revision']}{tail}"
                )
        return "\n".join(lines)
    if command == "revisions":
        return "\n".join(
            f"   r{r['number']} {r['source']:14} {r['description']}"
            + (f"  [incident {r['tags']['incident']}]" if "incident" in r["tags"] else "")
            for r in body.get("revisions", [])
        )
    if command == "set":
        return "\n".join(
            f"   {u['space']:24} {u['action']:10} r{u['revision']}" for u in body.get("units", [])
        )
    if command == "drift":
        if "units" in body:
            return "\n".join(
                f"   {u['unit']:24} {u['state']:10} {u.get('message', '')}" for u in body["units"]
            )
        captured, revision = body.get("captured"), body.get("revision")
        return f"   captured: {captured} revision {revision}: {body.get('message')}"
    if command == "sync-pr":
        pr = body.get("pr")
        if not pr:
            return f"   {body.get('action')}: Git already renders the authority"
        lines = [f"   {body.get('action')}: PR #{pr['number']} on {body.get('branch')}"]
        lines += [
            f"     {r['unit']} {r['path']}: {r['git']!r} -> {r['authority']!r}"
            f" (r{r['revision']} {r['source']}{' ' + r['incident'] if r['incident'] else ''})"
            for r in body.get("fields", [])
        ]
        return "\n".join(lines)
    if command == "prs":
        return "\n".join(
            f"   #{p['number']} {p['space']} {p['state']} {p['branch']}"
            for p in body.get("prs", [])
        )
    if command in ("apply", "approve"):
        state = body.get("state", "approved")
        return f"   revision {body.get('revision')}: {state} {body.get('message', '')}"
    return "   " + json.dumps(body)[:200]
