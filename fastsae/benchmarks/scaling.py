"""Scaling of the autoencoder cost+grad: samples, threads, peak memory, compile time.

``fastsae bench scaling`` (or ``python -m fastsae.benchmarks.scaling``) prints

- time against n_samples (1x, 2x, 4x, 8x) at the audio shape, normalised per
  sample (linear scaling: every ratio to the 1x time per sample near 1);
- 2 Numba threads against 1, at the UFLDL and audio shapes;
- the peak memory of one cost+grad call (fresh process, Linux peak-RSS
  counter reset before the call) against the input plus two
  (n_hidden x n_samples) activation buffers;

and ``fastsae bench compile`` times ``fastsae demo --fast`` twice in fresh
processes sharing an empty Numba cache folder: the first run compiles every
kernel the demo uses, the second loads them from the cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

from .cases import SAE_HYPER
from ._util import print_table, timeit


def _problem(v, h, m, dtype, seed=0):
    from fastsae.params import init_params
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (m, v)).astype(dtype)
    return init_params(v, h, random_state=seed), X


def _cost_grad(theta, X, v, h):
    from fastsae.kernels.sae import sae_cost_grad
    return lambda: sae_cost_grad(theta, X, v, h, **SAE_HYPER)


def run_samples(v=512, h=256, m=50_000, dtype=np.float32, repeat=5):
    """Time per sample at m/8, m/4, m/2, m: ratio to the smallest size's time per sample."""
    theta, X = _problem(v, h, m, dtype)
    rows, base = [], None
    for k in (1, 2, 4, 8):
        mk = m * k // 8
        Xk = np.ascontiguousarray(X[:mk])
        med, best = timeit(_cost_grad(theta, Xk, v, h), repeat=repeat)
        per = med / mk
        base = base or per
        rows.append([f"{k}x", mk, f"{med * 1e3:.1f}", f"{per * 1e9:.0f}", f"{per / base:.2f}"])
    print_table(f"Time against n_samples ({v} visible, {h} hidden, {np.dtype(dtype).name}); "
                f"linear scaling = ratio 1.00",
                ["size", "n_samples", "median ms", "ns / sample", "ratio to 1x"], rows)
    return rows


def run_threads(repeat=7):
    """2 Numba threads against 1, at the UFLDL and audio shapes."""
    n_max = numba.get_num_threads()
    if n_max < 2:
        print("\nThreads: Numba has 1 thread here; nothing to compare")
        return []
    rows = []
    for name, v, h, m, dt in [("ufldl", 64, 25, 10_000, np.float64),
                              ("audio", 512, 256, 50_000, np.float32)]:
        theta, X = _problem(v, h, m, dt)
        f = _cost_grad(theta, X, v, h)
        times = {}
        try:
            for n in (1, 2):
                numba.set_num_threads(n)
                times[n] = timeit(f, repeat=repeat)[0]
        finally:
            numba.set_num_threads(n_max)
        rows.append([f"{name} {v}x{h}x{m} {np.dtype(dt).name}", f"{times[1] * 1e3:.1f}",
                     f"{times[2] * 1e3:.1f}", f"{times[1] / times[2]:.2f}x"])
    print_table("Threads: cost+grad with 1 and 2 Numba threads",
                ["shape", "1 thread ms", "2 threads ms", "speed-up"], rows)
    return rows


_MEMORY_SCRIPT = r"""
import json, sys
import numpy as np
v, h, m, dtname, backend = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
import fastsae
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out
kw = dict(sparsity=0.01, beta=3.0, weight_decay=1e-4, backend=backend)
theta = fastsae.init_params(v, h, random_state=0)
small = np.random.default_rng(1).uniform(0, 1, (64, v)).astype(dtname)
fastsae.sae_cost_grad(theta, small, v, h, **kw)          # compile / load the kernels first
X = np.random.default_rng(0).uniform(0, 1, (m, v)).astype(dtname)
try:
    with open("/proc/self/clear_refs", "w") as f:        # reset the peak to the current RSS
        f.write("5")
except OSError:
    print(json.dumps({"unsupported": True}))
    sys.exit(0)
before = status()["VmRSS"]
cost, grad = fastsae.sae_cost_grad(theta, X, v, h, **kw)
after = status()
print(json.dumps({"before": before, "peak": after["VmHWM"], "input": X.nbytes}))
"""


