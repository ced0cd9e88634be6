"""``in_flight``: whether a run may be terminated without locking the test server's clock.

A run terminated with an activity or a workflow task open keeps the time-skipping
server's clock locked for good (every later ``skip`` hangs); the drift tests terminate
loops only once this says nothing is open.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskFailedEventAttributes,
    HistoryEvent,
)

from tests.workflows.helpers import in_flight

E = EventType


def history(*types: EventType.ValueType, done: dict[int, int] | None = None) -> list[HistoryEvent]:
    """Events numbered from 1; ``done`` maps a closing event's id to the activity it closes."""
    events = []
    for number, kind in enumerate(types, start=1):
        event = HistoryEvent(event_id=number, event_type=kind)
        scheduled = (done or {}).get(number)
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED and scheduled is not None:
            event.activity_task_completed_event_attributes.CopyFrom(
                ActivityTaskCompletedEventAttributes(scheduled_event_id=scheduled)
            )
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_FAILED and scheduled is not None:
            event.activity_task_failed_event_attributes.CopyFrom(
                ActivityTaskFailedEventAttributes(scheduled_event_id=scheduled)
            )
        events.append(event)
    return events


TASK = (
    E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
)


def test_a_run_between_tasks_is_idle() -> None:
    assert not in_flight(history(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, *TASK))


def test_a_task_scheduled_or_started_is_in_flight() -> None:
    assert in_flight(history(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, *TASK[:1]))
    assert in_flight(history(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, *TASK[:2]))


def test_an_activity_scheduled_by_the_last_task_is_in_flight() -> None:
    """The window the old check missed: the task closed, its activity is the last event."""
    events = history(
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, *TASK, E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    assert in_flight(events)


def test_an_activity_open_under_later_tasks_is_in_flight_until_it_closes() -> None:
    opened = (
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        *TASK,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,  # 5
        E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        *TASK,
    )
    assert in_flight(history(*opened))
    closed = (*opened, E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, *TASK)
    assert not in_flight(history(*closed, done={10: 5}))
    assert in_flight(history(*closed, done={10: 4}))  # it closed another one


def test_a_failed_activity_is_closed() -> None:
    events = history(
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        *TASK,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        E.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        *TASK,
        done={6: 5},
    )
    assert not in_flight(events)
