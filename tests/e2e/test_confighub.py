"""The loop closes with ConfigHub as the authority: ``tributary dev --authority`` pointing
at the contract fake of ConfigHub's REST API (tests/fakes/confighub.py), the token in
the worker's environment only."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.e2e.test_loop import close_the_loop
from tests.fakes.confighub import FakeConfigHub
from tests.support import git, make_repo


@pytest.fixture
def hub() -> Iterator[FakeConfigHub]:
    fake = FakeConfigHub(token="chk-e2e-secret-7f3a9c1d2b")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def confighub_stack(
    hub: FakeConfigHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    monkeypatch.setenv("CONFIGHUB_TOKEN", hub.token)  # the worker's and the CLI's environment
    s = start_stack(tmp_path / ".tributary", "--no-ui", "--authority", hub.url)
    yield s
    stop_stack(s)


def test_the_loop_closes_with_confighub_as_the_authority(
    confighub_stack: Stack, hub: FakeConfigHub, tmp_path: Path
) -> None:
    stack = confighub_stack
    assert stack.env["TRIBUTARY_AUTHORITY"] == hub.url
    assert "CONFIGHUB_TOKEN" not in stack.env  # never written to dev.env
    repo = make_repo(tmp_path, "messagewall")
    # The CLI's sync-pr must find the PR to open: a capture's own debounced sync would
    # otherwise open it first whenever this loaded machine takes 30 s between the two.
    config = repo.work / "tributary.yaml"
    config.write_text(config.read_text() + "sync:\n  debounce: 1h\n")
    git(repo.work, "commit", "-qam", "Sync PRs at most hourly")
    git(repo.work, "push", "-q", "origin", "main")
    close_the_loop(
        stack,
        repo,
        space="messagewall-dev-east",
        unit="messagewall-dev-east",
        plural="serverlesseventappclaims.messagewall.demo",
        namespace="default",
        patch={"spec": {"lambdaMemory": 512}, "metadata": {"annotations": {"owner": "team-a"}}},
        approve=False,
        changed_file="infra/claims/overlays/dev-east/kustomization.yaml",
    )

    # ConfigHub holds the unit and both revisions: Git's publish and the capture.
    unit = hub.unit_by_slug("messagewall-dev-east", "messagewall-dev-east")
    assert unit is not None
    revs = hub.revisions[unit["UnitID"]]
    assert [r["RevisionNum"] for r in revs] == [1, 2]
    assert revs[0]["Description"].startswith("CI: ")
    assert revs[1]["Description"].startswith("drift-capture")
    head = yaml.safe_load(base64.b64decode(unit["Data"]))
    assert head["spec"]["lambdaMemory"] == 512
    assert unit["Annotations"]["tributary.dev/live-revision"] == "2"
    assert unit["Annotations"]["tributary.dev/source"] == "drift-capture"
    # the token travelled only as the bearer header
    for method, path, _headers, body in hub.requests:
        assert hub.token not in path, (method, path)
        assert hub.token.encode() not in body, (method, path)
    logs = "".join(p.read_text(errors="replace") for p in (stack.data_dir).rglob("*.log"))
    assert hub.token not in logs
