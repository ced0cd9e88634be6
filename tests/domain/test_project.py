"""domain/project.py: parsing and checking ``tributary.yaml``."""

from __future__ import annotations

import pytest

from domain.errors import BadInput
from domain.project import CONFIG_FILE, ProjectConfig, parse_project
from tests.support import FIXTURES

MINIMAL = "spaces:\n  x:\n    overlay: o\n    environment: dev\n"


def _bad(text: str) -> BadInput:
    with pytest.raises(BadInput) as e:
        parse_project(text)
    return e.value


def test_messagewall_fixture_parses():
    project = parse_project((FIXTURES / "messagewall" / CONFIG_FILE).read_text())
    assert list(project.spaces) == [
        "messagewall-dev-east",
        "messagewall-dev-west",
        "messagewall-prod-east",
        "messagewall-prod-west",
    ]
    prod = project.spaces["messagewall-prod-east"]
    assert prod.overlay == "infra/claims/overlays/prod-east"
    assert prod.environment == "prod"
    assert prod.approval == "required"
    assert prod.drift == "capture"
    assert prod.drift_interval == "5m"
    assert prod.drift_interval_seconds == 300
    assert prod.labels == {}
    assert project.spaces["messagewall-dev-east"].approval == "none"
    assert project.policies == ["platform/policies"]
    assert project.schemas == ["platform/crossplane/xrd"]
    assert project.compositions == ["platform/crossplane/composition"]
    assert project.compositions_of("messagewall-prod-east") == ["platform/crossplane/composition"]
    assert project.ignore == [
        'metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]'
    ]


def test_orders_fixture_parses():
    project = parse_project((FIXTURES / "orders" / CONFIG_FILE).read_text())
    assert list(project.spaces) == ["orders-staging", "orders-production"]
    staging = project.spaces["orders-staging"]
    production = project.spaces["orders-production"]
    assert (staging.overlay, staging.environment, staging.approval, staging.drift) == (
        "deploy/envs/staging",
        "staging",
        "acknowledge",
        "report",
    )
    assert staging.drift_interval_seconds == 600
    assert production.environment == "production"
    assert production.drift_interval_seconds == 120
    assert project.policies == ["policy/rego"]
    assert project.schemas == ["platform/xrds"]
    assert project.ignore == ['metadata.annotations["example.acme.io/last-seen"]']


def test_a_space_may_name_its_own_compositions():
    project = parse_project(
        "spaces:\n"
        "  a: {overlay: o, environment: dev}\n"
        "  b: {overlay: o, environment: dev, compositions: [teams/b/compositions/]}\n"
        "  c: {overlay: o, environment: dev, compositions: []}\n"
        "compositions: [platform/compositions]\n"
    )
    assert project.compositions_of("a") == ["platform/compositions"]
    assert project.compositions_of("b") == ["teams/b/compositions"]
    assert project.compositions_of("c") == []
    assert project.all_compositions() == ["platform/compositions", "teams/b/compositions"]


@pytest.mark.parametrize("folder", ["/etc", "../outside", "a/../../b"])
def test_composition_folders_stay_inside_the_repository(folder: str):
    error = _bad(MINIMAL + f"compositions: [{folder!r}]\n")
    assert error.field == "compositions"
    assert "inside the repository" in error.message
    error = _bad(
        MINIMAL.replace("environment: dev", f"environment: dev\n    compositions: [{folder!r}]")
    )
    assert error.field == "spaces.x.compositions"


def test_defaults_of_a_minimal_space():
    project = parse_project(MINIMAL)
    space = project.spaces["x"]
    assert (space.approval, space.drift, space.drift_interval, space.drift_interval_seconds) == (
        "none",
        "capture",
        "5m",
        300,
    )
    assert (project.policies, project.schemas, project.ignore) == ([], [], [])


def test_overlay_trailing_slash_is_dropped():
    project = parse_project("spaces:\n  x:\n    overlay: a/b/\n    environment: dev\n")
    assert project.spaces["x"].overlay == "a/b"


def test_labels_are_kept():
    project = parse_project(MINIMAL + "    labels:\n      tier: gold\n")
    assert project.spaces["x"].labels == {"tier": "gold"}


