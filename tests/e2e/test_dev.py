"""``tributary dev``: up, usable, and down with no orphan processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.support import HANG, REPO_ROOT, free_port, run_cli


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(p) for p in text}
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _wait_gone(pids: set[int], seconds: float = HANG) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = {p for p in pids if _alive(p)}
        if not alive:
            return set()
        time.sleep(0.2)
    return {p for p in pids if _alive(p)}


def test_dev_prints_endpoints_and_stops_cleanly(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / ".tributary")
    children = _children(stack.proc.pid)
    assert len(children) == 3  # the sandbox, Temporal and the worker
    assert (
        stack.env["TRIBUTARY_AUTHORITY"] == f"sqlite:///{tmp_path / '.tributary' / 'authority.db'}"
    )
    assert stack.env["TRIBUTARY_UI_URL"].startswith("http://127.0.0.1:")

    code = stop_stack(stack)
    output = stack.proc.stdout.read() if stack.proc.stdout else ""

    assert code == 0, output
    assert "Web UI" in output
    assert "Kubernetes" in output
    assert "export KUBECONFIG=" in output
    assert "export TEMPORAL_ADDRESS=" in output
    assert _wait_gone(children) == set()
    assert not (tmp_path / ".tributary" / "dev.env").exists()


def test_killed_dev_leaves_no_orphans(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / ".tributary", "--no-ui")
    children = _children(stack.proc.pid)

    stack.proc.send_signal(signal.SIGKILL)
    stack.proc.wait()

    assert _wait_gone(children) == set()


def test_port_in_use_is_bad_input(stack: Stack, tmp_path: Path) -> None:
    port = stack.env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1]
    result = run_cli(
        "dev",
        "--data-dir",
        str(tmp_path),
        "--temporal-port",
        port,
        "--ui-port",
        str(free_port()),
        env={},
        cwd=REPO_ROOT,
    )
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


def test_dev_on_postgresql_authority(tmp_path: Path) -> None:
    """The same stack with the authority on the PostgreSQL server of this machine."""
    import uuid

    import sqlalchemy

    from tests.conftest import PG_URL
    from tests.support import make_repo

    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    stack = start_stack(tmp_path / ".tributary", "--no-ui", "--authority", url)
    try:
        repo = make_repo(tmp_path, "orders")
        result = run_cli("publish", "--repo", str(repo.work), "--json", env=stack.env)
        assert result.code == 0, result.stderr
        units = run_cli("units", "orders-production", "--json", env=stack.env)
        assert sorted(u["slug"] for u in units.json["units"]) == [
            "production-orders-db",
            "production-orders-queue",
        ]
    finally:
        stop_stack(stack)
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
