"""The deployment checks carry the marker ``deploy`` (alone: ``pytest -m deploy``)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deploy: docker-compose.yml, the Dockerfile's steps, CI templates, dashboard"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.deploy)
