"""The state machine's in-process renderer agrees with ``kubectl kustomize``.

``overlay.render`` stands in for kustomize so that the loop's state machine can render
thousands of times; here both render the same generated repos — including op lists
that kustomize refuses, which the write-back relies on to reject a candidate edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.render import find_kubectl, render_overlay
from domain.errors import BadInput
from tests.property import overlay

FIELDS = ("size", "tier", "replicas")
SPECS = st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, st.integers(0, 3)))
OPS = st.lists(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "replace", "remove"]),
            "path": st.sampled_from([f"/spec/{f}" for f in FIELDS] + ["/spec/nested/deep"]),
            "value": st.integers(0, 3),
        }
    ),
    max_size=3,
)


def _outcome(fn: Any) -> Any:
    try:
        return {o["metadata"]["name"]: o for o in fn()}
    except BadInput:
        return "refused"


@settings(
    max_examples=50,
    derandomize=True,  # the same 50 overlays on every run: CI never lands by luck
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(specs=st.dictionaries(st.sampled_from(["u0", "u1"]), SPECS, min_size=1), ops=OPS)
def test_render_matches_kustomize(
    tmp_path_factory: pytest.TempPathFactory, specs: dict[str, Any], ops: list[dict[str, Any]]
) -> None:
    tree = tmp_path_factory.mktemp("repo")
    overlay.write_repo(tree, specs)
    first = sorted(specs)[0]
    patch = tree / overlay.OVERLAY / f"{first}.yaml"
    cleaned = [
        {k: v for k, v in op.items() if not (op["op"] == "remove" and k == "value")} for op in ops
    ]
    patch.write_text(yaml.safe_dump([overlay.labels_op(first), *cleaned], sort_keys=False))
    ours = _outcome(lambda: overlay.render(tree))
    theirs = _outcome(lambda: render_overlay(find_kubectl(), tree, overlay.OVERLAY))
    assert ours == theirs


def test_developer_edits_render_as_kustomize_does(tmp_path: Path) -> None:
    """The edits the state machine makes as a developer: set, remove, add and drop."""
    overlay.write_repo(tmp_path, {"u0": {"size": 1}, "u1": {}})
    overlay.set_field(tmp_path, "u0", "tier", 2)
    overlay.set_field(tmp_path, "u0", "size", None)
    overlay.add_unit(tmp_path, "u2", {"replicas": 3})
    overlay.drop_unit(tmp_path, "u1")
    overlay.set_field(tmp_path, "u2", "replicas", None)  # the last field: ``spec: {}``
    ours = _outcome(lambda: overlay.render(tmp_path))
    assert ours == _outcome(lambda: render_overlay(find_kubectl(), tmp_path, overlay.OVERLAY))
    assert sorted(ours) == ["u0", "u2"]
    assert ours["u0"]["spec"] == {"tier": 2}
    assert ours["u2"]["spec"] == {}
