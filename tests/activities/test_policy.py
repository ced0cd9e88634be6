"""activities/policy.py: the policy bundle (Rego + XRDs) and checking rendered objects."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.policy import PolicyActivities, check_objects, load_bundle
from activities.render import find_kubectl, render_overlay
from adapters.rego import RegoSandbox
from domain.errors import BadInput
from domain.policy import CheckObjectsInput, LoadBundleInput
from domain.repos import SourceRef
from tests.support import FIXTURES

MW = FIXTURES / "messagewall"
ORDERS = FIXTURES / "orders"
MW_POLICIES = ["platform/policies"]
MW_SCHEMAS = ["platform/crossplane/xrd"]
OR_POLICIES = ["policy/rego"]
OR_SCHEMAS = ["platform/xrds"]
PROD_EAST = "infra/claims/overlays/prod-east"


@pytest.fixture(scope="module")
def mw_bundle():
    return load_bundle(MW, MW_POLICIES, MW_SCHEMAS, commit="c0ffee")


@pytest.fixture(scope="module")
def orders_bundle():
    return load_bundle(ORDERS, OR_POLICIES, OR_SCHEMAS, commit="c0ffee")


@pytest.fixture(scope="module")
def kubectl() -> str:
    return find_kubectl()


@pytest.fixture(scope="module")
def prod_east(kubectl) -> dict:
    (obj,) = render_overlay(kubectl, MW, PROD_EAST)
    return obj


@pytest.fixture(scope="module")
def orders_production(kubectl) -> list[dict]:
    return render_overlay(kubectl, ORDERS, "deploy/envs/production")


def _check(bundle, objects, *, space="messagewall-prod-east", environment="prod", origin=PROD_EAST):
    return check_objects(
        CheckObjectsInput(
            bundle=bundle, space=space, environment=environment, origin=origin, objects=objects
        )
    )


def _copy(tmp_path: Path, src: Path) -> Path:
    target = tmp_path / src.name
    shutil.copytree(src, target)
    return target


# ---- load_bundle ---------------------------------------------------------------------------


def test_messagewall_bundle(mw_bundle):
    assert list(mw_bundle.modules) == ["platform/policies/claims.rego"]
    assert (
        mw_bundle.modules["platform/policies/claims.rego"]
        == (MW / "platform/policies/claims.rego").read_text()
    )
    assert list(mw_bundle.xrds) == ["platform/crossplane/xrd/serverlesseventapp.yaml"]
    (xrd,) = mw_bundle.xrds["platform/crossplane/xrd/serverlesseventapp.yaml"]
    assert xrd["metadata"]["name"] == "serverlesseventapps.messagewall.demo"
    assert mw_bundle.commit == "c0ffee"
    assert len(mw_bundle.digest) == 16
    int(mw_bundle.digest, 16)


def test_orders_bundle(orders_bundle):
    assert list(orders_bundle.modules) == ["policy/rego/guardrails.rego"]
    assert sorted(orders_bundle.xrds) == ["platform/xrds/database.yaml", "platform/xrds/queue.yaml"]
    assert orders_bundle.digest != ""


def test_digest_is_stable_across_calls_and_commits(mw_bundle):
    again = load_bundle(MW, MW_POLICIES, MW_SCHEMAS, commit="other")
    assert again.digest == mw_bundle.digest
    assert again.commit == "other"


def test_digest_differs_between_fixtures(mw_bundle, orders_bundle):
    assert mw_bundle.digest != orders_bundle.digest


def test_digest_changes_when_a_policy_changes(tmp_path, mw_bundle):
    tree = _copy(tmp_path, MW)
    rego = tree / "platform/policies/claims.rego"
    rego.write_text(rego.read_text().replace("prod claims need at least 256", "prod needs 256+"))
    changed = load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c0ffee")
    assert changed.digest != mw_bundle.digest
    assert "prod needs 256+" in changed.modules["platform/policies/claims.rego"]


def test_digest_changes_when_an_xrd_changes(tmp_path, mw_bundle):
    tree = _copy(tmp_path, MW)
    xrd = tree / "platform/crossplane/xrd/serverlesseventapp.yaml"
    xrd.write_text(xrd.read_text().replace("maximum: 10240", "maximum: 4096"))
    assert load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c0ffee").digest != mw_bundle.digest


def test_rego_test_files_are_left_out(tmp_path, mw_bundle):
    tree = _copy(tmp_path, MW)
    (tree / "platform/policies/claims_test.rego").write_text("this is { not rego")
    bundle = load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c0ffee")
    assert list(bundle.modules) == ["platform/policies/claims.rego"]
    assert bundle.digest == mw_bundle.digest


def test_compositions_are_loaded_and_keep_the_digest_of_a_bundle_without(tmp_path, mw_bundle):
    with_compositions = load_bundle(
        MW,
        MW_POLICIES,
        MW_SCHEMAS,
        commit="c0ffee",
        compositions=["platform/crossplane/composition"],
    )
    [(path, [doc])] = with_compositions.compositions.items()
    assert path == "platform/crossplane/composition/serverlesseventapp-aws.yaml"
    assert doc["metadata"]["name"] == "serverlesseventapp-aws"
    assert with_compositions.digest != mw_bundle.digest
    assert mw_bundle.compositions == {}
    assert with_compositions.for_folders([]).compositions == {}
    assert with_compositions.for_folders(["platform/crossplane/composition"]).compositions


def test_an_unusable_composition_is_bad_input_naming_the_file(tmp_path):
    tree = _copy(tmp_path, MW)
    path = tree / "platform/crossplane/composition/serverlesseventapp-aws.yaml"
    path.write_text(path.read_text().replace("patchSetName: lambda-sizing", "patchSetName: nope"))
    with pytest.raises(BadInput) as error:
        load_bundle(
            tree,
            MW_POLICIES,
            MW_SCHEMAS,
            commit="c",
            compositions=["platform/crossplane/composition"],
        )
    assert "serverlesseventapp-aws.yaml" in str(error.value)
    assert "no patchSet named 'nope'" in str(error.value)


def test_non_xrd_yaml_in_schema_folders_is_ignored(tmp_path, mw_bundle):
    tree = _copy(tmp_path, MW)
    (tree / "platform/crossplane/xrd/notes.yaml").write_text("kind: Composition\nspec: {}\n")
    bundle = load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c0ffee")
    assert list(bundle.xrds) == ["platform/crossplane/xrd/serverlesseventapp.yaml"]


def test_rego_syntax_error_names_the_file(tmp_path):
    tree = _copy(tmp_path, MW)
    (tree / "platform/policies/zz_extra.rego").write_text(
        "package platform.extra\n\nimport rego.v1\n\ndeny contains msg if {\n  msg := \n}\n"
    )
    with pytest.raises(BadInput) as e:
        load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c")
    assert e.value.file == "platform/policies/zz_extra.rego"
    assert e.value.message.startswith("platform/policies/zz_extra.rego: Rego does not compile: ")


def test_rego_syntax_error_in_the_fixture_policy_names_it(tmp_path):
    tree = _copy(tmp_path, MW)
    rego = tree / "platform/policies/claims.rego"
    rego.write_text(rego.read_text().replace("is_claim(input)\n", "is_claim(input\n", 1))
    with pytest.raises(BadInput) as e:
        load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c")
    assert e.value.file == "platform/policies/claims.rego"
    assert "Rego does not compile" in e.value.message


def test_policies_folder_that_does_not_exist():
    with pytest.raises(BadInput) as e:
        load_bundle(MW, ["platform/nope"], MW_SCHEMAS, commit="c")
    assert e.value.message == "tributary.yaml: policies: 'platform/nope' is not a directory"


def test_schemas_folder_outside_the_repo():
    with pytest.raises(BadInput) as e:
        load_bundle(MW, MW_POLICIES, ["../orders"], commit="c")
    assert e.value.message == "tributary.yaml: schemas: must be a path inside the repository"


def test_malformed_xrd_yaml_names_file_and_line(tmp_path):
    tree = _copy(tmp_path, MW)
    (tree / "platform/crossplane/xrd/broken.yaml").write_text("kind: X\nspec: [\n")
    with pytest.raises(BadInput) as e:
        load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c")
    assert e.value.file == "platform/crossplane/xrd/broken.yaml:3"
    assert "malformed YAML" in e.value.message


def test_xrd_with_missing_group_names_the_field(tmp_path):
    tree = _copy(tmp_path, MW)
    xrd = tree / "platform/crossplane/xrd/serverlesseventapp.yaml"
    xrd.write_text(xrd.read_text().replace("  group: messagewall.demo\n", ""))
    with pytest.raises(BadInput) as e:
        load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c")
    assert e.value.message == (
        "platform/crossplane/xrd/serverlesseventapp.yaml: "
        "CompositeResourceDefinition/serverlesseventapps.messagewall.demo: spec.group: missing"
    )


# ---- check_objects: the fixtures are clean ------------------------------------------------------


@pytest.mark.parametrize(
    ("overlay", "environment"),
    [
        ("infra/claims/overlays/dev-east", "dev"),
        ("infra/claims/overlays/dev-west", "dev"),
        ("infra/claims/overlays/prod-east", "prod"),
        ("infra/claims/overlays/prod-west", "prod"),
    ],
)
def test_messagewall_overlays_have_no_violations(kubectl, mw_bundle, overlay, environment):
    objects = render_overlay(kubectl, MW, overlay)
    (unit,) = _check(mw_bundle, objects, environment=environment, origin=overlay)
    assert unit.violations == []
    assert unit.warnings == []
    assert unit.slug == objects[0]["metadata"]["name"]
    assert unit.api_version == "messagewall.demo/v1alpha1"
    assert unit.kind == "ServerlessEventAppClaim"
    assert unit.labels == objects[0]["metadata"]["labels"]
    assert unit.data == objects[0]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_orders_overlays_have_no_violations(kubectl, orders_bundle, env):
    objects = render_overlay(kubectl, ORDERS, f"deploy/envs/{env}")
    units = _check(orders_bundle, objects, space=f"orders-{env}", environment=env)
    assert [(u.slug, u.violations, u.warnings) for u in units] == [
        (f"{env}-orders-queue", [], []),
        (f"{env}-orders-db", [], []),
    ]


def test_unit_data_is_the_claim_as_authored_without_defaults(mw_bundle, prod_east):
    (unit,) = _check(mw_bundle, [prod_east])
    assert unit.data == prod_east
    assert "artifactBucket" not in unit.data["spec"]


# ---- check_objects: deny and warn ----------------------------------------------------------------


def test_prod_lambda_memory_128_is_denied(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 128
    (unit,) = _check(mw_bundle, [obj])
    assert unit.violations == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaMemory is 128; "
        "prod claims need at least 256"
    ]
    assert unit.warnings == []


def test_lambda_memory_128_in_a_dev_space_is_fine(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 128
    obj["spec"]["environment"] = "dev"
    (unit,) = _check(mw_bundle, [obj], space="messagewall-dev-east", environment="dev")
    assert unit.violations == []


def test_prod_space_makes_a_dev_claim_prod(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 128
    obj["spec"]["environment"] = "dev"
    (unit,) = _check(mw_bundle, [obj], environment="prod")
    assert len(unit.violations) == 1
    assert "spec.lambdaMemory is 128" in unit.violations[0]


def test_lambda_memory_2048_is_a_warning(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 2048
    (unit,) = _check(mw_bundle, [obj])
    assert unit.violations == []
    assert unit.warnings == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaMemory is 2048; "
        "above 1024 MB, check the cost"
    ]


def test_several_violations_are_all_reported_sorted(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 128
    obj["spec"]["lambdaTimeout"] = 10
    (unit,) = _check(mw_bundle, [obj])
    assert unit.violations == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaMemory is 128; "
        "prod claims need at least 256",
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaTimeout is 10; "
        "prod claims need at least 30",
    ]


def test_each_object_gets_its_own_result(mw_bundle, prod_east):
    bad = copy.deepcopy(prod_east)
    bad["metadata"]["name"] = "second"
    bad["spec"]["lambdaMemory"] = 128
    units = _check(mw_bundle, [prod_east, bad])
    assert [(u.slug, len(u.violations)) for u in units] == [
        ("messagewall-prod-east", 0),
        ("second", 1),
    ]
    assert units[1].violations[0].startswith("ServerlessEventAppClaim/second: ")


def test_schema_violation_raises_bad_input_naming_object_and_field(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 64
    with pytest.raises(BadInput) as e:
        _check(mw_bundle, [obj])
    assert e.value.message == (
        f"{PROD_EAST}: ServerlessEventAppClaim/messagewall-prod-east: "
        "spec.lambdaMemory: 64 is less than the minimum of 128"
    )


def test_several_schema_violations_are_all_listed(mw_bundle, prod_east):
    first = copy.deepcopy(prod_east)
    first["spec"]["lambdaMemory"] = 64
    second = copy.deepcopy(prod_east)
    second["metadata"]["name"] = "other"
    second["spec"]["environment"] = "qa"
    with pytest.raises(BadInput) as e:
        _check(mw_bundle, [first, second])
    assert e.value.message == (
        "2 schema violations:\n"
        f"  {PROD_EAST}: ServerlessEventAppClaim/messagewall-prod-east: "
        "spec.lambdaMemory: 64 is less than the minimum of 128\n"
        f"  {PROD_EAST}: ServerlessEventAppClaim/other: "
        "spec.environment: 'qa' is not one of ['dev', 'staging', 'prod']"
    )


def test_defaults_are_applied_before_policy(mw_bundle, prod_east):
    obj = copy.deepcopy(prod_east)
    del obj["spec"]["lambdaTimeout"]
    (unit,) = _check(mw_bundle, [obj])
    assert unit.violations == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaTimeout is 10; "
        "prod claims need at least 30"
    ]
    assert "lambdaTimeout" not in unit.data["spec"]


def test_policy_sees_the_xrd_default_not_its_own_fallback(tmp_path, prod_east):
    """The fixture policy falls back to 10 itself; with an XRD default of 20 the policy
    must see 20, which proves the XRD default reached it."""
    tree = _copy(tmp_path, MW)
    xrd = tree / "platform/crossplane/xrd/serverlesseventapp.yaml"
    text = xrd.read_text()
    marker = "                  default: 10\n                  minimum: 1\n"
    assert marker in text
    xrd.write_text(
        text.replace(marker, "                  default: 20\n                  minimum: 1\n")
    )
    bundle = load_bundle(tree, MW_POLICIES, MW_SCHEMAS, commit="c")
    obj = copy.deepcopy(prod_east)
    del obj["spec"]["lambdaTimeout"]
    (unit,) = _check(bundle, [obj])
    assert unit.violations == [
        "ServerlessEventAppClaim/messagewall-prod-east: spec.lambdaTimeout is 20; "
        "prod claims need at least 30"
    ]


def test_orders_production_multi_az_false_is_denied(orders_bundle, orders_production):
    objects = copy.deepcopy(orders_production)
    db = next(o for o in objects if o["kind"] == "DatabaseClaim")
    db["spec"]["multiAZ"] = False
    units = _check(orders_bundle, objects, space="orders-production", environment="production")
    by = {u.slug: u for u in units}
    assert by["production-orders-db"].violations == [
        "DatabaseClaim/production-orders-db: spec.multiAZ is false; "
        "production databases must be multi-AZ"
    ]
    assert by["production-orders-queue"].violations == []


@pytest.mark.parametrize("environment", ["staging", "prod", ""])
def test_orders_environment_comes_from_the_argument(orders_bundle, orders_production, environment):
    objects = copy.deepcopy(orders_production)
    db = next(o for o in objects if o["kind"] == "DatabaseClaim")
    db["spec"]["multiAZ"] = False
    units = _check(orders_bundle, objects, space="orders-production", environment=environment)
    assert all(u.violations == [] for u in units)


def test_orders_missing_multi_az_takes_the_xrd_default_and_is_denied(
    orders_bundle, orders_production
):
    objects = copy.deepcopy(orders_production)
    db = next(o for o in objects if o["kind"] == "DatabaseClaim")
    del db["spec"]["multiAZ"]
    units = _check(orders_bundle, objects, space="orders-production", environment="production")
    assert [v for u in units for v in u.violations] == [
        "DatabaseClaim/production-orders-db: spec.multiAZ is false; "
        "production databases must be multi-AZ"
    ]


def test_orders_queue_and_storage_rules(orders_bundle, orders_production):
    objects = copy.deepcopy(orders_production)
    db = next(o for o in objects if o["kind"] == "DatabaseClaim")
    queue = next(o for o in objects if o["kind"] == "QueueClaim")
    db["spec"]["storageGB"] = 600
    queue["spec"]["maxReceiveCount"] = 11
    units = {
        u.slug: u
        for u in _check(orders_bundle, objects, space="orders-production", environment="production")
    }
    assert units["production-orders-db"].warnings == [
        "DatabaseClaim/production-orders-db: spec.storageGB is 600; "
        "above 500 GB needs a capacity review"
    ]
    assert units["production-orders-queue"].violations == [
        "QueueClaim/production-orders-queue: spec.maxReceiveCount is 11; "
        "production queues dead-letter after at most 10 receives"
    ]


def test_object_without_an_xrd_gets_a_warning(mw_bundle):
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    (unit,) = _check(mw_bundle, [obj])
    assert unit.violations == []
    assert unit.warnings == ["ConfigMap/cm: no XRD in the schemas folders defines v1 ConfigMap"]


def test_no_schemas_at_all_means_no_warning(prod_east):
    bundle = load_bundle(MW, MW_POLICIES, [], commit="c")
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    (unit,) = _check(bundle, [obj])
    assert unit.warnings == []


# ---- the activity methods ------------------------------------------------------------------------


def test_load_bundle_activity_over_the_cache(cache, messagewall, mw_bundle):
    acts = PolicyActivities(cache)
    result = acts.load_bundle(
        LoadBundleInput(
            source=SourceRef(repo=messagewall.url, commit=messagewall.head),
            policies=MW_POLICIES,
            schemas=MW_SCHEMAS,
        )
    )
    assert result.bundle.commit == messagewall.head
    assert result.bundle.digest == mw_bundle.digest
    assert result.bundle.modules == mw_bundle.modules


def test_check_activity_turns_schema_errors_into_non_retryable_failures(
    cache, mw_bundle, prod_east
):
    obj = copy.deepcopy(prod_east)
    obj["spec"]["lambdaMemory"] = 64
    with pytest.raises(ApplicationError) as e:
        PolicyActivities(cache).check(
            CheckObjectsInput(
                bundle=mw_bundle, space="s", environment="prod", origin=PROD_EAST, objects=[obj]
            )
        )
    assert e.value.type == "BadInput"
    assert e.value.non_retryable is True
    assert "spec.lambdaMemory: 64 is less than the minimum of 128" in e.value.message


# ---- hostile policies: no environment, bounded time and memory (issue 10, hole 1) ---------


def _hostile_bundle(tmp_path: Path, rego: str) -> tuple[Path, list[str]]:
    tree = tmp_path / "repo"
    (tree / "pol").mkdir(parents=True)
    (tree / "pol" / "evil.rego").write_text(rego)
    return tree, ["pol"]


LEAK = (
    "package evil\n\n"
    "warn contains m if { m := json.marshal(opa.runtime().env) }\n"
    "deny contains m if { m := opa.runtime().env.GITHUB_TOKEN }\n"
)


def test_a_policy_cannot_read_the_worker_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "canary-github-0123456789")
    monkeypatch.setenv("TRIBUTARY_AUTHORITY", "postgresql://u:canary-pw@db/x")
    tree, policies = _hostile_bundle(tmp_path, LEAK)
    bundle = load_bundle(tree, policies, [], commit="c")
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    (unit,) = _check(bundle, [obj])
    shown = " ".join(unit.warnings + unit.violations)
    assert "canary" not in shown
    # opa.runtime() still answers, with an empty environment (Python's child sets
    # only its locale)
    assert unit.violations == []
    (env,) = unit.warnings
    assert set(json.loads(env)) <= {"LC_CTYPE"}


def _huge(tmp_path: Path, at: str) -> tuple[Path, list[str]]:
    rule = 'input.kind == "ConfigMap"; count(numbers.range(1, 1000000000)) > 0'
    rego = f'package evil\n\nwarn contains "x" if {{ {rule} }}\n'
    if at == "load":
        rego = "package evil\n\nbig := n if { n := count(numbers.range(1, 1000000000)) }\n"
    tree, policies = _hostile_bundle(tmp_path, rego)
    return tree, policies


def test_a_policy_that_eats_memory_is_stopped_as_bad_input(tmp_path):
    tree, policies = _huge(tmp_path, "check")
    sandbox = RegoSandbox(memory_bytes=200 * 2**20, seconds=60)
    try:
        bundle = load_bundle(tree, policies, [], commit="c", sandbox=sandbox)
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
        with pytest.raises(BadInput) as e:
            check_objects(
                CheckObjectsInput(
                    bundle=bundle, space="s", environment="dev", origin="ov", objects=[obj]
                ),
                sandbox=sandbox,
            )
        assert e.value.file == "pol/evil.rego"
        assert "used more than 200 MiB" in e.value.message
        # the sandbox serves the next request with a fresh child
        good = load_bundle(MW, MW_POLICIES, [], commit="c", sandbox=sandbox)
        assert good.modules
    finally:
        sandbox.close()


def test_a_policy_that_runs_too_long_is_stopped_while_loading(tmp_path):
    tree, policies = _huge(tmp_path, "load")
    sandbox = RegoSandbox(memory_bytes=8 * 2**30, seconds=1)
    try:
        with pytest.raises(BadInput) as e:
            load_bundle(tree, policies, [], commit="c", sandbox=sandbox)
        assert e.value.file == "pol/evil.rego"
        assert "took longer than 1 s" in e.value.message  # loading checks no object
    finally:
        sandbox.close()


def test_a_policy_bound_is_a_non_retryable_failure_of_the_activity(tmp_path, cache, mw_bundle):
    tree, policies = _huge(tmp_path, "check")
    # Loads with room to start the evaluator under load; only the check has 1 s.
    sandbox = RegoSandbox(memory_bytes=8 * 2**30, seconds=60)
    try:
        bundle = load_bundle(tree, policies, [], commit="c", sandbox=sandbox)
        sandbox.seconds = 1
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
        with pytest.raises(ApplicationError) as e:
            PolicyActivities(cache, sandbox).check(
                CheckObjectsInput(
                    bundle=bundle, space="s", environment="dev", origin="ov", objects=[obj]
                )
            )
        assert e.value.non_retryable is True
        assert e.value.type == "BadInput"  # exit 2: the commit's Rego is bad input
        assert "took longer than 1.03 s" in e.value.message  # 1 s + 0.03 s for its object
    finally:
        sandbox.close()


def test_an_oversized_policy_file_is_refused(tmp_path):
    tree, policies = _hostile_bundle(tmp_path, "package big\n" + "# pad\n" * 400_000)
    with pytest.raises(BadInput) as e:
        load_bundle(tree, policies, [], commit="c")
    assert e.value.file == "pol/evil.rego"
    assert "more than the limit" in e.value.message


def test_an_alias_bomb_in_a_schema_file_is_refused(tmp_path):
    tree = tmp_path / "repo"
    (tree / "xrd").mkdir(parents=True)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    (tree / "xrd" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput) as e:
        load_bundle(tree, [], ["xrd"], commit="c")
    assert e.value.file == "xrd/bomb.yaml"
    assert "expands to more than" in e.value.message


def test_a_schema_link_out_of_the_repository_is_refused(tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text("kind: CompositeResourceDefinition\n")
    tree = tmp_path / "repo"
    (tree / "xrd").mkdir(parents=True)
    (tree / "xrd" / "x.yaml").symlink_to(outside)
    with pytest.raises(BadInput) as e:
        load_bundle(tree, [], ["xrd"], commit="c")
    assert e.value.file == "xrd/x.yaml"
