"""End to end: the CLI reads the authority through the worker, holding only Temporal's
address — a CLI whose TRIBUTARY_AUTHORITY is unusable reads exactly what the store holds."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Stack
from tests.support import AuthoringRepo, run_cli

UNIT = "messagewall-dev-east"


def test_reads_need_no_database(
    stack: Stack, repo: AuthoringRepo, space_suffix: str, tmp_path: Path
) -> None:
    space = f"messagewall-dev-east{space_suffix}"
    published = run_cli("publish", "--repo", repo.url, "--space", space, env=stack.env)
    assert published.code == 0, published.stderr
    # A URL no database answers at, in a directory without .tributary: any CLI path
    # that opened the store would fail (or create an SQLite file here).
    cli = {**stack.env, "TRIBUTARY_AUTHORITY": "postgresql://nobody:pw@127.0.0.1:1/none"}
    cwd = tmp_path / "ci-runner"
    cwd.mkdir()

    def read(*args: str) -> dict[str, object]:
        done = run_cli(*args, "--json", env=cli, cwd=cwd)
        assert done.code == 0, f"{args}: exit {done.code}: {done.stderr}"
        body: dict[str, object] = done.json
        return body

    store = stack.store()
    try:
        units = store.list_units(space)
        revisions = store.list_revisions(space, UNIT)
        head = store.get_revision(space, UNIT, units[0].head_revision)
        drift = store.list_drift(space)
        prs = store.list_prs(space)
    finally:
        store.close()
    assert head is not None

    assert read("units", space) == {
        "space": space,
        "units": [u.model_dump(mode="json") for u in units],
    }
    assert read("revisions", space, UNIT) == {
        "space": space,
        "unit": UNIT,
        "revisions": [r.model_dump(mode="json") for r in revisions],
    }
    assert read("show", space, UNIT) == {
        "unit": units[0].model_dump(mode="json"),
        "revision": head.model_dump(mode="json"),
    }
    status = read("drift", "status", space)
    assert [(u["space"], u["unit"]) for u in status["units"]] == [(space, UNIT)]  # type: ignore[attr-defined]
    assert status["units"][0]["state"] == (drift[0].state if drift else "unknown")  # type: ignore[index]
    assert read("prs", space) == {"prs": [p.model_dump(mode="json") for p in prs]}
    assert read("space", "show", space)["space"] == space
    assert read("delete", space, UNIT, "--dry-run")["revision"] == head.number
    # Errors keep their type and exit code.
    missing = run_cli("show", space, "no-such-unit", "--json", env=cli, cwd=cwd)
    assert missing.code == 2
    assert missing.json["error"]["type"] == "NotFound"
    assert missing.json["error"]["message"] == f"unit {space}/no-such-unit does not exist"
    assert not (cwd / ".tributary").exists()
