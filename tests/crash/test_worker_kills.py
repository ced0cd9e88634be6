"""SIGKILL the worker at randomized points inside publish, apply, capture and sync PR.

Rounds of the whole loop run while a killer SIGKILLs the worker again and again and
starts a new one each time: either after a random lifetime, or right after the
worker made an effect that its workflow has not recorded yet — a revision row, a
Claim generation, a pushed sync branch, a pull request row, a drift record. Every
round must complete; at the end every workflow is whole and the counts are exact:
one revision per Git commit and per live edit (0 lost captures, 0 duplicates), one
sync branch with one commit per space, one pull request per space.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.enums.v1.workflow_pb2 import WORKFLOW_EXECUTION_STATUS_RUNNING
from temporalio.client import WorkflowHandle

from tests.crash.common import (
    BROKEN,
    cli,
    live_edit,
    remote_file,
    remote_refs,
    workflow_statuses,
)
from tests.crash.conftest import crash_repo
from tests.crash.harness import CrashStack, eventually
from tests.support import AuthoringRepo, git
from workflows.sync import IDLE as SYNC_IDLE

SPACES = ["crash-a", "crash-b", "crash-c"]
MIN_KILLS = int(os.environ.get("TRIBUTARY_CRASH_KILLS", "100"))
TRIGGERS = ("random", "revision", "apply", "drift")
SYNC_TRIGGERS = ("random", "revision", "push", "pr")
ROUND_SECONDS = 240.0  # a round that takes longer is stuck
# A worker lives at most this long (or less: a trigger fires first).
MAX_LIFETIME = 2.5
# Kills per round. A sync push on a busy machine takes longer than most workers live,
# so during a burst it is killed at every attempt: a burst must stay well inside
# the 10 attempts of the retry policy (each costs a 20 s heartbeat timeout plus backoff).
BURST = 25


def db(space: str) -> str:
    return f"{space}-orders-db"


def queue(space: str) -> str:
    return f"{space}-orders-queue"


class Probes:
    """Cheap fingerprints of each kind of effect, read behind the worker's back."""

    def __init__(self, stack: CrashStack, repo: AuthoringRepo) -> None:
        self.stack, self.repo = stack, repo

    def read(self, trigger: str) -> Any:
        stack = self.stack
        if trigger == "revision":
            return stack.sql("SELECT count(*) FROM revisions")
        if trigger == "pr":
            return stack.sql("SELECT number, state, head_commit FROM pull_requests")
        if trigger == "drift":
            return stack.sql("SELECT unit, checked_at FROM drift_status")
        if trigger == "push":
            refs = self.repo.remote / "refs/heads/tributary/sync"
            loose = sorted((p.name, p.read_text()) for p in refs.glob("*") if p.is_file())
            return [*loose, (self.repo.remote / "packed-refs").exists()]
        if trigger == "apply":
            generations = []
            for space in SPACES:
                for group, plural, name in (
                    ("platform.acme.io", "databaseclaims", db(space)),
                    ("messaging.acme.io", "queueclaims", queue(space)),
                ):
                    obj = stack.peer.peer.store.snapshot(group, plural, name, "orders")
                    generations.append(obj["metadata"].get("generation") if obj else None)
            return generations
        return None


