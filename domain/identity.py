"""Who someone is: comparing identities, and how the CLI knows who runs it.

The rule (README, "Approvals and identity"): an identity is written as
``Name <email>``, ``email`` or a login (``dana``). Each form stands for a set of
keys, all lowercased with whitespace collapsed:

- ``Name <email>``: the name, the e-mail, and the e-mail's local part (for a
  GitHub no-reply address, ``123+dana@users.noreply.github.com``, the login);
- ``email``: the e-mail and its local part (the login as above);
- a login or a bare name: itself.

Two identities are the same person when they share an e-mail, or when a name or
login of one is a name, login or e-mail local part of the other. So ``dana``,
``dana@x.org`` and ``Dana <dana@x.org>`` are one person; ``dana@y.org`` and
``dana@x.org`` are not (two mailboxes). The rule errs towards "same" for
logins: for a four-eyes gate a false match only refuses an approval, while a
missed match would let an author approve their own change.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel

_ANGLE = re.compile(r"^(?P<name>[^<>]*)<(?P<email>[^<>]*)>\s*$")
_NOREPLY = re.compile(r"^(?:\d+\+)?(?P<login>[^@+]+)@users\.noreply\.github\.com$")

Assertion = Literal["env:TRIBUTARY_ACTOR", "ci:github", "ci:gitlab", "os-user", "flag"]


def _clean(text: str) -> str:
    return " ".join(text.split()).lower()


class Keys(BaseModel):
    """What an identity says about a person, lowercased, whitespace collapsed."""

    emails: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()  # display names and logins
    locals: frozenset[str] = frozenset()  # e-mail local parts and GitHub no-reply logins


def identity_keys(who: str) -> Keys:
    """The keys an identity stands for (all empty for an empty identity)."""
    text = who.strip()
    if not text:
        return Keys()
    m = _ANGLE.match(text)
    name, address = (m.group("name"), m.group("email")) if m else ("", text)
    names: set[str] = {_clean(name)} if _clean(name) else set()
    emails: set[str] = set()
    locals_: set[str] = set()
    address = _clean(address)
    if "@" in address:
        emails.add(address)
        locals_.add(address.partition("@")[0])
        noreply = _NOREPLY.match(address)
        if noreply:
            locals_.add(noreply.group("login"))
    elif address:
        names.add(address)
    return Keys(emails=frozenset(emails), names=frozenset(names), locals=frozenset(locals_))


def same_identity(a: str, b: str) -> bool:
    """``a`` and ``b`` name the same person (see the module's rule)."""
    ka, kb = identity_keys(a), identity_keys(b)
    return bool(
        ka.emails & kb.emails
        or ka.names & (kb.names | kb.locals)
        or kb.names & (ka.names | ka.locals)
    )


class Actor(BaseModel):
    """Who runs the CLI, and how we know it."""

    name: str
    asserted: Assertion


def actor_from_env(env: Mapping[str, str]) -> Actor:
    """The identity of the environment the CLI runs in, strongest source first.

    ``TRIBUTARY_ACTOR`` (set by whoever runs the CLI: a wrapper that authenticated
    the user, or a CI job), then the CI system's actor (GitHub Actions
    ``GITHUB_ACTOR``, GitLab ``GITLAB_USER_LOGIN``), then the OS user.
    """
    if env.get("TRIBUTARY_ACTOR", "").strip():
        return Actor(name=env["TRIBUTARY_ACTOR"].strip(), asserted="env:TRIBUTARY_ACTOR")
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_ACTOR", "").strip():
        return Actor(name=env["GITHUB_ACTOR"].strip(), asserted="ci:github")
    if env.get("GITLAB_CI") == "true" and env.get("GITLAB_USER_LOGIN", "").strip():
        return Actor(name=env["GITLAB_USER_LOGIN"].strip(), asserted="ci:gitlab")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = ""
    return Actor(name=user or "unknown", asserted="os-user")


def resolve_actor(by: str | None, env: Mapping[str, str]) -> Actor:
    """Who acts: ``--by`` when given, else the environment's identity.

    ``--by`` that names the environment's identity keeps the environment's
    assertion; any other ``--by`` is recorded as asserted by ``flag`` alone —
    it still works (CLI.md), and the record says how little it proves.
    """
    actor = actor_from_env(env)
    if by is None or not by.strip():
        return actor
    if same_identity(by, actor.name):
        return Actor(name=by.strip(), asserted=actor.asserted)
    return Actor(name=by.strip(), asserted="flag")