def measure_peak_memory(v, h, m, dtype, backend="numba"):
    """Extra resident memory (bytes) at the peak of one cost+grad call, in a fresh process.

    Returns a dict with ``extra`` (peak RSS minus RSS just before the call,
    the input already resident), ``input`` (bytes of X) and ``budget``
    (two n_hidden x n_samples buffers plus 10 % of input and buffers);
    None where the kernel's peak-RSS counter cannot be reset (not Linux).
    """
    if not os.path.exists("/proc/self/clear_refs"):
        return None                         # not Linux; also None where it cannot be written
    name = np.dtype(dtype).name
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(v), str(h), str(m), name,
                           backend], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r.get("unsupported"):
        return None
    buffers = 2 * h * m * np.dtype(dtype).itemsize
    return {"extra": r["peak"] - r["before"], "input": r["input"], "buffers": buffers,
            "budget": buffers + 0.1 * (r["input"] + buffers)}


def run_memory(shapes=None):
    shapes = shapes or [("audio", 512, 256, 50_000, np.float32),
                        ("ufldl", 64, 25, 10_000, np.float64)]
    rows = []
    for name, v, h, m, dt in shapes:
        for backend in ("numba", "numpy"):
            r = measure_peak_memory(v, h, m, dt, backend)
            if r is None:
                print("\nPeak memory: needs Linux's /proc/self/clear_refs; skipped")
                return []
            mb = 1 / 2 ** 20
            rows.append([f"{name} {v}x{h}x{m} {np.dtype(dt).name}", backend,
                         f"{r['input'] * mb:.1f}", f"{r['buffers'] * mb:.1f}",
                         f"{r['extra'] * mb:.1f}",
                         f"{(r['input'] + r['extra']) / (r['input'] + r['buffers']):.2f}"])
    print_table("Peak memory of one cost+grad call (fresh process; peak RSS above the RSS "
                "with the input loaded)",
                ["shape", "backend", "input MB", "2 activation buffers MB", "extra at peak MB",
                 "(input+extra)/(input+2 buffers)"], rows)
    return rows


def run_compile(timeout=900, top=15):
    """``fastsae demo --fast`` twice with an empty Numba cache: seconds of each run, and
    what each kernel's compilation cost in the first."""
    rows, kernels = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"))
        env.pop("FASTSAE_NO_CACHE", None)
        for k, run in enumerate(("first (empty cache: compiles)",
                                 "second (kernels from the cache)")):
            times = os.path.join(tmp, f"compile-{k}.json")
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "fastsae.benchmarks._compile_probe",
                                   os.path.join(tmp, "demo"), times], env=env,
                                  capture_output=True, text=True, timeout=timeout)
            seconds = time.perf_counter() - t
            if proc.returncode != 0:
                raise RuntimeError(f"fastsae demo failed:\n{proc.stderr[-2000:]}")
            work = _demo_total(os.path.join(tmp, "demo", "metrics.json"))
            with open(times) as f:
                compiled = json.load(f)
            if k == 0:
                kernels = compiled
            rows.append([run, f"{seconds:.1f}", f"{work:.1f}",
                         f"{sum(s for s, _ in compiled.values()):.1f}"])
    print_table("Compile time: `fastsae demo --fast` in a fresh process, twice, one Numba cache "
                "folder", ["run", "wall s (incl. Python start)", "demo's own clock s",
                           "compiling s (CPU)"], rows)
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])
    total = sum(s for s, _ in kernels.values()) or float("nan")
    which = (f"the {top} costliest of {len(ranked)}" if len(ranked) > top
             else f"all {len(ranked)} kernels")
    print_table(f"What the first run compiled ({which}; CPU s of the compiling thread, callees "
                "included)", ["kernel", "signatures", "s", "share"],
                [[name.removeprefix("fastsae."), n, f"{s:.2f}", f"{s / total:.0%}"]
                 for name, (s, n) in ranked[:top]])
    return rows


def _demo_total(path):
    with open(path) as f:
        return float(json.load(f).get("total_seconds", float("nan")))


def run(gemm_rates=None, quick=False):
    if quick:
        run_samples(m=10_000, repeat=3)
        run_threads(repeat=3)
        run_memory([("audio/5", 512, 256, 10_000, np.float32)])
    else:
        run_samples()
        run_threads()
        run_memory()


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
    if "--compile" in sys.argv:
        run_compile()
