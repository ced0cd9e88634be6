"""Outages of the Kubernetes API peer, moto and the Git remote, one after the other.

During each, work is in flight on the arrow it breaks; the test checks that the
trouble is visible where an operator looks — the Web UI's pending activity with
its last failure (read here through the same API the UI uses) — and that once the
part is back everything completes and nothing is lost.

The issue asks for 60 s outages. The API peer is down 60 s; moto and the Git
remote ``SIDE_OUTAGE`` seconds each, which exercises the same retry path (the
backoff reaches 32 s by the sixth attempt) and keeps the marker's run short.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from sandbox.moto_server import AwsClients
from tests.crash.common import cli, live_edit, remote_file, remote_refs
from tests.crash.conftest import crash_repo
from tests.crash.harness import CrashStack, eventually
from tests.support import AuthoringRepo, make_repo, set_patch_value

SPACE = "out"
MW = "messagewall-dev-east"
PEER_OUTAGE = float(os.environ.get("TRIBUTARY_CRASH_PEER_OUTAGE", "60"))
SIDE_OUTAGE = float(os.environ.get("TRIBUTARY_CRASH_SIDE_OUTAGE", "20"))


async def pending_failures(stack: CrashStack) -> list[str]:
    """What the Web UI shows of running workflows' pending activities: last failures
    and heartbeat details."""
    found = []
    async for wf in stack.client.list_workflows("ExecutionStatus = 'Running'"):
        try:
            desc = await stack.client.get_workflow_handle(wf.id).describe()
        except Exception:  # finished meanwhile
            continue
        for pending in desc.raw_description.pending_activities:
            what = f"{wf.id} {pending.activity_type.name} attempt {pending.attempt}"
            if pending.HasField("last_failure"):
                found.append(f"{what} last failure: {pending.last_failure.message}")
            for payload in pending.heartbeat_details.payloads:
                found.append(f"{what} heartbeat: {payload.data.decode(errors='replace')}")
    return found


async def seen_during(stack: CrashStack, outage: float, pattern: str) -> list[str]:
    """Poll the pending activities while the outage lasts; the failures that match."""
    deadline = time.monotonic() + outage - 2
    seen: list[str] = []
    while time.monotonic() < deadline:
        for failure in await pending_failures(stack):
            if re.search(pattern, failure, re.IGNORECASE) and failure not in seen:
                seen.append(failure)
        await asyncio.sleep(1)
    return seen


def head_value(stack: CrashStack, space: str, unit: str, path: list[str]) -> object:
    store = stack.store()
    try:
        record = store.get_unit(space, unit)
        assert record is not None
        head = store.get_revision(space, unit, record.head_revision)
        assert head is not None
        value: object = head.data
        for key in path:
            value = value[key]  # type: ignore[index]
        return value
    finally:
        store.close()


def messagewall(tmp: Path) -> AuthoringRepo:
    repo = make_repo(tmp / "mw", "messagewall")
    config = yaml.safe_load(repo.read("tributary.yaml"))
    config["spaces"][MW]["drift_interval"] = "10s"
    repo.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
    repo.commit("checks every 10 s")
    return repo


async def setup(stack: CrashStack, tmp_path: Path) -> tuple[AuthoringRepo, AuthoringRepo]:
    repo = crash_repo(tmp_path, [SPACE])
    mw = messagewall(tmp_path)
    first = await cli(stack, "publish", "--repo", repo.url, "--apply", "--json")
    assert first.code == 0, first.stderr
    first = await cli(stack, "publish", "--repo", mw.url, "--space", MW, "--apply", "--json")
    assert first.code == 0, first.stderr
    return repo, mw


QUEUE, DB = f"{SPACE}-orders-queue", f"{SPACE}-orders-db"


@pytest.mark.timeout(600)
async def test_api_and_git_outages_are_retried_visible_and_lose_nothing(
    crash_stack: CrashStack, tmp_path: Path
) -> None:
    stack = crash_stack
    repo, _ = await setup(stack, tmp_path)
    queue, db = QUEUE, DB

    # ---- 1. the Kubernetes API goes away for 60 s ------------------------------------
    # A CI publish --apply: the API goes away once the revision is written, as the
    # apply starts; a live edit just before.
    repo.edit(
        f"deploy/envs/{SPACE}/database.yaml",
        lambda t: re.sub(r"storageGB: \d+", "storageGB: 120", t),
    )
    sha = repo.commit("more storage during the outage")
    publishing = asyncio.create_task(
        cli(stack, "publish", "--repo", repo.url, "--ref", sha, "--apply", "--json", limit=400)
    )

    async def written() -> bool:
        return head_value(stack, SPACE, db, ["spec", "storageGB"]) == 120

    await eventually(written, limit=180, what="the publish wrote its revision", every=0.05)
    live_edit(stack, queue, {"maxReceiveCount": 31})
    stack.peer.refuse_connections(PEER_OUTAGE)
    seen_peer = await seen_during(stack, PEER_OUTAGE, "refused|unavailable|reset|aborted")
    print("API peer outage, seen in the Web UI:", *seen_peer, sep="\n  ")
    status = await cli(stack, "drift", "status", SPACE, "--json")
    print("drift status at the end of the API outage:", status.stdout.replace("\n", " "))
    await asyncio.to_thread(stack.peer.wait_listening, PEER_OUTAGE + 30)
    published = await publishing
    assert published.code == 0, published.stderr

    async def captured_31() -> bool:
        return head_value(stack, SPACE, queue, ["spec", "maxReceiveCount"]) == 31

    await eventually(captured_31, limit=180, what="the live edit made before the outage captured")
    store = stack.store()
    try:
        unit = store.get_unit(SPACE, db)
        assert unit is not None
        assert unit.live_revision == unit.head_revision == 2  # the publish applied
    finally:
        store.close()

    # ---- 2. the Git remote goes away: a capture's sync PR waits for it ---------------
    hidden = repo.remote.with_name("crash.git.away")
    repo.remote.rename(hidden)
    try:
        live_edit(stack, queue, {"maxReceiveCount": 32})
        seen_git = await seen_during(stack, SIDE_OUTAGE, "cannot (reach|clone)")
    finally:
        hidden.rename(repo.remote)
    print("Git remote outage, seen in the Web UI:", *seen_git, sep="\n  ")

    async def proposed() -> bool:
        branch = f"tributary/sync/{SPACE}"
        text = remote_file(repo, branch, f"deploy/envs/{SPACE}/queue.yaml")
        store = stack.store()
        try:
            prs = store.list_prs(SPACE)
        finally:
            store.close()
        head = remote_refs(repo.remote).get(branch)
        return "maxReceiveCount: 32" in text and any(p.head_commit == head for p in prs)

    await eventually(
        proposed, limit=180, what="the sync PR pushed and updated after the Git outage"
    )

    # Nothing lost, nothing twice: exactly the revisions the story made.
    store = stack.store()
    try:
        assert [r.source for r in store.list_revisions(SPACE, queue)] == [
            "ci",
            "drift-capture",
            "drift-capture",
        ]
        assert [r.source for r in store.list_revisions(SPACE, db)] == ["ci", "ci"]
        assert [(p.state, p.branch) for p in store.list_prs(SPACE)] == [
            ("open", f"tributary/sync/{SPACE}")
        ]
    finally:
        store.close()
    # Each outage showed where an operator looks.
    assert seen_peer, "the API outage never showed in a pending activity"
    assert seen_git, "the Git outage never showed as a pending activity's last failure"


@pytest.mark.timeout(600)
async def test_an_aws_outage_delays_a_capture_and_loses_nothing(
    crash_stack: CrashStack, tmp_path: Path
) -> None:
    """The AWS observer cannot read during the outage; the live edit made then is
    captured once AWS is back."""
    stack = crash_stack
    await setup(stack, tmp_path)
    stack.moto_down()
    try:
        patch_claim(stack, {"lambdaTimeout": 20})
        seen = await seen_during(stack, SIDE_OUTAGE, ".")
        print("AWS outage, seen in the Web UI:", *seen, sep="\n  ")
        status = await cli(stack, "drift", "status", MW, "--json")
        print("drift status at the end of the AWS outage:", status.stdout.replace("\n", " "))
    finally:
        stack.moto_up()

    async def captured() -> bool:
        return head_value(stack, MW, MW, ["spec", "lambdaTimeout"]) == 20

    await eventually(captured, limit=180, what="the live edit made during the AWS outage captured")
    store = stack.store()
    try:
        assert [r.source for r in store.list_revisions(MW, MW)] == ["ci", "drift-capture"]
    finally:
        store.close()


@pytest.mark.timeout(600)
async def test_an_aws_outage_during_an_apply_delays_it_and_loses_nothing(
    crash_stack: CrashStack, tmp_path: Path
) -> None:
    stack = crash_stack
    _, mw = await setup(stack, tmp_path)
    overlay = "infra/claims/overlays/dev-east/kustomization.yaml"
    mw.edit(overlay, lambda t: set_patch_value(t, "/spec/lambdaMemory", "256"))
    sha = mw.commit("more memory during the AWS outage")
    stack.moto_down()
    try:
        publishing = asyncio.create_task(
            cli(
                stack,
                "publish",
                "--repo",
                mw.url,
                "--ref",
                sha,
                "--space",
                MW,
                "--apply",
                "--json",
                limit=400,
            )
        )
        await asyncio.sleep(SIDE_OUTAGE)
    finally:
        stack.moto_up()
    published = await publishing
    assert published.code == 0, published.stderr
    aws = AwsClients(stack.moto.endpoint)
    memory = aws.lambda_().get_function_configuration(FunctionName="messagewall-east-api-handler")
    assert memory["MemorySize"] == 256


def patch_claim(stack: CrashStack, spec: dict[str, object]) -> None:
    kube = stack.kube()
    try:
        status, body = kube.request(
            "PATCH",
            f"/apis/messagewall.demo/v1alpha1/namespaces/default/serverlesseventappclaims/{MW}",
            query=[("fieldManager", "kubectl-edit")],
            body={"spec": spec},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body
    finally:
        kube.close()
