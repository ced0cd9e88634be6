"""Tests of the requests that meet a workflow at the end of its life, again on the dev
server, a real Temporal server, whatever ``--workflow-environment`` says.

The time-skipping test server hands a run the updates that come as it completes; a real
server aborts them ("workflow update was aborted by closing workflow", NOT_FOUND). For
an orphaned unit each run a retry starts ends within moments as well, so on a real
server ``drift check`` and ``drift capture`` met that end on every retry (4 failures in
4 tries of the burst test below, before the loop stayed a while after its last check:
``workflows.drift.END_GRACE``). CI runs the suite on
the test server; these keep the real server's answer in it, for the drift loop's
updates and the sync loop's (``sync_now``) and signals at a hand-over.
"""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import DevServer
from tests.workflows.test_drift import check_starts, small_runs_worker
from tests.workflows.test_lifecycle import (
    sync_space,
    test_drift_requests_that_meet_the_loop_as_it_ends_are_each_answered,
    test_drift_updates_during_the_last_check_of_an_ending_loop_are_answered,
    test_sync_now_during_the_last_sync_of_a_run_is_answered,
    test_sync_request_during_the_last_sync_of_a_run_goes_along_to_the_next,
)

# Collected here as well, with this module's ``env``.
__all__ = [
    "check_starts",
    "small_runs_worker",
    "sync_space",
    "test_drift_requests_that_meet_the_loop_as_it_ends_are_each_answered",
    "test_drift_updates_during_the_last_check_of_an_ending_loop_are_answered",
    "test_sync_now_during_the_last_sync_of_a_run_is_answered",
    "test_sync_request_during_the_last_sync_of_a_run_goes_along_to_the_next",
]


@pytest.fixture
async def env(dev_server: DevServer) -> WorkflowEnvironment:
    """This module's tests run on the dev server, each in a namespace of its own."""
    return await dev_server.namespace()
