"""End to end: the Argo CD plugin's generate command, run exactly as the CMP sidecar
runs it, prints the space's live revisions — and only them — and the sandbox cluster
accepts that stream with `kubectl apply --dry-run=server`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from domain.gates import OWNER_LABEL
from tests.e2e.conftest import Stack
from tests.support import REPO_ROOT, make_repo, run_cli

PLUGIN = REPO_ROOT / "deploy" / "argocd" / "plugin.yaml"
APPLICATION = REPO_ROOT / "deploy" / "argocd" / "application.yaml"
DEV = "messagewall-dev-east"


def generate(stack: Stack, source: Path, space: str) -> subprocess.CompletedProcess[str]:
    """plugin.yaml's generate command, as argocd-cmp-server runs it: in the Application's
    source directory, with the sidecar's environment (Temporal only: no authority
    credential), Argo CD's build variables and the Application's plugin env prefixed
    ARGOCD_ENV_."""
    plugin = yaml.safe_load(PLUGIN.read_text())
    assert plugin["kind"] == "ConfigManagementPlugin"
    command = [*plugin["spec"]["generate"]["command"], *plugin["spec"]["generate"]["args"]]
    sidecar = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(source.parent),
        "TEMPORAL_ADDRESS": stack.env["TEMPORAL_ADDRESS"],
        "TEMPORAL_NAMESPACE": stack.env.get("TEMPORAL_NAMESPACE", "default"),
        "TRIBUTARY_TASK_QUEUE": stack.env.get("TRIBUTARY_TASK_QUEUE", "tributary"),
    }
    build = {
        "ARGOCD_APP_NAME": space,
        "ARGOCD_APP_NAMESPACE": "default",
        "ARGOCD_APP_REVISION": "0123456789abcdef0123456789abcdef01234567",
        "ARGOCD_APP_SOURCE_PATH": ".",
        "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example/messagewall.git",
        "ARGOCD_APP_SOURCE_TARGET_REVISION": "main",
        "ARGOCD_ENV_TRIBUTARY_SPACE": space,
    }
    return subprocess.run(
        command,
        cwd=source,
        env={**sidecar, **build},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def kubectl(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "kubectl"
    return subprocess.run(
        [str(binary), "--kubeconfig", stack.env["KUBECONFIG"], *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_plugin_renders_live_revisions_that_the_cluster_accepts(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    stack = fresh_stack
    repo = make_repo(tmp_path, "messagewall")
    published = run_cli(
        "publish", "--repo", str(repo.work), "--space", DEV, "--apply", "--json",
        env=stack.env, timeout=240,
    )  # fmt: skip
    assert published.code == 0, published.stderr
    # A newer head that is not applied: the plugin must not render it.
    changed = run_cli(
        "set", "--space", DEV, "spec.lambdaMemory=512", "--message", "not applied yet",
        env=stack.env,
    )  # fmt: skip
    assert changed.code == 0, changed.stderr
    store = stack.store()
    try:
        unit = store.get_unit(DEV, DEV)
        assert unit is not None
        assert (unit.head_revision, unit.live_revision) == (2, 1)
        live = store.get_revision(DEV, DEV, 1)
        assert live is not None
    finally:
        store.close()

    result = generate(stack, repo.work, DEV)

    assert result.returncode == 0, result.stderr
    objects: list[Any] = list(yaml.safe_load_all(result.stdout))
    labels = {**live.data["metadata"].get("labels", {}), OWNER_LABEL: DEV}
    assert objects == [{**live.data, "metadata": {**live.data["metadata"], "labels": labels}}]
    assert objects[0]["spec"]["lambdaMemory"] != 512
    assert f"{DEV}: 1 live object(s)" in result.stderr
    # What Tributary's own apply put in the cluster carries the same owner label.
    running = kubectl(
        stack, "get", "serverlesseventappclaims.messagewall.demo", DEV, "-n", "default",
        "-o", "yaml",
    )  # fmt: skip
    assert running.returncode == 0, running.stderr
    assert yaml.safe_load(running.stdout)["metadata"]["labels"][OWNER_LABEL] == DEV

    dry = kubectl(stack, "apply", "--dry-run=server", "-f", "-", stdin=result.stdout)

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip().endswith("(server dry run)"), dry.stdout
    assert f"serverlesseventappclaim.messagewall.demo/{DEV}" in dry.stdout

    as_json = run_cli("render", "--space", DEV, "--live", "--json", env=stack.env)
    assert as_json.code == 0, as_json.stderr
    assert (as_json.json["objects"], as_json.json["units"]) == (objects, [DEV])
    no_live = run_cli("render", "--space", DEV, "--json", env=stack.env)
    assert no_live.code == 2
    assert "--live: only --live is rendered" in no_live.json["error"]["message"]

    # The admin hands the space to Argo CD: a gate like the others, shown by space show.
    handed = run_cli(
        "space", "set", DEV, "--actuator", "argocd", "--argocd-app", "wall-dev", "--by", "ops",
        env=stack.env,
    )  # fmt: skip
    assert handed.code == 0, handed.stderr
    assert "argocd (Application wall-dev)" in handed.stdout
    shown = run_cli("space", "show", DEV, "--json", env=stack.env)
    assert shown.code == 0, shown.stderr
    assert (shown.json["gates"]["actuator"], shown.json["gates"]["argocd_app"]) == (
        "argocd",
        "wall-dev",
    )


def test_the_plugin_without_a_space_or_with_an_unknown_one_prints_no_objects(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    stack = fresh_stack
    source = tmp_path / "src"
    source.mkdir()

    missing = generate(stack, source, "")
    unknown = generate(stack, source, "no-such-space")

    assert (missing.returncode, missing.stdout) == (2, "")
    assert "set spec.source.plugin.env TRIBUTARY_SPACE" in missing.stderr
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stdout == ""
    assert "space 'no-such-space' does not exist" in unknown.stderr


def test_the_application_example_names_the_plugin_and_its_space() -> None:
    app = yaml.safe_load(APPLICATION.read_text())
    plugin = yaml.safe_load(PLUGIN.read_text())
    source = app["spec"]["source"]
    assert source["plugin"]["name"] == f"{plugin['metadata']['name']}-{plugin['spec']['version']}"
    assert {e["name"]: e["value"] for e in source["plugin"]["env"]} == {
        "TRIBUTARY_SPACE": app["metadata"]["name"]
    }
    assert "automated" not in (app["spec"].get("syncPolicy") or {})
