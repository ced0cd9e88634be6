"""Drift benchmarks (arrow 3) on the embedded stack.

1. live edit → captured revision, p50/p95 over N edits: with the worker's watch, and
   without it (the timer alone, at a short drift_interval);
2. sweep of 1,000 units (and optionally 10,000) on the dev server: the first (which
   starts every loop and has each check), then in sync (batched: listed and judged in
   the worker, recorded in bulk, no loop signalled);
3. idle cost of the 1,000 drift loops at a 5-minute interval, covered by a sweep
   schedule every 290 s (so each loop sleeps to the 1 h backstop): worker RSS, CPU per
   sweep and per covered wake, and the mean over a backstop period (the sweeps
   included), history events per workflow task;
4. (idle-aws) idle cost of message-wall loops, whose checks also read AWS.

Every Temporal figure comes with its in-process floor, measured in the same run: the
same list plus diff (``domain.sweep.judge_claim`` over objects listed once per kind,
live revisions read in one query per space), no Temporal, no worker.

Run: `.venv/bin/python bench/drift_bench.py [--edits 20] [--idle-seconds 300]
[--parts watch,timer,sweep,sweep10k,idle-aws] [--aws-units 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from apply_bench import repo_with  # type: ignore[import-not-found]
from common import (  # type: ignore[import-not-found]
    ROOT,
    ProcessSampler,
    cli,
    start,
    stop,
    summary,
)
from temporalio.api.enums.v1 import EventType

from activities.drift import _schema
from activities.sweep import list_paged
from adapters.kube import KubeClient
from authority.sql import SqlStore
from client.contract import DRIFT_STATUS_QUERY, DRIFT_WORKFLOW
from client.settings import Settings, connect
from domain.authority import SpaceSpec, UnitChange
from domain.sweep import COVERED_BACKSTOP, judge_claim
from starter.commands.drift import SCHEDULE_ID
from tests.support import FIXTURES, make_repo

DEV = "messagewall-dev-east"
CLAIMS = "serverlesseventappclaims"


def live_claim_edit_latency(
    env: dict[str, str], tmp: Path, edits: int, interval: str
) -> dict[str, float]:
    repo = make_repo(tmp, "messagewall")
    config = yaml.safe_load(repo.read("tributary.yaml"))
    config["spaces"][DEV]["drift_interval"] = interval
    repo.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
    repo.commit(f"drift every {interval}")
    cli(env, "publish", "--repo", str(repo.work), "--space", DEV, "--apply")
    store = SqlStore(env["TRIBUTARY_AUTHORITY"])
    kube = KubeClient(env["KUBECONFIG"])
    res = kube.resource("messagewall.demo/v1alpha1", "ServerlessEventAppClaim")
    assert res is not None
    latencies = []
    for i in range(edits):
        before = len(store.list_revisions(DEV, DEV))
        memory = 256 + 64 * (i % 8) if i % 2 == 0 else 128 + 64 * (i % 8)
        t = time.perf_counter()
        kube.request(
            "PATCH",
            res.path(DEV, "default"),
            query=[("fieldManager", "kubectl-edit")],
            body={"spec": {"lambdaMemory": memory}},
            content_type="application/merge-patch+json",
        )
        while len(store.list_revisions(DEV, DEV)) == before:
            time.sleep(0.02)
            if time.perf_counter() - t > 120:
                raise RuntimeError("no capture in 120 s")
        latencies.append(time.perf_counter() - t)
        time.sleep(1.5)  # let the sync apply that follows a capture settle
    store.close()
    kube.close()
    return summary(latencies)


def edit_to_diff_floor(env: dict[str, str], edits: int) -> dict[str, float]:
    """The watch-driven capture's floor: a patch, then one read and the diff in-process."""
    store = SqlStore(env["TRIBUTARY_AUTHORITY"])
    kube = KubeClient(env["KUBECONFIG"])
    res = kube.resource("messagewall.demo/v1alpha1", "ServerlessEventAppClaim")
    assert res is not None
    space = store.get_space(DEV)
    unit = store.get_unit(DEV, DEV)
    assert space is not None
    assert unit is not None
    assert unit.live_revision is not None
    rev = store.get_revision(DEV, DEV, unit.live_revision)
    assert rev is not None
    schema = _schema(space.policy.xrds, rev.data)
    latencies = []
    for i in range(edits):
        t = time.perf_counter()
        kube.request(
            "PATCH",
            res.path(DEV, "default"),
            query=[("fieldManager", "bench-floor")],
            body={"metadata": {"annotations": {"bench/edit": str(i)}}},
            content_type="application/merge-patch+json",
        )
        live = kube.get(res, DEV, "default")
        judge_claim(rev.data, live, ignore=space.ignore, schema=schema)
        latencies.append(time.perf_counter() - t)
    store.close()
    kube.close()
    return summary(latencies)


