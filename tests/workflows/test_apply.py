"""ApplyWorkflow against the sandbox cluster: API peer, Crossplane stand-in, moto."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.temporal import signal_apply
from authority.sql import SqlStore
from domain.apply import ApplyOutcome, ApplyRequest
from domain.messages import ApplyStatus, RequestApplyInput
from starter.applying import find
from tests.conftest import Sandbox
from tests.support import AuthoringRepo
from tests.workflows.helpers import publish
from workflows.apply import ApplyWorkflow


async def settle(
    env: WorkflowEnvironment, worker: Worker, space: str, unit: str, revision: int, **kw: object
) -> ApplyOutcome:
    request_id = str(uuid.uuid4())
    workflow_id = await signal_apply(
        env.client,
        worker.task_queue,
        RequestApplyInput(
            space=space,
            unit=unit,
            request=ApplyRequest(revision=revision, request_ids=[request_id], **kw),  # type: ignore[arg-type]
        ),
    )
    handle = env.client.get_workflow_handle(workflow_id)
    for _ in range(300):
        status: ApplyStatus = await handle.query(ApplyWorkflow.status)
        outcome = find(status, request_id)
        if outcome is not None and outcome.settled:
            return outcome
        await asyncio.sleep(0.1)
    raise AssertionError(f"apply of {space}/{unit} r{revision} did not settle: {status}")


async def test_apply_makes_the_claim_ready_and_the_lambda_match(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
) -> None:
    space = unit = "messagewall-dev-east"
    await publish(env, cluster_worker, messagewall, spaces=[space])

    outcome = await settle(env, cluster_worker, space, unit, 1)

    assert (outcome.state, outcome.reason) == ("ready", "")
    lam = sandbox.aws.lambda_()
    config = lam.get_function_configuration(FunctionName="messagewall-east-api-handler")
    assert (config["MemorySize"], config["Timeout"]) == (128, 10)
    record = store.get_unit(space, unit)
    assert record is not None
    assert (record.live_revision, record.last_applied_revision) == (1, 1)
