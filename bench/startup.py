"""Start-up time of the CLI: `truthprune --help` and `truthprune plugins --json` against a bare
`python -c pass`, in one run (median of --repeats), printed as seconds and as a ratio.

Why a benchmark and not a test: wall-clock time depends on the machine's load (a busy shared CPU
made a `< 1.5 s` test fail); tests/test_cli_startup.py asserts the cause of slowness instead
(no torch/transformers imported on these paths).

    python bench/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "truthprune --help": [sys.executable, "-m", "truthprune", "--help"],
    "truthprune plugins --json": [sys.executable, "-m", "truthprune", "plugins", "--json"],
    "import torch (reference)": [sys.executable, "-c", "import torch"],
}


def median_seconds(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    base = None
    for label, cmd in CASES.items():
        s = median_seconds(cmd, args.repeats)
        base = base or s
        print(f"{label:28s} {s:6.3f} s   {s / base:5.1f} x bare python")


if __name__ == "__main__":
    main()
