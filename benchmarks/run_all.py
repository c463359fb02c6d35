"""Run the benchmarks in sequence, each in its own process, and print their Markdown tables.

Quick settings (about 19 minutes on 2 idle CPU cores, 10 of them the method zoo, 2.5 low-light); ``--full`` uses each script's
own, longer defaults.

    python benchmarks/run_all.py [--full] [--only augment,simclr,moco,scaling,gpu,diagnostics,app,zoo,lowlight,probes]
    make bench
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script, quick arguments
BENCHMARKS = {
    "augment": ("augment.py", ["--reps", "10"]),
    "simclr": ("simclr_vs_lightly.py", ["--subset", "10000", "--epochs", "3", "--breakdown-reps", "3"]),
    "moco": ("moco_vs_lightly.py", ["--subset", "10000", "--epochs", "3"]),
    "scaling": ("scaling.py", ["--reps", "2"]),
    "gpu": ("gpu.py", []),  # on a machine without CUDA it says so and exits 0
    "diagnostics": ("diagnostics_overhead.py", ["--cycles-digits", "20", "--cycles-fashion", "6"]),
    "app": ("app_refresh.py", ["--reps", "2"]),
    "zoo": ("zoo.py", ["--budget", "60"]),
    "lowlight": ("lowlight.py", ["--budget", "60"]),
    "probes": ("probes.py", ["--digits-epochs", "30", "--fashion-epochs", "2", "--draws", "3", "--episodes", "300"]),
}


def run(name: str, full: bool) -> int:
    script, quick = BENCHMARKS[name]
    cmd = [sys.executable, str(HERE / script)] + ([] if full else quick)
    print(f"\n<!-- {' '.join(cmd[1:])} -->", flush=True)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, env=env)
    print(f"<!-- {name}: exit {rc}, {time.perf_counter() - t0:.0f} s -->", flush=True)
    return rc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="each script's own (longer) defaults")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ", ".join(BENCHMARKS))
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    failed = [n for n in names if run(n, args.full) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
