"""Canary: secrets planted in the worker's environment never leave it.

The dev stack's worker runs with canary values in ``GITHUB_TOKEN``,
``AWS_SECRET_ACCESS_KEY``, ``CONFIGHUB_TOKEN`` and the database password (PostgreSQL
on 127.0.0.1:5432 accepts any password under trust auth, so it sits in
``TRIBUTARY_AUTHORITY`` for real, in a fresh schema). The demo loop and corpus cases
run against it; then every workflow history (raw payload and failure bytes), every
log under the data directory, every authority row (revisions, PR bodies, drift
records, spaces, units) and every CLI output is scanned: zero hits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from authority import tables as t
from tests.badinput.corpus import Case, all_cases, prepare
from tests.conftest import PG_URL
from tests.e2e.conftest import Stack, start_stack, stop_stack
from tests.support import CliResult, run_cli

pytestmark = pytest.mark.canary

TOKEN = uuid.uuid4().hex[:12]
CANARIES = {
    "GITHUB_TOKEN": f"ghcanary{TOKEN}gh",
    "CONFIGHUB_TOKEN": f"chcanary{TOKEN}ch",
    "TRIBUTARY_SANDBOX_AWS_SECRET": f"awscanary{TOKEN}aws",  # the worker's AWS_SECRET_ACCESS_KEY
    "database password": f"dbcanary{TOKEN}db",
}
# Corpus cases that reach the worker. (Those about secrets pasted into a repo URL are
# refused by the CLI itself, with canaries of their own: the test pastes ours below.)
CORPUS = (
    "config-unknown-field",
    "schema-violation",
    "rego-does-not-compile",
    "publish-unknown-commit-remote",
    "set-identity-metadata-name",
    "h1-policy-reads-runtime-env",  # a repo policy marshals opa.runtime().env
)


@dataclass
class Scan:
    hits: list[str] = field(default_factory=list)
    scope: dict[str, int] = field(default_factory=dict)

    def look(self, where: str, blob: bytes | str, kind: str) -> None:
        data = blob.encode() if isinstance(blob, str) else blob
        self.scope[kind] = self.scope.get(kind, 0) + 1
        self.scope[f"{kind} bytes"] = self.scope.get(f"{kind} bytes", 0) + len(data)
        for name, value in CANARIES.items():
            if value.encode() in data:
                self.hits.append(f"{name} in {where}")


def test_the_scan_finds_a_planted_canary() -> None:
    """The scanner itself can fail: a canary in a blob is a hit."""
    scan = Scan()
    scan.look("blob", b"prefix " + CANARIES["GITHUB_TOKEN"].encode() + b" suffix", "blob")
    scan.look("clean", b"nothing here", "blob")
    assert scan.hits == ["GITHUB_TOKEN in blob"]


@pytest.fixture(scope="module")
def canary_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    schema = f"canary_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    base = PG_URL.replace("postgresql://postgres@", "postgresql://postgres:{pw}@")
    assert "{pw}" in base, f"TRIBUTARY_TEST_PG must be postgresql://postgres@…: {PG_URL}"
    authority = base.format(pw=CANARIES["database password"]) + (
        f"?options=-csearch_path%3D{schema}"
    )
    env = {k: v for k, v in CANARIES.items() if k.isupper()}
    stack = start_stack(
        tmp_path_factory.mktemp("canary") / ".tributary",
        "--no-ui",
        "--authority",
        authority,
        env=env,
    )
    try:
        assert stack.env["AWS_SECRET_ACCESS_KEY"] == CANARIES["TRIBUTARY_SANDBOX_AWS_SECRET"]
        assert CANARIES["database password"] in stack.env["TRIBUTARY_AUTHORITY"]
        yield stack, authority
    finally:
        stop_stack(stack)
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


async def test_no_canary_leaves_the_worker(canary_stack: tuple[Stack, str], tmp_path: Path) -> None:
    stack, authority = canary_stack
    scan = Scan()
    cases = {c.id: c for c in all_cases()}

    # The CLI processes get the stack's environment (with the database URL); the
    # tokens live only in the worker.
    def demo() -> list[tuple[str, CliResult]]:
        done = run_cli(
            "demo", "--data-dir", str(tmp_path / "demo"), "--json", env=stack.env, timeout=400
        )
        assert done.code == 0, done.stderr
        return [("demo output", done)]

    def corpus_case(case_id: str) -> list[tuple[str, CliResult]]:
        case: Case = cases[case_id]
        prepared = prepare(case, tmp_path / case_id)
        for cmd in case.setup:
            run_cli(*[prepared.fill(a) for a in cmd], env=stack.env)
        result = run_cli(*[prepared.fill(a) for a in case.command], "--json", env=stack.env)
        assert result.code == case.exit, f"{case_id}: {result.stderr}"
        return [(f"{case_id} output", result)]

    def policy_for_real() -> list[tuple[str, CliResult]]:
        """The policy that marshals opa.runtime().env, published for real this time: its
        warning lands in a revision (scanned below), the history and the output."""
        leak = cases["h1-policy-reads-runtime-env"]
        prepared = prepare(leak, tmp_path / "h1-for-real")
        real = run_cli(
            *[prepared.fill(a) for a in leak.command if a != "--dry-run"], "--json", env=stack.env
        )
        assert real.code == 0, real.stderr
        warnings = [w for s in real.json["spaces"] for u in s["units"] for w in u["warnings"]]
        assert warnings, "the policy did not run"
        return [("h1 policy published output", real)]

    def pasted_urls() -> list[tuple[str, CliResult]]:
        """A secret pasted into a repo URL is refused without being echoed."""
        out = []
        for url in (
            f"https://example.com/o/r.git?access_token={CANARIES['GITHUB_TOKEN']}",
            f"https://ci:{CANARIES['database password']}@example.com/o/r.git",
        ):
            pasted = run_cli("publish", "--repo", url, "--json", env=stack.env)
            assert pasted.code == 2, pasted.stderr
            out.append(("pasted URL output", pasted))
        return out

    # Independent stories (spaces of their own), side by side: the demo alone is a
    # dozen CLI processes, and one after another they outlast the test's timeout on a
    # loaded machine.
    stories = [demo, policy_for_real, pasted_urls, *(partial(corpus_case, c) for c in CORPUS)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        for outputs in pool.map(lambda story: story(), stories):
            for where, result in outputs:
                scan.look(where, result.stdout + result.stderr, "CLI output")

    client = await Client.connect(
        stack.env["TEMPORAL_ADDRESS"],
        namespace=stack.env["TEMPORAL_NAMESPACE"],
        data_converter=pydantic_data_converter,
    )
    async for wf in client.list_workflows():
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        raw = History(events=history.events).SerializeToString()
        scan.look(f"history of {wf.id}", raw, "workflow history")
        scan.scope["history events"] = scan.scope.get("history events", 0) + len(history.events)

    for log in sorted(stack.data_dir.rglob("*.log")):
        scan.look(str(log.relative_to(stack.data_dir)), log.read_bytes(), "log file")

    engine = sqlalchemy.create_engine(authority.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            for table in (t.revisions, t.pull_requests, t.drift_status, t.units, t.spaces):
                for row in conn.execute(sqlalchemy.select(table)).mappings():
                    kind = {"revisions": "revision", "pull_requests": "PR body"}.get(
                        table.name, f"{table.name} row"
                    )
                    scan.look(f"{table.name} {dict(row).get('id', '')}", repr(dict(row)), kind)
    finally:
        engine.dispose()

    # Files that hold secrets (dev.env has the database URL, the kubeconfig a token,
    # the logs and databases whatever the worker saw) are readable by their owner
    # only, and so is the data directory (the repo cache inside keeps git's modes).
    assert stack.data_dir.stat().st_mode & 0o077 == 0
    readable = [
        f"{p.name} {oct(p.stat().st_mode & 0o777)}"
        for p in sorted(stack.data_dir.iterdir())
        if p.stat().st_mode & 0o077
    ]
    assert readable == []
    assert (stack.data_dir / "dev.env").stat().st_mode & 0o777 == 0o600

    print(f"canary scan scope: {scan.scope}; hits: {len(scan.hits)}")
    assert scan.scope.get("workflow history", 0) >= 20
    assert scan.scope.get("revision", 0) >= 8
    assert scan.scope.get("PR body", 0) >= 1
    assert scan.scope.get("log file", 0) >= 3
    assert scan.hits == []
