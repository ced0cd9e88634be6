"""Arrow 3 from the CLI: ``drift status|check|capture|pause|resume`` and ``sweep``."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Client,
    ScheduleAlreadyRunningError,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy

from client import contract
from client.cover import sweep_schedule
from client.loops import signal_drift, update_with_start
from client.settings import Settings
from domain.drift import (
    CaptureOutcome,
    CaptureRequest,
    CheckRequest,
    DriftField,
    DriftRecord,
    DriftStatus,
)
from domain.naming import drift_id, format_duration, parse_duration
from domain.reads import ActiveUnitsPage, ActiveUnitsQuery, DriftStatusPage, DriftStatusQuery
from domain.sweep import SweepInput, SweepResult
from starter import runner
from starter.commands.change import author
from starter.output import Output
from starter.reading import pages

if TYPE_CHECKING:
    from starter.commands import Subparsers

SCHEDULE_ID = contract.SWEEP_SCHEDULE_ID


def add_parsers(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    drift = sub.add_parser(
        "drift", parents=[common], help="arrow 3: drift between live and authority"
    )
    dsub = drift.add_subparsers(dest="drift_command", required=True, metavar="COMMAND")
    p = dsub.add_parser(
        "status",
        parents=[common],
        help="per unit: state (failing: a check attempt failed, retrying), last check, last drift",
    )
    p.add_argument("space")
    p.add_argument("unit", nargs="?")
    p.set_defaults(func=status)
    p = dsub.add_parser("check", parents=[common], help="check now instead of at the next tick")
    p.add_argument("space")
    p.add_argument("unit", nargs="?")
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=check)
    p = dsub.add_parser(
        "capture",
        parents=[common],
        help="capture live state now as a revision (e.g. --tag break-glass --incident INC-7); "
        "with no drift now, labels the loop's capture of the current drift, or answers "
        "action none",
    )
    p.add_argument("space")
    p.add_argument("unit")
    p.add_argument("--tag", default="", help="break-glass makes the revision's source break-glass")
    p.add_argument("--incident", default="", help="incident id recorded on the revision")
    p.add_argument("--by", default=None, help="who captures (default: $USER)")
    p.set_defaults(func=capture)
    for name, helptext in (("pause", "stop checking a unit"), ("resume", "check a unit again")):
        p = dsub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("space")
        p.add_argument("unit")
        p.set_defaults(func=pause if name == "pause" else resume)

    sweep = sub.add_parser("sweep", parents=[common], help="the scheduled drift sweep")
    ssub = sweep.add_subparsers(dest="sweep_command", required=True, metavar="COMMAND")
    p = ssub.add_parser("schedule", parents=[common], help="create or update the sweep schedule")
    p.add_argument("--every", default="6h", help="interval (default 6h)")
    p.set_defaults(func=schedule)
    p = ssub.add_parser(
        "run",
        parents=[common],
        help="sweep now: judge every unit in batches; the drift loops that differ check",
    )
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=sweep_run)


async def _units(client: Client, settings: Settings, space: str, unit: str | None) -> list[str]:
    """The space's active units (or ``unit``, which must be one): read on the worker."""
    query = ActiveUnitsQuery(space=space, unit=unit)
    return [u async for page in pages(client, settings, query, ActiveUnitsPage) for u in page.units]


def _field_json(f: DriftField) -> dict[str, Any]:
    return {
        "path": f.path,
        "authority": f.authority,
        "live": f.live,
        "manager": f.manager,
        "source": f.source,
    }


def _drift_json(record: DriftRecord | None, space: str, unit: str) -> dict[str, Any]:
    last = record.last_drift if record else None
    paused = bool(record and record.paused)
    return {
        "space": space,
        "unit": unit,
        # Pause is kept in the authority: a restarted loop is paused too.
        "state": "paused" if paused else (record.state if record else "unknown"),
        "paused": paused,
        "last_check": record.checked_at.isoformat() if record else None,
        "message": record.message if record else "",
        "revision": record.revision if record else None,
        "drift": [_field_json(f) for f in (record.fields if record else [])],
        # The latest drift, kept after a capture: what changed, who, when, which revision.
        "last_drift": None
        if last is None
        else {
            "fields": [_field_json(f) for f in last.fields],
            "at": last.at.isoformat() if last.at else None,
            "revision": last.revision,
            "head_revision": last.head_revision,
            "rebased_revision": last.rebased_revision,
            "conflicts": [c.model_dump(mode="json") for c in last.conflicts],
        },
    }


