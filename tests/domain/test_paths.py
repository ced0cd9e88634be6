"""domain/paths.py: one field-path syntax for drift, conflicts, ignore and ``set``."""

from __future__ import annotations

import copy

import pytest

from domain.errors import BadInput
from domain.paths import (
    MISSING,
    format_path,
    get_path,
    identity_problem,
    iter_leaves,
    parse_path,
    set_path,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


# ---- parse / format -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("spec", ("spec",)),
        ("spec.lambdaMemory", ("spec", "lambdaMemory")),
        ("a-b.c_d", ("a-b", "c_d")),
        (f'metadata.annotations["{LAST_APPLIED}"]', ("metadata", "annotations", LAST_APPLIED)),
        ("spec.items[2].name", ("spec", "items", 2, "name")),
        ("a[0][1]", ("a", 0, 1)),
        ("[0]", (0,)),
        ('["a.b"].c', ("a.b", "c")),
        ('spec["0"]', ("spec", "0")),
        ('a["x\\"y"]', ("a", 'x"y')),
        ('a["back\\\\slash"]', ("a", "back\\slash")),
        ('a["he said \\"hi\\""].b', ("a", 'he said "hi"', "b")),
        ('a[""]', ("a", "")),
    ],
)
def test_parse_then_format_is_the_same_text(text, segments):
    assert parse_path(text) == segments
    assert format_path(segments) == text


@pytest.mark.parametrize(
    ("text", "segments", "canonical"),
    [
        (
            "metadata.annotations['a.b/c']",
            ("metadata", "annotations", "a.b/c"),
            'metadata.annotations["a.b/c"]',
        ),
        ("a['it\\'s']", ("a", "it's"), 'a["it\'s"]'),
        ("a['x\"y']", ("a", 'x"y'), 'a["x\\"y"]'),
        ('a["plain"]', ("a", "plain"), "a.plain"),
        ("spec.1abc", ("spec", "1abc"), 'spec["1abc"]'),
        ("a.0", ("a", "0"), 'a["0"]'),
        ("  spec.x  ", ("spec", "x"), "spec.x"),
    ],
)
def test_other_spellings_parse_and_format_canonically(text, segments, canonical):
    assert parse_path(text) == segments
    assert format_path(segments) == canonical
    assert parse_path(canonical) == segments


@pytest.mark.parametrize(
    "segments",
    [
        ("a", "1x", "b c", "x\\y", 'q"', 3),
        ("metadata", "labels", "app.kubernetes.io/name"),
        (0, "a", 1),
        ("-leading",),
        ("with'single",),
        ("ünïcode", "ключ"),
    ],
)
def test_format_then_parse_round_trips(segments):
    assert parse_path(format_path(segments)) == segments


def test_string_digit_key_and_list_index_stay_distinct():
    assert format_path(("a", "0")) != format_path(("a", 0))
    assert parse_path(format_path(("a", "0"))) == ("a", "0")
    assert parse_path(format_path(("a", 0))) == ("a", 0)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_path_is_rejected(text):
    with pytest.raises(BadInput) as e:
        parse_path(text)
    assert e.value.message == "empty field path"


def test_leading_dot_is_rejected():
    with pytest.raises(BadInput) as e:
        parse_path(".a")
    assert e.value.field == ".a"
    assert e.value.message == ".a: a field path cannot start with '.'"


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("a..b", 1),
        ("a[x]", 1),
        ("a.", 1),
        ("a b", 1),
        ('a["x]', 1),
        ("a[-1]", 1),
        ('a"b"', 1),
        ('a["x"]b', 6),
        ("spec.items[2", 10),
        ("a.b/c", 3),
    ],
)
def test_garbage_is_rejected_naming_the_position(text, position):
    with pytest.raises(BadInput) as e:
        parse_path(text)
    assert e.value.field == text
    assert e.value.message == f"{text}: cannot parse field path at position {position}"


# ---- get_path -----------------------------------------------------------------------

