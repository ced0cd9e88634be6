"""The ``tributary`` command line (contract: shared/CLI.md).

Every command takes ``--json`` and then prints exactly one JSON object on stdout;
progress and errors go to stderr. Exit codes: 0 done, 1 unexpected, 2 invalid
input, 3 denied by policy, 4 conflict, 5 waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from typing import NoReturn

from client import telemetry
from client.settings import Settings
from domain.errors import TributaryError
from domain.markdown import control_char
from domain.redact import redact, secret_values
from starter.commands import (
    apply,
    change,
    demo,
    dev,
    drift,
    publish,
    read,
    render,
    space,
    sync,
)
from starter.output import Output
from starter.runner import WorkflowFailed


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 — and keep the one-JSON-object promise under ``--json``."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            Output(as_json=True).error("Usage", f"{self.prog}: {message}")
            sys.exit(2)
        super().error(message)


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON object on stdout (for CI)",
    )
    parser = Parser(
        prog="tributary",
        description=(
            "Bidirectional GitOps for Crossplane Claims on durable Temporal workflows: "
            "publish (Git → authority), apply, drift capture and sync PR."
        ),
        epilog=(
            "Connection comes from the environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, "
            "TRIBUTARY_TASK_QUEUE, TRIBUTARY_AUTHORITY (see `tributary dev`). Exit codes: "
            "0 done, 1 unexpected failure, 2 invalid input, 3 denied by policy, "
            "4 conflict between Git and the authority, 5 waiting. Names, refs, tags, "
            "incidents and authors are one line: a control character in them exits 2. "
            "Errors never show credentials (URL passwords, tokens, secret variables)."
        ),
        parents=[common],
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    dev.add_parser(sub, common)
    demo.add_parser(sub, common)
    p = sub.add_parser(
        "worker",
        parents=[common],
        help="run the worker alone (same as python worker.py); --check: is it healthy",
    )
    telemetry.add_worker_arguments(p)
    p.set_defaults(func=None)
    publish.add_parser(sub, common)
    read.add_parsers(sub, common)
    change.add_parsers(sub, common)
    apply.add_parsers(sub, common)
    drift.add_parsers(sub, common)
    sync.add_parsers(sub, common)
    space.add_parsers(sub, common)
    render.add_parser(sub, common)
    return parser


# Free text where a line break or a control character is meaningful content: the
# revision description, an approval comment, and YAML values of ``set``.
FREE_TEXT = frozenset({"message", "comment", "assignments"})


def refuse_control_characters(parser: Parser, args: argparse.Namespace) -> None:
    """Names, incidents, tags, authors, refs and paths are one line of text: they end
    up in commit messages, PR bodies and terminal output, where a newline could add a
    ``Co-authored-by:`` trailer. Refused here, before anything is started (exit 2)."""
    for dest, value in vars(args).items():
        if dest in FREE_TEXT:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and (bad := control_char(item)):
                parser.error(
                    f"argument {dest.replace('_', '-')}: {item!r} contains "
                    f"the control character {bad}"
                )


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_control_characters(parser, args)
    if args.command == "worker":
        import worker

        worker.main(args)
        return
    out = Output(as_json=getattr(args, "json", False))
    try:
        code = asyncio.run(_dispatch(args, out))
        sys.stdout.flush()
    except BrokenPipeError:  # `tributary show … | head`: the reader left, not an error
        code = 0
    sys.stderr.flush()
    # The Temporal core runtime keeps native threads that can call into Python
    # while the interpreter finalizes, which sometimes aborts the process
    # (SIGABRT) after all output was written. Our exit code is a contract, so
    # leave without finalization once everything is flushed.
    os._exit(code)


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    try:
        code: int = await args.func(args, out, Settings())
    except WorkflowFailed as e:
        out.error(e.kind, e.message)
        return e.exit_code
    except TributaryError as e:
        out.error(type(e).__name__, e.message)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as e:
        if os.environ.get("TRIBUTARY_DEBUG"):
            print(redact(traceback.format_exc(), secret_values(os.environ)), file=sys.stderr)
        out.error("Unexpected", f"{type(e).__name__}: {e}")
        return 1
    return code
