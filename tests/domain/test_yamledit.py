"""domain/yamledit.py: round-trip YAML edits for the sync PR's write-back.

Every edit must leave the file byte-for-byte as it was outside the edited lines:
comments, key order, quoting style ('true' vs "true" vs true) and the file's own
sequence indentation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from domain import yamledit
from domain.paths import MISSING

FIXTURES = Path(__file__).parent.parent / "fixtures"

# ---- detect_indent ---------------------------------------------------------------------


def test_detect_indent_of_indented_sequences() -> None:
    text = "resources:\n  - ../../base\npatches:\n  - path: a.yaml\n"
    assert yamledit.detect_indent(text) == (2, 4, 2)


def test_detect_indent_of_non_indented_sequences() -> None:
    text = "resources:\n- ../../base\npatches:\n- path: a.yaml\n"
    assert yamledit.detect_indent(text) == (2, 2, 0)


def test_detect_indent_of_deeply_indented_sequences() -> None:
    text = "a:\n  b: 1\nlist:\n    - x\n"
    assert yamledit.detect_indent(text) == (2, 6, 4)


def test_detect_indent_of_a_document_that_is_a_list() -> None:
    text = "- op: replace\n  path: /spec/a\n  value: 1\n"
    assert yamledit.detect_indent(text) == (2, 2, 0)


def test_detect_indent_of_a_list_document_after_a_comment() -> None:
    text = "# ops against the base\n\n- op: replace\n  path: /spec/a\n  value: 1\n"
    assert yamledit.detect_indent(text) == (2, 2, 0)


def test_detect_indent_without_sequences_is_the_default() -> None:
    assert yamledit.detect_indent("a:\n  b: 1\n") == (2, 4, 2)


# ---- round trips -----------------------------------------------------------------------

QUOTED = """\
# A document with every style that must survive.
kind: Thing   # trailing comment
metadata:
  name: x
  annotations:
    single: 'true'
    double: "true"
    bare: true
    digits: "0123"
spec:
  zeta: 1      # not sorted: zeta before alpha
  alpha: 2
  indented:
    - one
    - two  # second
"""

NON_INDENTED = """\
kind: Thing
spec:
  items:
  - one
  - two
  after: 1   # c
"""


@pytest.mark.parametrize("text", [QUOTED, NON_INDENTED], ids=["indented", "non-indented"])
def test_load_dump_without_edits_is_byte_for_byte(text: str) -> None:
    assert yamledit.dump(yamledit.load(text), text) == text


def test_editing_one_value_changes_only_that_line() -> None:
    doc = yamledit.load(QUOTED)
    doc["spec"]["zeta"] = 7
    assert yamledit.dump(doc, QUOTED) == QUOTED.replace(
        "  zeta: 1      # not", "  zeta: 7      # not"
    )


def test_editing_in_a_non_indented_file_keeps_its_style() -> None:
    doc = yamledit.load(NON_INDENTED)
    doc["spec"]["after"] = 2
    assert yamledit.dump(doc, NON_INDENTED) == NON_INDENTED.replace("after: 1", "after: 2")


def test_quoting_survives_an_edit_next_to_it() -> None:
    doc = yamledit.load(QUOTED)
    doc["metadata"]["annotations"]["bare"] = False
    out = yamledit.dump(doc, QUOTED)
    assert out == QUOTED.replace("    bare: true\n", "    bare: false\n")
    assert "    single: 'true'\n" in out
    assert '    double: "true"\n' in out
    assert '    digits: "0123"\n' in out


def _editable_fixture_files() -> list[Path]:
    """Every file a write-back may edit: overlays and their patch files."""
    return sorted(
        [
            *FIXTURES.glob("messagewall/infra/claims/overlays/*/*.yaml"),
            *FIXTURES.glob("orders/deploy/envs/*/*.yaml"),
        ]
    )


@pytest.mark.parametrize(
    "path", _editable_fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES))
)
def test_fixture_overlay_files_round_trip_byte_for_byte(path: Path) -> None:
    text = path.read_text()
    assert yamledit.dump(yamledit.load(text), text) == text


def test_list_document_with_an_indented_nested_list_round_trips() -> None:
    """An op list whose ``value`` is an indented list: editing another op must not
    re-indent that list (detect_indent returns (2, 2, 0) for any list document)."""
    text = (
        "- op: add\n"
        "  path: /spec/subnets\n"
        "  value:\n"
        "    - a\n"
        "    - b\n"
        "- op: replace\n"
        "  path: /spec/x\n"
        "  value: 1\n"
    )
    ops = yamledit.load(text)
    assert yamledit.set_op_value(ops, "/spec/x", 2)
    assert yamledit.dump(ops, text) == text.replace("  value: 1\n", "  value: 2\n")


# ---- JSON-patch op lists ---------------------------------------------------------------

OPS = """\
# ops against the base claim
- op: replace
  path: /spec/lambdaMemory
  value: 256 # MB
