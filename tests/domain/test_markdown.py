"""Untrusted values in PR bodies and commit messages (issue 10, hole 7)."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ValidationError

from activities.sync import _body, _message
from domain.apply import RecordApprovalInput
from domain.change import BulkSetInput, RollbackInput
from domain.drift import CaptureRequest
from domain.markdown import OneLine, cell, code, control_char, one_line
from domain.project import parse_project
from domain.sync import SyncRow

HOSTILE = "` | **Approved** <!--"


def _row(**kw: object) -> SyncRow:
    base: dict[str, object] = {
        "unit": "api",
        "path": "spec.lambdaMemory",
        "git": 128,
        "authority": 512,
        "revision": 2,
        "source": "drift-capture",
        "incident": "",
    }
    return SyncRow.model_validate({**base, **kw})


def _table_rows(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("| ")]


def test_cell_leaves_no_markdown_or_html_syntax() -> None:
    escaped = cell(HOSTILE + "\n[x](javascript:alert(1)) _y_ \u202e#")
    assert re.fullmatch(r"[A-Za-z0-9 .,/\-&#;]*", escaped)
    assert "|" not in escaped
    assert "<" not in escaped
    assert "\n" not in escaped


def test_code_shows_json() -> None:
    assert code("x") == "<code>&#34;x&#34;</code>"
    assert code(512) == "<code>512</code>"
    assert code(None) == "<code>&#8212;</code>"


def test_a_live_value_cannot_break_the_pr_table_or_hide_the_body() -> None:
    rows = [
        _row(authority=HOSTILE),
        _row(path='metadata.annotations["a|b"]', git=None, authority="x"),
        _row(unit="api", incident="INC-1 <!--"),
    ]

    body = _body("team-a", rows, [], ["infra/x.yaml: JSON-patch op /spec/a|b"])

    table = _table_rows(body)
    assert len(table) == 1 + len(rows)  # header + one line per row
    # An unescaped pipe would add cells: every row has exactly the header's 8 pipes.
    assert {line.count("|") for line in table} == {8}
    assert "<!--" not in body
    assert "**Approved**" not in body
    assert body.rstrip().endswith("</details>")  # the rest of the body is still there
    assert "<code>&#34;&#96; &#124; &#42;&#42;Approved&#42;&#42; &#60;&#33;--&#34;</code>" in body


def test_a_newline_in_an_incident_adds_no_trailer_to_the_commit() -> None:
    message = _message(
        "Sync team-a from the authority",
        [_row(incident="x\nCo-authored-by: Eve <eve@example.com>", path="a\nb")],
        [],
    )
    lines = message.splitlines()
    assert not any(line.startswith("Co-authored-by") for line in lines)
    assert "api r2 (drift-capture) [x\\nCo-authored-by: Eve <eve@example.com>]" in lines


def test_one_line_escapes_control_and_bidi_characters() -> None:
    assert one_line("a\r\nb\x1b[31m\u202ec") == "a\\r\\nb\\x1b[31m\\u202ec"
    assert one_line("plain \u2013 text \u2713") == "plain \u2013 text \u2713"


@pytest.mark.parametrize("value", ["x\ny", "x\ty", "x\x00", "a\u202eb", "a\u2028b", "\x1b[2J"])
def test_control_characters_are_found(value: str) -> None:
    assert control_char(value) is not None


def test_ordinary_text_has_no_control_characters() -> None:
    assert control_char("Dana Developer <dana@example.com> \u2013 INC-2026-1127 ✓") is None


def test_input_models_refuse_control_characters() -> None:
    class M(BaseModel):
        v: OneLine

    with pytest.raises(ValidationError, match="control character U\\+000A"):
        M(v="x\ny")
    with pytest.raises(ValidationError, match="incident"):
        CaptureRequest(incident="x\nCo-authored-by: e")
    with pytest.raises(ValidationError, match="tag"):
        CaptureRequest(tag="break\u202eglass")
    with pytest.raises(ValidationError, match="author"):
        BulkSetInput(spaces=["s"], assignments=[], message="m", author="a\nb")
    with pytest.raises(ValidationError, match="author"):
        RollbackInput(space="s", unit="u", to=1, author="a\rb")
    with pytest.raises(ValidationError, match="by"):
        RecordApprovalInput(space="s", unit="u", revision=1, by="a\nb", at="2026-01-01T00:00:00Z")
    assert CaptureRequest(tag="break-glass", incident="INC-7", by="dana").incident == "INC-7"


def test_sync_author_with_a_newline_is_refused_naming_file_and_field() -> None:
    text = (
        "spaces:\n  s:\n    overlay: o\n    environment: dev\n"
        'sync:\n  author: "Bot\\nCo-authored-by: Eve <eve@example.com>"\n'
    )
    from domain.errors import BadInput

    with pytest.raises(BadInput) as err:
        parse_project(text)
    assert err.value.message == (
        "tributary.yaml: sync.author: contains the control character U+000A"
    )
