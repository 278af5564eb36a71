#!/usr/bin/env python3
"""How fast mhgen answers, beside the CLI a user would otherwise run (TRL's `trl sft`).

    bash bench/setup_peer.sh            # once: TRL in .bench-peer/
    python bench/bench_compile.py       # median wall time of N runs each, and the ratio

All commands run as fresh processes, as a user runs them, from the repository root.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--peer", default=str(ROOT / ".bench-peer" / "bin" / "trl"))
    args = parser.parse_args()
    mhgen = [sys.executable, "-m", "mhgen"]
    out = ROOT / ".bench-compile-out"
    rows = {
        "mhgen compile etc/training.json": mhgen + ["compile", "etc/training.json", "-o", str(out)],
        "mhgen validate etc/training.json": mhgen + ["validate", "etc/training.json"],
        "mhgen --help": mhgen + ["--help"],
    }
    peer = Path(args.peer)
    if peer.exists():
        rows["trl sft --help (peer)"] = [str(peer), "sft", "--help"]
    results = {name: wall(command, args.runs) for name, command in rows.items()}
    shutil.rmtree(out, ignore_errors=True)
    print(f"median of {args.runs} runs, wall seconds")
    for name, seconds in results.items():
        print(f"  {name:36} {seconds:7.3f}")
    if "trl sft --help (peer)" in results:
        ratio = results["trl sft --help (peer)"] / results["mhgen compile etc/training.json"]
        print(f"  the peer's --help takes {ratio:.0f}x as long as a whole mhgen compile")
    else:
        print(f"  (no peer at {peer}: run bash bench/setup_peer.sh)")


if __name__ == "__main__":
    main()