def test_project_is_frozen():
    project = parse_project(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        project.policies = ["x"]  # type: ignore[misc]
    assert isinstance(project, ProjectConfig)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("spaces:\n  a:\n    overlay: x\n   environment: dev\n", "tributary.yaml:4:4"),
        ("spaces:\n  a:\n    overlay: x\n    environment: dev: x\n", "tributary.yaml:4:21"),
        ("spaces:\n\tx: 1\n", "tributary.yaml:2:1"),
    ],
)
def test_malformed_yaml_names_line_and_column(text, where):
    e = _bad(text)
    assert e.file == where
    assert e.message.startswith(f"{where}: malformed YAML: ")


def test_malformed_yaml_with_another_file_name():
    with pytest.raises(BadInput) as e:
        parse_project("a: [", file="sub/tributary.yaml")
    assert e.value.message.startswith("sub/tributary.yaml:1:5: malformed YAML")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_not_a_mapping(text):
    e = _bad(text)
    assert e.message == "tributary.yaml: expected a mapping with a 'spaces' key"


def test_missing_spaces():
    e = _bad("policies: []\n")
    assert (e.file, e.field) == ("tributary.yaml", "spaces")
    assert e.message == "tributary.yaml: spaces: Field required"


def test_empty_spaces():
    e = _bad("spaces: {}\n")
    assert e.field == "spaces"
    assert e.message == "tributary.yaml: spaces: at least one space is required"


def test_unknown_space_key_names_the_field_path():
    e = _bad(MINIMAL + "    aproval: none\n")
    assert e.field == "spaces.x.aproval"
    assert e.message == "tributary.yaml: spaces.x.aproval: Extra inputs are not permitted"


def test_unknown_top_level_key():
    e = _bad(MINIMAL + "policy: [p]\n")
    assert e.field == "policy"
    assert "Extra inputs are not permitted" in e.message


def test_missing_environment():
    e = _bad("spaces:\n  x:\n    overlay: o\n")
    assert e.field == "spaces.x.environment"
    assert e.message == "tributary.yaml: spaces.x.environment: Field required"


def test_several_errors_are_counted():
    e = _bad("spaces:\n  x:\n    overlay: o\n    aproval: none\n")
    assert e.message == "tributary.yaml: spaces.x.environment: Field required (and 1 more)"


def test_bad_approval_value():
    e = _bad(MINIMAL + "    approval: maybe\n")
    assert e.field == "spaces.x.approval"
    assert e.message == (
        "tributary.yaml: spaces.x.approval: Input should be 'none', 'acknowledge' or 'required'"
    )


def test_bad_drift_value():
    e = _bad(MINIMAL + "    drift: ignore\n")
    assert e.field == "spaces.x.drift"
    assert "'capture', 'revert' or 'report'" in e.message


def test_bad_drift_interval_names_file_and_field():
    e = _bad(MINIMAL + "    drift_interval: 5 minutes\n")
    assert e.file == "tributary.yaml"
    assert e.field == "spaces.x.drift_interval"
    assert "'5 minutes' is not a duration like 30s, 5m, 6h or 1d" in e.message
    assert e.message.startswith("tributary.yaml: spaces.x.drift_interval: ")


@pytest.mark.parametrize("overlay", ["../other", "a/../../b", "/etc", "a/.."])
def test_overlay_outside_the_repo(overlay):
    e = _bad(f"spaces:\n  x:\n    overlay: {overlay}\n    environment: dev\n")
    assert e.field == "spaces.x.overlay"
    assert e.message == "tributary.yaml: spaces.x.overlay: must be a path inside the repository"


def test_overlay_with_dots_in_a_name_is_fine():
    project = parse_project("spaces:\n  x:\n    overlay: a/..b/c.d\n    environment: dev\n")
    assert project.spaces["x"].overlay == "a/..b/c.d"


@pytest.mark.parametrize("name", ["Prod_East", "-x", "x-", "a_b"])
def test_invalid_space_name(name):
    e = _bad(f"spaces:\n  {name}:\n    overlay: o\n    environment: dev\n")
    assert e.field == "spaces"
    assert f"space name '{name}' is not a valid Kubernetes name" in e.message