def list_and_diff_floor(env: dict[str, str]) -> dict[str, Any]:
    """What a sweep cannot go below: every active unit's live revision read (one query per
    space), its kind listed once per namespace (paged), and judged — no Temporal."""
    t = time.perf_counter()
    cpu = time.process_time()
    store = SqlStore(env["TRIBUTARY_AUTHORITY"])
    kube = KubeClient(env["KUBECONFIG"])
    listed: dict[tuple[str, str, str], dict[str, Any]] = {}
    verdicts: dict[str, int] = {}
    for space in store.list_spaces():
        units = [u for u in store.list_units(space.name) if u.live_revision is not None]
        revisions = store.get_revisions(space.name, [(u.slug, u.live_revision or 0) for u in units])
        schemas: dict[tuple[str, str], Any] = {}
        for rev in revisions:
            api_version, kind = str(rev.data["apiVersion"]), str(rev.data["kind"])
            namespace = rev.data["metadata"].get("namespace") or "default"
            key = (api_version, kind, namespace)
            if key not in listed:
                res = kube.resource(api_version, kind)
                assert res is not None
                items, _ = list_paged(kube, res, namespace, 500)
                listed[key] = {o["metadata"]["name"]: o for o in items}
            if (api_version, kind) not in schemas:
                schemas[(api_version, kind)] = _schema(space.policy.xrds, rev.data)
            verdict = judge_claim(
                rev.data,
                listed[key].get(rev.data["metadata"]["name"]),
                ignore=space.ignore,
                schema=schemas[(api_version, kind)],
            )
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
    store.close()
    kube.close()
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "verdicts": verdicts,
    }


def seed(env: dict[str, str], units: int, per_space: int = 100, interval: int = 300) -> None:
    """Units already live: written to the authority and applied to the sandbox directly
    (queue claims of the orders app: Crossplane makes them Ready, no AWS)."""
    kube = KubeClient(env["KUBECONFIG"])
    xrd = yaml.safe_load((FIXTURES / "orders/platform/xrds/queue.yaml").read_text())
    xrd_res = kube.resource("apiextensions.crossplane.io/v1", "CompositeResourceDefinition")
    assert xrd_res is not None
    kube.apply(xrd_res, xrd)
    deadline = time.monotonic() + 60
    while (res := kube.resource("messaging.acme.io/v1", "QueueClaim")) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("QueueClaim not served")
        time.sleep(0.2)
    store = SqlStore(env["TRIBUTARY_AUTHORITY"])
    for s in range(units // per_space):
        space = f"bench-{s:03d}"
        store.commit(
            [],
            spaces=[SpaceSpec(name=space, environment="dev", drift_interval_seconds=interval)],
        )
        changes = []
        for u in range(per_space):
            name = f"q{s:03d}-{u:03d}"
            obj = {
                "apiVersion": "messaging.acme.io/v1",
                "kind": "QueueClaim",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"fifo": False, "visibilityTimeoutSeconds": 30, "maxReceiveCount": 5},
            }
            kube.apply(res, obj)
            changes.append(
                UnitChange(
                    space=space,
                    slug=name,
                    expected_version=None,
                    data=obj,
                    description="seed",
                    source="ci",
                )
            )
        for outcome in store.commit(changes):
            store.record_applied(space, outcome.slug, outcome.revision, live=True)
    store.close()
    kube.close()


def idle_with_aws(stack: Any, tmp: Path, units: int, seconds: int) -> dict[str, Any]:
    """Idle ServerlessEventAppClaim loops: each check also reads AWS (moto here)."""
    cli(stack.env, "publish", "--repo", str(repo_with(tmp, units, "idle")), "--apply")
    samplers = {name: ProcessSampler(stack.procs[name].pid) for name in ("worker", "sandbox")}
    for sampler in samplers.values():
        sampler.start()
    time.sleep(seconds)
    worker, sandbox = samplers["worker"].finish(), samplers["sandbox"].finish()
    # Each loop ticks once per 300 s: checks in the window ≈ units * seconds / 300.
    checks = units * seconds / 300
    per_check_ms = worker["cpu_percent_of_one_core"] / 100 * seconds / checks * 1000
    return {
        "units": units,
        "worker": worker,
        "sandbox_moto_cpu_percent_of_one_core": sandbox["cpu_percent_of_one_core"],
        "worker_cpu_ms_per_check": round(per_check_ms, 1),
        "worker_cpu_percent_for_1000_loops": round(per_check_ms * 1000 / 300 / 10, 2),
    }


