"""Every case of the bad-input corpus, through the CLI against one shared dev stack.

Each case must exit with its code, print a message with every fragment it lists
(file, object, field), leak none of its ``absent`` strings, and write nothing: the
authority's rows, the cluster's objects, the remote's refs and the files outside the
work directory are the same before and after. The worker must still serve.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tests.badinput.corpus import (
    Case,
    all_cases,
    authority_rows,
    cluster_objects,
    git_refs,
    outside_files,
    prepare,
)
from tests.e2e.conftest import Stack
from tests.support import make_repo, run_cli

CASES = all_cases()


def test_the_corpus_is_large_enough_and_well_formed() -> None:
    assert len(CASES) >= 90
    # every hole of issue 10 has at least one case
    assert {c.hole for c in CASES} >= set(range(1, 12))
    for case in CASES:
        assert case.message or case.exit == 0, f"{case.id}: no message fragments"
        assert case.about, f"{case.id}: say what the case is about"


def snapshot(stack: Stack, remote: Path, outside: Path) -> dict[str, object]:
    return {
        "authority": authority_rows(stack.env["TRIBUTARY_AUTHORITY"]),
        "cluster": cluster_objects(stack.env["KUBECONFIG"]),
        "refs": git_refs(remote),
        "files": outside_files(outside),
    }


async def worker_polls(stack: Stack) -> bool:
    client = await Client.connect(
        stack.env["TEMPORAL_ADDRESS"], namespace=stack.env["TEMPORAL_NAMESPACE"]
    )
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=stack.env["TEMPORAL_NAMESPACE"],
            task_queue=TaskQueue(name=stack.env["TRIBUTARY_TASK_QUEUE"]),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return bool(described.pollers)


MODEL_CASES = [c for c in CASES if c.model]
CLI_CASES = [c for c in CASES if not c.model]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.id for c in MODEL_CASES])
def test_model_case(case: Case) -> None:
    """At the workflow/activity boundary: the input model refuses the value, so a
    client other than the CLI cannot get it into a workflow either."""
    module, _, name = case.model.partition(":")
    model = getattr(importlib.import_module(module), name)
    with pytest.raises(ValidationError) as err:
        model.model_validate(case.input)
    shown = str(err.value)
    for fragment in case.message:
        assert fragment in shown, f"{case.id}: {fragment!r} not in {shown}"


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
async def test_case(case: Case, corpus_stack: Stack, tmp_path: Path) -> None:
    prepared = prepare(case, tmp_path)
    env = {**corpus_stack.env, **{k: prepared.fill(v) for k, v in case.env.items()}}
    for i, cmd in enumerate(case.setup):
        done = run_cli(*[prepared.fill(a) for a in cmd], env=corpus_stack.env, timeout=120)
        want = case.setup_exits[i] if i < len(case.setup_exits) else 0
        assert done.code == want, f"setup {cmd}: exit {done.code}: {done.stderr}"
    before = snapshot(corpus_stack, prepared.repo.remote, prepared.outside)
    args = [prepared.fill(a) for a in case.command] + (["--json"] if case.json else [])

    result = run_cli(*args, env=env, timeout=case.timeout)

    shown = result.stdout + result.stderr
    assert result.code == case.exit, f"{case.id}: exit {result.code}\n{shown[-3000:]}"
    for fragment in case.message:
        assert prepared.fill(fragment) in shown, f"{case.id}: {fragment!r} not in\n{shown[-3000:]}"
    for secret in case.absent:
        assert prepared.fill(secret) not in shown, f"{case.id}: {secret!r} leaked"
    if case.json and case.exit == 2:
        assert "error" in json.dumps(result.json), f"{case.id}: no JSON error on stdout"
    after = snapshot(corpus_stack, prepared.repo.remote, prepared.outside)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"{case.id}: something was written: {changed}"
    assert await worker_polls(corpus_stack), f"{case.id}: the worker stopped polling"


def test_the_worker_still_serves_after_the_corpus(corpus_stack: Stack, tmp_path: Path) -> None:
    """Runs last in this file: a real publish round trip through the worker."""
    repo = make_repo(tmp_path, "orders", space_suffix="-after-corpus")
    result = run_cli(
        "publish", "--repo", str(repo.work), "--dry-run", "--json", env=corpus_stack.env
    )
    assert result.code == 0, result.stderr
    assert {u["action"] for s in result.json["spaces"] for u in s["units"]} == {"published"}