async def status(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    units: list[str] = []
    records: dict[str, DriftRecord] = {}
    query = DriftStatusQuery(space=args.space, unit=args.unit)
    async for page in pages(client, settings, query, DriftStatusPage):
        units.extend(page.units)
        records.update((r.unit, r) for r in page.records)
    rows = [_drift_json(records.get(u), args.space, u) for u in units]
    out.result({"units": rows})
    table = []
    for row in rows:
        fields = "; ".join(
            f"{d['path']}: {d['authority']!r} → {d['live']!r}"
            + (f" by {d['manager']}" if d["manager"] else "")
            for d in row["drift"]
        )
        last = row["last_drift"]
        earlier = ""
        if last and not row["drift"]:
            earlier = "; ".join(
                f"{d['path']}: {d['authority']!r} → {d['live']!r}"
                + (f" by {d['manager']}" if d["manager"] else "")
                for d in last["fields"]
            ) + (f" (captured as r{last['revision']})" if last["revision"] else "")
            if last["conflicts"]:
                earlier += " conflict with the pending head: " + ", ".join(
                    c["path"] for c in last["conflicts"]
                )
        table.append(
            [row["unit"], row["state"], row["last_check"], fields or row["message"], earlier]
        )
    out.table(["unit", "state", "last check", "drift", "last drift"], table)
    return 0


async def _check_one(
    client: Client, settings: Settings, space: str, unit: str, wait: bool
) -> DriftStatus | None:
    if not wait:
        await signal_drift(client, settings.task_queue, space, unit, "cli")
        return None
    # Only the update asks: a check signal first would start a check of its own, and
    # the answer (a check that started after the request) would be the one after it.
    # update_with_start sends both again when the loop completed or continued as new
    # between the start and the update.
    return await update_with_start(
        client,
        lambda: signal_drift(client, settings.task_queue, space, unit, signal=None),
        drift_id(space, unit),
        contract.CHECK_NOW_UPDATE,
        CheckRequest(reason="cli"),
        DriftStatus,
    )


async def check(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    units = await _units(client, settings, args.space, args.unit)
    gate = asyncio.Semaphore(16)

    async def one(unit: str) -> DriftStatus | None:
        async with gate:
            return await _check_one(client, settings, args.space, unit, not args.no_wait)

    results = await asyncio.gather(*(one(u) for u in units))
    if args.no_wait:
        out.result({"space": args.space, "units": units, "state": "running"})
        out.line(f"asked {len(units)} units of {args.space} to check")
        return 5
    rows = []
    for unit, st in zip(units, results, strict=True):
        assert st is not None
        fields = st.last_drift.fields if st.last_drift and st.state not in ("in-sync",) else []
        rows.append(
            {
                "space": args.space,
                "unit": unit,
                "state": st.state,
                "last_check": st.last_check.isoformat() if st.last_check else None,
                "message": st.message,
                "drift": [
                    {"path": f.path, "authority": f.authority, "live": f.live, "manager": f.manager}
                    for f in fields
                ],
            }
        )
    out.result({"units": rows})
    out.table(["unit", "state", "message"], [[r["unit"], r["state"], r["message"]] for r in rows])
    return 0


async def capture(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    await _units(client, settings, args.space, args.unit)
    outcome = await update_with_start(
        client,
        lambda: signal_drift(client, settings.task_queue, args.space, args.unit, signal=None),
        drift_id(args.space, args.unit),
        contract.CAPTURE_NOW_UPDATE,
        CaptureRequest(tag=args.tag, incident=args.incident, by=author(args.by)),
        CaptureOutcome,
    )
    action = outcome.action or ("captured" if outcome.captured else "none")
    body = {"space": args.space, "unit": args.unit, **outcome.model_dump(mode="json")}
    out.result({**body, "action": action})
    if outcome.conflicts:
        out.line(
            f"{args.space}/{args.unit}: captured as revision {outcome.revision}; the pending "
            f"head {outcome.head_revision} conflicts in "
            + ", ".join(c.path for c in outcome.conflicts)
            + " and was kept as it was"
        )
    elif outcome.captured:
        out.line(
            f"{args.space}/{args.unit}: captured as revision {outcome.revision} — {outcome.message}"
        )
    else:
        out.line(f"{args.space}/{args.unit}: nothing captured — {outcome.message}")
    return 0


async def _signal(args: argparse.Namespace, out: Output, settings: Settings, name: str) -> int:
    client = await runner.client_for(settings)
    await _units(client, settings, args.space, args.unit)
    # One signal-with-start: no window between a start and a signal in which the
    # loop could complete (NOT_FOUND); a run that completes meanwhile is retried.
    await signal_drift(client, settings.task_queue, args.space, args.unit, "cli", signal=name)
    out.result(
        {
            "space": args.space,
            "unit": args.unit,
            "state": "paused" if name == contract.DRIFT_PAUSE_SIGNAL else "resumed",
        }
    )
    done = "paused" if name == contract.DRIFT_PAUSE_SIGNAL else "resumed"
    out.line(f"{args.space}/{args.unit}: drift checks {done}")
    return 0


async def pause(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    return await _signal(args, out, settings, contract.DRIFT_PAUSE_SIGNAL)


async def resume(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    return await _signal(args, out, settings, contract.DRIFT_RESUME_SIGNAL)


async def schedule(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    every = parse_duration(args.every, field="--every")
    client = await runner.client_for(settings)
    wanted = sweep_schedule(every, settings.task_queue)
    try:
        await client.create_schedule(SCHEDULE_ID, wanted)
        verb = "created"
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(SCHEDULE_ID)

        def change(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await handle.update(change)
        verb = "updated"
    out.result({"schedule_id": SCHEDULE_ID, "every": format_duration(every), "action": verb})
    out.line(f"schedule {SCHEDULE_ID} {verb}: a drift sweep every {format_duration(every)}")
    return 0


async def sweep_run(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    client = await runner.client_for(settings)
    handle = await client.start_workflow(
        contract.SWEEP_WORKFLOW,
        SweepInput(),
        id="sweep",
        result_type=SweepResult,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="drift sweep (manual)",
    )
    out.progress("started sweep")
    link = settings.workflow_link("sweep")
    if link:
        out.progress(f"  Web UI: {link}")
    if args.no_wait:
        out.result({"workflow_id": "sweep", "state": "running"})
        return 5
    result: SweepResult = await runner.wait(handle)
    out.result(result)
    out.line(
        f"swept {result.units} units: "
        + (", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())) or "nothing to check")
        + ("" if result.complete else " (some checks did not report in time)")
    )
    return 0
