"""The whole sandbox in one process: the Kubernetes API peer, moto, the Crossplane stand-in.

    python -m sandbox --kube-port 0 --aws-port 0 \\
        --kubeconfig /tmp/sandbox/kubeconfig --ready-file /tmp/sandbox/ready.json

Once everything serves, the ready file appears (atomically: a reader never sees half of it)::

    {"kube_url": "http://127.0.0.1:41231", "aws_endpoint": "http://127.0.0.1:37121",
     "kubeconfig": "/tmp/sandbox/kubeconfig"}

Ports 0 pick free ones; the ready file has the real ones. Runs until SIGTERM or SIGINT, then
stops everything and exits 0 (the ready file is removed: it would no longer be true). All
state is in memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sandbox.crossplane import CrossplaneStandIn
from sandbox.kubeapi import KubeApiPeerThread
from sandbox.moto_server import MotoServer

log = logging.getLogger("sandbox")


def write_ready_file(path: Path, content: dict[str, str]) -> None:
    """Write then rename: rename is atomic within a directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # One line per HTTP request from the peer, moto or the clients would drown the rest.
    for noisy in ("aiohttp.access", "werkzeug", "botocore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Serve the Kubernetes API peer, moto and the Crossplane stand-in "
        "until SIGTERM/SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--kube-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--aws-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="written for the peer")
    parser.add_argument("--ready-file", type=Path, required=True, help="written when ready")
    args = parser.parse_args(argv)
    _logging()

    # Handlers first: a signal during startup must still end in a clean stop.
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)

    peer, moto = KubeApiPeerThread(), MotoServer(args.host, args.aws_port)
    crossplane: CrossplaneStandIn | None = None
    ready_file: Path = args.ready_file
    try:
        kube_url = peer.start(args.host, args.kube_port)
        kubeconfig = peer.peer.write_kubeconfig(args.kubeconfig).resolve()
        aws_endpoint = moto.start()
        crossplane = CrossplaneStandIn(kubeconfig, aws_endpoint)
        crossplane.start()
        if not stopping.is_set():
            write_ready_file(
                ready_file,
                {"kube_url": kube_url, "aws_endpoint": aws_endpoint, "kubeconfig": str(kubeconfig)},
            )
            log.info("sandbox ready: KUBECONFIG=%s AWS_ENDPOINT_URL=%s", kubeconfig, aws_endpoint)
        stopping.wait()
    except Exception as error:
        log.error("sandbox failed: %s", error)
        return 1
    finally:
        ready_file.unlink(missing_ok=True)
        if crossplane is not None:
            crossplane.stop()
        moto.stop()
        peer.stop()
        log.info("sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
