"""domain/naming.py: Kubernetes names, durations and workflow ids."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import BadInput
from domain.naming import (
    bulk_set_id,
    duration_range_problem,
    format_duration,
    kubernetes_name_problem,
    kubernetes_namespace_problem,
    parse_duration,
    publish_id,
    publish_options,
    publish_run_id,
    rollback_id,
    short_digest,
)

INVALID_NAME = (
    "is not a valid Kubernetes name: lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)


@pytest.mark.parametrize(
    "name",
    ["a", "1abc", "messagewall-prod-east", "a.b", "production-orders-db", "a" * 253, "a-1.b-2"],
)
def test_valid_kubernetes_names(name):
    assert kubernetes_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["Prod_East", "Messagewall_Prod", "-a", "a-", "a_b", "a..b", "a.-b", "ab.", ".ab", "a b", "ä"],
)
def test_invalid_kubernetes_names(name):
    assert kubernetes_name_problem(name) == f"{name!r} {INVALID_NAME}"


@pytest.mark.parametrize("name", ["", None, 5, ["a"]])
def test_missing_kubernetes_name(name):
    assert kubernetes_name_problem(name) == "missing"


def test_too_long_kubernetes_name():
    assert kubernetes_name_problem("a" * 254) == f"{'a' * 254!r} is longer than 253 characters"


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d3h4m5s", timedelta(days=2, hours=3, minutes=4, seconds=5)),
        (" 5m ", timedelta(minutes=5)),
        ("0s", timedelta(0)),
        ("120m", timedelta(hours=2)),
    ],
)
def test_parse_duration(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["5 minutes", "", "m", "5", "1m1h", "-5m", "5M", "1.5h", "5mm"])
def test_parse_duration_rejects(text):
    with pytest.raises(BadInput) as e:
        parse_duration(text)
    assert e.value.field == "duration"
    assert e.value.message == f"duration: {text!r} is not a duration like 30s, 5m, 6h or 1d"


def test_parse_duration_error_names_file_and_field():
    with pytest.raises(BadInput) as e:
        parse_duration("soon", field="spaces.a.drift_interval", file="tributary.yaml")
    assert e.value.message == (
        "tributary.yaml: spaces.a.drift_interval: 'soon' is not a duration like 30s, 5m, 6h or 1d"
    )


def test_parse_duration_rejects_non_strings():
    with pytest.raises(BadInput):
        parse_duration(300)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2, seconds=5), "2d5s"),
        (timedelta(days=1, hours=1, minutes=1, seconds=1), "1d1h1m1s"),
        (timedelta(seconds=0.5), "0s"),
    ],
)
def test_format_duration(delta, text):
    assert format_duration(delta) == text


@pytest.mark.parametrize("text", ["90s", "5m", "6h", "1d", "1h30m", "2d3h4m5s"])
def test_duration_round_trip(text):
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_format_duration_is_canonical():
    assert format_duration(parse_duration("90s")) == "1m30s"
    assert format_duration(parse_duration("120m")) == "2h"


def test_short_digest():
    assert short_digest("a", "b") == "59b271ae1b"
    assert short_digest("ab") != short_digest("a", "b")
    assert len(short_digest("a", length=4)) == 4
    assert short_digest("a", "b", length=4) == "59b2"


def test_publish_ids():
    commit = "c" * 40
    assert publish_id("messagewall-prod-east", commit, dry_run=False) == (
        f"publish:messagewall-prod-east:{commit}"
    )
    assert publish_id("s", "abc", dry_run=True) == "publish:s:abc:dry-run"


def test_publish_run_id_all_spaces_and_selected_spaces():
    assert publish_run_id("abc", [], dry_run=False) == "publish-run:abc:all"
    picked = publish_run_id("abc", ["b", "a"], dry_run=True)
    assert picked == f"publish-run:abc:{short_digest('a', 'b')}:dry-run"
    # order of --space flags does not matter; the selection does
    assert publish_run_id("abc", ["a", "b"], dry_run=True) == picked
    assert publish_run_id("abc", ["a"], dry_run=True) != picked
    assert publish_run_id("abc", ["a", "b"], dry_run=False) != picked


def test_publish_ids_carry_the_options_so_only_equal_runs_attach():
    assert publish_options() == ""
    digests = {
        publish_options(force=True),
        publish_options(apply=True),
        publish_options(message="m"),
        publish_options(apply=True, message="m"),
    }
    assert len(digests) == 4
    assert publish_options(apply=True) == publish_options(apply=True)
    opt = publish_options(apply=True)
    assert publish_run_id("abc", [], dry_run=False, options=opt) == f"publish-run:abc:all:{opt}"
    assert publish_id("s", "abc", dry_run=False, options=opt) == f"publish:s:abc:{opt}"
    assert publish_id("s", "abc", dry_run=False, options="") == "publish:s:abc"


def test_other_workflow_ids():
    assert bulk_set_id("d1g3st") == "set:d1g3st"
    assert rollback_id("s", "u", 3) == "rollback:s:u:3"


# ---- namespaces and duration bounds (issue 10, holes 5, 6, 11) ------------------------------


@pytest.mark.parametrize("namespace", ["default", "team-a", "a1", "x" * 63])
def test_valid_namespaces(namespace):
    assert kubernetes_namespace_problem(namespace) is None


@pytest.mark.parametrize(
    "namespace", ["team-a/../kube-system", "a.b", "Team", "-a", "x" * 64, "", None, 7, "a%2f"]
)
def test_invalid_namespaces(namespace):
    assert kubernetes_namespace_problem(namespace) is not None


@pytest.mark.parametrize("text", ["99999999999d", "367d", "9000h", "99999999999999999999s"])
def test_parse_duration_refuses_huge_values_as_bad_input(text):
    with pytest.raises(BadInput) as e:
        parse_duration(text, field="spaces.a.drift_interval", file="tributary.yaml")
    assert e.value.field == "spaces.a.drift_interval"


def test_duration_range_problem():
    assert duration_range_problem("5m", "10s", "30d") is None
    assert (
        duration_range_problem("0s", "10s", "30d") == "'0s' is outside the allowed range 10s to 30d"
    )
    assert "not a duration" in (duration_range_problem("soon", "10s", "30d") or "")
