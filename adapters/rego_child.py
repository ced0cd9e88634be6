"""The child process that evaluates a commit's Rego for ``adapters/rego.py``.

A repository's policies are hostile input: rego-cpp's ``opa.runtime()`` returns the
process environment (the worker's tokens and database URL), and a rule like
``count(numbers.range(1, 1e9))`` eats memory and time without end. So Rego runs
here, started with an empty environment and ``python -I``; the parent watches its
resident memory and its deadline and kills it when a request overruns either. It
imports only the standard library and regopy, so it starts in about 0.1 s, and it
serves one request per line for as long as the parent keeps it.

Request (one JSON line): ``{"modules": {path: text}, "data": {...}, "packages":
[...], "inputs": [object, ...]}``. Answer (one JSON line): ``{"results": [{"deny":
[...], "warn": [...]}, ...]}`` or ``{"error": "compile"|"eval", "message": ...,
"module": path-or-null}``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _strings(rego: Any, query: str) -> list[str]:
    out = rego.query(query)
    if not out.results or not out.results[0].expressions:
        return []  # undefined: the package has no such rule
    value = out.results[0].expressions[0]
    items = value if isinstance(value, list) else [value]
    return sorted(v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in items)


def _handle(request: dict[str, Any]) -> dict[str, Any]:
    from regopy import Interpreter, RegoError

    rego = Interpreter()
    for path, text in request["modules"].items():
        try:
            rego.add_module(path, text)
        except RegoError as e:
            return {"error": "compile", "message": str(e), "module": path}
    rego.add_data(request["data"])
    packages: list[str] = request["packages"]
    # Parsing is lazy: a first query surfaces syntax errors in every module.
    try:
        rego.set_input({})
        for package in packages:
            rego.query(f"data.{package}")
    except RegoError as e:
        return {"error": "compile", "message": str(e), "module": None}
    results = []
    try:
        for obj in request["inputs"]:
            rego.set_input(obj)
            deny: list[str] = []
            warn: list[str] = []
            for package in packages:
                deny.extend(_strings(rego, f"data.{package}.deny"))
                warn.extend(_strings(rego, f"data.{package}.warn"))
            results.append({"deny": deny, "warn": warn})
    except RegoError as e:
        return {"error": "eval", "message": str(e), "module": None}
    return {"results": results}


def main() -> None:
    # rego-cpp prints some errors to stdout: answers get a descriptor of their own,
    # and whatever the library prints goes nowhere.
    answers = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import regopy  # noqa: F401  (loaded once, before the first request)

    for line in sys.stdin.buffer:
        try:
            answer = _handle(json.loads(line))
        except MemoryError:
            answer = {"error": "memory", "message": "out of memory", "module": None}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    main()