DOC = {
    "a": {"b": {"c": 1}},
    "l": [{"x": 1}, {"y": 2}],
    "n": None,
    "f": False,
    "e": {},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("a", "b", "c"), 1),
        (("a", "b"), {"c": 1}),
        (("l", 1, "y"), 2),
        (("l", 0), {"x": 1}),
        (("n",), None),
        (("f",), False),
        (("e",), {}),
        ((), DOC),
    ],
)
def test_get_path_finds_values(path, expected):
    assert get_path(DOC, path) == expected
    assert get_path(DOC, path) is not MISSING


@pytest.mark.parametrize(
    "path",
    [
        ("a", "x"),
        ("a", "b", "c", "d"),
        ("l", 5),
        ("l", "0"),
        ("a", 0),
        ("n", "x"),
        ("zz",),
    ],
)
def test_get_path_absent_is_missing_not_none(path):
    assert get_path(DOC, path) is MISSING


def test_missing_is_a_falsy_singleton_distinct_from_none():
    assert MISSING is not None
    assert not MISSING
    assert repr(MISSING) == "<absent>"
    assert type(MISSING)() is MISSING
    assert copy.deepcopy(MISSING) is MISSING


# ---- set_path -------------------------------------------------------------------------


def test_set_path_replaces_a_leaf():
    assert set_path({"spec": {"m": 128, "t": 10}}, ("spec", "m"), 256) == {
        "spec": {"m": 256, "t": 10}
    }


def test_set_path_creates_missing_intermediate_maps():
    assert set_path({"spec": {}}, ("metadata", "annotations", "a.b/c"), "v") == {
        "spec": {},
        "metadata": {"annotations": {"a.b/c": "v"}},
    }


def test_set_path_replaces_a_scalar_on_the_way_with_a_map():
    assert set_path({"a": 5}, ("a", "b"), 1) == {"a": {"b": 1}}


def test_set_path_into_a_list_item():
    assert set_path({"l": [{"x": 1}, {"y": 2}]}, ("l", 1, "y"), 3) == {"l": [{"x": 1}, {"y": 3}]}
    assert set_path({"l": [1, 2]}, ("l", 0), 9) == {"l": [9, 2]}


def test_set_path_explicit_null_is_not_a_delete():
    assert set_path({"a": 1}, ("a",), None) == {"a": None}


def test_delete_prunes_maps_emptied_by_the_delete():
    obj = {"metadata": {"name": "x", "annotations": {LAST_APPLIED: "{}"}}}
    assert set_path(obj, ("metadata", "annotations", LAST_APPLIED), MISSING) == {
        "metadata": {"name": "x"}
    }


def test_delete_prunes_every_level_that_becomes_empty():
    assert set_path({"a": {"b": {"c": 1}}, "z": 0}, ("a", "b", "c"), MISSING) == {"z": 0}


def test_delete_keeps_maps_that_still_have_keys():
    assert set_path({"a": {"b": 1, "c": 2}}, ("a", "b"), MISSING) == {"a": {"c": 2}}


def test_delete_of_an_absent_path_changes_nothing():
    obj = {"a": {"b": 1}}
    assert set_path(obj, ("x", "y", "z"), MISSING) == obj
    assert set_path(obj, ("a", "zz"), MISSING) == obj
    assert set_path(obj, ("a", "b", "c"), MISSING) == obj


def test_delete_of_an_absent_key_does_not_drop_an_existing_empty_map():
    """Deleting what is not there must be the identity (``normalize`` relies on it)."""
    obj = {"spec": {"tags": {}}, "kind": "K"}
    assert set_path(obj, ("spec", "tags", "owner"), MISSING) == obj


def test_delete_of_a_list_item_removes_it():
    assert set_path({"l": [1, 2, 3]}, ("l", 1), MISSING) == {"l": [1, 3]}


def test_delete_inside_a_list_item_keeps_the_item():
    assert set_path({"l": [{"x": 1}, {"y": 2}]}, ("l", 0, "x"), MISSING) == {"l": [{}, {"y": 2}]}


