"""End to end: arrow 3 through the CLI — live edits become revisions, or are reverted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import yaml

from tests.e2e.conftest import Stack, publish_applied
from tests.e2e.test_cli_apply import claim, kubectl, lambda_memory
from tests.support import HANG, make_repo, run_cli

DEV = "messagewall-dev-east"
IGNORED = "kubectl.kubernetes.io/last-applied-configuration"


def revisions(stack: Stack, space: str, unit: str) -> list[dict[str, object]]:
    result: list[dict[str, object]] = run_cli(
        "revisions", space, unit, "--json", env=stack.env
    ).json["revisions"]
    return result


def at_provider(stack: Stack, function: str) -> dict[str, object]:
    """The ``status.atProvider`` of the Lambda Function managed resource for ``function``."""
    got = kubectl(stack, "get", "functions.lambda.aws.upbound.io", "-o", "json")
    for item in json.loads(got.stdout)["items"] if got.returncode == 0 else []:
        annotations = item["metadata"].get("annotations") or {}
        if annotations.get("crossplane.io/external-name") == function:
            found: dict[str, object] = (item.get("status") or {}).get("atProvider") or {}
            return found
    return {}


def wait_for(predicate: object, seconds: float = HANG) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {seconds}s")


def patch(stack: Stack, name: str, body: str) -> None:
    done = kubectl(
        stack,
        "patch",
        "serverlesseventappclaims.messagewall.demo",
        name,
        "-n",
        "default",
        "--type",
        "merge",
        "-p",
        body,
    )
    assert done.returncode == 0, done.stderr


def test_live_edits_are_captured_with_who_and_where(fresh_stack: Stack, tmp_path: Path) -> None:
    stack = fresh_stack
    repo = make_repo(tmp_path, "messagewall")
    publish_applied(stack, str(repo.work), DEV)

    # kubectl edit of the live claim: the watch sees it; the capture names the field
    # and the field manager that wrote it.
    patch(stack, DEV, '{"spec":{"lambdaMemory":512}}')
    wait_for(lambda: len(revisions(stack, DEV, DEV)) == 2)
    captured = revisions(stack, DEV, DEV)[1]
    assert captured["source"] == "drift-capture"
    assert captured["data"]["spec"]["lambdaMemory"] == 512  # type: ignore[index]
    assert captured["tags"]["source"] == "kubernetes-live"  # type: ignore[index]
    assert captured["description"] == "drift-capture: spec.lambdaMemory=512 (kubectl-patch)"
    status = run_cli("drift", "status", DEV, "--json", env=stack.env).json["units"][0]
    assert set(status) >= {"space", "unit", "state", "last_check", "drift", "last_drift"}
    # The drift stays visible after its capture: what, who, when, which revision.
    last = status["last_drift"]
    assert last["revision"] == 2
    assert last["at"]
    assert [(d["path"], d["authority"], d["live"], d["manager"]) for d in last["fields"]] == [
        ("spec.lambdaMemory", 128, 512, "kubectl-patch")
    ]

    # The operator says it was break-glass during an incident: the capture says so too.
    tagged = run_cli(
        "drift",
        "capture",
        DEV,
        DEV,
        "--tag",
        "break-glass",
        "--incident",
        "INC-42",
        "--json",
        env=stack.env,
        timeout=60,
    )
    assert tagged.code == 0, tagged.stderr
    assert (tagged.json["captured"], tagged.json["revision"]) == (True, 2)
    relabelled = revisions(stack, DEV, DEV)[1]
    assert relabelled["source"] == "break-glass"
    assert relabelled["tags"]["incident"] == "INC-42"  # type: ignore[index]

    # An edit made in AWS directly: no Kubernetes event, found by a check.
    wait_for(lambda: lambda_memory(stack, "messagewall-east-snapshot-writer") == 512)
    boto3.client(
        "lambda",
        endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).update_function_configuration(FunctionName="messagewall-east-api-handler", MemorySize=1024)
    # Crossplane's provider reads AWS on its poll into the Function's status.atProvider.
    wait_for(lambda: at_provider(stack, "messagewall-east-api-handler").get("memorySize") == 1024)
    checked = run_cli("drift", "check", DEV, DEV, "--json", env=stack.env, timeout=60)
    assert checked.code == 0
    [row] = checked.json["units"]
    assert row["state"] == "captured"
    assert [(d["path"], d["authority"], d["live"]) for d in row["drift"]] == [
        ("spec.lambdaMemory", 512, 1024)
    ]
    aws_capture = revisions(stack, DEV, DEV)[2]
    assert aws_capture["tags"]["source"] == "aws-live"  # type: ignore[index]
    # The Claim is made to say what runs; Crossplane brings the other Lambda along.
    wait_for(lambda: claim(stack, DEV)["spec"]["lambdaMemory"] == 1024)  # type: ignore[index]
    wait_for(lambda: lambda_memory(stack, "messagewall-east-snapshot-writer") == 1024)
    again = run_cli("drift", "check", DEV, DEV, "--json", env=stack.env, timeout=60)
    assert again.json["units"][0]["state"] == "in-sync"
    assert len(revisions(stack, DEV, DEV)) == 3  # the same drift is never captured twice

    # An ignored path never drifts.
    patch(stack, DEV, json.dumps({"metadata": {"annotations": {IGNORED: "{}"}}}))
    time.sleep(1)
    quiet = run_cli("drift", "check", DEV, DEV, "--json", env=stack.env, timeout=60)
    assert quiet.json["units"][0]["state"] == "in-sync"
    assert len(revisions(stack, DEV, DEV)) == 3


def test_revert_space_puts_the_claim_back_and_sweeps(fresh_stack: Stack, tmp_path: Path) -> None:
    stack = fresh_stack
    repo = make_repo(tmp_path, "messagewall")
    config = yaml.safe_load(repo.read("tributary.yaml"))
    config["spaces"][DEV]["drift"] = "revert"
    repo.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
    repo.commit("dev-east: revert drift")
    published = run_cli(
        "publish",
        "--repo",
        str(repo.work),
        "--space",
        DEV,
        "--space",
        "messagewall-dev-west",
        "--apply",
        "--json",
        env=stack.env,
        timeout=240,
    )
    assert published.code == 0, published.stderr

    patch(stack, DEV, '{"spec":{"lambdaTimeout":45}}')
    wait_for(lambda: claim(stack, DEV)["spec"]["lambdaTimeout"] == 10)  # type: ignore[index]
    assert len(revisions(stack, DEV, DEV)) == 1

    def drift_state() -> str:
        units = run_cli("drift", "status", DEV, DEV, "--json", env=stack.env).json["units"]
        return str(units[0]["state"])

    # "reverting" until a check after the revert agrees.
    wait_for(lambda: drift_state() in ("reverted", "in-sync"))

    paused = run_cli("drift", "pause", DEV, DEV, env=stack.env)
    assert paused.code == 0
    patch(stack, DEV, '{"spec":{"lambdaTimeout":50}}')
    time.sleep(2)
    assert claim(stack, DEV)["spec"]["lambdaTimeout"] == 50  # type: ignore[index]
    assert (
        run_cli("drift", "status", DEV, DEV, "--json", env=stack.env).json["units"][0]["state"]
        == "paused"
    )
    assert run_cli("drift", "resume", DEV, DEV, env=stack.env).code == 0
    wait_for(lambda: claim(stack, DEV)["spec"]["lambdaTimeout"] == 10)  # type: ignore[index]

    swept = run_cli("sweep", "run", "--json", env=stack.env, timeout=120)
    assert swept.code == 0, swept.stderr
    assert swept.json["units"] == 2
    assert swept.json["complete"] is True
    assert sum(swept.json["counts"].values()) == 2

    scheduled = run_cli("sweep", "schedule", "--every", "6h", "--json", env=stack.env)
    assert (scheduled.code, scheduled.json["action"]) == (0, "created")
    rescheduled = run_cli("sweep", "schedule", "--every", "1h", "--json", env=stack.env)
    assert (rescheduled.json["action"], rescheduled.json["every"]) == ("updated", "1h")
