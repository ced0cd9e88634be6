"""One ``tributary dev`` stack for the whole corpus (started as a user starts it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack, start_stack, stop_stack


@pytest.fixture(scope="session")
def corpus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("corpus") / ".tributary", "--no-ui")
    yield s
    stop_stack(s)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/badinput/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.badinput)
