"""Time the offline plan of a stack: median of several runs, with the machine written down.

Usage: .venv/bin/python benchmarks/plan_bench.py [--stack pilot] [--runs 7]
Each run is a fresh process (`swarmstack plan`), as a user would run it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", default="pilot")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "swarmstack"
    times: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(
                [str(exe), "plan", args.stack, "--out", out],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - start)
    print(f"swarmstack plan {args.stack}: {args.runs} runs")
    print(
        f"  median {statistics.median(times):.2f} s  min {min(times):.2f} s  max {max(times):.2f} s"
    )
    print(f"  machine: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