def test_set_path_never_mutates_its_input():
    obj = {"a": {"b": {"c": 1}}, "l": [{"x": [1]}]}
    snapshot = copy.deepcopy(obj)
    set_path(obj, ("a", "b", "c"), 2)
    set_path(obj, ("a", "b", "c"), MISSING)
    set_path(obj, ("a", "new", "deep"), 1)
    set_path(obj, ("l", 0, "x"), [2])
    assert obj == snapshot


def test_set_path_copies_the_value_it_stores():
    value = {"k": [1, 2]}
    out = set_path({}, ("a",), value)
    value["k"].append(3)
    assert out == {"a": {"k": [1, 2]}}


def test_set_path_result_shares_nothing_with_the_input():
    obj = {"a": {"b": [1]}, "c": {"d": 1}}
    out = set_path(obj, ("c", "d"), 2)
    out["a"]["b"].append(2)
    assert obj == {"a": {"b": [1]}, "c": {"d": 1}}


def test_set_path_of_the_whole_object_is_rejected():
    with pytest.raises(BadInput) as e:
        set_path({"a": 1}, (), 2)
    assert e.value.message == "cannot set the whole object"


def test_set_path_past_the_end_of_a_list_is_rejected():
    with pytest.raises(BadInput) as e:
        set_path({"a": [1, 2]}, ("a", 5), 1)
    assert e.value.field == "[5]"
    assert "no list item 5 to set" in e.value.message


def test_set_path_with_a_key_into_a_list_is_rejected():
    with pytest.raises(BadInput) as e:
        set_path({"a": [1, 2]}, ("a", "b"), 1)
    assert e.value.field == "b"
    assert e.value.message.endswith("not a map")


def test_set_then_get_agrees():
    out = set_path({}, parse_path('metadata.annotations["a.b/c"]'), "v")
    assert get_path(out, ("metadata", "annotations", "a.b/c")) == "v"
    removed = set_path(out, ("metadata", "annotations", "a.b/c"), MISSING)
    assert get_path(removed, ("metadata",)) is MISSING
    assert removed == {}


# ---- iter_leaves ---------------------------------------------------------------------


def test_iter_leaves_treats_lists_and_empty_maps_as_leaves():
    assert list(iter_leaves({"a": {"b": 1, "c": {}}, "l": [1, {"x": 1}], "n": None})) == [
        (("a", "b"), 1),
        (("a", "c"), {}),
        (("l",), [1, {"x": 1}]),
        (("n",), None),
    ]


def test_iter_leaves_of_a_scalar_is_the_root():
    assert list(iter_leaves(5)) == [((), 5)]
    assert list(iter_leaves({})) == [((), {})]


# ---- the identity guard (issue 10, hole 8) ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion",
        "kind",
        "metadata.name",
        "metadata.namespace",
        "metadata",  # replaces name and namespace with whatever the value holds
        "metadata.name.x",  # turns the name into a map
        "metadata.namespace[0]",
        "kind.x",
        'metadata["name"]',
    ],
)
def test_identity_guard_covers_paths_above_and_under(text: str) -> None:
    problem = identity_problem(parse_path(text))
    assert problem is not None
    assert "a unit's identity cannot be changed by `set`" in problem


def test_identity_guard_covers_the_root() -> None:
    assert identity_problem(()) == (
        "(the whole object): a unit's identity cannot be changed by `set` (it holds apiVersion)"
    )


@pytest.mark.parametrize(
    "text", ["spec.lambdaMemory", "metadata.labels.team", "metadata.annotations", "metadata2"]
)
def test_identity_guard_leaves_other_paths_alone(text: str) -> None:
    assert identity_problem(parse_path(text)) is None


def test_identity_guard_names_the_field_it_protects() -> None:
    assert identity_problem(("metadata",)) == (
        "metadata: a unit's identity cannot be changed by `set` (it holds metadata.name)"
    )
    assert identity_problem(("metadata", "name", "x")) == (
        "metadata.name.x: a unit's identity cannot be changed by `set` (it is inside metadata.name)"
    )