class Phases:
    """Which arrows are in flight, so each kill can say what it interrupted."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()

    def now(self) -> str:
        return "+".join(sorted(k for k, n in self.active.items() if n)) or "idle"

    @contextlib.contextmanager
    def running(self, phase: str) -> Iterator[None]:
        self.active[phase] += 1
        try:
            yield
        finally:
            self.active[phase] -= 1


async def killer(
    stack: CrashStack, probes: Probes, phases: Phases, target: int, done: asyncio.Event
) -> None:
    """SIGKILL the worker and start another until ``target`` kills or ``done``.

    Each worker dies after a random lifetime, or as soon as the effect the
    trigger watches for appears (whichever comes first).
    """
    while len(stack.kills) < target and not done.is_set():
        if "sync-pr" in phases.now():
            # A push or a PR update takes a few seconds to come: wait for it longer.
            trigger = stack.rng.choice(SYNC_TRIGGERS)
            lifetime = stack.rng.uniform(0.2, MAX_LIFETIME if trigger == "random" else 6.0)
        else:
            trigger = stack.rng.choice(TRIGGERS)
            lifetime = stack.rng.uniform(0.2, MAX_LIFETIME)
        before = probes.read(trigger)
        deadline = time.monotonic() + lifetime
        fired = "random"
        while time.monotonic() < deadline and not done.is_set():
            await asyncio.sleep(0.02)
            if trigger != "random" and probes.read(trigger) != before:
                fired = f"after-{trigger}"
                break
        if done.is_set():
            return
        stack.kill_worker(fired, during=phases.now())
        await stack.start_worker()


def storage(r: int) -> int:
    return 100 + r


def receives(r: int) -> int:
    return 10 + r


def set_storage(text: str, value: int) -> str:
    return re.sub(r"storageGB: \d+", f"storageGB: {value}", text)


async def one_round(stack: CrashStack, repo: AuthoringRepo, phases: Phases, r: int) -> None:
    """Arrows 1 + 2 on the databases while arrows 3 + 4 run on the queues."""
    await asyncio.gather(publish(stack, repo, phases, r), capture(stack, repo, phases, r))


async def publish(stack: CrashStack, repo: AuthoringRepo, phases: Phases, r: int) -> None:
    # A commit changes every space's database; CI publishes it with --apply.
    for space in SPACES:
        repo.edit(f"deploy/envs/{space}/database.yaml", lambda t: set_storage(t, storage(r)))
    sha = repo.commit(f"round {r}: storage {storage(r)}")
    with phases.running("publish+apply"):
        published = await cli(
            stack, "publish", "--repo", repo.url, "--ref", sha, "--apply", "--json"
        )
    assert published.code == 0, published.stderr
    actions = {
        (s["space"], u["unit"]): u["action"] for s in published.json["spaces"] for u in s["units"]
    }
    for space in SPACES:
        assert actions[(space, db(space))] == "published", actions


async def capture(stack: CrashStack, repo: AuthoringRepo, phases: Phases, r: int) -> None:
    # A live edit of every queue is captured and proposed back to Git.
    for space in SPACES:
        live_edit(stack, queue(space), {"maxReceiveCount": receives(r)})
    store = stack.store()
    try:

        async def captured() -> bool:
            for space in SPACES:
                unit = store.get_unit(space, queue(space))
                assert unit is not None
                head = store.get_revision(space, queue(space), unit.head_revision)
                assert head is not None
                if head.data["spec"].get("maxReceiveCount") != receives(r):
                    return False
            return True

        with phases.running("capture"):
            await eventually(captured, limit=ROUND_SECONDS, what=f"round {r}: live edits captured")
    finally:
        store.close()

    async def proposed() -> bool:
        return all(
            f"maxReceiveCount: {receives(r)}"
            in remote_file(repo, f"tributary/sync/{space}", f"deploy/envs/{space}/queue.yaml")
            for space in SPACES
        )

    with phases.running("sync-pr"):
        await eventually(proposed, limit=ROUND_SECONDS, what=f"round {r}: sync PRs updated")


@pytest.mark.timeout(900)
async def test_worker_sigkills_lose_and_duplicate_nothing(
    crash_stack: CrashStack, tmp_path: Path
) -> None:
    stack = crash_stack
    repo = crash_repo(tmp_path, SPACES)
    first = await cli(stack, "publish", "--repo", repo.url, "--apply", "--json")
    assert first.code == 0, first.stderr
    print("initial publish done", flush=True)

    phases = Phases()
    probes = Probes(stack, repo)
    rounds = 0
    started = time.monotonic()
    while len(stack.kills) < MIN_KILLS:
        # A burst of kills while the round's arrows run; the round then finishes in
        # peace, so no single activity spends all of its retries on one burst.
        rounds += 1
        done = asyncio.Event()
        target = min(MIN_KILLS, len(stack.kills) + BURST)
        burst = asyncio.create_task(killer(stack, probes, phases, target, done))
        try:
            await one_round(stack, repo, phases, rounds)
        finally:
            done.set()
            await burst
        print(f"round {rounds}: {len(stack.kills)} kills, {time.monotonic() - started:.0f} s")
    print(f"{len(stack.kills)} kills in {rounds} rounds")
    print("  by trigger:", dict(Counter(k.trigger for k in stack.kills)))
    print("  by arrows in flight:", dict(Counter(k.during for k in stack.kills)))
    assert len(stack.kills) >= MIN_KILLS
    # Every arrow was interrupted, each many times.
    for arrow in ("publish+apply", "capture", "sync-pr"):
        hits = sum(arrow in k.during for k in stack.kills)
        assert hits >= 10, f"only {hits} kills while {arrow} was in flight"

    # Let the last sync runs and drift checks finish, then count.
    await settle(stack, repo)
    await check_counts(stack, repo, rounds)


async def settle(stack: CrashStack, repo: AuthoringRepo) -> None:
    """Until every sync PR workflow is idle: nothing more will happen without new input.

    No pending activity is not enough. A round ends as soon as the pushed branch shows
    its change, i.e. right after the push; the PR record is written by the next
    activities, which the workflow schedules in a workflow task (pending, or waiting
    for the worker the killer just replaced), and a request that arrived late is
    waiting out its debounce timer before it pushes again. Idle is: no pending
    activity, no pending workflow task, and no timer running but the idle one.
    """

    seen: list[str] = []

    async def quiet() -> bool:
        for handle_id in [f"sync-pr:{space}" for space in SPACES]:
            busy = await busy_with(stack.client.get_workflow_handle(handle_id))
            if busy:
                if busy not in seen:  # what the last run was still doing, for the log
                    seen.append(busy)
                    print(f"settle: {handle_id} {busy}", flush=True)
                return False
        return True

    await eventually(quiet, limit=ROUND_SECONDS, what="sync PR workflows idle")


async def busy_with(handle: WorkflowHandle[Any, Any]) -> str:
    """What a sync PR run is still doing ("" when idle or ended)."""
    raw = (await handle.describe()).raw_description
    if raw.workflow_execution_info.status != WORKFLOW_EXECUTION_STATUS_RUNNING:
        return ""
    if raw.pending_activities:
        return "activity " + ", ".join(a.activity_type.name for a in raw.pending_activities)
    if raw.HasField("pending_workflow_task"):
        return "workflow task pending (the push is done, the PR record may not be)"
    timers = await busy_timers(handle)
    return f"debounce timer {timers}" if timers else ""


async def busy_timers(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The run's running timers other than the idle wait (a debounce: a sync to come)."""
    running: dict[str, timedelta] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            attrs = event.timer_started_event_attributes
            running[attrs.timer_id] = attrs.start_to_fire_timeout.ToTimedelta()
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            running.pop(event.timer_fired_event_attributes.timer_id, None)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            running.pop(event.timer_canceled_event_attributes.timer_id, None)
    return [timer for timer, timeout in running.items() if timeout != SYNC_IDLE]


