"""What the crash tests share: CLI runs, live edits, and counting what the loop made."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from tests.crash.harness import CrashStack
from tests.support import REPO_ROOT, AuthoringRepo, git

QUEUES = "/apis/messaging.acme.io/v1/namespaces/orders/queueclaims"


@dataclass
class Cli:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


async def cli(stack: CrashStack, *args: str, limit: float = 300) -> Cli:
    """``tributary ARGS`` in a subprocess, as CI and operators run it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter",
        *args,
        cwd=REPO_ROOT,
        env={**os.environ, **stack.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(
            f"tributary {' '.join(args)} did not finish in {limit:.0f} s"
        ) from None
    return Cli(proc.returncode or 0, out.decode(), err.decode())


def live_edit(stack: CrashStack, name: str, spec: dict[str, Any]) -> None:
    """What `kubectl edit` does: a merge patch under another field manager."""
    kube = stack.kube()
    try:
        status, body = kube.request(
            "PATCH",
            f"{QUEUES}/{name}",
            query=[("fieldManager", "kubectl-edit")],
            body={"spec": spec},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body
    finally:
        kube.close()


def remote_refs(remote: Path) -> dict[str, str]:
    out = git(remote, "for-each-ref", "--format=%(refname:short) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def remote_file(repo: AuthoringRepo, ref: str, path: str) -> str:
    try:
        return git(repo.remote, "show", f"{ref}:{path}")
    except Exception:
        return ""


async def workflow_statuses(stack: CrashStack) -> dict[str, list[tuple[str, str]]]:
    """Workflow type → [(id, status)] for every workflow Temporal knows."""
    found: dict[str, list[tuple[str, str]]] = {}
    async for wf in stack.client.list_workflows():
        status = wf.status.name if wf.status else "UNKNOWN"
        found.setdefault(wf.workflow_type, []).append((wf.id, status))
    return found


BROKEN = {
    WorkflowExecutionStatus.FAILED.name,
    WorkflowExecutionStatus.TERMINATED.name,
    WorkflowExecutionStatus.TIMED_OUT.name,
    WorkflowExecutionStatus.CANCELED.name,
}
