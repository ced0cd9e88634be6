"""activities/render.py: ``kubectl kustomize`` of an overlay, checked to be usable as units."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.render import RenderActivities, check_overlay, find_kubectl, render_overlay
from domain.errors import BadInput
from domain.publish import LoadProjectInput, RenderSpaceInput
from domain.repos import SourceRef
from tests.support import FIXTURES

MW_OVERLAYS = {
    "infra/claims/overlays/dev-east": ("messagewall-dev-east", "dev", "us-east-1", 128, 10),
    "infra/claims/overlays/dev-west": ("messagewall-dev-west", "dev", "us-west-2", 128, 10),
    "infra/claims/overlays/prod-east": ("messagewall-prod-east", "prod", "us-east-1", 256, 30),
    "infra/claims/overlays/prod-west": ("messagewall-prod-west", "prod", "us-west-2", 256, 30),
}
INVALID_NAME = (
    "is not a valid Kubernetes name: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)


@pytest.fixture(scope="module")
def kubectl() -> str:
    return find_kubectl()


def _copy(tmp_path: Path, fixture: str) -> Path:
    target = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, target)
    return target


def _bad(kubectl: str, tree: Path, overlay: str) -> BadInput:
    with pytest.raises(BadInput) as e:
        render_overlay(kubectl, tree, overlay)
    return e.value


# ---- the fixtures render -------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(MW_OVERLAYS))
def test_messagewall_overlays_render_one_claim(kubectl, overlay):
    name, env, region, memory, timeout = MW_OVERLAYS[overlay]
    objects = render_overlay(kubectl, FIXTURES / "messagewall", overlay)
    assert len(objects) == 1
    obj = objects[0]
    assert obj["apiVersion"] == "messagewall.demo/v1alpha1"
    assert obj["kind"] == "ServerlessEventAppClaim"
    assert obj["metadata"]["name"] == name
    assert obj["metadata"]["namespace"] == "default"
    assert obj["metadata"]["labels"] == {
        "app.kubernetes.io/name": "messagewall",
        "environment": env,
        "region": region,
    }
    assert obj["spec"]["environment"] == env
    assert obj["spec"]["region"] == region
    assert obj["spec"]["lambdaMemory"] == memory
    assert obj["spec"]["lambdaTimeout"] == timeout
    assert obj["spec"]["awsAccountId"] == "123456789012"  # stays a string


def test_prod_east_carries_its_annotations(kubectl):
    (obj,) = render_overlay(kubectl, FIXTURES / "messagewall", "infra/claims/overlays/prod-east")
    assert obj["metadata"]["annotations"] == {
        "tier": "production",
        "oncall": "platform-team",
        "confighub.io/precious": "true",
        "confighub.io/precious-resources": "dynamodb,s3",
        "confighub.io/delete-gate": "enabled",
    }


@pytest.mark.parametrize("env", ["staging", "production"])
def test_orders_overlays_render_two_claims(kubectl, env):
    objects = render_overlay(kubectl, FIXTURES / "orders", f"deploy/envs/{env}")
    assert len(objects) == 2
    by_kind = {o["kind"]: o for o in objects}
    assert set(by_kind) == {"DatabaseClaim", "QueueClaim"}
    assert by_kind["DatabaseClaim"]["metadata"]["name"] == f"{env}-orders-db"
    assert by_kind["QueueClaim"]["metadata"]["name"] == f"{env}-orders-queue"
    assert by_kind["DatabaseClaim"]["apiVersion"] == "platform.acme.io/v1beta1"
    assert by_kind["QueueClaim"]["apiVersion"] == "messaging.acme.io/v1"
    assert all(o["metadata"]["namespace"] == "orders" for o in objects)
    assert by_kind["DatabaseClaim"]["spec"]["version"] == "16"


def test_orders_production_patches_are_applied(kubectl):
    objects = render_overlay(kubectl, FIXTURES / "orders", "deploy/envs/production")
    db = next(o for o in objects if o["kind"] == "DatabaseClaim")
    queue = next(o for o in objects if o["kind"] == "QueueClaim")
    assert db["spec"] == {
        "engine": "postgres",
        "version": "16",
        "storageGB": 200,
        "instanceClass": "db.r6g.large",
        "backupRetentionDays": 14,
        "multiAZ": True,
        "parameters": {"max_connections": "800", "log_min_duration_statement": "500"},
    }
    assert queue["spec"] == {"maxReceiveCount": 5, "fifo": True, "visibilityTimeoutSeconds": 60}
    assert db["metadata"]["labels"]["tier"] == "production"


def test_overlay_with_trailing_slash_renders(kubectl):
    objects = render_overlay(kubectl, FIXTURES / "orders", "deploy/envs/staging/")
    assert len(objects) == 2


def test_relative_tree_path_renders(kubectl, monkeypatch):
    monkeypatch.chdir(FIXTURES.parent.parent)
    objects = render_overlay(kubectl, Path("tests/fixtures/orders"), "deploy/envs/staging")
    assert len(objects) == 2


# ---- bad input names overlay, object and field ---------------------------------------------


def test_missing_overlay_directory(kubectl, tmp_path):
    tree = _copy(tmp_path, "messagewall")
    e = _bad(kubectl, tree, "infra/claims/overlays/nope")
    assert e.file == "infra/claims/overlays/nope"
    assert e.message == "infra/claims/overlays/nope: overlay directory does not exist"


def test_malformed_kustomization_yaml(kubectl, tmp_path):
    tree = _copy(tmp_path, "messagewall")
    (tree / "infra/claims/overlays/dev-east/kustomization.yaml").write_text(
        "resources:\n  - ../../base\n patches: [\n"
    )
    e = _bad(kubectl, tree, "infra/claims/overlays/dev-east")
    assert e.file == "infra/claims/overlays/dev-east"
    assert e.message.startswith("infra/claims/overlays/dev-east: kustomize failed: ")
    assert "Kustomization" in e.message
    assert "yaml" in e.message
    assert str(tree) not in e.message


def test_duplicate_object_name(kubectl, tmp_path):
    tree = _copy(tmp_path, "messagewall")
    base = tree / "infra/claims/base"
    (base / "other.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: messagewall-dev-east\n"
    )
    (base / "kustomization.yaml").write_text("resources:\n  - claim.yaml\n  - other.yaml\n")
    e = _bad(kubectl, tree, "infra/claims/overlays/dev-east")
    assert e.file == "infra/claims/overlays/dev-east"
    assert e.field == "metadata.name"
    assert e.obj in (
        "ConfigMap/messagewall-dev-east",
        "ServerlessEventAppClaim/messagewall-dev-east",
    )
    assert "two objects share the name 'messagewall-dev-east'" in e.message
    assert "ConfigMap/messagewall-dev-east" in e.message
    assert "ServerlessEventAppClaim/messagewall-dev-east" in e.message
    assert "unit names must be unique within a space" in e.message


def test_invalid_metadata_name(kubectl, tmp_path):
    tree = _copy(tmp_path, "messagewall")
    k = tree / "infra/claims/overlays/prod-east/kustomization.yaml"
    k.write_text(k.read_text().replace("value: messagewall-prod-east", "value: Messagewall_Prod"))
    e = _bad(kubectl, tree, "infra/claims/overlays/prod-east")
    assert (e.file, e.obj, e.field) == (
        "infra/claims/overlays/prod-east",
        "ServerlessEventAppClaim/Messagewall_Prod",
        "metadata.name",
    )
    assert e.message == (
        "infra/claims/overlays/prod-east: ServerlessEventAppClaim/Messagewall_Prod: "
        f"metadata.name: 'Messagewall_Prod' {INVALID_NAME}"
    )


def test_missing_kind_is_refused_by_kustomize(kubectl, tmp_path):
    tree = _copy(tmp_path, "messagewall")
    base = tree / "infra/claims/base"
    (base / "other.yaml").write_text("apiVersion: v1\nmetadata:\n  name: x\n")
    (base / "kustomization.yaml").write_text("resources:\n  - claim.yaml\n  - other.yaml\n")
    e = _bad(kubectl, tree, "infra/claims/overlays/dev-east")
    assert e.file == "infra/claims/overlays/dev-east"
    assert "missing kind" in e.message
    assert "infra/claims/base/other.yaml" in e.message
    assert str(tree) not in e.message


def test_missing_api_version(kubectl, tmp_path):
    tree = _copy(tmp_path, "messagewall")
    base = tree / "infra/claims/base"
    (base / "other.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: ok\n")
    (base / "kustomization.yaml").write_text("resources:\n  - claim.yaml\n  - other.yaml\n")
    e = _bad(kubectl, tree, "infra/claims/overlays/dev-east")
    assert (e.obj, e.field) == ("ConfigMap/ok", "apiVersion")
    assert e.message == "infra/claims/overlays/dev-east: ConfigMap/ok: apiVersion: missing"


# ---- the checks after kustomize, with a stand-in kubectl -----------------------------------


def _fake_kubectl(tmp_path: Path, stdout: str, *, stderr: str = "", code: int = 0) -> str:
    (tmp_path / "out.txt").write_text(stdout)
    (tmp_path / "err.txt").write_text(stderr)
    script = tmp_path / "kubectl"
    script.write_text(
        f"#!/bin/sh\ncat '{tmp_path / 'out.txt'}'\ncat '{tmp_path / 'err.txt'}' >&2\nexit {code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "tree"
    (t / "ov").mkdir(parents=True)
    return t


def test_fake_kubectl_output_is_parsed(tmp_path, tree):
    k = _fake_kubectl(
        tmp_path,
        "apiVersion: v1\nkind: A\nmetadata:\n  name: a\n---\n---\n"
        "apiVersion: v1\nkind: B\nmetadata:\n  name: b\n",
    )
    assert render_overlay(k, tree, "ov") == [
        {"apiVersion": "v1", "kind": "A", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "B", "metadata": {"name": "b"}},
    ]


def test_empty_render_is_no_objects(tmp_path, tree):
    assert render_overlay(_fake_kubectl(tmp_path, ""), tree, "ov") == []


def test_object_without_kind(tmp_path, tree):
    k = _fake_kubectl(
        tmp_path,
        "apiVersion: v1\nkind: A\nmetadata:\n  name: a\n---\n"
        "apiVersion: v1\nmetadata:\n  name: b\n",
    )
    e = _bad(k, tree, "ov")
    assert (e.file, e.obj, e.field) == ("ov", "object #2", "kind")
    assert e.message == "ov: object #2: kind: missing"


def test_object_with_empty_kind(tmp_path, tree):
    k = _fake_kubectl(tmp_path, "apiVersion: v1\nkind: ''\nmetadata:\n  name: b\n")
    e = _bad(k, tree, "ov")
    assert e.field == "kind"


def test_object_without_name(tmp_path, tree):
    k = _fake_kubectl(tmp_path, "apiVersion: v1\nkind: A\nmetadata: {}\n")
    e = _bad(k, tree, "ov")
    assert (e.obj, e.field) == ("A object #1", "metadata.name")
    assert e.message == "ov: A object #1: metadata.name: missing"


def test_object_that_is_not_a_mapping(tmp_path, tree):
    k = _fake_kubectl(tmp_path, "- a\n- b\n")
    e = _bad(k, tree, "ov")
    assert (e.obj, e.message) == ("object #1", "ov: object #1: rendered object is not a mapping")


def test_output_that_is_not_yaml(tmp_path, tree):
    k = _fake_kubectl(tmp_path, "a: [\n")
    e = _bad(k, tree, "ov")
    assert e.file == "ov"
    assert e.message.startswith("ov: rendered output is not YAML: ")


def test_kustomize_failure_strips_the_tree_path_and_error_prefix(tmp_path, tree):
    k = _fake_kubectl(
        tmp_path, "", stderr=f"error: accumulating resources from '{tree}/ov/x.yaml': boom", code=1
    )
    e = _bad(k, tree, "ov")
    assert e.message == "ov: kustomize failed: accumulating resources from 'ov/x.yaml': boom"


def test_kustomize_failure_without_stderr(tmp_path, tree):
    e = _bad(_fake_kubectl(tmp_path, "", code=1), tree, "ov")
    assert e.message == "ov: kustomize failed: kustomize failed"


# ---- the activity methods over the source cache ---------------------------------------------


def test_load_project_activity_reads_tributary_yaml(cache, orders, kubectl):
    acts = RenderActivities(cache, kubectl)
    result = acts.load_project(
        LoadProjectInput(source=SourceRef(repo=orders.url, commit=orders.head))
    )
    assert list(result.project.spaces) == ["orders-staging", "orders-production"]


def test_load_project_without_tributary_yaml_is_non_retryable_bad_input(cache, orders, kubectl):
    orders.remove("tributary.yaml")
    commit = orders.commit("no config")
    acts = RenderActivities(cache, kubectl)
    with pytest.raises(ApplicationError) as e:
        acts.load_project(LoadProjectInput(source=SourceRef(repo=orders.url, commit=commit)))
    assert e.value.type == "BadInput"
    assert e.value.non_retryable is True
    assert e.value.message == (
        f"tributary.yaml: not found at the root of the repository (commit {commit[:12]})"
    )


def test_render_space_activity(cache, messagewall, kubectl):
    acts = RenderActivities(cache, kubectl)
    result = acts.render_space(
        RenderSpaceInput(
            source=SourceRef(repo=messagewall.url, commit=messagewall.head),
            space="messagewall-prod-west",
            overlay="infra/claims/overlays/prod-west",
        )
    )
    assert [o["metadata"]["name"] for o in result.objects] == ["messagewall-prod-west"]


def test_find_kubectl_prefers_the_environment(monkeypatch):
    monkeypatch.setenv("KUBECTL", "/opt/custom/kubectl")
    assert find_kubectl() == "/opt/custom/kubectl"


# ---- hostile overlays: the commit's tree only, no network, bounded (issue 10, holes 5, 6) -----

CLAIM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n"


def _overlay(tree: Path, kustomization: str, **files: str) -> None:
    (tree / "ov").mkdir(parents=True, exist_ok=True)
    (tree / "ov" / "kustomization.yaml").write_text(kustomization)
    for name, text in files.items():
        (tree / "ov" / name).write_text(text)


def _marker_kubectl(tmp_path: Path) -> tuple[str, Path]:
    """A kubectl that only records that it ran (and with which environment)."""
    ran = tmp_path / "ran.txt"
    script = tmp_path / "kubectl-marker"
    script.write_text(f"#!/bin/sh\nenv > '{ran}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), ran


def test_a_base_in_another_commits_tree_is_refused(tmp_path):
    cache = tmp_path / "cache" / "trees"
    other = cache / ("b" * 40) / "base"
    other.mkdir(parents=True)
    (other / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (other / "cm.yaml").write_text(CLAIM)
    tree = cache / ("a" * 40)
    _overlay(tree, f"resources:\n  - ../../{'b' * 40}/base\n")
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert (e.file, e.field) == ("ov/kustomization.yaml", "resources[0]")
    assert "leads out of the commit's tree" in e.message
    assert not ran.exists()


def test_the_real_kustomize_never_sees_another_commit(kubectl, tmp_path):
    cache = tmp_path / "trees"
    other = cache / "other" / "base"
    other.mkdir(parents=True)
    (other / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (other / "cm.yaml").write_text(CLAIM)
    _overlay(cache / "mine", "resources:\n  - ../../other/base\n")
    e = _bad(kubectl, cache / "mine", "ov")
    assert e.field == "resources[0]"


@pytest.mark.parametrize(
    "entry",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://github.com/org/repo//base?ref=v1",
        "github.com/org/repo//base?ref=v1",
        "git@github.com:org/repo.git//base",
        "example.com/org/repo",
    ],
)
def test_remote_resources_are_refused_without_the_network(tmp_path, entry):
    tree = tmp_path / "tree"
    _overlay(tree, f"resources:\n  - {entry}\n")
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert (e.file, e.field) == ("ov/kustomization.yaml", "resources[0]")
    assert "allow_remote: true" in e.message
    assert not ran.exists()


def test_allow_remote_lets_a_remote_base_through_the_check(tmp_path):
    tree = tmp_path / "tree"
    _overlay(tree, "resources:\n  - https://example.invalid/org/repo//base?ref=v1\n")
    check_overlay(tree, "ov", allow_remote=True)  # kustomize would fetch it: not run here
    with pytest.raises(BadInput):
        check_overlay(tree, "ov")


@pytest.mark.parametrize(
    ("kustomization", "field"),
    [
        ("resources:\n  - /etc/kubernetes\n", "resources[0]"),
        ("resources: [cm.yaml]\npatches:\n  - path: ../../../../etc/passwd\n", "patches[0].path"),
        (
            "configMapGenerator:\n  - name: x\n    files: [k=../../../../etc/passwd]\n",
            "configMapGenerator[0].files[0]",
        ),
        (
            "configMapGenerator:\n  - name: x\n    envs: [../../../proc/self/environ]\n",
            "configMapGenerator[0].envs[0]",
        ),
        ("resources: [cm.yaml]\ncomponents: [../../../../tmp]\n", "components[0]"),
    ],
)
def test_paths_out_of_the_tree_are_refused(tmp_path, kustomization, field):
    tree = tmp_path / "tree"
    _overlay(tree, kustomization, **{"cm.yaml": CLAIM})
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert e.field == field
    assert not ran.exists()


def test_a_resource_linked_out_of_the_tree_is_refused(tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text(CLAIM)
    tree = tmp_path / "tree"
    _overlay(tree, "resources: [cm.yaml]\n")
    (tree / "ov" / "cm.yaml").symlink_to(outside)
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert (e.file, e.field) == ("ov/kustomization.yaml", "resources[0]")
    assert not ran.exists()


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_never_reaches_kubectl(tmp_path):
    bomb = _bomb()
    assert len(bomb) < 700
    tree = tmp_path / "tree"
    _overlay(tree, "resources: [cm.yaml]\n", **{"cm.yaml": bomb})
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert e.file == "ov/cm.yaml"
    assert "expands to more than" in e.message
    assert not ran.exists()


def test_an_alias_bomb_in_an_inline_patch_is_refused(tmp_path):
    tree = tmp_path / "tree"
    patch = _bomb().replace("\n", "\n      ")
    _overlay(tree, f"resources: [cm.yaml]\npatches:\n  - patch: |\n      {patch}\n", cm=CLAIM)
    (tree / "ov" / "cm.yaml").write_text(CLAIM)
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert (e.file, "expands to more than" in e.message) == ("ov/kustomization.yaml", True)
    assert not ran.exists()


def test_deep_nesting_and_huge_files_are_refused(tmp_path):
    tree = tmp_path / "tree"
    _overlay(tree, "resources: [deep.yaml, big.yaml]\n", **{"big.yaml": CLAIM})
    (tree / "ov" / "deep.yaml").write_text("a: " + "[" * 1000 + "]" * 1000 + "\n")
    k, ran = _marker_kubectl(tmp_path)
    e = _bad(k, tree, "ov")
    assert (e.file, "nested more than" in e.message) == ("ov/deep.yaml", True)
    (tree / "ov" / "deep.yaml").write_text(CLAIM)
    (tree / "ov" / "big.yaml").write_text("# " + "x" * (3 * 2**20) + "\n")
    e = _bad(k, tree, "ov")
    assert (e.file, "more than the limit" in e.message) == ("ov/big.yaml", True)
    assert not ran.exists()


def test_kubectl_gets_no_credentials_from_the_worker(tmp_path, tree, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "canary-token-4711")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-aws-4711")
    k, ran = _marker_kubectl(tmp_path)
    render_overlay(k, tree, "ov")
    env = ran.read_text()
    assert "canary" not in env
    assert "HOME=" in env


def _slow_kubectl(tmp_path: Path, body: str) -> str:
    script = tmp_path / "kubectl-slow"
    script.write_text(f"#!{sys.executable}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_render_over_its_time_is_bad_input(tmp_path, tree):
    k = _slow_kubectl(tmp_path, "import time\ntime.sleep(30)")
    with pytest.raises(BadInput) as e:
        render_overlay(k, tree, "ov", seconds=1)
    assert e.value.message == "ov: kustomize ov took longer than 1 s and was stopped"


def test_a_render_over_its_memory_is_bad_input(tmp_path, tree):
    k = _slow_kubectl(tmp_path, "import time\nx = b'x' * (400 << 20)\ntime.sleep(30)")
    with pytest.raises(BadInput) as e:
        render_overlay(k, tree, "ov", memory_bytes=100 * 2**20)
    assert "used more than 100 MiB" in e.value.message


def test_a_render_activity_bound_is_not_retried(tmp_path, cache, messagewall, kubectl):
    messagewall.write("infra/claims/overlays/dev-east/bomb.yaml", _bomb())
    messagewall.edit(
        "infra/claims/overlays/dev-east/kustomization.yaml",
        lambda t: t.replace("resources:\n", "resources:\n  - bomb.yaml\n", 1),
    )
    commit = messagewall.commit("a bomb")
    with pytest.raises(ApplicationError) as e:
        RenderActivities(cache, kubectl).render_space(
            RenderSpaceInput(
                source=SourceRef(repo=messagewall.url, commit=commit),
                space="messagewall-dev-east",
                overlay="infra/claims/overlays/dev-east",
            )
        )
    assert (e.value.type, e.value.non_retryable) == ("BadInput", True)
    assert "infra/claims/overlays/dev-east/bomb.yaml" in e.value.message


def test_too_many_objects(tmp_path, tree):
    many = "".join(
        f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n" for i in range(2001)
    )
    e = _bad(_fake_kubectl(tmp_path, many), tree, "ov")
    assert "renders 2001 objects, more than the limit of 2000" in e.message


@pytest.mark.parametrize("namespace", ["team-a/../kube-system", "Team", "a.b", "x" * 64, 7])
def test_an_invalid_namespace_never_reaches_an_api_path(tmp_path, tree, namespace):
    out = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: {namespace}\n"
    e = _bad(_fake_kubectl(tmp_path, out), tree, "ov")
    assert (e.obj, e.field) == ("ConfigMap/a", "metadata.namespace")


def test_a_nul_in_the_overlay_path_is_bad_input(tmp_path, tree):
    e = _bad(_fake_kubectl(tmp_path, ""), tree, "ov\x00x")
    assert (e.file, e.field) == ("tributary.yaml", "overlay")


@pytest.mark.parametrize(
    ("name", "namespace"),
    [("a", "team-a/../kube-system"), ("a/b", "ns"), ("..", "ns"), ("a?dryRun=All", "ns")],
)
def test_the_kube_client_builds_no_path_from_a_bad_name(name, namespace):
    """At apply too: a revision written by a capture or `set` never reshapes an API URL."""
    from adapters.kube import Resource
    from domain.errors import Rejected

    res = Resource("messagewall.demo", "v1alpha1", "X", "xs", namespaced=True)
    with pytest.raises(Rejected):
        res.path(name, namespace)
    assert res.path("a", "team-a") == "/apis/messagewall.demo/v1alpha1/namespaces/team-a/xs/a"


def test_generator_files_may_be_binary_but_not_huge(kubectl, tmp_path):
    tree = tmp_path / "tree"
    _overlay(tree, "configMapGenerator:\n  - name: bin\n    files: [blob=blob.bin]\n")
    (tree / "ov" / "blob.bin").write_bytes(b"\xff\xfe\x00\x01")
    (obj,) = render_overlay(kubectl, tree, "ov")
    assert obj["kind"] == "ConfigMap"
    (tree / "ov" / "blob.bin").write_bytes(b"\x00" * (3 * 2**20))
    e = _bad(kubectl, tree, "ov")
    assert (e.file, "more than the limit" in e.message) == ("ov/blob.bin", True)


def test_an_overlay_directory_named_like_an_option_is_a_path_to_kubectl(kubectl, tmp_path):
    tree = tmp_path / "tree"
    weird = tree / "--load-restrictor=LoadRestrictionsNone"
    weird.mkdir(parents=True)
    (weird / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (weird / "cm.yaml").write_text(CLAIM)
    (obj,) = render_overlay(kubectl, tree, "--load-restrictor=LoadRestrictionsNone")
    assert obj["metadata"]["name"] == "ok"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"spaces: {}\n" + b"#" * (3 * 2**20) + b"\n", "more than the limit of 2097152 bytes"),
        (b"spaces:\n  x:\n    overlay: \xff\xfe\n", "not UTF-8"),
        (b"spaces:\n  x:\n    overlay: a\x00b\n", "contains a NUL character"),
    ],
)
def test_load_project_bounds_tributary_yaml(cache, orders, kubectl, content, fragment):
    (orders.work / "tributary.yaml").write_bytes(content)
    commit = orders.commit("hostile config")
    with pytest.raises(ApplicationError) as e:
        RenderActivities(cache, kubectl).load_project(
            LoadProjectInput(source=SourceRef(repo=orders.url, commit=commit))
        )
    assert (e.value.type, e.value.non_retryable) == ("BadInput", True)
    assert e.value.message.startswith("tributary.yaml: ")
    assert fragment in e.value.message