- op: add
  path: /metadata/annotations
  value:
    tier: production
    confighub.io/precious: "true"
- op: remove
  path: /spec/eventSource
"""


def _edited(fn, text: str = OPS) -> tuple[bool, str]:
    ops = yamledit.load(text)
    done = fn(ops)
    return done, yamledit.dump(ops, text)


def test_pointer_escapes_tilde_and_slash() -> None:
    assert yamledit.pointer(("metadata", "annotations", "confighub.io/precious")) == (
        "/metadata/annotations/confighub.io~1precious"
    )
    assert yamledit.pointer(("spec", "a~b", 0)) == "/spec/a~0b/0"


def test_set_op_value_changes_the_value_and_keeps_the_comment() -> None:
    done, out = _edited(lambda ops: yamledit.set_op_value(ops, "/spec/lambdaMemory", 512))
    assert done
    assert out == OPS.replace("value: 256 # MB", "value: 512 # MB")


def test_set_op_value_with_a_map_writes_block_style() -> None:
    done, out = _edited(lambda ops: yamledit.set_op_value(ops, "/spec/lambdaMemory", {"a": 1}))
    assert done
    # the comment keeps its column
    assert out == OPS.replace("  value: 256 # MB\n", "  value:     # MB\n    a: 1\n")


def test_set_op_value_missing_turns_the_op_into_a_remove() -> None:
    done, out = _edited(lambda ops: yamledit.set_op_value(ops, "/spec/lambdaMemory", MISSING))
    assert done
    assert out == OPS.replace(
        "- op: replace\n  path: /spec/lambdaMemory\n  value: 256 # MB\n",
        "- op: remove\n  path: /spec/lambdaMemory\n",
    )


def test_set_op_value_without_a_matching_op_changes_nothing() -> None:
    done, out = _edited(lambda ops: yamledit.set_op_value(ops, "/spec/region", "eu-west-1"))
    assert (done, out) == (False, OPS)
    # a remove op is not a value to change
    done, out = _edited(lambda ops: yamledit.set_op_value(ops, "/spec/eventSource", "x"))
    assert (done, out) == (False, OPS)


def test_set_inside_op_value_adds_a_key_to_the_op_map() -> None:
    done, out = _edited(
        lambda ops: yamledit.set_inside_op_value(
            ops, ("metadata", "annotations", "owner"), "team-a"
        )
    )
    assert done
    assert out == OPS.replace(
        '    confighub.io/precious: "true"\n',
        '    confighub.io/precious: "true"\n    owner: team-a\n',
    )


def test_set_inside_op_value_changes_a_key_of_the_op_map() -> None:
    done, out = _edited(
        lambda ops: yamledit.set_inside_op_value(ops, ("metadata", "annotations", "tier"), "gold")
    )
    assert done
    assert out == OPS.replace("    tier: production\n", "    tier: gold\n")


def test_set_inside_op_value_deletes_a_key_of_the_op_map() -> None:
    done, out = _edited(
        lambda ops: yamledit.set_inside_op_value(ops, ("metadata", "annotations", "tier"), MISSING)
    )
    assert done
    assert out == OPS.replace("    tier: production\n", "")


def test_set_inside_op_value_creates_nested_maps() -> None:
    done, out = _edited(
        lambda ops: yamledit.set_inside_op_value(
            ops, ("metadata", "annotations", "nested", "deeper"), "v"
        )
    )
    assert done
    assert out == OPS.replace(
        '    confighub.io/precious: "true"\n',
        '    confighub.io/precious: "true"\n    nested:\n      deeper: v\n',
    )


def test_set_inside_op_value_without_a_parent_op_or_key_changes_nothing() -> None:
    done, out = _edited(lambda ops: yamledit.set_inside_op_value(ops, ("spec", "x", "y"), 1))
    assert (done, out) == (False, OPS)
    done, out = _edited(
        lambda ops: yamledit.set_inside_op_value(
            ops, ("metadata", "annotations", "absent"), MISSING
        )
    )
    assert (done, out) == (False, OPS)


def test_drop_op_removes_the_whole_op() -> None:
    done, out = _edited(lambda ops: yamledit.drop_op(ops, "/spec/eventSource"))
    assert done
    assert out == OPS.replace("- op: remove\n  path: /spec/eventSource\n", "")
    assert _edited(lambda ops: yamledit.drop_op(ops, "/spec/nothing")) == (False, OPS)


def test_append_op_add_and_remove() -> None:
    def both(ops) -> bool:
        yamledit.append_op(ops, "/spec/artifactBucket", "artifacts")
        return yamledit.append_op(ops, "/spec/lambdaTimeout", MISSING)

    done, out = _edited(both)
    assert done
    assert out == OPS + (
        "- op: add\n"
        "  path: /spec/artifactBucket\n"
        "  value: artifacts\n"
        "- op: remove\n"
        "  path: /spec/lambdaTimeout\n"
    )


def test_append_op_with_a_map_value_is_block_style() -> None:
    done, out = _edited(
        lambda ops: yamledit.append_op(ops, "/metadata/labels", {"team": "a", "tier": "b"})
    )
    assert done
    assert out == OPS + (
        "- op: add\n  path: /metadata/labels\n  value:\n    team: a\n    tier: b\n"
    )


# ---- strategic-merge patch documents ----------------------------------------------------

SMP = """\
# Production database.
apiVersion: platform.acme.io/v1beta1
kind: DatabaseClaim
metadata:
  name: orders-db
