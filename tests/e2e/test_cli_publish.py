"""End to end: CI publishes through the ``tributary`` CLI against a real dev stack."""

from __future__ import annotations

from pathlib import Path

from domain.naming import publish_options
from tests.e2e.conftest import Stack
from tests.support import AuthoringRepo, run_cli, set_patch_value

DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"
PROD_EAST = "infra/claims/overlays/prod-east/kustomization.yaml"


def spaces_of(stack: Stack, suffix: str) -> list[str]:
    store = stack.store()
    try:
        return sorted(s.name for s in store.list_spaces() if s.name.endswith(suffix))
    finally:
        store.close()


def test_publish_json_contract_and_reads(
    stack: Stack, repo: AuthoringRepo, space_suffix: str
) -> None:
    prod = f"messagewall-prod-east{space_suffix}"

    result = run_cli("publish", "--repo", str(repo.work), "--json", env=stack.env)

    assert result.code == 0, result.stderr
    body = result.json
    assert set(body) >= {"spaces"}
    assert len(body["spaces"]) == 4
    for space in body["spaces"]:
        assert set(space) >= {"space", "units"}
        [unit] = space["units"]
        assert set(unit) >= {
            "unit",
            "action",
            "revision",
            "violations",
            "warnings",
            "conflict_fields",
        }
        assert (unit["action"], unit["revision"]) == ("published", 1)
    assert "started publish-run:" in result.stderr

    units = run_cli("units", prod, "--json", env=stack.env)
    assert units.code == 0
    [unit] = units.json["units"]
    assert unit["slug"] == "messagewall-prod-east"
    assert (unit["head_revision"], unit["git_revision"], unit["version"]) == (1, 1, 1)

    revisions = run_cli("revisions", prod, "messagewall-prod-east", "--json", env=stack.env)
    [rev] = revisions.json["revisions"]
    assert (rev["source"], rev["description"]) == ("ci", "CI: messagewall: initial")
    assert rev["tags"]["commit"] == repo.head

    shown = run_cli("show", prod, "messagewall-prod-east", env=stack.env)
    assert shown.code == 0
    assert "lambdaMemory: 256" in shown.stdout
    assert shown.stdout.startswith(f"# {prod}/messagewall-prod-east revision 1 (ci)")

    table = run_cli("units", prod, env=stack.env)
    assert table.stdout.splitlines()[0].split() == [
        "UNIT",
        "HEAD",
        "LIVE",
        "APPLIED",
        "LAST",  # "last CI": the revision CI last wrote, not Git's merge base
        "CI",
        "VERSION",
        "STATE",
        "LAST",
        "CHANGE",
    ]


def test_rerun_is_unchanged_and_human_output(stack: Stack, repo: AuthoringRepo) -> None:
    first = run_cli("publish", "--repo", repo.url, "--ref", "main", env=stack.env)
    assert first.code == 0, first.stderr
    again = run_cli("publish", "--repo", repo.url, "--ref", "main", env=stack.env)

    assert again.code == 0
    lines = again.stdout.splitlines()
    assert lines[0].startswith(f"commit {repo.head[:12]} (main) messagewall: initial")
    assert lines[1].split() == ["SPACE", "UNIT", "ACTION", "REV", "NOTES"]
    assert all(" unchanged " in line for line in lines[2:6])


def test_policy_denial_exits_3_and_writes_nothing(
    stack: Stack, repo: AuthoringRepo, space_suffix: str
) -> None:
    repo.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "128"))
    repo.commit("prod-east: 128 MB")
    prod = f"messagewall-prod-east{space_suffix}"

    result = run_cli("publish", "--repo", str(repo.work), "--space", prod, "--json", env=stack.env)

    assert result.code == 3, result.stderr
    [unit] = result.json["spaces"][0]["units"]
    assert unit["action"] == "denied"
    assert unit["violations"] == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaMemory is 128; "
        "prod claims need at least 256"
    ]
    assert spaces_of(stack, space_suffix) == []
    units = run_cli("units", prod, env=stack.env)
    assert units.code == 2
    assert f"space '{prod}' does not exist" in units.stderr


