"""domain/diff.py: JSON equality, field diffs and the three-way merge of the conflict rule.

hypothesis is not installed in this venv, so the merge properties are checked on a
fixed, seeded set of generated documents (deterministic; same examples every run).
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from domain.diff import FieldChange, diff, json_equal, three_way_merge
from domain.paths import MISSING

# ---- json_equal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, True, False),
        (0, False, False),
        (True, True, True),
        (False, False, True),
        (1, 1.0, True),
        (0, -0.0, True),
        (1, 1.5, False),
        ("1", 1, False),
        (None, None, True),
        (None, {}, False),
        ([], {}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([1], [1, 2], False),
        ([True], [1], False),
        ({"a": [1, {"b": 2.0}]}, {"a": [1, {"b": 2}]}, True),
        ({"a": {"b": True}}, {"a": {"b": 1}}, False),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        (MISSING, MISSING, True),
        (MISSING, None, False),
    ],
)
def test_json_equal(a, b, equal):
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


# ---- diff ---------------------------------------------------------------------------------


def _d(old, new):
    return [c.model_dump() for c in diff(old, new)]


def test_diff_of_equal_documents_is_empty():
    assert diff({"a": {"b": [1, 2]}, "c": 1}, {"c": 1.0, "a": {"b": [1, 2]}}) == []


def test_diff_added_removed_and_changed_leaves_in_stable_order():
    old = {"b": 1, "a": 1, "c": {"d": 1, "keep": 0}}
    new = {"c": {"keep": 0}, "a": 2, "e": 4}
    assert _d(old, new) == [
        {"path": "b", "old": 1, "new": None, "old_present": True, "new_present": False},
        {"path": "a", "old": 1, "new": 2, "old_present": True, "new_present": True},
        {"path": "c.d", "old": 1, "new": None, "old_present": True, "new_present": False},
        {"path": "e", "old": None, "new": 4, "old_present": False, "new_present": True},
    ]


def test_diff_added_map_lists_each_leaf():
    assert [c.path for c in diff({}, {"a": {"b": {"c": 1}, "d": 2}})] == ["a.b.c", "a.d"]
    assert all(not c.old_present and c.new_present for c in diff({}, {"a": {"b": 1, "c": 2}}))


def test_diff_removed_map_lists_each_leaf():
    changes = diff({"a": {"b": 1, "c": 2}}, {})
    assert [(c.path, c.old, c.new_present) for c in changes] == [
        ("a.b", 1, False),
        ("a.c", 2, False),
    ]


def test_diff_lists_are_atomic():
    assert _d({"l": [1, 2, 3]}, {"l": [1, 2]}) == [
        {"path": "l", "old": [1, 2, 3], "new": [1, 2], "old_present": True, "new_present": True}
    ]
    assert _d({"l": [{"a": 1}]}, {"l": [{"a": 2}]}) == [
        {
            "path": "l",
            "old": [{"a": 1}],
            "new": [{"a": 2}],
            "old_present": True,
            "new_present": True,
        }
    ]


def test_diff_map_replaced_by_scalar_is_one_change_at_the_map():
    assert _d({"m": {"x": 1, "y": 2}}, {"m": 5}) == [
        {"path": "m", "old": {"x": 1, "y": 2}, "new": 5, "old_present": True, "new_present": True}
    ]


def test_diff_absent_and_null_are_different():
    assert _d({"a": None}, {}) == [
        {"path": "a", "old": None, "new": None, "old_present": True, "new_present": False}
    ]
    assert _d({}, {"a": None}) == [
        {"path": "a", "old": None, "new": None, "old_present": False, "new_present": True}
    ]


def test_diff_int_vs_bool_is_a_change_but_int_vs_float_is_not():
    assert [c.path for c in diff({"a": 1}, {"a": True})] == ["a"]
    assert diff({"a": 1}, {"a": 1.0}) == []


def test_diff_empty_map_removed_is_reported():
    assert _d({"a": {}}, {}) == [
        {"path": "a", "old": {}, "new": None, "old_present": True, "new_present": False}
    ]


def test_diff_uses_quoted_segments_for_dotted_keys():
    old = {"metadata": {"annotations": {"a.b/c": "1"}}}
    new = {"metadata": {"annotations": {"a.b/c": "2"}}}
    assert [c.path for c in diff(old, new)] == ['metadata.annotations["a.b/c"]']


def test_diff_of_root_scalars():
    assert diff(5, {"a": 1}) == [FieldChange(path="", old=5, new={"a": 1})]


# ---- three_way_merge: examples ------------------------------------------------------


def _m(base, ours, theirs):
    merged, conflicts = three_way_merge(base, ours, theirs)
    return merged, [c.model_dump() for c in conflicts]


def test_only_ours_changed():
    assert _m({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 1}) == ({"a": 2, "b": 1}, [])


def test_only_theirs_changed():
    assert _m({"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 1, "b": 3}) == ({"a": 1, "b": 3}, [])


def test_disjoint_fields_merge():
    base = {"spec": {"a": 1, "b": 1, "c": 1}}
    ours = {"spec": {"a": 2, "b": 1, "c": 1}}
    theirs = {"spec": {"a": 1, "b": 3, "c": 1}}
    assert _m(base, ours, theirs) == ({"spec": {"a": 2, "b": 3, "c": 1}}, [])


def test_disjoint_add_and_delete_merge():
    base = {"spec": {"a": 1, "b": 1}}
    ours = {"spec": {"a": 1, "b": 1, "new": "x"}}
    theirs = {"spec": {"a": 1}}
    assert _m(base, ours, theirs) == ({"spec": {"a": 1, "new": "x"}}, [])


def test_same_change_on_both_sides_is_agreement():
    assert _m({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 2, "b": 1}) == ({"a": 2, "b": 1}, [])


def test_same_change_plus_disjoint_change_is_agreement():
    assert _m({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 2, "b": 5}) == ({"a": 2, "b": 5}, [])


def test_conflicting_scalar():
    merged, conflicts = _m(
        {"spec": {"a": 1, "b": 1}}, {"spec": {"a": 2, "b": 1}}, {"spec": {"a": 3, "b": 1}}
    )
    assert conflicts == [{"path": "spec.a", "base": 1, "ours": 2, "theirs": 3}]
    assert merged == {"spec": {"a": 2, "b": 1}}


def test_conflicting_lists_conflict_whole():
    _, conflicts = _m({"l": [1]}, {"l": [1, 2]}, {"l": [0, 1]})
    assert conflicts == [{"path": "l", "base": [1], "ours": [1, 2], "theirs": [0, 1]}]


def test_ours_deletes_a_map_theirs_edits_inside_conflict_names_the_inner_field():
    base = {"spec": {"m": {"x": 1, "y": 1}}}
    ours = {"spec": {}}
    theirs = {"spec": {"m": {"x": 2, "y": 1}}}
    merged, conflicts = _m(base, ours, theirs)
    assert conflicts == [{"path": "spec.m.x", "base": 1, "ours": None, "theirs": 2}]
    assert merged == {"spec": {}}


def test_theirs_deletes_a_map_ours_edits_inside_conflict_names_the_inner_field():
    base = {"m": {"x": 1, "y": 1}}
    merged, conflicts = _m(base, {"m": {"x": 2, "y": 1}}, {})
    assert conflicts == [{"path": "m.x", "base": 1, "ours": 2, "theirs": None}]
    assert merged == {"m": {"x": 2}}


def test_one_side_replaces_a_map_by_a_scalar_other_edits_inside():
    _, conflicts = _m({"m": {"x": 1}}, {"m": 5}, {"m": {"x": 2}})
    assert conflicts == [{"path": "m", "base": {"x": 1}, "ours": 5, "theirs": {"x": 2}}]


def test_both_delete_the_same_field():
    assert _m({"a": 1, "b": 1}, {"b": 1}, {"b": 1}) == ({"b": 1}, [])


def test_both_delete_different_fields():
    assert _m({"a": 1, "b": 1, "c": 1}, {"b": 1, "c": 1}, {"a": 1, "c": 1}) == ({"c": 1}, [])


def test_both_delete_a_whole_map():
    assert _m({"m": {"x": 1}, "k": 1}, {"k": 1}, {"k": 1}) == ({"k": 1}, [])


def test_added_keys_on_both_sides_merge():
    assert _m({}, {"x": 1}, {"y": 2}) == ({"x": 1, "y": 2}, [])


def test_added_maps_on_both_sides_merge_key_by_key():
    assert _m({}, {"x": {"p": 1}}, {"x": {"q": 2}}) == ({"x": {"p": 1, "q": 2}}, [])


def test_same_key_added_with_different_values_conflicts():
    assert _m({}, {"x": 1}, {"x": 2}) == (
        {"x": 1},
        [{"path": "x", "base": None, "ours": 1, "theirs": 2}],
    )


def test_null_versus_delete_conflicts():
    _, conflicts = _m({"a": 1}, {"a": None}, {})
    assert [c["path"] for c in conflicts] == ["a"]


def test_null_set_on_one_side_only_is_kept():
    assert _m({"a": 1}, {"a": None}, {"a": 1}) == ({"a": None}, [])


def test_int_and_float_are_not_a_conflict_but_bool_is():
    assert _m({"a": 0}, {"a": 1}, {"a": 1.0})[1] == []
    assert [c["path"] for c in _m({"a": 0}, {"a": 1}, {"a": True})[1]] == ["a"]


def test_several_conflicts_all_listed():
    base = {"spec": {"a": 1, "b": 1, "c": 1}}
    ours = {"spec": {"a": 2, "b": 2, "c": 1}}
    theirs = {"spec": {"a": 3, "b": 3, "c": 9}}
    merged, conflicts = _m(base, ours, theirs)
    assert [c["path"] for c in conflicts] == ["spec.a", "spec.b"]
    assert merged["spec"]["c"] == 9


def test_merge_does_not_mutate_inputs():
    base = {"m": {"x": 1}, "l": [1]}
    ours = {"m": {"x": 2}, "l": [1]}
    theirs = {"m": {"x": 1}, "l": [2], "n": {"k": 1}}
    snapshot = copy.deepcopy((base, ours, theirs))
    three_way_merge(base, ours, theirs)
    assert (base, ours, theirs) == snapshot


# ---- three_way_merge: properties on generated documents --------------------------------

_KEYS = ["a", "b", "c", "d"]


def _scalar(rng: random.Random) -> Any:
    return rng.choice([0, 1, 2, True, False, None, "x", "y", 1.5, [1], [1, 2], []])


def _doc(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rng.sample(_KEYS, rng.randint(0, len(_KEYS))):
        if depth < 2 and rng.random() < 0.35:
            out[key] = _doc(rng, depth + 1)
        else:
            out[key] = _scalar(rng)
    return out


def _mutate(rng: random.Random, doc: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for key in _KEYS:
        roll = rng.random()
        if roll < 0.15:
            out.pop(key, None)
        elif roll < 0.35:
            out[key] = _scalar(rng)
        elif roll < 0.45 and depth < 2:
            out[key] = _doc(rng, depth + 1)
        elif roll < 0.65 and isinstance(out.get(key), dict):
            out[key] = _mutate(rng, out[key], depth + 1)
    return out


def _cases(seed: int, n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        base = _doc(rng)
        cases.append((base, _mutate(rng, base)))
    return cases


CASES = _cases(20240601, 300)


def _clean(value: Any) -> Any:
    return {} if value is MISSING else value


def test_generated_cases_are_varied():
    changed = sum(1 for b, x in CASES if not json_equal(b, x))
    nested = sum(1 for b, _ in CASES if any(isinstance(v, dict) for v in b.values()))
    assert changed > 200
    assert nested > 100


def test_property_ours_only_yields_ours():
    for base, x in CASES:
        merged, conflicts = three_way_merge(base, x, base)
        assert conflicts == []
        assert json_equal(_clean(merged), x), (base, x, merged)


def test_property_theirs_only_yields_theirs():
    for base, x in CASES:
        merged, conflicts = three_way_merge(base, base, x)
        assert conflicts == []
        assert json_equal(_clean(merged), x), (base, x, merged)


def test_property_same_change_on_both_sides_yields_it():
    for base, x in CASES:
        merged, conflicts = three_way_merge(base, x, x)
        assert conflicts == []
        assert json_equal(_clean(merged), x), (base, x, merged)


def test_property_disjoint_top_level_keys_never_conflict():
    rng = random.Random(7)
    checked = 0
    for base, _ in CASES:
        keys = list(_KEYS)
        rng.shuffle(keys)
        mine = set(keys[:2])
        ours = copy.deepcopy(base)
        theirs = copy.deepcopy(base)
        changed = _mutate(rng, base)
        changed_too = _mutate(rng, base)
        for key in _KEYS:
            src, dst = (changed, ours) if key in mine else (changed_too, theirs)
            if key in src:
                dst[key] = copy.deepcopy(src[key])
            else:
                dst.pop(key, None)
        merged, conflicts = three_way_merge(base, ours, theirs)
        assert conflicts == [], (base, ours, theirs)
        expected = {
            k: (ours if k in mine else theirs)[k]
            for k in _KEYS
            if k in (ours if k in mine else theirs)
        }
        assert json_equal(_clean(merged), expected), (base, ours, theirs, merged)
        checked += 1
    assert checked == len(CASES)


def test_property_merge_is_symmetric_in_its_result_when_there_is_no_conflict():
    rng = random.Random(11)
    for base, x in CASES:
        y = _mutate(rng, base)
        m1, c1 = three_way_merge(base, x, y)
        m2, c2 = three_way_merge(base, y, x)
        assert sorted(c.path for c in c1) == sorted(c.path for c in c2)
        if not c1:
            assert json_equal(_clean(m1), _clean(m2)), (base, x, y)


def test_property_conflicts_are_exactly_the_fields_both_sides_changed_differently():
    rng = random.Random(13)
    for base, x in CASES:
        y = _mutate(rng, base)
        _, conflicts = three_way_merge(base, x, y)
        ours_changed = {c.path for c in diff(base, x)}
        theirs_changed = {c.path for c in diff(base, y)}
        for c in conflicts:
            # a conflict is a field (or the map above fields) both sides touched
            assert any(
                p == c.path or p.startswith(c.path + ".") or c.path.startswith(p + ".")
                for p in ours_changed
            ), c
            assert any(
                p == c.path or p.startswith(c.path + ".") or c.path.startswith(p + ".")
                for p in theirs_changed
            ), c