spec:
  storageGB: 200
  backupRetentionDays: 14   # guardrail: production needs >= 7
  parameters:
    max_connections: "800"
"""


def test_smp_set_changes_a_value_and_keeps_its_comment() -> None:
    doc = yamledit.load(SMP)
    yamledit.smp_set(doc, ("spec", "backupRetentionDays"), 21)
    assert yamledit.dump(doc, SMP) == SMP.replace(
        "backupRetentionDays: 14   #", "backupRetentionDays: 21   #"
    )


def test_smp_set_creates_nested_maps() -> None:
    doc = yamledit.load(SMP)
    yamledit.smp_set(doc, ("spec", "parameters", "work_mem"), "64MB")
    yamledit.smp_set(doc, ("spec", "maintenance", "window", "day"), "sun")
    assert yamledit.dump(doc, SMP) == SMP + (
        "    work_mem: 64MB\n  maintenance:\n    window:\n      day: sun\n"
    )


def test_smp_set_missing_writes_null() -> None:
    doc = yamledit.load(SMP)
    yamledit.smp_set(doc, ("spec", "parameters", "max_connections"), MISSING)
    out = yamledit.dump(doc, SMP)
    assert out == SMP.replace('    max_connections: "800"\n', "    max_connections:\n")
    assert yamledit.load(out)["spec"]["parameters"]["max_connections"] is None


def test_has_path() -> None:
    doc = yamledit.load(SMP)
    assert yamledit.has_path(doc, ("spec", "parameters", "max_connections"))
    assert not yamledit.has_path(doc, ("spec", "parameters", "work_mem"))
    assert not yamledit.has_path(doc, ("spec", "storageGB", "deeper"))


# ---- inline patches of a kustomization --------------------------------------------------

DEV_EAST = FIXTURES / "messagewall/infra/claims/overlays/dev-east/kustomization.yaml"


def test_set_inline_patch_value_edits_one_line_of_the_kustomization() -> None:
    text = DEV_EAST.read_text()
    assert text.count("        value: 128\n") == 1
    out = yamledit.set_inline_patch_value(text, "/spec/lambdaMemory", 512)
    assert out == text.replace("        value: 128\n", "        value: 512\n")


def test_set_inline_patch_value_missing_makes_a_remove_op() -> None:
    text = DEV_EAST.read_text()
    out = yamledit.set_inline_patch_value(text, "/spec/lambdaTimeout", MISSING)
    assert out == text.replace(
        "      - op: replace\n        path: /spec/lambdaTimeout\n        value: 10\n",
        "      - op: remove\n        path: /spec/lambdaTimeout\n",
    )


def test_set_inline_patch_value_without_the_op_is_an_error() -> None:
    text = DEV_EAST.read_text()
    with pytest.raises(ValueError, match=r"^no inline JSON-patch op on /spec/artifactBucket$"):
        yamledit.set_inline_patch_value(text, "/spec/artifactBucket", "x")
    plain = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    with pytest.raises(ValueError, match="no inline JSON-patch op on /spec/a"):
        yamledit.set_inline_patch_value(plain, "/spec/a", 1)
    smp_only = plain + "patches:\n  - path: database.yaml\n"
    with pytest.raises(ValueError, match="no inline JSON-patch op on /spec/a"):
        yamledit.set_inline_patch_value(smp_only, "/spec/a", 1)