def test_conflict_exits_4_with_fields(stack: Stack, repo: AuthoringRepo, space_suffix: str) -> None:
    prod = f"messagewall-prod-east{space_suffix}"
    assert run_cli("publish", "--repo", str(repo.work), "--space", prod, env=stack.env).code == 0
    bulk = run_cli(
        "set",
        "--space",
        prod,
        "spec.lambdaMemory=512",
        "--message",
        "incident",
        "--json",
        env=stack.env,
    )
    assert bulk.code == 0, bulk.stderr
    assert bulk.json["units"][0]["action"] == "changed"
    repo.edit(PROD_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "1024"))
    repo.commit("prod-east: 1 GB")

    result = run_cli("publish", "--repo", str(repo.work), "--space", prod, "--json", env=stack.env)

    assert result.code == 4, result.stderr
    [unit] = result.json["spaces"][0]["units"]
    assert (unit["action"], unit["conflict_fields"]) == ("conflict", ["spec.lambdaMemory"])

    forced = run_cli(
        "publish", "--repo", str(repo.work), "--space", prod, "--force", "--json", env=stack.env
    )
    assert forced.code == 0
    assert forced.json["spaces"][0]["units"][0]["action"] == "forced"


def test_bad_input_exits_2_and_writes_nothing(
    stack: Stack, repo: AuthoringRepo, space_suffix: str, tmp_path: Path
) -> None:
    dev = f"messagewall-dev-east{space_suffix}"
    repo.edit(DEV_EAST, lambda t: set_patch_value(t, "/spec/lambdaMemory", "64"))
    repo.commit("64 MB")

    schema = run_cli("publish", "--repo", str(repo.work), "--space", dev, "--json", env=stack.env)
    assert schema.code == 2
    [space] = schema.json["spaces"]
    assert space["error"]["type"] == "BadInput"
    assert space["error"]["message"] == (
        "infra/claims/overlays/dev-east: ServerlessEventAppClaim/messagewall-dev-east: "
        "spec.lambdaMemory: 64 is less than the minimum of 128"
    )

    unknown_ref = run_cli(
        "publish", "--repo", str(repo.work), "--ref", "no-such-branch", env=stack.env
    )
    assert unknown_ref.code == 2
    assert "unknown ref 'no-such-branch'" in unknown_ref.stderr
    assert unknown_ref.stdout == ""

    not_repo = run_cli("publish", "--repo", str(tmp_path), "--json", env=stack.env)
    assert not_repo.code == 2
    assert not_repo.json["error"]["message"] == f"{tmp_path}: not a git repository"

    unknown_space = run_cli("publish", "--repo", str(repo.work), "--space", "nope", env=stack.env)
    assert unknown_space.code == 2
    assert "no space named 'nope'" in unknown_space.stderr

    creds = run_cli("publish", "--repo", "https://user:hunter2@example.com/r.git", env=stack.env)
    assert creds.code == 2
    assert "hunter2" not in creds.stderr + creds.stdout

    assert spaces_of(stack, space_suffix) == []


