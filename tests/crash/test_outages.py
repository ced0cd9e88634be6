"""Outages of the Kubernetes API peer, moto and the Git remote, one after the other.

During each, work is in flight on the arrow it breaks; the test checks that the
trouble is visible where an operator looks — the Web UI's pending activity with
its last failure (read here through the same API the UI uses) — and that once the
part is back everything completes and nothing is lost.

Each part is away 60 s, as the issue asks (``TRIBUTARY_CRASH_OUTAGE`` shortens it
for a quick local run). While it is away, the units whose checks need it read
``failing`` in ``drift status`` (the authority's drift records, which that command
prints) and the blocked activity shows its last failure; once it is back they
recover and every change made before or during the outage lands exactly once.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
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
OUTAGE = float(os.environ.get("TRIBUTARY_CRASH_OUTAGE", "60"))
OUTAGE_EXTENSION = 10.0  # how much longer a part stays away while nothing showed yet


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


def drift_states(stack: CrashStack, space: str) -> dict[str, tuple[str, str]]:
    """Unit -> (state, message), as ``tributary drift status SPACE`` prints them."""
    store = stack.store()
    try:
        return {r.unit: (r.state, r.message) for r in store.list_drift(space)}
    finally:
        store.close()


class Seen:
    """What an operator saw during an outage: pending activities' failures (the Web
    UI) and units whose drift status read ``failing``."""

    def __init__(self) -> None:
        self.activities: list[str] = []
        self.failing: dict[str, str] = {}


async def seen_during(
    stack: CrashStack,
    outage: float,
    pattern: str,
    spaces: tuple[str, ...] = (),
    *,
    enough: Callable[[Seen], bool] = lambda _: True,
    extend: Callable[[float], None] | None = None,
) -> Seen:
    """Poll the pending activities and the spaces' drift status while the outage lasts.

    At least ``outage`` seconds; past that, for as long as what the test asserts was
    seen is not (``enough``), the outage goes on (``extend`` keeps a timed one going),
    up to three times as long. A loaded machine can take most of a minute from the
    outage to the failure an operator sees; that is slowness, not a lost signal.
    """
    started = time.monotonic()
    deadline = started + outage - 2
    seen = Seen()
    while True:
        for failure in await pending_failures(stack):
            if re.search(pattern, failure, re.IGNORECASE) and failure not in seen.activities:
                seen.activities.append(failure)
        for space in spaces:
            for unit, (state, message) in drift_states(stack, space).items():
                if state == "failing":
                    seen.failing.setdefault(f"{space}/{unit}", message)
        now = time.monotonic()
        if now >= deadline:
            if enough(seen) or now >= started + 3 * outage:
                return seen
            if extend is not None:
                extend(OUTAGE_EXTENSION)
            deadline = now + OUTAGE_EXTENSION - 2
        await asyncio.sleep(1)


async def recovered(stack: CrashStack, spaces: tuple[str, ...]) -> None:
    """Until no unit of ``spaces`` reads ``failing`` any more (its next check passed)."""

    async def none_failing() -> bool:
        return all(
            state != "failing"
            for space in spaces
            for state, _ in drift_states(stack, space).values()
        )

    await eventually(none_failing, limit=180, what="drift status recovered after the outage")


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
    stack.peer.refuse_connections(OUTAGE)
    seen_peer = await seen_during(
        stack,
        OUTAGE,
        "refused|unavailable|reset|aborted",
        spaces=(SPACE, MW),
        enough=lambda seen: bool(seen.activities and seen.failing),
        extend=stack.peer.refuse_connections,
    )
    print("API peer outage, seen in the Web UI:", *seen_peer.activities, sep="\n  ")
    print("API peer outage, failing in drift status:", seen_peer.failing)
    await asyncio.to_thread(stack.peer.wait_listening, OUTAGE + 30)
    published = await publishing
    assert published.code == 0, published.stderr
    await recovered(stack, (SPACE, MW))

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
        seen_git = await seen_during(
            stack, OUTAGE, "cannot (reach|clone)", enough=lambda seen: bool(seen.activities)
        )
    finally:
        hidden.rename(repo.remote)
    print("Git remote outage, seen in the Web UI:", *seen_git.activities, sep="\n  ")

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
    assert seen_peer.activities, "the API outage never showed in a pending activity"
    assert seen_peer.failing, "no unit read failing in drift status during the API outage"
    assert seen_git.activities, "the Git outage never showed as a pending activity's last failure"


@pytest.mark.timeout(600)
async def test_an_aws_outage_delays_a_capture_and_loses_nothing(
    crash_stack: CrashStack, tmp_path: Path
) -> None:
    """The AWS observer cannot read during the outage; the live edit made then is
    captured once AWS is back."""
    stack = crash_stack
    await setup(stack, tmp_path)
    stack.moto_down()
    started = time.monotonic()
    try:
        # The AWS observer cannot read: the unit's next check fails, visibly. (Waited
        # for before the edit: a check that finds the edit on the Kubernetes side may
        # capture it without AWS.)
        async def failing() -> bool:
            return drift_states(stack, MW).get(MW, ("", ""))[0] == "failing"

        await eventually(failing, limit=OUTAGE, what="drift status failing during the AWS outage")
        patch_claim(stack, {"lambdaTimeout": 20})
        seen = await seen_during(stack, OUTAGE - (time.monotonic() - started), ".", spaces=(MW,))
        print("AWS outage, seen in the Web UI:", *seen.activities, sep="\n  ")
        print("AWS outage, failing in drift status:", drift_states(stack, MW))
    finally:
        stack.moto_up()
    await recovered(stack, (MW,))

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
        # The apply reaches the cluster and waits on Crossplane, which cannot reach AWS
        # (the publish before it takes a while on a loaded machine); from then on the
        # outage lasts its 60 s, the unit's drift checks failing meanwhile.
        waiting = r'kube\.wait_ready .*heartbeat: "waiting: '  # details are JSON

        async def apply_waits() -> bool:
            return any(re.search(waiting, f) for f in await pending_failures(stack))

        await eventually(apply_waits, limit=300, what="the apply waiting on Crossplane")
        seen = await seen_during(
            stack,
            OUTAGE,
            waiting,
            spaces=(MW,),
            enough=lambda seen: any("ReconcileError" in a for a in seen.activities),
        )
        print("AWS outage during an apply, seen in the Web UI:", *seen.activities, sep="\n  ")
        print("AWS outage during an apply, failing in drift status:", seen.failing)
    finally:
        stack.moto_up()
    published = await publishing
    assert published.code == 0, published.stderr
    # While its apply is in flight the unit's drift loop reads it as applying and leaves
    # the provider's ReconcileError to the apply, whose wait shows it (the Web UI); with
    # no apply in flight the outage reads failing in drift status (the test above).
    assert seen.activities, "the apply's wait on Crossplane never showed in the Web UI"
    assert any("ReconcileError" in a for a in seen.activities), seen.activities
    await recovered(stack, (MW,))
    store = stack.store()
    try:
        assert [r.source for r in store.list_revisions(MW, MW)] == ["ci", "ci"]
        unit = store.get_unit(MW, MW)
        assert unit is not None
        assert unit.live_revision == unit.head_revision == 2
    finally:
        store.close()
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
