"""``make stress``: the workflow and end-to-end tests, many times, under a CPU hog.

Races between a workflow's end and the requests that meet it show up when the
machine is slow; this runs the tests that exercise them ``--runs`` times (20 by
default) while one busy-looping process per core competes for the CPU, and lists
every failure by test id at the end (also written to ``.tributary/stress.json``).
Not part of CI: it takes hours. Exit status 1 when anything failed.

    make stress                      # 20 runs
    make stress STRESS_RUNS=1        # one run, to see it work
    make stress STRESS_TESTS=tests   # the whole suite, as CI runs it
    .venv/bin/python tests/stress.py --runs 5 --hogs 1 -- -k lifecycle
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/workflows", "tests/e2e"]
# what `make test` runs the suite with: two processes, a file's tests in one of them
PYTEST = ["-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile"]
HOG = "while True: pass"


def failures(junit: Path) -> list[str]:
    """Test ids of the failed and errored tests in a JUnit XML report."""
    if not junit.exists():
        return ["<no report: pytest did not finish>"]
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            module = (case.get("classname") or "").replace(".", "/")
            out.append(f"{module}.py::{case.get('name')}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="how many times (default 20)")
    parser.add_argument(
        "--hogs", type=int, default=os.cpu_count() or 1, help="busy processes (default: cores)"
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=TESTS,
        metavar="PATH",
        help="what to run (default: " + " ".join(TESTS) + "); `tests` for the whole suite",
    )
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest options")
    args = parser.parse_args()
    extra = [a for a in args.pytest_args if a != "--"]
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.DEVNULL)
        for _ in range(args.hogs)
    ]
    failed: Counter[str] = Counter()
    runs: list[dict[str, object]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
            for n in range(1, args.runs + 1):
                junit = Path(tmp) / f"run-{n}.xml"
                started = time.monotonic()
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        *PYTEST,
                        f"--junitxml={junit}",
                        *args.tests,
                        *extra,
                    ],
                    cwd=ROOT,
                    check=False,
                )
                ids = failures(junit) if done.returncode != 0 else []
                if done.returncode != 0 and not ids:
                    ids = [f"<pytest exit {done.returncode}>"]
                failed.update(ids)
                seconds = round(time.monotonic() - started)
                runs.append({"run": n, "seconds": seconds, "failed": ids})
                print(
                    f"== stress run {n}/{args.runs}: {len(ids)} failed in {seconds} s"
                    + "".join(f"\n   {i}" for i in ids),
                    flush=True,
                )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    total = sum(failed.values())
    print(f"\n== stress: {args.runs} runs under {args.hogs} busy processes, {total} failures")
    for test_id, count in failed.most_common():
        print(f"   {count:3d}x {test_id}")
    report = ROOT / ".tributary" / "stress.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps({"runs": runs, "failures": dict(failed)}, indent=2) + "\n")
    print(f"   report: {report.relative_to(ROOT)}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