def test_flags_and_usage(stack: Stack, repo: AuthoringRepo, space_suffix: str) -> None:
    both = run_cli(
        "publish", "--repo", str(repo.work), "--apply", "--dry-run", "--json", env=stack.env
    )
    assert both.code == 2
    assert both.json["error"]["message"] == "--apply and --dry-run exclude each other"

    dry = run_cli("publish", "--repo", str(repo.work), "--dry-run", "--json", env=stack.env)
    assert dry.code == 0
    assert {u["action"] for s in dry.json["spaces"] for u in s["units"]} == {"published"}
    assert spaces_of(stack, space_suffix) == []

    no_wait = run_cli("publish", "--repo", str(repo.work), "--no-wait", "--json", env=stack.env)
    assert no_wait.code == 5
    assert no_wait.json["workflow_id"] == f"publish-run:{repo.head}:all"
    # Another option is another run: a retry attaches only to a run that does the same.
    other = run_cli(
        "publish", "--repo", str(repo.work), "--message", "retry", "--no-wait", "--json",
        env=stack.env,
    )  # fmt: skip
    assert other.code == 5
    options = publish_options(message="retry")
    assert other.json["workflow_id"] == f"publish-run:{repo.head}:all:{options}"

    usage = run_cli("publish", "--json", env=stack.env)
    assert usage.code == 2
    assert "--repo" in usage.json["error"]["message"]

    unreachable = run_cli(
        "publish", "--repo", str(repo.work), env={**stack.env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    )
    assert unreachable.code == 1
    assert "cannot reach Temporal at 127.0.0.1:1" in unreachable.stderr


def test_set_and_rollback_through_the_cli(
    stack: Stack, repo: AuthoringRepo, space_suffix: str
) -> None:
    spaces = [f"messagewall-{o}{space_suffix}" for o in ("dev-east", "prod-east", "prod-west")]
    assert run_cli("publish", "--repo", str(repo.work), env=stack.env).code == 0
    args = [a for s in spaces for a in ("--space", s)]

    bulk = run_cli(
        "set",
        *args,
        "--where",
        "environment=prod",
        "spec.lambdaTimeout=60",
        "--message",
        "peak",
        "--author",
        "ops@example.com",
        "--json",
        env=stack.env,
    )

    assert bulk.code == 0, bulk.stderr
    assert [(u["unit"], u["action"], u["revision"]) for u in bulk.json["units"]] == [
        ("messagewall-prod-east", "changed", 2),
        ("messagewall-prod-west", "changed", 2),
    ]
    typed = run_cli(
        "set",
        "--space",
        spaces[1],
        "metadata.annotations.ticket='256'",
        "--message",
        "str",
        "--json",
        env=stack.env,
    )
    assert typed.code == 0
    shown = run_cli("show", spaces[1], "messagewall-prod-east", "--json", env=stack.env)
    assert shown.json["revision"]["data"]["metadata"]["annotations"]["ticket"] == "256"

    denied = run_cli(
        "set", *args, "spec.lambdaMemory=128", "--message", "cheaper", "--json", env=stack.env
    )
    assert denied.code == 3
    assert {u["action"] for u in denied.json["units"]} == {"unchanged", "denied"}

    back = run_cli(
        "rollback", spaces[1], "messagewall-prod-east", "--to", "1", "--json", env=stack.env
    )
    assert back.code == 0, back.stderr
    assert (back.json["action"], back.json["revision"]) == ("rolled-back", 4)
    revisions = run_cli("revisions", spaces[1], "messagewall-prod-east", "--json", env=stack.env)
    assert [r["source"] for r in revisions.json["revisions"]] == ["ci", "bulk", "bulk", "rollback"]

    # rollback --apply asks arrow 2 for the rolled-back revision: prod waits for approval.
    apply = run_cli(
        "rollback",
        spaces[1],
        "messagewall-prod-east",
        "--to",
        "1",
        "--apply",
        "--json",
        env=stack.env,
        timeout=120,
    )
    assert apply.code == 5, apply.stderr
    assert (apply.json["apply"]["state"], apply.json["revision"]) == ("awaiting-approval", 4)

    # Git has not changed; the authority has: the next publish says so.
    result = run_cli(
        "publish", "--repo", str(repo.work), "--space", spaces[2], "--json", env=stack.env
    )
    assert result.json["spaces"][0]["units"][0]["action"] == "authority-ahead"


def test_demo_walks_the_loop_on_a_running_stack(stack: Stack, tmp_path: Path) -> None:
    result = run_cli("demo", "--data-dir", str(tmp_path), "--json", env=stack.env, timeout=300)

    assert result.code == 0, result.stderr
    steps = result.json["steps"]
    first = {s["space"]: s["units"][0] for s in steps["publish"]["spaces"]}
    assert first["messagewall-dev-east"]["apply"]["state"] == "ready"
    assert first["messagewall-prod-east"]["apply"]["state"] == "awaiting-approval"
    assert steps["apply"]["state"] == "ready"
    assert ("messagewall-east-api-handler", 256, 30) in [tuple(f) for f in steps["aws_lambdas"]]
    assert {u["action"] for s in steps["republish"]["spaces"] for u in s["units"]} == {"unchanged"}
    capture = steps["revisions"]["revisions"][1]
    assert (capture["source"], capture["tags"]["incident"]) == ("break-glass", "INC-2026-1127")
    # The capture's own (debounced) sync may open the PR before step 7 asks on a slow
    # machine; then step 7 updates it or finds it as it should be.
    assert steps["sync_pr"]["action"] in ("opened", "updated", "unchanged")
    assert steps["sync_pr"]["pr"]["state"] == "open"
    assert {(f["path"], f["authority"]) for f in steps["sync_pr"]["fields"]} == {
        ("spec.lambdaMemory", 1024),
        ("spec.lambdaTimeout", 60),
    }
    assert steps["publish_merged"]["spaces"][0]["units"][0]["action"] == "unchanged"
    assert steps["sync_after_merge"]["action"] == "unchanged"
    prs = [p for p in steps["prs"]["prs"] if p["space"] == "messagewall-prod-east"]
    assert [p["state"] for p in prs] == ["merged"]
    final = {s["space"]: s["units"][0]["action"] for s in steps["publish_change"]["spaces"]}
    assert final == {
        "messagewall-dev-east": "published",
        "messagewall-dev-west": "unchanged",
        "messagewall-prod-east": "authority-ahead",
        "messagewall-prod-west": "authority-ahead",
    }
