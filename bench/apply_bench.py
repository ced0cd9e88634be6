"""Publish-to-Ready latency on the warm sandbox (arrow 1 + 2).

`tributary publish --apply` as CI runs it, timed from the command's start until
every changed unit is Ready (the CLI waits for that), for 1 unit and for 50 units
in one space. Run: `.venv/bin/python bench/apply_bench.py`.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, cli, start, stop  # type: ignore[import-not-found]

from tests.support import make_repo


def repo_with(tmp: Path, units: int, tag: str) -> Path:
    repo = make_repo(tmp / tag, "messagewall")
    base = repo.work / "infra/claims/bench"
    base.mkdir(parents=True)
    names = []
    for i in range(units):
        name = f"{tag}-app{i:02d}"
        (base / f"{name}.yaml").write_text(
            "apiVersion: messagewall.demo/v1alpha1\nkind: ServerlessEventAppClaim\n"
            f"metadata:\n  name: {name}\n  namespace: default\n"
            "spec:\n  awsAccountId: '123456789012'\n  environment: dev\n"
            f"  resourcePrefix: {name}\n  lambdaMemory: 128\n  lambdaTimeout: 10\n"
        )
        names.append(f"{name}.yaml")
    (base / "kustomization.yaml").write_text("resources:\n" + "".join(f"  - {n}\n" for n in names))
    (repo.work / "tributary.yaml").write_text(
        f"spaces:\n  bench-{tag}:\n    overlay: infra/claims/bench\n    environment: dev\n"
        "policies: [platform/policies]\nschemas: [platform/crossplane/xrd]\n"
    )
    repo.commit(f"{units} units")
    return repo.work


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tributary-apply-bench-"))
    stack = start(tmp / ".tributary")
    env = stack.env
    figures: dict[str, object] = {}
    try:
        # warm-up: XRD installed, CRD established, caches hot
        cli(env, "publish", "--repo", str(repo_with(tmp, 1, "warm")), "--apply")
        one = []
        for i in range(5):
            work = repo_with(tmp, 1, f"one{i}")
            t = time.perf_counter()
            body = cli(env, "publish", "--repo", str(work), "--apply")
            one.append(time.perf_counter() - t)
            assert body["spaces"][0]["units"][0]["apply"]["state"] == "ready", body
        work = repo_with(tmp, 50, "fifty")
        t = time.perf_counter()
        body = cli(env, "publish", "--repo", str(work), "--apply")
        fifty = time.perf_counter() - t
        states = {u["apply"]["state"] for u in body["spaces"][0]["units"]}
        assert states == {"ready"}, states
        figures = {
            "publish_to_ready_1_unit_s": {"median": round(statistics.median(one), 3), "runs": 5},
            "publish_to_ready_50_units_s": round(fifty, 3),
            "per_unit_ms_at_50": round(fifty / 50 * 1000, 1),
        }
    finally:
        stop(stack)
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "apply.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
