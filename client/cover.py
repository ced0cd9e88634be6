"""End a sweep schedule's cover when the schedule stops.

A scheduled sweep records every unit it judged in sync with the schedule's cadence
(``domain.sweep.sweep_message``). A drift loop covered by such a record sleeps to the
backstop (1 h) instead of checking every interval: each sweep finds drift within its
cadence and signals the loop. Pause or delete the schedule (the Web UI, ``temporal
schedule``), or stretch its interval, and nothing would look for AWS-side drift until
the backstop.

So every worker runs ``SweepCoverWatch``: each ``poll_seconds`` it reads the schedule
(``kept_cadence``), takes the cadence off the records that claim one the schedule no
longer keeps (their cover then lasts one interval from the sweep's judgement), and
signals those loops ``cover_ended`` so they re-read it at once. What it does is decided
by the records, not by what it saw last, so several workers, or a restart, repeat
nothing harmful. A worker that dies between the two steps leaves those loops to the
backstop: the bound the design had before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.service import RPCError, RPCStatusCode

from authority.protocol import AuthorityStore
from client.contract import DRIFT_COVER_ENDED_SIGNAL, SWEEP_SCHEDULE_ID, SWEEP_WORKFLOW
from domain.naming import drift_id
from domain.sweep import COVERED_BACKSTOP, CoverEnded, SweepInput, schedule_cadence

log = logging.getLogger("tributary.cover")

POLL_SECONDS = 30.0
SIGNALS_AT_ONCE = 50  # a schedule that covered 10,000 loops stops: signal them in batches


def sweep_schedule(every: timedelta, task_queue: str) -> Schedule:
    """The schedule ``tributary sweep schedule`` creates: a sweep every ``every``.
    The cadence goes into each in-sync record it makes, so the records themselves say
    whether they justify a covered loop's longer sleep (``kept_cadence`` checks it)."""
    action = ScheduleActionStartWorkflow(
        SWEEP_WORKFLOW,
        SweepInput(cadence_seconds=int(every.total_seconds())),
        id="sweep-scheduled",
        task_queue=task_queue,
        static_summary="scheduled drift sweep",
    )
    return Schedule(action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]))


async def kept_cadence(
    client: Client, schedule_id: str = SWEEP_SCHEDULE_ID, *, now: datetime | None = None
) -> int | None:
    """The cadence the sweep schedule keeps now (``domain.sweep.schedule_cadence``), or
    None when there is none: deleted, paused, out of actions, past its end, or changed
    so that its records overstate it. Other errors (the server is away) raise: they are
    no evidence that the schedule stopped."""
    try:
        desc = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    schedule = desc.schedule
    declared: int | None = None
    action = schedule.action
    if (
        isinstance(action, ScheduleActionStartWorkflow)
        and action.workflow == SWEEP_WORKFLOW
        and action.args
    ):
        # From a describe, the arguments are the payloads the schedule starts it with.
        try:
            (inp,) = await client.data_converter.decode(list(action.args[:1]), [SweepInput])
        except Exception as e:  # not a sweep input we know: its records claim nothing
            log.warning("schedule %s: its sweep input does not decode: %s", schedule_id, e)
        else:
            declared = inp.cadence_seconds if isinstance(inp, SweepInput) else None
    spec, state = schedule.spec, schedule.state
    ended = spec.end_at is not None and spec.end_at <= (now or datetime.now(UTC))
    return schedule_cadence(
        paused=state.paused,
        intervals=[int(i.every.total_seconds()) for i in spec.intervals],
        other_specs=bool(spec.calendars or spec.cron_expressions),
        declared=declared,
        exhausted=ended or (state.limited_actions and state.remaining_actions <= 0),
    )


class SweepCoverWatch:
    """The worker's watch of the sweep schedule (module docstring)."""

    def __init__(
        self,
        store: AuthorityStore,
        client: Client,
        *,
        poll_seconds: float = POLL_SECONDS,
        schedule_id: str = SWEEP_SCHEDULE_ID,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.client = client
        self.poll_seconds = poll_seconds
        self.schedule_id = schedule_id
        self.clock = clock
        # Loops whose records lost their claim but that a signal has not reached yet
        # (the server was away): signalled again at the next poll.
        self.unsignalled: dict[tuple[str, str], int | None] = {}
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Poll until ``stop``. A look under way is finished, not cancelled: records it
        took the claim off would otherwise leave their loops untold, to the backstop."""
        while not self.stopping.is_set():
            try:
                await self.once()
            except Exception as e:  # the server or the store is away: the next poll
                log.warning("watching the sweep schedule %s: %s", self.schedule_id, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.poll_seconds)

    def stop(self) -> None:
        self.stopping.set()

    async def once(self) -> list[tuple[str, str]]:
        """One look: the loops whose cover ended now (and were told so)."""
        cadence = await kept_cadence(self.client, self.schedule_id, now=self.clock())
        return await self.end_cover(cadence)

    async def end_cover(self, cadence: int | None) -> list[tuple[str, str]]:
        """Take off the claims ``cadence`` no longer backs, and signal those loops."""
        since = self.clock() - COVERED_BACKSTOP  # older records cover no loop any more
        ended = await asyncio.to_thread(self.store.end_sweep_cover, cadence, since=since)
        if ended:
            log.info(
                "sweep schedule %s keeps %s: %d drift loops check within their interval again",
                self.schedule_id,
                f"a {cadence}s cadence" if cadence else "no cadence",
                len(ended),
            )
        self.unsignalled.update(dict.fromkeys(ended, cadence))
        todo = list(self.unsignalled.items())
        for start in range(0, len(todo), SIGNALS_AT_ONCE):
            await asyncio.gather(
                *(self._tell(k, c) for k, c in todo[start : start + SIGNALS_AT_ONCE])
            )
        return ended

    async def _tell(self, key: tuple[str, str], cadence: int | None) -> None:
        space, unit = key
        try:
            await self.client.get_workflow_handle(drift_id(space, unit)).signal(
                DRIFT_COVER_ENDED_SIGNAL, CoverEnded(cadence_seconds=cadence)
            )
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                log.debug("telling drift loop %s/%s its cover ended: %s", space, unit, e)
                return  # kept for the next poll
            # No such loop, or it ended: nothing sleeps on the record.
        self.unsignalled.pop(key, None)