def sweep(env: dict[str, str]) -> dict[str, Any]:
    t = time.perf_counter()
    body = cli(env, "sweep", "run", timeout=3600)
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "units": body["units"],
        "counts": body["counts"],
        "complete": body["complete"],
    }


async def scheduled_sweeps(env: dict[str, str], trigger: bool = False) -> int:
    """Sweeps the schedule has started so far (and, with ``trigger``, one more now)."""
    client = await connect(Settings(temporal_address=env["TEMPORAL_ADDRESS"]))
    handle = client.get_schedule_handle(SCHEDULE_ID)
    if trigger:
        await handle.trigger()
    return int((await handle.describe()).info.num_actions)


def idle_covered(
    env: dict[str, str], worker_pid: int, figures: dict[str, Any], seconds: int
) -> dict[str, Any]:
    """The idle cost of 1,000 loops covered by a sweep schedule every 290 s (its cadence
    ≤ the loops' 5-minute interval, so each loop's tick sleeps until the backstop,
    ``domain.sweep.COVERED_BACKSTOP``, 1 h).

    Two windows: the first (360 s, from the schedule's creation) holds every loop's one
    wake of the backstop period (each was started by the first sweep 5 minutes
    earlier) and its sweeps; the second (``seconds``) is steady state: sweeps only.
    From them: the CPU of one sweep, of one covered wake, and the mean over a backstop
    period (1,000 wakes and 3600/290 sweeps an hour): the figure against the goal.
    """
    cli(env, "sweep", "schedule", "--every", "290s")
    n0 = asyncio.run(scheduled_sweeps(env, trigger=True))  # rows carry the cadence now
    wakes = ProcessSampler(worker_pid)
    wakes.start()
    time.sleep(360)
    window_a = wakes.finish()
    n1 = asyncio.run(scheduled_sweeps(env))
    steady = ProcessSampler(worker_pid)
    steady.start()
    time.sleep(seconds)
    window_b = steady.finish()
    n2 = asyncio.run(scheduled_sweeps(env))
    cpu_a = window_a["cpu_percent_of_one_core"] / 100 * window_a["seconds"]
    cpu_b = window_b["cpu_percent_of_one_core"] / 100 * window_b["seconds"]
    sweeps_a, sweeps_b = n1 - n0 + 1, n2 - n1  # the triggered one ran in window A
    per_sweep = cpu_b / max(1, sweeps_b)  # the idle worker's own ticking included
    per_wake = max(0.0, cpu_a - sweeps_a * per_sweep) / 1000
    backstop_s = COVERED_BACKSTOP.total_seconds()
    mean = (1000 * per_wake + backstop_s / 290 * per_sweep) / backstop_s
    floor = figures["sweep_1000_floor_list_and_diff"]
    out: dict[str, Any] = {
        "window_wakes": {**window_a, "sweeps": sweeps_a},
        "window_steady": {**window_b, "sweeps": sweeps_b},
        "rss_mb_median": window_b["rss_mb_median"],
        "rss_mb_max": max(window_a["rss_mb_max"], window_b["rss_mb_max"]),
        "cpu_s_per_sweep": round(per_sweep, 3),
        "cpu_ms_per_covered_wake": round(per_wake * 1000, 1),
        "cpu_percent_of_one_core_mean_over_backstop": round(100 * mean, 2),
        # The floor of idle detection: one in-process list + diff per interval (300 s).
        "floor_cpu_percent_of_one_core": round(100 * floor["cpu_seconds"] / 300, 2),
    }
    out.update(asyncio.run(events_per_run(env)))
    return out


async def events_per_run(env: dict[str, str], sample: int = 5) -> dict[str, Any]:
    """History of a few loops' current runs: events, and events per workflow task (a
    wake: a timer tick, a signal) and per full check."""
    settings = Settings(temporal_address=env["TEMPORAL_ADDRESS"])
    client = await connect(settings)
    runs = []
    async for wf in client.list_workflows(f'WorkflowType="{DRIFT_WORKFLOW}"', limit=sample):
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        kinds: dict[str, int] = {}
        async for event in handle.fetch_history_events():
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            kinds[name] = kinds.get(name, 0) + 1
        status = await client.get_workflow_handle(wf.id).query(DRIFT_STATUS_QUERY)
        checks = status["checks"] if isinstance(status, dict) else status.checks
        runs.append((sum(kinds.values()), kinds.get("WORKFLOW_TASK_COMPLETED", 0), checks, kinds))
    events, tasks, checks = (sum(r[i] for r in runs) for i in range(3))
    return {
        "events_in_current_run_max": max(r[0] for r in runs),
        "events_per_workflow_task": round(events / max(1, tasks), 1),
        "events_per_check": round(events / max(1, checks), 1),
        "event_kinds_first_run": runs[0][3],
    }


