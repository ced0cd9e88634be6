"""End to end: a sweep schedule paused by an operator ends its cover at once.

Loops whose units a scheduled sweep judged in sync sleep to the backstop (1 h); the
worker's watch of the schedule (``client.cover``) must notice a pause made outside
Tributary (here with the ``temporal`` CLI, as from the Web UI) and wake them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from domain.naming import drift_id
from domain.sweep import SWEEP_MESSAGE, sweep_message
from tests.e2e.conftest import publish_applied, start_stack, stop_stack
from tests.e2e.test_cli_drift import DEV, wait_for
from tests.support import make_repo, run_cli

TEMPORAL = str(Path(sys.executable).parent / "temporal")


def temporal(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [TEMPORAL, *args, "--address", env["TEMPORAL_ADDRESS"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pausing_the_sweep_schedule_wakes_the_loops_it_covered(tmp_path: Path) -> None:
    stack = start_stack(
        tmp_path / ".tributary", "--no-ui", env={"TRIBUTARY_COVER_WATCH_SECONDS": "1"}
    )
    try:
        repo = make_repo(tmp_path, "messagewall")
        publish_applied(stack, str(repo.work), DEV)
        # Every 5 min: no more than the space's drift interval, so its records cover.
        scheduled = run_cli("sweep", "schedule", "--every", "5m", "--json", env=stack.env)
        assert scheduled.code == 0, scheduled.stderr
        schedule_id = scheduled.json["schedule_id"]
        temporal(stack.env, "schedule", "trigger", "--schedule-id", schedule_id)

        def message() -> str:
            rows = stack.store().list_drift(DEV, DEV)
            return rows[0].message if rows else ""

        wait_for(lambda: message() == sweep_message(300))

        temporal(
            stack.env,
            "schedule",
            "toggle",
            "--schedule-id",
            schedule_id,
            "--pause",
            "--reason",
            "incident",
        )

        wait_for(lambda: message() == SWEEP_MESSAGE, seconds=60)
        history = json.loads(
            temporal(
                stack.env,
                "workflow",
                "show",
                "--workflow-id",
                drift_id(DEV, DEV),
                "--output",
                "json",
            )
        )
        signals = [
            e["workflowExecutionSignaledEventAttributes"]["signalName"]
            for e in history["events"]
            if "workflowExecutionSignaledEventAttributes" in e
        ]
        assert "cover_ended" in signals, signals
    finally:
        stop_stack(stack)
