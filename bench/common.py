"""Shared by the benchmark scripts: a warm stack, CLI runs, RSS/CPU sampling."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from starter.stack import DevStack, StackConfig  # noqa: E402
from tests.support import free_port, run_cli  # noqa: E402

CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def stack_config(data_dir: Path, *, ui: bool = False) -> StackConfig:
    return StackConfig(
        data_dir=data_dir,
        temporal_port=free_port(),
        ui_port=free_port(),
        kube_port=free_port(),
        aws_port=free_port(),
        ui=ui,
    )


def start(data_dir: Path) -> DevStack:
    import asyncio

    stack = DevStack(stack_config(data_dir))
    asyncio.run(stack.start(lambda m: print(m, file=sys.stderr)))
    return stack


def stop(stack: DevStack) -> None:
    import asyncio

    asyncio.run(stack.stop())


def cli(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,), timeout: float = 1800) -> Any:
    result = run_cli(*args, "--json", env=env, timeout=timeout)
    if result.code not in ok:
        raise RuntimeError(f"tributary {' '.join(args)} exited {result.code}: {result.stderr}")
    return result.json


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


class ProcessSampler(threading.Thread):
    """RSS every 100 ms and CPU time of one process (from /proc)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.rss: list[int] = []
        self.stop_event = threading.Event()
        self.cpu_start = self.cpu_seconds()
        self.t_start = time.monotonic()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.rss.append(int(line.split()[1]) * 1024)
            except OSError:
                return
            time.sleep(0.1)

    def finish(self) -> dict[str, float]:
        self.stop_event.set()
        self.join()
        elapsed = time.monotonic() - self.t_start
        cpu = self.cpu_seconds() - self.cpu_start
        return {
            "rss_mb_max": round(max(self.rss) / 2**20, 1),
            "rss_mb_median": round(statistics.median(self.rss) / 2**20, 1),
            "cpu_percent_of_one_core": round(100 * cpu / elapsed, 2),
            "seconds": round(elapsed, 1),
        }
