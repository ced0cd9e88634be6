"""adapters/writeback.py: the authority written back into an overlay, judged by kustomize.

Each case copies a fixture app to a temporary tree (no git needed), makes the
authority's heads differ from the overlay's render, writes back and asserts the
exact unified diff of every file in the tree, and that the re-render (``verify``,
real ``kubectl kustomize``) equals the heads.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path
from typing import Any

import pytest

from activities.render import find_kubectl
from adapters.writeback import OverlayEditor, WriteBack
from domain.paths import MISSING, parse_path, set_path

FIXTURES = Path(__file__).parent.parent / "fixtures"
PROD_EAST = "infra/claims/overlays/prod-east"
MW = "messagewall-prod-east"
PRODUCTION = "deploy/envs/production"
DB = "production-orders-db"
QUEUE = "production-orders-queue"
SPACE = "the-space"


@pytest.fixture(scope="module")
def kubectl() -> str:
    return find_kubectl()


def copy_app(tmp_path: Path, app: str) -> Path:
    tree = tmp_path / app
    shutil.copytree(FIXTURES / app, tree)
    return tree


def changed_heads(
    editor: OverlayEditor, *changes: tuple[str, str, Any]
) -> dict[str, dict[str, Any]]:
    """The overlay's render with (unit, path, value) changes: the authority's heads."""
    heads = editor.render()
    for unit, path, value in changes:
        heads[unit] = set_path(heads[unit], parse_path(path), value)
    return heads


def tree_diff(tree: Path, app: str) -> str:
    """A unified diff of the tree against the fixture, file by file (new files too)."""
    out = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        rel = path.relative_to(tree)
        original = FIXTURES / app / rel
        before = original.read_text().splitlines(keepends=True) if original.exists() else []
        after = path.read_text().splitlines(keepends=True)
        out.append("".join(difflib.unified_diff(before, after, f"a/{rel}", f"b/{rel}")))
    return "".join(out)


def write_back(
    tmp_path: Path, kubectl: str, app: str, overlay: str, *changes: tuple[str, str, Any]
) -> tuple[Path, OverlayEditor, dict[str, dict[str, Any]], WriteBack]:
    tree = copy_app(tmp_path, app)
    editor = OverlayEditor(tree, overlay, kubectl)
    heads = changed_heads(editor, *changes)
    return tree, editor, heads, editor.write_back(SPACE, heads)


def edits(result: WriteBack) -> list[tuple[str, str, Any, str]]:
    return [(e.unit, e.path, e.value, e.where) for e in result.edits]


# ---- JSON-patch overlays (message wall) ----------------------------------------------------


def test_existing_json_patch_op_value_is_changed(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "messagewall", PROD_EAST, (MW, "spec.lambdaMemory", 512)
    )
    assert edits(result) == [
        (
            MW,
            "spec.lambdaMemory",
            512,
            f"{PROD_EAST}/kustomization.yaml: JSON-patch op /spec/lambdaMemory",
        )
    ]
    assert result.fallback == []
    assert tree_diff(tree, "messagewall") == (
        f"--- a/{PROD_EAST}/kustomization.yaml\n"
        f"+++ b/{PROD_EAST}/kustomization.yaml\n"
        "@@ -31,7 +31,7 @@\n"
        "         value: messagewall-east\n"
        "       - op: replace\n"
        "         path: /spec/lambdaMemory\n"
        "-        value: 256\n"
        "+        value: 512\n"
        "       - op: replace\n"
        "         path: /spec/lambdaTimeout\n"
        "         value: 30\n"
    )
    assert editor.verify(heads, result.fallback) == []
    assert editor.render() == heads


def test_field_the_overlay_does_not_set_gets_a_new_add_op(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "messagewall", PROD_EAST, (MW, "spec.artifactBucket", "artifacts-prod")
    )
    assert edits(result) == [
        (
            MW,
            "spec.artifactBucket",
            "artifacts-prod",
            f"{PROD_EAST}/kustomization.yaml: new JSON-patch op /spec/artifactBucket",
        )
    ]
    assert tree_diff(tree, "messagewall") == (
        f"--- a/{PROD_EAST}/kustomization.yaml\n"
        f"+++ b/{PROD_EAST}/kustomization.yaml\n"
        "@@ -43,3 +43,6 @@\n"
        '           confighub.io/precious: "true"\n'
        '           confighub.io/precious-resources: "dynamodb,s3"\n'
        '           confighub.io/delete-gate: "enabled"\n'
        "+      - op: add\n"
        "+        path: /spec/artifactBucket\n"
        "+        value: artifacts-prod\n"
    )
    assert editor.verify(heads, result.fallback) == []


def test_field_the_authority_dropped_gets_a_remove_op(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "messagewall", PROD_EAST, (MW, "spec.eventSource", MISSING)
    )
    assert "eventSource" not in heads[MW]["spec"]
    assert edits(result) == [
        (
            MW,
            "spec.eventSource",
            None,
            f"{PROD_EAST}/kustomization.yaml: new JSON-patch op /spec/eventSource",
        )
    ]
    assert tree_diff(tree, "messagewall") == (
        f"--- a/{PROD_EAST}/kustomization.yaml\n"
        f"+++ b/{PROD_EAST}/kustomization.yaml\n"
        "@@ -43,3 +43,5 @@\n"
        '           confighub.io/precious: "true"\n'
        '           confighub.io/precious-resources: "dynamodb,s3"\n'
        '           confighub.io/delete-gate: "enabled"\n'
        "+      - op: remove\n"
        "+        path: /spec/eventSource\n"
    )
    assert editor.verify(heads, result.fallback) == []


def test_field_an_op_replaces_and_the_authority_dropped_turns_the_op_into_remove(
    tmp_path: Path, kubectl: str
) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "messagewall", PROD_EAST, (MW, "spec.lambdaTimeout", MISSING)
    )
    assert tree_diff(tree, "messagewall") == (
        f"--- a/{PROD_EAST}/kustomization.yaml\n"
        f"+++ b/{PROD_EAST}/kustomization.yaml\n"
        "@@ -32,9 +32,8 @@\n"
        "       - op: replace\n"
        "         path: /spec/lambdaMemory\n"
        "         value: 256\n"
        "-      - op: replace\n"
        "+      - op: remove\n"
        "         path: /spec/lambdaTimeout\n"
        "-        value: 30\n"
        "       - op: add\n"
        "         path: /metadata/annotations\n"
        "         value:\n"
    )
    assert editor.verify(heads, result.fallback) == []


def test_annotations_are_added_and_deleted_inside_the_annotations_op(
    tmp_path: Path, kubectl: str
) -> None:
    tree, editor, heads, result = write_back(
        tmp_path,
        kubectl,
        "messagewall",
        PROD_EAST,
        (MW, 'metadata.annotations["owner"]', "team-a"),
        (MW, "metadata.annotations.oncall", MISSING),
    )
    where = f"{PROD_EAST}/kustomization.yaml: inside a JSON-patch op on a parent of"
    assert edits(result) == [
        (MW, "metadata.annotations.oncall", None, f"{where} /metadata/annotations/oncall"),
        (MW, "metadata.annotations.owner", "team-a", f"{where} /metadata/annotations/owner"),
    ]
    assert tree_diff(tree, "messagewall") == (
        f"--- a/{PROD_EAST}/kustomization.yaml\n"
        f"+++ b/{PROD_EAST}/kustomization.yaml\n"
        "@@ -39,7 +39,7 @@\n"
        "         path: /metadata/annotations\n"
        "         value:\n"
        "           tier: production\n"
        "-          oncall: platform-team\n"
        '           confighub.io/precious: "true"\n'
        '           confighub.io/precious-resources: "dynamodb,s3"\n'
        '           confighub.io/delete-gate: "enabled"\n'
        "+          owner: team-a\n"
    )
    assert editor.verify(heads, result.fallback) == []


def test_verify_names_the_fields_the_render_does_not_produce(tmp_path: Path, kubectl: str) -> None:
    tree = copy_app(tmp_path, "messagewall")
    editor = OverlayEditor(tree, PROD_EAST, kubectl)
    heads = changed_heads(
        editor, (MW, "spec.lambdaMemory", 1024), (MW, "spec.eventSource", MISSING)
    )
    assert editor.verify(heads, []) == [f"{MW}: spec.eventSource", f"{MW}: spec.lambdaMemory"]
    assert editor.verify(heads, [MW]) == []  # a fallback unit is not the overlay's job


# ---- strategic-merge patch files (orders) ----------------------------------------------------


def test_smp_field_with_a_trailing_comment_keeps_the_comment(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "orders", PRODUCTION, (DB, "spec.backupRetentionDays", 21)
    )
    assert edits(result) == [
        (
            DB,
            "spec.backupRetentionDays",
            21,
            f"{PRODUCTION}/database.yaml: patch field spec.backupRetentionDays",
        )
    ]
    assert tree_diff(tree, "orders") == (
        f"--- a/{PRODUCTION}/database.yaml\n"
        f"+++ b/{PRODUCTION}/database.yaml\n"
        "@@ -7,7 +7,7 @@\n"
        " spec:\n"
        "   storageGB: 200\n"
        "   instanceClass: db.r6g.large\n"
        "-  backupRetentionDays: 14   # guardrail: production needs >= 7\n"
        "+  backupRetentionDays: 21   # guardrail: production needs >= 7\n"
        "   multiAZ: true\n"
        "   parameters:\n"
        '     max_connections: "800"\n'
    )
    assert editor.verify(heads, result.fallback) == []


def test_smp_nested_map_key_is_added(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "orders", PRODUCTION, (DB, "spec.parameters.work_mem", "64MB")
    )
    assert edits(result) == [
        (
            DB,
            "spec.parameters.work_mem",
            "64MB",
            f"{PRODUCTION}/database.yaml: new patch field spec.parameters.work_mem",
        )
    ]
    assert tree_diff(tree, "orders") == (
        f"--- a/{PRODUCTION}/database.yaml\n"
        f"+++ b/{PRODUCTION}/database.yaml\n"
        "@@ -11,3 +11,4 @@\n"
        "   multiAZ: true\n"
        "   parameters:\n"
        '     max_connections: "800"\n'
        "+    work_mem: 64MB\n"
    )
    assert editor.verify(heads, result.fallback) == []


def test_smp_field_is_added_to_the_queue_patch_file(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "orders", PRODUCTION, (QUEUE, "spec.maxReceiveCount", 9)
    )
    assert edits(result) == [
        (
            QUEUE,
            "spec.maxReceiveCount",
            9,
            f"{PRODUCTION}/queue.yaml: new patch field spec.maxReceiveCount",
        )
    ]
    assert tree_diff(tree, "orders") == (
        f"--- a/{PRODUCTION}/queue.yaml\n"
        f"+++ b/{PRODUCTION}/queue.yaml\n"
        "@@ -6,3 +6,4 @@\n"
        " spec:\n"
        "   fifo: true                    # orders must be processed in sequence\n"
        "   visibilityTimeoutSeconds: 60\n"
        "+  maxReceiveCount: 9\n"
    )
    assert editor.verify(heads, result.fallback) == []


def test_smp_field_the_authority_dropped_is_patched_to_null(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "orders", PRODUCTION, (DB, "spec.parameters.max_connections", MISSING)
    )
    assert tree_diff(tree, "orders") == (
        f"--- a/{PRODUCTION}/database.yaml\n"
        f"+++ b/{PRODUCTION}/database.yaml\n"
        "@@ -10,4 +10,4 @@\n"
        "   backupRetentionDays: 14   # guardrail: production needs >= 7\n"
        "   multiAZ: true\n"
        "   parameters:\n"
        '-    max_connections: "800"\n'
        "+    max_connections:\n"
    )
    assert editor.render()[DB]["spec"]["parameters"] == {"log_min_duration_statement": "500"}
    assert editor.verify(heads, result.fallback) == []


def test_two_units_of_one_overlay_each_edit_lands_in_its_own_file(
    tmp_path: Path, kubectl: str
) -> None:
    tree, editor, heads, result = write_back(
        tmp_path,
        kubectl,
        "orders",
        PRODUCTION,
        (DB, "spec.storageGB", 300),
        (QUEUE, "spec.visibilityTimeoutSeconds", 90),
    )
    assert edits(result) == [
        (DB, "spec.storageGB", 300, f"{PRODUCTION}/database.yaml: patch field spec.storageGB"),
        (
            QUEUE,
            "spec.visibilityTimeoutSeconds",
            90,
            f"{PRODUCTION}/queue.yaml: patch field spec.visibilityTimeoutSeconds",
        ),
    ]
    assert result.fallback == []
    assert tree_diff(tree, "orders") == (
        f"--- a/{PRODUCTION}/database.yaml\n"
        f"+++ b/{PRODUCTION}/database.yaml\n"
        "@@ -5,7 +5,7 @@\n"
        "   name: orders-db\n"
        "   namespace: orders\n"
        " spec:\n"
        "-  storageGB: 200\n"
        "+  storageGB: 300\n"
        "   instanceClass: db.r6g.large\n"
        "   backupRetentionDays: 14   # guardrail: production needs >= 7\n"
        "   multiAZ: true\n"
        f"--- a/{PRODUCTION}/queue.yaml\n"
        f"+++ b/{PRODUCTION}/queue.yaml\n"
        "@@ -5,4 +5,4 @@\n"
        "   namespace: orders\n"
        " spec:\n"
        "   fifo: true                    # orders must be processed in sequence\n"
        "-  visibilityTimeoutSeconds: 60\n"
        "+  visibilityTimeoutSeconds: 90\n"
    )
    assert editor.verify(heads, result.fallback) == []
    assert editor.render() == heads


# ---- the fallback: tributary-sync/<space>/<unit>.yaml ------------------------------------------

FALLBACK_HEADER = (
    "# Written by Tributary: this unit's authority state could not be expressed\n"
    f"# in the overlay {PRODUCTION}. Fold it into the overlay by hand.\n"
)


def _db_yaml(*, namespace: str, environment: str, storage: int) -> str:
    return (
        "apiVersion: platform.acme.io/v1beta1\n"
        "kind: DatabaseClaim\n"
        "metadata:\n"
        "  labels:\n"
        "    app.kubernetes.io/component: database\n"
        "    app.kubernetes.io/name: orders\n"
        f"    environment: {environment}\n"
        "    tier: production\n"
        "  name: production-orders-db\n"
        f"  namespace: {namespace}\n"
        "spec:\n"
        "  backupRetentionDays: 14\n"
        "  engine: postgres\n"
        "  instanceClass: db.r6g.large\n"
        "  multiAZ: true\n"
        "  parameters:\n"
        "    log_min_duration_statement: '500'\n"
        "    max_connections: '800'\n"
        f"  storageGB: {storage}\n"
        "  version: '16'\n"
    )


def _new_file_diff(rel: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    return f"--- a/{rel}\n+++ b/{rel}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join(
        "+" + line for line in lines
    )


def test_identity_change_goes_to_the_fallback_file(tmp_path: Path, kubectl: str) -> None:
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "orders", PRODUCTION, (DB, "metadata.namespace", "billing")
    )
    assert result.edits == []
    assert result.fallback == [DB]
    rel = f"tributary-sync/{SPACE}/{DB}.yaml"
    expected = FALLBACK_HEADER + _db_yaml(
        namespace="billing", environment="production", storage=200
    )
    assert (tree / rel).read_text() == expected
    assert tree_diff(tree, "orders") == _new_file_diff(rel, expected)  # no overlay file touched
    assert editor.verify(heads, result.fallback) == []


def test_change_kustomize_cannot_express_goes_to_the_fallback_file(
    tmp_path: Path, kubectl: str
) -> None:
    """The overlay's `labels` transformer overwrites any patched `environment` label:
    every candidate edit renders something else, so each is undone."""
    tree, editor, heads, result = write_back(
        tmp_path, kubectl, "orders", PRODUCTION, (DB, "metadata.labels.environment", "prod")
    )
    assert result.edits == []
    assert result.fallback == [DB]
    rel = f"tributary-sync/{SPACE}/{DB}.yaml"
    expected = FALLBACK_HEADER + _db_yaml(namespace="orders", environment="prod", storage=200)
    assert tree_diff(tree, "orders") == _new_file_diff(rel, expected)
    assert editor.verify(heads, result.fallback) == []
    assert editor.verify(heads, []) == [f"{DB}: metadata.labels.environment"]


def test_expressible_fields_are_still_edited_when_the_unit_falls_back(
    tmp_path: Path, kubectl: str
) -> None:
    tree, _editor, _heads, result = write_back(
        tmp_path,
        kubectl,
        "orders",
        PRODUCTION,
        (DB, "spec.storageGB", 300),
        (DB, "metadata.namespace", "billing"),
    )
    assert edits(result) == [
        (DB, "spec.storageGB", 300, f"{PRODUCTION}/database.yaml: patch field spec.storageGB")
    ]
    assert result.fallback == [DB]
    rel = f"tributary-sync/{SPACE}/{DB}.yaml"
    expected = FALLBACK_HEADER + _db_yaml(
        namespace="billing", environment="production", storage=300
    )
    assert tree_diff(tree, "orders") == (
        f"--- a/{PRODUCTION}/database.yaml\n"
        f"+++ b/{PRODUCTION}/database.yaml\n"
        "@@ -5,7 +5,7 @@\n"
        "   name: orders-db\n"
        "   namespace: orders\n"
        " spec:\n"
        "-  storageGB: 200\n"
        "+  storageGB: 300\n"
        "   instanceClass: db.r6g.large\n"
        "   backupRetentionDays: 14   # guardrail: production needs >= 7\n"
        "   multiAZ: true\n" + _new_file_diff(rel, expected)
    )


# ---- nothing to do ------------------------------------------------------------------------------


def _snapshot(tree: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(tree)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(tree.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("app", "overlay"), [("messagewall", PROD_EAST), ("orders", PRODUCTION)])
def test_nothing_changed_touches_no_file(
    tmp_path: Path, kubectl: str, app: str, overlay: str
) -> None:
    tree = copy_app(tmp_path, app)
    editor = OverlayEditor(tree, overlay, kubectl)
    heads = editor.render()
    heads["not-rendered-by-git"] = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}}
    before = _snapshot(tree)
    result = editor.write_back(SPACE, heads)
    assert (result.edits, result.fallback, result.changed) == ([], [], False)
    assert _snapshot(tree) == before
    assert not (tree / "tributary-sync").exists()
    assert editor.verify(heads, []) == []


# ---- links out of the clone: nothing is written outside it (issue 10, hole 3) ----------------


def test_a_sync_folder_linked_out_of_the_clone_is_refused(tmp_path: Path, kubectl: str) -> None:
    from domain.errors import BadInput

    outside = tmp_path / "outside"
    outside.mkdir()
    tree = copy_app(tmp_path, "orders")
    (tree / "tributary-sync").symlink_to(outside)
    editor = OverlayEditor(tree, PRODUCTION, kubectl)
    heads = changed_heads(editor, (DB, "metadata.namespace", "billing"))
    with pytest.raises(BadInput) as e:
        editor.write_back(SPACE, heads)
    assert e.value.file == f"tributary-sync/{SPACE}"
    assert "leads out of the repository" in e.value.message
    assert list(outside.iterdir()) == []


def test_a_fallback_file_linked_out_of_the_clone_is_refused(tmp_path: Path, kubectl: str) -> None:
    from domain.errors import BadInput

    victim = tmp_path / "victim.pth"
    victim.write_text("untouched\n")
    tree = copy_app(tmp_path, "orders")
    (tree / "tributary-sync" / SPACE).mkdir(parents=True)
    (tree / "tributary-sync" / SPACE / f"{DB}.yaml").symlink_to(victim)
    editor = OverlayEditor(tree, PRODUCTION, kubectl)
    heads = changed_heads(editor, (DB, "metadata.namespace", "billing"))
    with pytest.raises(BadInput) as e:
        editor.write_back(SPACE, heads)
    assert e.value.file == f"tributary-sync/{SPACE}/{DB}.yaml"
    assert victim.read_text() == "untouched\n"


def test_a_patch_file_linked_out_of_the_clone_is_never_read_or_edited(
    tmp_path: Path, kubectl: str
) -> None:
    from domain.errors import BadInput

    tree = copy_app(tmp_path, "orders")
    patch = tree / PRODUCTION / "queue.yaml"
    outside = tmp_path / "outside.yaml"
    shutil.copy(patch, outside)
    before = outside.read_text()
    patch.unlink()
    patch.symlink_to(outside)
    with pytest.raises(BadInput) as e:
        OverlayEditor(tree, PRODUCTION, kubectl).render()
    assert e.value.file == f"{PRODUCTION}/kustomization.yaml"
    assert "leads out of the commit's tree" in e.value.message
    assert outside.read_text() == before


def test_removing_the_last_field_of_a_map_the_head_keeps_empty_is_a_remove_op(
    tmp_path: Path, kubectl: str
) -> None:
    """kustomize's ``remove`` of a map's last key renders ``spec: {}``: a head that keeps
    the empty map gets the op, not the fallback file (found by tests/property)."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [claims.yaml]\n")
    (tmp_path / "base" / "claims.yaml").write_text(
        "apiVersion: test.tributary.dev/v1\nkind: Widget\n"
        "metadata: {name: w0, namespace: default}\nspec: {size: 1}\n"
    )
    (tmp_path / "ov").mkdir()
    (tmp_path / "ov" / "kustomization.yaml").write_text(
        "resources: [../base]\n"
        "patches:\n"
        "- target: {kind: Widget, name: w0}\n"
        "  patch: |\n"
        "    - op: add\n"
        "      path: /metadata/labels\n"
        "      value: {app: w0}\n"
    )
    editor = OverlayEditor(tmp_path, "ov", kubectl)
    heads = editor.render()
    heads["w0"]["spec"] = {}
    result = editor.write_back(SPACE, heads)
    assert result.fallback == []
    assert edits(result) == [
        ("w0", "spec.size", None, "ov/kustomization.yaml: new JSON-patch op /spec/size")
    ]
    assert editor.verify(heads, result.fallback) == []
    assert editor.render()["w0"]["spec"] == {}
