"""Live edit → sync PR branch pushed (arrow 3 + 4), with a 1 s debounce.

A `kubectl edit`-style patch of the live claim; timed until the branch
`tributary/sync/<space>` on the Git remote has new content. Run:
`.venv/bin/python bench/sync_bench.py [--runs 10]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, cli, start, stop, summary  # type: ignore[import-not-found]

from adapters.kube import KubeClient
from tests.support import make_repo

SPACE = "messagewall-dev-east"
BRANCH = f"tributary/sync/{SPACE}"


def remote_head(remote: Path) -> str:
    out = subprocess.run(
        ["git", "ls-remote", str(remote), f"refs/heads/{BRANCH}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[0] if out.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tributary-sync-bench-"))
    stack = start(tmp / ".tributary")
    env = stack.env
    try:
        repo = make_repo(tmp, "messagewall")
        config = yaml.safe_load(repo.read("tributary.yaml"))
        config["sync"] = {"debounce": "1s"}
        repo.write("tributary.yaml", yaml.safe_dump(config, sort_keys=False))
        repo.commit("sync PRs after 1 s of quiet")
        cli(env, "publish", "--repo", repo.url, "--ref", "main", "--space", SPACE, "--apply")
        kube = KubeClient(env["KUBECONFIG"])
        res = kube.resource("messagewall.demo/v1alpha1", "ServerlessEventAppClaim")
        assert res is not None
        latencies = []
        for i in range(args.runs):
            before = remote_head(repo.remote)
            t = time.perf_counter()
            kube.request(
                "PATCH",
                res.path(SPACE, "default"),
                query=[("fieldManager", "kubectl-edit")],
                body={"spec": {"lambdaMemory": 256 + 64 * i}},
                content_type="application/merge-patch+json",
            )
            while remote_head(repo.remote) == before:
                if time.perf_counter() - t > 120:
                    raise RuntimeError("no push in 120 s")
                time.sleep(0.05)
            latencies.append(time.perf_counter() - t)
            time.sleep(2)  # the sync apply and the next checks settle
        kube.close()
        figures = {"live_edit_to_pr_branch_pushed_s": summary(latencies), "debounce_s": 1}
    finally:
        stop(stack)
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "sync.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
