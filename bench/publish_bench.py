"""Publish benchmark on a warm embedded stack (issue: walking skeleton).

Measures wall time of `tributary publish` exactly as CI runs it (a CLI process
against a running `tributary dev` stack), per-unit cost, and the worker's RSS:

  1. the 4 reference overlays (message wall): first publish, a commit that changes
     all four, and a no-op re-run;
  2. 20 spaces x 10 units: first publish and a commit that changes every unit.

Run: `make bench` (or `.venv/bin/python bench/publish_bench.py [--repeat N]`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, ProcessSampler, start, stop  # type: ignore[import-not-found]

from tests.support import git, make_repo, run_cli, set_patch_value

OVERLAYS = ["dev-east", "dev-west", "prod-east", "prod-west"]


def timed_publish(env: dict[str, str], repo: str, *extra: str) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run_cli("publish", "--repo", repo, "--json", *extra, env=env, timeout=600)
    elapsed = time.perf_counter() - start
    if result.code != 0:
        raise RuntimeError(f"publish failed ({result.code}): {result.stderr}")
    return elapsed, result.json


def count(body: Any, action: str) -> int:
    return sum(1 for s in body["spaces"] for u in s["units"] if u["action"] == action)


def big_repo(tmp: Path, spaces: int, units: int) -> Path:
    """An authoring repo with `spaces` overlays of `units` claims each."""
    repo = make_repo(tmp, "messagewall")
    base = repo.work / "infra/claims/bulk-base"
    base.mkdir(parents=True)
    claims = []
    for i in range(units):
        name = f"app{i:02d}"
        (base / f"{name}.yaml").write_text(
            "apiVersion: messagewall.demo/v1alpha1\n"
            "kind: ServerlessEventAppClaim\n"
            f"metadata:\n  name: {name}\n  namespace: default\n"
            "spec:\n  awsAccountId: '123456789012'\n  environment: dev\n"
            f"  resourcePrefix: {name}\n  lambdaMemory: 128\n  lambdaTimeout: 10\n"
        )
        claims.append(f"{name}.yaml")
    (base / "kustomization.yaml").write_text("resources:\n" + "".join(f"  - {c}\n" for c in claims))
    config = ["spaces:"]
    for s in range(spaces):
        overlay = repo.work / f"infra/claims/bulk/s{s:02d}"
        overlay.mkdir(parents=True)
        (overlay / "kustomization.yaml").write_text(
            f"resources:\n  - ../../bulk-base\nnamePrefix: s{s:02d}-\n"
            "labels:\n  - pairs:\n      environment: dev\n    includeSelectors: false\n"
        )
        config += [
            f"  bulk-{s:02d}:",
            f"    overlay: infra/claims/bulk/s{s:02d}",
            "    environment: dev",
        ]
    config += ["policies: [platform/policies]", "schemas: [platform/crossplane/xrd]"]
    (repo.work / "tributary.yaml").write_text("\n".join(config) + "\n")
    repo.commit("20 x 10")
    return repo.work


def bump_all(work: Path) -> None:
    base = work / "infra/claims/bulk-base"
    for f in base.glob("app*.yaml"):
        f.write_text(f.read_text().replace("lambdaMemory: 128", "lambdaMemory: 256"))
    git(work, "commit", "-qam", "all: 256 MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    stack = start(tmp / ".tributary")
    env = stack.env
    sampler = ProcessSampler(stack.procs["worker"].pid)
    sampler.start()
    figures: dict[str, object] = {}
    try:
        # Warm-up: a throwaway publish so imports, caches and connections are hot.
        warm = make_repo(tmp / "warm", "messagewall", space_suffix="-warm")
        timed_publish(env, str(warm.work))

        first, changed, noop = [], [], []
        for i in range(args.repeat):
            repo = make_repo(tmp / f"ref{i}", "messagewall", space_suffix=f"-r{i}")
            t, body = timed_publish(env, str(repo.work))
            assert count(body, "published") == 4
            first.append(t)
            for o in OVERLAYS:
                path = f"infra/claims/overlays/{o}/kustomization.yaml"
                repo.edit(path, lambda s: set_patch_value(s, "/spec/lambdaTimeout", "45"))
            repo.commit("all: 45 s")
            t, body = timed_publish(env, str(repo.work))
            assert count(body, "published") == 4
            changed.append(t)
            t, body = timed_publish(env, str(repo.work))
            assert count(body, "unchanged") == 4
            noop.append(t)
        figures["reference_4_overlays"] = {
            "first_publish_s": round(statistics.median(first), 3),
            "changed_publish_s": round(statistics.median(changed), 3),
            "noop_publish_s": round(statistics.median(noop), 3),
            "per_unit_ms": round(statistics.median(changed) / 4 * 1000, 1),
            "runs": args.repeat,
        }

        work = big_repo(tmp / "big", 20, 10)
        t_first, body = timed_publish(env, str(work))
        assert count(body, "published") == 200, body
        bump_all(work)
        t_change, body = timed_publish(env, str(work))
        assert count(body, "published") == 200
        t_noop, body = timed_publish(env, str(work))
        assert count(body, "unchanged") == 200
        figures["spaces_20_x_units_10"] = {
            "first_publish_s": round(t_first, 3),
            "changed_publish_s": round(t_change, 3),
            "noop_publish_s": round(t_noop, 3),
            "per_unit_ms": round(t_change / 200 * 1000, 1),
        }
    finally:
        figures["worker"] = sampler.finish()
        stop(stack)
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "publish.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
