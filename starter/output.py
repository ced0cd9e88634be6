"""What the CLI prints: one JSON object with ``--json``, readable tables without."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from domain.redact import redact, secret_values


class Output:
    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def progress(self, message: str) -> None:
        """Progress goes to stderr, so stdout stays parseable in every mode."""
        print(redact(message, secret_values(os.environ)), file=sys.stderr, flush=True)

    def line(self, message: str = "") -> None:
        if not self.as_json:
            print(message, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.as_json:
            return
        print(render_table(headers, rows), flush=True)

    def result(self, payload: BaseModel | dict[str, Any]) -> None:
        """The single JSON object of ``--json`` mode."""
        if not self.as_json:
            return
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        print(json.dumps(data, indent=2, sort_keys=False, default=str), flush=True)

    def error(self, kind: str, message: str, **extra: Any) -> None:
        # Every error leaves through here: whatever raised it (a database driver, git,
        # an environment check), no credential of this process reaches the CI log.
        message = redact(message, secret_values(os.environ))
        print(f"error: {message}", file=sys.stderr, flush=True)
        if self.as_json:
            print(json.dumps({"error": {"type": kind, "message": message, **extra}}), flush=True)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*[h.upper() for h in headers])]
    lines.extend(fmt.format(*row).rstrip() for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
