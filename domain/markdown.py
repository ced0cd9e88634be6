"""Untrusted values inside PR bodies (Markdown) and commit messages (plain lines).

A PR body shows values that anyone with ``kubectl edit`` or a commit controls: live
claim values, annotation keys, incident ids. Markdown and HTML in them must stay
text — a ``|`` splits a table row, ``<!--`` hides the rest of the body, a newline in
a commit message starts a ``Co-authored-by:`` trailer. Escaping is by character
reference, which neither Markdown nor HTML parses as syntax, so the rendered PR
shows exactly the value.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator

# Characters that are never Markdown or HTML syntax in a table cell or list item.
_PLAIN = re.compile(r"[A-Za-z0-9 .,/-]")
_CONTROL_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def show(value: Any) -> str:
    """A value as one line of text: strings as they are, anything else as JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def cell(value: Any) -> str:
    """``value`` as Markdown text that renders exactly as the value, on one line.

    Safe in a table cell, a list item or a heading: every character that could be
    Markdown or HTML syntax (or a control character, or a bidi override) becomes a
    numeric character reference.
    """
    text = value if isinstance(value, str) else show(value)
    return "".join(ch if _PLAIN.fullmatch(ch) else f"&#{ord(ch)};" for ch in text)


def code(value: Any) -> str:
    """``value`` as inline code: shown as JSON (``"x"`` vs ``1``), escaped like ``cell``."""
    return f"<code>{cell('—' if value is None else json.dumps(value, ensure_ascii=False))}</code>"


def one_line(value: Any) -> str:
    """``value`` for a line of a commit message: control and format characters (line
    breaks, bidi overrides) become visible escapes, so no value starts a new line or
    a trailer."""
    text = value if isinstance(value, str) else show(value)
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _CONTROL_CATEGORIES
        else ch
        for ch in text
    )


def control_char(value: str) -> str | None:
    """The first control or format character in ``value`` as ``U+XXXX``, or None.

    Names, incidents, tags and authors end up in commit messages, PR bodies and
    terminal output; none of them has a use for such a character.
    """
    for ch in value:
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def refuse_control(value: str) -> str:
    """A pydantic ``AfterValidator``: a one-line value with no control characters."""
    bad = control_char(value)
    if bad:
        raise ValueError(f"contains the control character {bad}")
    return value


# One line of text with no control characters: names, incidents, tags and authors in
# workflow and activity inputs, whichever client sent them.
OneLine = Annotated[str, AfterValidator(refuse_control)]
