"""Print the benchmark ratio tables: ``python -m bench [--quick] [area ...]``."""
from __future__ import annotations

import argparse
import importlib

import numpy as np

from ._util import gemm_rate, machine_summary

AREAS = ["sae", "conv"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("areas", nargs="*", choices=AREAS + [[]], help="what to run (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    args = p.parse_args(argv)
    print(machine_summary())
    rates = {np.dtype(dt): gemm_rate(dt) for dt in (np.float32, np.float64)}
    print("GEMM rate (2048^3, NumPy BLAS, all threads): "
          + ", ".join(f"{dt.name} {r:.0f} GFLOP/s" for dt, r in rates.items()))
    for area in args.areas or AREAS:
        importlib.import_module(f"bench.{area}").run(rates, quick=args.quick)


if __name__ == "__main__":
    main()
