"""Benchmark ratio tables: ``fastsae bench [--quick] [area ...]`` (or ``python -m fastsae.benchmarks``).

Each area times fastsae's Numba kernels side by side, in one process, with
the NumPy reference, the machine's BLAS on the same products (the floor),
and PyTorch CPU where it is installed (an optional dependency); ``lbfgs``
times the optimizer's own work per iteration (its direction). ``scaling``
measures time against the number of examples, threads and peak memory;
``compile`` (not part of the default run) times ``fastsae demo --fast`` with an
empty and then a warm Numba cache.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util

import numpy as np

from ._util import gemm_rate, machine_summary


def _sae(rates, quick):
    importlib.import_module("fastsae.benchmarks.sae").run(rates, quick=quick)


def _conv(rates, quick):
    importlib.import_module("fastsae.benchmarks.conv").run(rates, quick=quick)


def _softmax(rates, quick):
    importlib.import_module("fastsae.benchmarks.softmax").run(rates, quick=quick)


def _convae(rates, quick):
    importlib.import_module("fastsae.benchmarks.convae").run(quick=quick)


def _whitening(rates, quick):
    print("\nPCA whitening, fit + transform, fastsae vs scikit-learn")
    if importlib.util.find_spec("sklearn") is None:
        print("scikit-learn is not installed (pip install \".[bench]\"): skipped")
        return
    args = ["--rows", "10000", "--repeat", "3", "--no-full"] if quick else ["--no-full"]
    importlib.import_module("fastsae.benchmarks.whitening").main(args)


def _lbfgs(rates, quick):
    importlib.import_module("fastsae.benchmarks.lbfgs").run(quick=quick)


def _scaling(rates, quick):
    importlib.import_module("fastsae.benchmarks.scaling").run(quick=quick)


def _compile(rates, quick):
    importlib.import_module("fastsae.benchmarks.scaling").run_compile()


AREAS = {"sae": _sae, "conv": _conv, "softmax": _softmax, "convae": _convae,
         "lbfgs": _lbfgs, "whitening": _whitening, "scaling": _scaling, "compile": _compile}


def main(argv=None):
    p = argparse.ArgumentParser(prog="fastsae bench", description=__doc__)
    p.add_argument("areas", nargs="*", metavar="area",
                   help=f"what to run, any of {', '.join(AREAS)} (default: all but compile)")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    args = p.parse_args(argv)
    unknown = [a for a in args.areas if a not in AREAS]
    if unknown:
        p.error(f"unknown area(s) {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    print(machine_summary())
    rates = {np.dtype(dt): gemm_rate(dt) for dt in (np.float32, np.float64)}
    print("GEMM rate (2048^3, NumPy BLAS, all threads): "
          + ", ".join(f"{dt.name} {r:.0f} GFLOP/s" for dt, r in rates.items()))
    for area in args.areas or [a for a in AREAS if a != "compile"]:
        AREAS[area](rates, args.quick)


if __name__ == "__main__":
    main()
