"""domain/identity.py: one rule for "the same person", and who runs the CLI."""

from __future__ import annotations

import getpass

import pytest

from domain.identity import actor_from_env, identity_keys, resolve_actor, same_identity


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("dana", "Dana <dana@x.org>"),
        ("dana@x.org", "Dana <dana@x.org>"),
        ("DANA@X.ORG", "dana"),
        ("Dana  Developer", "dana developer <dd@x.org>"),
        ("dana", "Dana <12345+dana@users.noreply.github.com>"),
        ("dana", "dana@users.noreply.github.com"),
    ],
)
def test_same_person(a: str, b: str) -> None:
    assert same_identity(a, b)
    assert same_identity(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("olu", "Dana <dana@x.org>"),
        ("dana@y.org", "Dana Smith <dana@x.org>"),
        ("", "Dana <dana@x.org>"),
        ("", ""),
        ("danae", "dana"),
    ],
)
def test_different_people(a: str, b: str) -> None:
    assert not same_identity(a, b)


def test_keys_of_the_three_forms() -> None:
    keys = identity_keys("Dana  Smith <Dana@X.org>")
    assert (keys.names, keys.emails, keys.locals) == ({"dana smith"}, {"dana@x.org"}, {"dana"})
    keys = identity_keys("dana@x.org")
    assert (keys.names, keys.emails, keys.locals) == (set(), {"dana@x.org"}, {"dana"})
    keys = identity_keys(" Dana ")
    assert (keys.names, keys.emails, keys.locals) == ({"dana"}, set(), set())


def test_actor_prefers_tributary_actor_then_ci_then_os_user() -> None:
    env = {
        "TRIBUTARY_ACTOR": "dana@x.org",
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "olu",
    }
    assert actor_from_env(env).model_dump() == {
        "name": "dana@x.org",
        "asserted": "env:TRIBUTARY_ACTOR",
    }
    del env["TRIBUTARY_ACTOR"]
    assert actor_from_env(env).model_dump() == {"name": "olu", "asserted": "ci:github"}
    gitlab = {"GITLAB_CI": "true", "GITLAB_USER_LOGIN": "kim"}
    assert actor_from_env(gitlab).model_dump() == {"name": "kim", "asserted": "ci:gitlab"}
    # GITHUB_ACTOR outside GitHub Actions proves nothing: it is just a variable.
    assert actor_from_env({"GITHUB_ACTOR": "olu"}).model_dump() == {
        "name": getpass.getuser(),
        "asserted": "os-user",
    }


def test_by_matching_the_environment_keeps_its_assertion() -> None:
    env = {"TRIBUTARY_ACTOR": "olu@x.org"}
    assert resolve_actor("Olu <olu@x.org>", env).model_dump() == {
        "name": "Olu <olu@x.org>",
        "asserted": "env:TRIBUTARY_ACTOR",
    }


def test_by_naming_someone_else_is_asserted_by_the_flag_only() -> None:
    env = {"TRIBUTARY_ACTOR": "olu@x.org"}
    assert resolve_actor("dana", env).model_dump() == {"name": "dana", "asserted": "flag"}


def test_no_by_is_the_environment() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "olu"}
    assert resolve_actor(None, env).model_dump() == {"name": "olu", "asserted": "ci:github"}
