"""Crash and fault tests: a stack whose parts the test kills, restarts and takes away.

Marked ``crash`` (every test in this folder); CI runs them with the rest of the suite.
Loopback only, bounded in time. ``TRIBUTARY_CRASH_SEED`` replays a run's randomness.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from tests.crash.harness import CrashStack, seed
from tests.support import FIXTURES, AuthoringRepo, git


@pytest.fixture
async def crash_stack(tmp_path: Path) -> AsyncIterator[CrashStack]:
    value = seed()
    print(f"\ncrash seed: TRIBUTARY_CRASH_SEED={value}")
    stack = CrashStack(tmp_path / "stack", random.Random(value))
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


def crash_repo(tmp: Path, spaces: list[str], *, queues: int = 1) -> AuthoringRepo:
    """The orders app with one overlay per space (names prefixed by the space), no
    approval gate, drift in ``capture`` mode and a 1 s sync debounce.

    ``queues`` > 1 adds that many more QueueClaims to every space.
    """
    remote, work = tmp / "crash.git", tmp / "crash"
    git(tmp, "init", "-q", "--bare", "--initial-branch=main", str(remote))
    source = FIXTURES / "orders"
    for part in ("platform", "policy", "deploy/base"):
        shutil.copytree(source / part, work / part)
    staging = source / "deploy/envs/staging"
    for space in spaces:
        overlay = work / "deploy/envs" / space
        overlay.mkdir(parents=True)
        for name in ("database.yaml", "queue.yaml"):
            shutil.copy(staging / name, overlay / name)
        kustomization = yaml.safe_load((staging / "kustomization.yaml").read_text())
        kustomization["namePrefix"] = f"{space}-"
        if queues > 1:
            kustomization["resources"].append("extra-queues.yaml")
            (overlay / "extra-queues.yaml").write_text(
                "".join(
                    "---\napiVersion: messaging.acme.io/v1\nkind: QueueClaim\n"
                    f"metadata: {{name: q{i:03d}, namespace: orders}}\n"
                    "spec: {maxReceiveCount: 5}\n"
                    for i in range(queues - 1)
                )
            )
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    config = {
        "spaces": {
            space: {
                "overlay": f"deploy/envs/{space}",
                "environment": "staging",
                "approval": "none",
                "drift": "capture",
                "drift_interval": "10s",
            }
            for space in spaces
        },
        "policies": ["policy/rego"],
        "schemas": ["platform/xrds"],
        "sync": {"debounce": "1s"},
    }
    (work / "tributary.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(work, "init", "-q", "--initial-branch=main")
    git(work, "config", "user.name", "Dana Developer")
    git(work, "config", "user.email", "dana@example.com")
    git(work, "remote", "add", "origin", str(remote))
    repo = AuthoringRepo(work=work, remote=remote)
    repo.commit("crash: initial")
    return repo


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/crash/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.crash)