PARTS = ("watch", "timer", "sweep", "sweep1k", "sweep10k", "idle-aws")


def settled_sweep(env: dict[str, str], tries: int = 6) -> dict[str, Any]:
    """The in-sync sweep once the worker has caught up, and each try on the way.

    The first sweep starts a loop for every unit, and each loop's first workflow task
    is queued on the worker's task queue ahead of the next sweep's tasks: a sweep run
    right after it measures that drain too (1,000 loops: 16.9 s at load average 5).
    Sweeps run until two in a row are within 20 % of each other (or ``tries`` ran);
    the last is the figure.
    """
    runs = [sweep(env), sweep(env)]

    def settled() -> bool:
        before, last = runs[-2]["seconds"], runs[-1]["seconds"]
        return bool(before / 1.2 <= last <= before * 1.2)

    while len(runs) < tries and not settled():
        runs.append(sweep(env))
    return {**runs[-1], "tries_s": [r["seconds"] for r in runs]}


def sweeps(env: dict[str, str], units: int, interval: int = 300) -> dict[str, Any]:
    """``units`` units seeded, then the first sweep (it starts their loops), a sweep in
    sync once the loops' first tasks are done, and the in-process floor (list +
    diff), with the load average."""
    seed(env, units, interval=interval)
    return {
        f"sweep_{units}_first_s": sweep(env),
        f"sweep_{units}_in_sync_s": settled_sweep(env),
        f"sweep_{units}_floor_list_and_diff": list_and_diff_floor(env),
        f"load_average_sweep_{units}": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--idle-seconds", type=int, default=300)
    parser.add_argument("--aws-units", type=int, default=200)
    parser.add_argument(
        "--parts",
        default="watch,timer,sweep",
        help=f"comma-separated, of {', '.join(PARTS)} (sweep includes the idle cost)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="tributary-drift-bench-"))
    figures: dict[str, Any] = {}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    name = "drift" if parts == {"watch", "timer", "sweep"} else "drift-" + "-".join(sorted(parts))
    partial = out / f"{name}.partial.json"

    def keep() -> None:
        # A long run that is stopped keeps the parts it finished (the 10k sweep and the
        # idle window take many minutes each).
        partial.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures so far: {partial}", file=sys.stderr, flush=True)

    if "watch" in parts:
        stack = start(tmp / "a" / ".tributary")
        try:
            figures["edit_to_capture_with_watch_s"] = live_claim_edit_latency(
                stack.env, tmp / "a", args.edits, "5m"
            )
            figures["edit_to_diff_floor_s"] = edit_to_diff_floor(stack.env, args.edits)
        finally:
            stop(stack)
            keep()

    if "timer" in parts:
        os.environ["TRIBUTARY_WATCH"] = "0"  # the worker of the next stack has no watch
        stack = start(tmp / "b" / ".tributary")
        try:
            figures["edit_to_capture_timer_only_10s_interval_s"] = live_claim_edit_latency(
                stack.env, tmp / "b", args.edits, "10s"
            )
        finally:
            stop(stack)
            keep()
        del os.environ["TRIBUTARY_WATCH"]

    if "sweep" in parts:
        stack = start(tmp / "c" / ".tributary")
        try:
            figures.update(sweeps(stack.env, 1000))
            figures["idle_1000_loops_5m_interval"] = idle_covered(
                stack.env, stack.procs["worker"].pid, figures, args.idle_seconds
            )
            figures["load_average_idle_1000"] = os.getloadavg()
        finally:
            stop(stack)
            keep()

    if "sweep1k" in parts:  # the sweep part's sweeps alone, without the idle cost
        stack = start(tmp / "f" / ".tributary")
        try:
            figures.update(sweeps(stack.env, 1000))
        finally:
            stop(stack)
            keep()

    if "sweep10k" in parts:
        # No watch: while 10,000 Claims are seeded (and Crossplane makes them Ready) the
        # watch would start their loops one by one, each with a check (about 90 a minute
        # at load average 13), before any sweep; and a 1 h interval, so that no loop's
        # first tick (a check: the manual sweep covers one interval) overlaps the sweeps.
        os.environ["TRIBUTARY_WATCH"] = "0"
        stack = start(tmp / "d" / ".tributary")
        del os.environ["TRIBUTARY_WATCH"]
        try:
            figures.update(sweeps(stack.env, 10000, interval=3600))
        finally:
            stop(stack)
            keep()

    if "idle-aws" in parts:
        stack = start(tmp / "e" / ".tributary")
        try:
            figures["idle_messagewall_loops_5m_interval"] = idle_with_aws(
                stack, tmp / "e", args.aws_units, args.idle_seconds
            )
        finally:
            stop(stack)
            keep()

    print(json.dumps(figures, indent=2))
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