def test_bad_ignore_path():
    e = _bad(MINIMAL + "ignore: ['a..b']\n")
    assert e.field == "ignore"
    assert "'a..b'" in e.message
    assert "cannot parse field path at position 1" in e.message


def test_good_ignore_paths():
    project = parse_project(MINIMAL + "ignore:\n  - spec.x\n  - metadata.labels['a/b']\n")
    assert project.ignore == ["spec.x", "metadata.labels['a/b']"]


# ---- bounds and hostile values (issue 10, holes 6 and 11) -----------------------------------


def _space(extra: str) -> str:
    return MINIMAL + "".join(f"    {line}\n" for line in extra.splitlines())


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0s", "'0s' is outside the allowed range 10s to 30d"),
        ("9s", "outside the allowed range 10s to 30d"),
        ("31d", "outside the allowed range 10s to 30d"),
        ("99999999999d", "'99999999999d' is longer than 366d"),
    ],
)
def test_drift_interval_out_of_range(value, fragment):
    e = _bad(_space(f"drift_interval: {value}"))
    assert e.field == "spaces.x.drift_interval"
    assert fragment in e.message
    assert e.exit_code == 2


def test_drift_interval_at_the_bounds_is_fine():
    assert parse_project(_space("drift_interval: 10s")).spaces["x"].drift_interval_seconds == 10
    assert parse_project(_space("drift_interval: 30d")).spaces["x"].drift_interval == "30d"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("0s", "outside the allowed range 1s to 1d"), ("2d", "outside the allowed range 1s to 1d")],
)
def test_debounce_out_of_range(value, fragment):
    e = _bad(MINIMAL + f"sync:\n  debounce: {value}\n")
    assert e.field == "sync.debounce"
    assert fragment in e.message


@pytest.mark.parametrize(
    "message",
    [
        "{space:>2000000000}",
        "{space.__class__}",
        "{space!r}",
        "{space[0]}",
        "{0}",
        "{}",
        "{other}",
        "Sync {space",
    ],
)
def test_sync_message_allows_only_a_bare_space_placeholder(message):
    e = _bad(MINIMAL + f"sync:\n  message: '{message}'\n")
    assert e.field == "sync.message"
    assert "may only use the placeholder {space}" in e.message


def test_sync_message_with_the_placeholder_is_fine():
    project = parse_project(MINIMAL + "sync:\n  message: 'Sync {space} ({{braces}})'\n")
    assert project.sync.message.format(space="s") == "Sync s ({braces})"


@pytest.mark.parametrize("name", ["x.lock", "a.b.lock"])
def test_a_space_name_that_cannot_be_a_branch_is_refused(name):
    e = _bad(f"spaces:\n  {name}:\n    overlay: o\n    environment: dev\n")
    assert e.field == "spaces"
    assert "cannot name a git branch" in e.message


def test_a_nul_in_the_overlay_is_bad_input():
    e = _bad('spaces:\n  x:\n    overlay: "o\\0x"\n    environment: dev\n')
    assert e.field == "spaces.x.overlay"
    assert "control character" in e.message


@pytest.mark.parametrize("base", ["--upload-pack=x", "a..b", "a\\tb"])
def test_a_sync_base_that_is_not_a_branch_is_refused(base):
    e = _bad(MINIMAL + f'sync:\n  base: "{base}"\n')
    assert e.field == "sync.base"


def test_an_alias_bomb_is_refused_before_it_expands():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    e = _bad(MINIMAL + "\n".join(lines) + "\n")
    assert e.file == CONFIG_FILE
    assert "expands to more than" in e.message


def test_allow_remote_defaults_to_off():
    assert parse_project(MINIMAL).spaces["x"].allow_remote is False
    assert parse_project(_space("allow_remote: true")).spaces["x"].allow_remote is True


def test_a_duplicate_key_is_refused_naming_the_line():
    e = _bad(MINIMAL + "    approval: required\n    approval: none\n")
    assert e.file == f"{CONFIG_FILE}:6:5"
    assert "duplicate key 'approval'" in e.message
