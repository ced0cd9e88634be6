"""The sync push's remote errors go into workflow history: no credentials in them."""

from __future__ import annotations

import pytest

from activities.sync import _default_branch


def test_an_unreachable_remote_fails_without_its_credentials() -> None:
    with pytest.raises(RuntimeError) as e:
        _default_branch("https://ci:hunter2@127.0.0.1:9/app.git")
    assert str(e.value).startswith("cannot reach https://")
    assert "hunter2" not in str(e.value)
