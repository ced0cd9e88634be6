"""``tributary dev``: the embedded stack in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from client import telemetry
from client.settings import Settings
from starter.output import Output
from starter.stack import DevStack, StackConfig

if TYPE_CHECKING:
    from starter.commands import Subparsers


def add_stack_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, default=Path(".tributary"), help="state (default .tributary)"
    )
    p.add_argument("--ip", default="127.0.0.1", help="address every service binds to")
    p.add_argument("--temporal-port", type=int, default=7233)
    p.add_argument("--ui-port", type=int, default=8233)
    p.add_argument("--no-ui", action="store_true", help="run Temporal without the Web UI")
    p.add_argument("--kube-port", type=int, default=6443, help="sandbox Kubernetes API port")
    p.add_argument("--aws-port", type=int, default=4566, help="sandbox AWS (moto) port")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the previous run's authority and workflow history (the sandbox starts empty)",
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="no sandbox: apply to the cluster of $KUBECONFIG and the AWS of your environment",
    )
    p.add_argument(
        "--authority",
        default="",
        metavar="URL",
        help="authority store (default: SQLite under --data-dir; e.g. postgresql://…)",
    )
    p.add_argument(
        "--metrics-bind",
        default=None,
        metavar="HOST:PORT",
        help="the worker's Prometheus metrics (default "
        f"{telemetry.DEFAULT_METRICS_BIND}, env TRIBUTARY_METRICS_BIND; empty or 'off' disables)",
    )
    p.add_argument(
        "--log-format",
        default=None,
        choices=telemetry.LOG_FORMATS,
        help="the worker's log lines: text (default) or json (env TRIBUTARY_LOG_FORMAT)",
    )


def stack_config(args: argparse.Namespace) -> StackConfig:
    options = telemetry.WorkerOptions.from_args(args)
    return StackConfig(
        data_dir=args.data_dir,
        ip=args.ip,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        ui=not args.no_ui,
        authority=args.authority,
        sandbox=not args.no_sandbox,
        keep=args.keep,
        worker=not getattr(args, "no_worker", False),
        kube_port=args.kube_port,
        aws_port=args.aws_port,
        metrics_bind=options.metrics_bind,
        log_format=options.log_format,
    )


def add_parser(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dev",
        parents=[common],
        help="run the embedded stack (Temporal + Web UI, worker, authority) until Ctrl-C",
    )
    add_stack_arguments(p)
    p.add_argument(
        "--no-worker",
        action="store_true",
        help="start no worker: run `tributary worker` yourself with the printed environment",
    )
    p.set_defaults(func=run)


def announce(stack: DevStack, out: Output) -> None:
    env = stack.env
    out.line("Tributary dev stack is up.")
    out.line(f"  Temporal      {env['TEMPORAL_ADDRESS']} (namespace {env['TEMPORAL_NAMESPACE']})")
    if "TRIBUTARY_UI_URL" in env:
        out.line(f"  Web UI        {env['TRIBUTARY_UI_URL']}")
    out.line(f"  Authority     {_redact_db(env['TRIBUTARY_AUTHORITY'])}")
    out.line(f"  Task queue    {env['TRIBUTARY_TASK_QUEUE']}")
    if stack.cfg.metrics_bind:
        where = "the worker" if stack.cfg.worker else "your worker (--no-worker)"
        out.line(f"  Metrics       {telemetry.metrics_url(stack.cfg.metrics_bind)} ({where})")
    if "KUBECONFIG" in env:
        out.line(
            f"  Kubernetes    {stack.sandbox.get('kube_url', '')} (KUBECONFIG={env['KUBECONFIG']})"
        )
        out.line(f"  AWS (moto)    {env['AWS_ENDPOINT_URL']}")
        out.line("  Crossplane    stand-in: claims become AWS resources in moto")
    out.line(f"  Logs          {stack.data_dir}/{{temporal,worker,sandbox}}.log")
    out.line("")
    out.line(f"In another shell:  source {stack.env_file}   (or paste:)")
    for key, value in env.items():
        out.line(f"export {key}={value}")
    out.line("")
    out.line("Ctrl-C stops everything.")


async def run(args: argparse.Namespace, out: Output, settings: Settings) -> int:
    stack = DevStack(stack_config(args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stack.start(out.progress)
    try:
        announce(stack, out)
        out.result(
            {
                "state": "ready",
                "env": stack.env,
                "env_file": str(stack.env_file),
                "metrics": telemetry.metrics_url(stack.cfg.metrics_bind)
                if stack.cfg.metrics_bind
                else "",
            }
        )
        reason = await stack.wait(stop, out.progress)
    finally:
        out.progress("stopping")
        await stack.stop()
    if reason != "stopped":
        out.error("Crashed", reason)
        return 1
    return 0


def _redact_db(url: str) -> str:
    """A database URL without its password, for the console."""
    from sqlalchemy.engine import make_url  # only `dev` needs SQLAlchemy here

    return make_url(url).render_as_string(hide_password=True) if "://" in url else url
