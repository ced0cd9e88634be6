"""The acceptance test of the whole project: the loop closes.

live edit → capture → sync PR → merge → publish is a no-op — for the JSON-patch
overlays of the message wall and the strategic-merge patch files of the orders app.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Stack
from tests.e2e.test_cli_apply import kubectl
from tests.e2e.test_cli_drift import revisions, wait_for
from tests.support import AuthoringRepo, git, make_repo, run_cli


def close_the_loop(
    stack: Stack,
    repo: AuthoringRepo,
    *,
    space: str,
    unit: str,
    plural: str,
    namespace: str,
    patch: dict[str, object],
    approve: bool,
    changed_file: str,
) -> None:
    published = run_cli(
        "publish",
        "--repo",
        repo.url,
        "--ref",
        "main",
        "--space",
        space,
        "--apply",
        "--json",
        env=stack.env,
        timeout=240,
    )
    assert published.code in (0, 5), published.stderr
    if approve:
        ok = run_cli(
            "approve", space, unit, "--revision", "1", "--by", "oncall@example.com", env=stack.env
        )
        assert ok.code == 0, ok.stderr
        assert run_cli("apply", space, unit, env=stack.env, timeout=120).code == 0

    # 1. a live edit, 2. captured by the watch
    edited = kubectl(
        stack, "patch", plural, unit, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )
    assert edited.returncode == 0, edited.stderr
    # Each poll is a whole CLI process (about 1.5 s of CPU): under a stress run's load
    # a few polls alone outlast 20 s. The capture itself is prompt (the watch).
    wait_for(lambda: len(revisions(stack, space, unit)) == 2)

    # 3. the sync PR edits the overlay itself
    synced = run_cli("sync-pr", space, "--json", env=stack.env, timeout=120)
    assert synced.code == 0, synced.stderr
    body = synced.json
    # the capture's own debounced sync may have opened it already (a slow machine)
    assert body["action"] in ("opened", "updated", "unchanged")
    assert body["branch"] == f"tributary/sync/{space}"
    assert body["pr"]["state"] == "open"
    assert body["fallback"] == []
    git(repo.work, "fetch", "-q", "origin")
    changed = git(repo.work, "diff", "--name-only", "main", f"origin/{body['branch']}")
    assert changed.splitlines() == [changed_file]
    again = run_cli("sync-pr", space, "--json", env=stack.env, timeout=120)
    assert again.json["action"] == "unchanged"  # nothing new: same branch, same PR

    # 4. a developer merges it
    git(repo.work, "merge", "-q", "--no-edit", f"origin/{body['branch']}")
    git(repo.work, "push", "-q", "origin", "main")

    # 5. the next publish on the merge commit writes nothing
    final = run_cli(
        "publish",
        "--repo",
        repo.url,
        "--ref",
        "main",
        "--space",
        space,
        "--json",
        env=stack.env,
        timeout=120,
    )
    assert final.code == 0, final.stderr
    assert {u["action"] for s in final.json["spaces"] for u in s["units"]} == {"unchanged"}
    assert len(revisions(stack, space, unit)) == 2
    done = run_cli("sync-pr", space, "--json", env=stack.env, timeout=120)
    assert done.json["action"] == "unchanged"
    prs = run_cli("prs", space, "--json", env=stack.env).json["prs"]
    assert [pr["state"] for pr in prs] == ["merged"]


def test_loop_closes_for_json_patch_overlays(fresh_stack: Stack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "messagewall")
    close_the_loop(
        fresh_stack,
        repo,
        space="messagewall-dev-east",
        unit="messagewall-dev-east",
        plural="serverlesseventappclaims.messagewall.demo",
        namespace="default",
        patch={"spec": {"lambdaMemory": 512}, "metadata": {"annotations": {"owner": "team-a"}}},
        approve=False,
        changed_file="infra/claims/overlays/dev-east/kustomization.yaml",
    )


def test_loop_closes_for_strategic_merge_overlays(fresh_stack: Stack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "orders")
    close_the_loop(
        fresh_stack,
        repo,
        space="orders-production",
        unit="production-orders-db",
        plural="databaseclaims.platform.acme.io",
        namespace="orders",
        patch={"spec": {"storageGB": 300, "parameters": {"work_mem": "64MB"}}},
        approve=True,
        changed_file="deploy/envs/production/database.yaml",
    )
