"""End to end: arrow 2 through the CLI, on the sandbox `tributary dev` starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3

from tests.e2e.conftest import Stack
from tests.support import AuthoringRepo, make_repo, run_cli

PROD = "messagewall-prod-east"


def kubectl(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "kubectl"
    return subprocess.run(
        [str(binary), "--kubeconfig", stack.env["KUBECONFIG"], *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def claim(stack: Stack, name: str) -> dict[str, object] | None:
    got = kubectl(
        stack,
        "get",
        "serverlesseventappclaims.messagewall.demo",
        name,
        "-n",
        "default",
        "-o",
        "json",
    )
    return json.loads(got.stdout) if got.returncode == 0 else None


def lambda_memory(stack: Stack, function: str) -> int:
    client = boto3.client(
        "lambda",
        endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return int(client.get_function_configuration(FunctionName=function)["MemorySize"])


def test_publish_apply_approve_and_denial(fresh_stack: Stack, tmp_path: Path) -> None:
    stack = fresh_stack
    repo: AuthoringRepo = make_repo(tmp_path, "messagewall")

    result = run_cli(
        "publish", "--repo", str(repo.work), "--apply", "--json", env=stack.env, timeout=240
    )

    # prod spaces wait for approval: the whole publish says "waiting"
    assert result.code == 5, result.stderr
    applies = {u["unit"]: u["apply"] for s in result.json["spaces"] for u in s["units"]}
    assert applies["messagewall-dev-east"]["state"] == "ready"
    assert applies["messagewall-dev-west"]["state"] == "ready"
    assert applies[PROD]["state"] == "awaiting-approval"
    assert applies[PROD]["workflow_id"] == f"apply:{PROD}:{PROD}"
    # dev: the claim runs, Crossplane composed it, the authority knows it is live
    dev = claim(stack, "messagewall-dev-east")
    assert dev is not None
    conditions = {c["type"]: c["status"] for c in dev["status"]["conditions"]}  # type: ignore[index]
    assert conditions == {"Ready": "True", "Synced": "True"}
    assert lambda_memory(stack, "messagewall-east-api-handler") == 128
    units = run_cli("units", "messagewall-dev-east", "--json", env=stack.env).json["units"][0]
    assert units["live_revision"] == units["head_revision"] == units["last_applied_revision"] == 1
    # prod: nothing in the cluster until approved
    assert claim(stack, PROD) is None

    wrong = run_cli(
        "approve", PROD, PROD, "--revision", "2", "--by", "oncall@example.com", env=stack.env
    )
    assert wrong.code == 2
    assert "revision 2 is not awaiting approval; revision 1 is" in wrong.stderr
    author = run_cli(
        "approve", PROD, PROD, "--revision", "1", "--by", "dana@example.com", env=stack.env
    )
    assert author.code == 2
    assert "a required approval must come from someone else" in author.stderr
    ok = run_cli(
        "approve",
        PROD,
        PROD,
        "--revision",
        "1",
        "--by",
        "oncall@example.com",
        "--json",
        env=stack.env,
    )
    assert ok.code == 0, ok.stderr
    applied = run_cli("apply", PROD, PROD, "--json", env=stack.env, timeout=120)
    assert applied.code == 0, applied.stderr
    assert (applied.json["state"], applied.json["revision"]) == ("ready", 1)
    assert claim(stack, PROD) is not None
    revisions = run_cli("revisions", PROD, PROD, "--json", env=stack.env).json["revisions"]
    assert revisions[0]["approvals"][0]["by"] == "oncall@example.com"
    # Nobody in this environment is oncall: only the flag asserted it (issue 10, hole 9).
    assert (ok.json["asserted"], revisions[0]["approvals"][0]["asserted"]) == ("flag", "flag")

    # A live edit below the policy floor is captured (what runs is recorded) but can
    # never be applied again: the apply is refused as denied by policy.
    patched = kubectl(
        stack,
        "patch",
        "serverlesseventappclaims.messagewall.demo",
        PROD,
        "-n",
        "default",
        "--type",
        "merge",
        "-p",
        '{"spec":{"lambdaMemory":128}}',
    )
    assert patched.returncode == 0, patched.stderr
    checked = run_cli("drift", "check", PROD, PROD, "--json", env=stack.env, timeout=60)
    assert checked.code == 0
    head = run_cli("units", PROD, "--json", env=stack.env).json["units"][0]["head_revision"]
    assert head == 2
    captured = run_cli("show", PROD, PROD, "--json", env=stack.env).json["revision"]
    assert captured["source"] == "drift-capture"
    assert captured["policy"]["violations"]
    refused = run_cli("apply", PROD, PROD, "--revision", "2", "--json", env=stack.env, timeout=120)
    assert refused.code == 3
    assert (refused.json["state"], refused.json["reason"]) == ("failed", "denied")

    # The gates live in the authority; an admin changes them through the worker.
    shown = run_cli("space", "show", PROD, "--json", env=stack.env)
    assert shown.code == 0, shown.stderr
    assert shown.json["gates"]["approval"] == "required"
    bogus = run_cli("space", "set", PROD, "--approval", "bogus", env=stack.env)
    assert bogus.code == 2
    admin = {**stack.env, "TRIBUTARY_ACTOR": "olu@example.com"}
    changed = run_cli("space", "set", PROD, "--approval", "acknowledge", "--json", env=admin)
    assert changed.code == 0, changed.stderr
    assert changed.json["changed"] == ["approval"]
    gates = run_cli("space", "show", PROD, "--json", env=stack.env).json["gates"]
    assert (gates["approval"], gates["set_by"], gates["asserted"]) == (
        "acknowledge",
        "olu@example.com",
        "env:TRIBUTARY_ACTOR",
    )