async def check_counts(stack: CrashStack, repo: AuthoringRepo, rounds: int) -> None:
    # Every workflow completed or is a loop still waiting for work; none failed.
    statuses = await workflow_statuses(stack)
    broken = [(t, i, s) for t, runs in statuses.items() for i, s in runs if s in BROKEN]
    assert broken == [], broken
    publishes = statuses.get("PublishRunWorkflow", []) + statuses.get("PublishWorkflow", [])
    assert publishes
    assert all(s == "COMPLETED" for _, s in publishes), publishes

    store = stack.store()
    try:
        for space in SPACES:
            # Git → authority: one `ci` revision per commit that changed the database.
            revs = store.list_revisions(space, db(space))
            assert [r.source for r in revs] == ["ci"] * (rounds + 1), [
                (r.number, r.source) for r in revs
            ]
            assert [r.data["spec"]["storageGB"] for r in revs[1:]] == [
                storage(r) for r in range(1, rounds + 1)
            ]
            unit = store.get_unit(space, db(space))
            assert unit is not None
            assert unit.live_revision == unit.head_revision == revs[-1].number
            # live → authority: one capture per live edit, none lost, none twice.
            revs = store.list_revisions(space, queue(space))
            assert [r.source for r in revs] == ["ci"] + ["drift-capture"] * rounds, [
                (r.number, r.source, r.data["spec"].get("maxReceiveCount")) for r in revs
            ]
            assert [r.data["spec"]["maxReceiveCount"] for r in revs[1:]] == [
                receives(r) for r in range(1, rounds + 1)
            ]
            # authority → Git: one branch with one commit, one pull request.
            prs = store.list_prs(space)
            assert [(p.branch, p.state) for p in prs] == [(f"tributary/sync/{space}", "open")]
            refs = remote_refs(repo.remote)
            assert prs[0].head_commit == refs[f"tributary/sync/{space}"]
            count = git(repo.remote, "rev-list", "--count", f"main..tributary/sync/{space}")
            assert count == "1"
    finally:
        store.close()
    assert sorted(remote_refs(repo.remote)) == sorted(
        ["main"] + [f"tributary/sync/{space}" for space in SPACES]
    )
