"""GPU benchmark of the ``"cuda"`` backend: run the GPU tests, then time the sparse
autoencoder cost+grad and whole L-BFGS training against cuBLAS, PyTorch and the CPU.

Usage (on a machine with an NVIDIA GPU, numba-cuda and CuPy; PyTorch optional)::

    python -m bench.gpu --out gpu_bench.txt
    python bench/gpu.py --out gpu_bench.txt

1. ``pytest -q tests/test_cuda.py -m "not slow"`` (on the GPU; ``--skip-tests`` skips).
2. Cost+grad at (1024 visible, 1024 hidden, 100,000 samples) and at the audio shape
   (512, 256, 50,000), float32, X already on the device, against

   a. the same five matrix products alone in cuBLAS (CuPy), preallocated: the floor;
   b. PyTorch CUDA with a hand-written gradient (theta in, gradient out, like ours);
   c. the Numba CPU backend (one call).

   Also shown: the per-call copies alone (theta to the device, gradient back),
   which the floor does not pay. Every GPU time is taken after a device
   synchronisation (the cost functions return host gradients, so they
   synchronise themselves).
3. The other kernels with no GEMM floor of their own, X on the device, against the
   Numba CPU backend (one call): a shard's statistics (``sae_shard_stats``, Dask
   training) at the audio shape, the convolutional autoencoder and the two-layer
   convolutional network at the shapes of ``fastsae bench convae``.
4. Whole 400-iteration L-BFGS training (``SparseAutoencoder.fit``) at the UFLDL
   shape (64, 25, 10,000, float64) and the audio shape (float32), cuda vs numba
   CPU. A CPU run that would pass ``--cpu-train-budget`` seconds is stopped and
   its total extrapolated from its time per iteration (marked "est.").

The table (with the GPU's name) is printed and, with ``--out``, written to a file
after every section, so that a run cut short keeps what it measured. The target
is to finish in under ~4 minutes on an H100. ``--smoke`` runs tiny shapes (it works
on numba's CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``, to check this script).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):          # python bench/gpu.py
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("CUPY_TF32", "0")  # float32 means float32 (no TF32) in cuBLAS, as in torch

import numpy as np  # noqa: E402

from fastsae.benchmarks._util import machine_summary  # noqa: E402
from fastsae.benchmarks.cases import SAE_HYPER, sae_flops  # noqa: E402

COST_SHAPES = [("1024x1024", 1024, 1024, 100_000, np.float32),
               ("audio", 512, 256, 50_000, np.float32)]
TRAIN_SHAPES = [("UFLDL", 64, 25, 10_000, np.float64),
                ("audio", 512, 256, 50_000, np.float32)]
SMOKE_COST_SHAPES = [("smoke", 9, 5, 40, np.float32)]
SMOKE_TRAIN_SHAPES = [("smoke", 9, 5, 40, np.float64)]


class Report:
    """Collects the printed tables and rewrites ``--out`` after each section."""

    def __init__(self, path):
        self.path = path
        self.lines = []

    def add(self, text):
        print(text, flush=True)
        self.lines.append(text)
        if self.path:
            Path(self.path).write_text("\n".join(self.lines) + "\n")

    def table(self, title, header, rows):
        widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
        out = [f"\n{title}", "  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
               "  ".join("-" * w for w in widths)]
        out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
        self.add("\n".join(out))


def median_time(fn, reps, sync, warmup=1):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gpu_description(cuda):
    from fastsae.cuda._device import is_simulator, package_status
    if is_simulator():
        return "numba CUDA simulator (no GPU)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    cc = ".".join(map(str, dev.compute_capability))
    free, total = cuda.current_context().get_memory_info()
    versions = []
    for mod in ("numba_cuda", "cupy", "torch"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            pass
    return (f"{name} (compute {cc}, {total / 2**30:.0f} GiB) | {', '.join(versions)} | "
            f"{package_status()}")


def torch_device(smoke):
    """(torch, device) for the PyTorch column: CUDA, or the CPU in a smoke run, or (None, None)."""
    try:
        import torch
    except Exception:
        return None, None
    if torch.cuda.is_available():
        return torch, "cuda"
    return (torch, "cpu") if smoke else (None, None)


def sae_problem(v, h, m, dtype, seed=0):
    from fastsae import init_params
    rng = np.random.default_rng(seed)
    X = rng.random((m, v), dtype=np.float32 if dtype == np.float32 else np.float64)
    return init_params(v, h, random_state=seed), np.ascontiguousarray(X, dtype=dtype)


def torch_sae(torch, X, v, h, device):
    """The objective in PyTorch with a hand-written gradient (no autograd), X on ``device``;
    like fastsae it takes the float64 theta from the host and returns a float64 host gradient."""
    dt = torch.float32 if X.dtype == np.float32 else torch.float64
    Xt = torch.from_numpy(X).to(device)
    rho, beta, lam = SAE_HYPER["sparsity"], SAE_HYPER["beta"], SAE_HYPER["weight_decay"]
    m, hv = X.shape[0], h * v

    def run(theta):
        th = torch.from_numpy(theta).to(device)
        W1 = th[:hv].view(h, v).to(dt)
        W2 = th[hv:2 * hv].view(v, h).to(dt)
        b1 = th[2 * hv:2 * hv + h].to(dt)
        b2 = th[2 * hv + h:].to(dt)
        A2 = torch.sigmoid(torch.addmm(b1, Xt, W1.T))
        A3 = torch.sigmoid(torch.addmm(b2, A2, W2.T))
        diff = A3 - Xt
        rho_hat = A2.double().mean(0)
        kl = torch.sum(rho * torch.log(rho / rho_hat)
                       + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat)))
        cost = (0.5 * (diff.double() ** 2).sum() / m
                + 0.5 * lam * ((W1.double() ** 2).sum() + (W2.double() ** 2).sum()) + beta * kl)
        d3 = diff * A3 * (1 - A3)
        s = (beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))).to(dt)
        d2 = (d3 @ W2 + s) * A2 * (1 - A2)
        g = torch.cat([(d2.T @ Xt / m + lam * W1).ravel(), (d3.T @ A2 / m + lam * W2).ravel(),
                       d2.sum(0) / m, d3.sum(0) / m]).double()
        return float(cost), g.cpu().numpy()
    return run


def five_gemms(cuda, mm, Xd, v, h, eng):
    """The five products of one evaluation alone, preallocated, with the engine fastsae uses."""
    m, dt = Xd.shape[0], np.dtype(Xd.dtype)
    rng = np.random.default_rng(1)
    W1 = cuda.to_device(rng.standard_normal((h, v)).astype(dt) * 0.05)
    W2 = cuda.to_device(rng.standard_normal((v, h)).astype(dt) * 0.05)
    bufs = [cuda.device_array(s, dt) for s in ((m, h), (m, v), (v, h), (m, h), (h, v))]
    A2, Z3, gW2, D, gW1 = (mm.operand(b, eng) for b in bufs)
    X, W1, W2 = (mm.operand(a, eng) for a in (Xd, W1, W2))
    # defined inputs for the products that read the outputs of others
    with mm.stream_scope(eng):
        mm.gemm(eng, False, True, 1.0, X, W1, 0.0, A2)
        mm.gemm(eng, False, True, 1.0, A2, W2, 0.0, Z3)
        mm.gemm(eng, False, False, 1.0, Z3, W2, 0.0, D)

    def run():
        with mm.stream_scope(eng):
            mm.gemm(eng, False, True, 1.0, X, W1, 0.0, A2)        # A2 = X W1ᵀ
            mm.gemm(eng, False, True, 1.0, A2, W2, 0.0, Z3)       # Z3 = A2 W2ᵀ
            mm.gemm(eng, True, False, 1.0, Z3, A2, 0.0, gW2)      # gW2 = δ3ᵀ A2
            mm.gemm(eng, False, False, 1.0, Z3, W2, 0.0, D)       # D = δ3 W2
            mm.gemm(eng, True, False, 1.0, D, X, 0.0, gW1)        # gW1 = δ2ᵀ X
    return run


def run_tests(report, timeout):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py",
           "-m", "not slow"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out = (r.stdout + r.stderr).strip().splitlines()
        summary = next((line for line in reversed(out) if " passed" in line or " failed" in line
                        or " error" in line), out[-1] if out else "(no output)")
        ok = r.returncode == 0
    except subprocess.TimeoutExpired:
        ok, summary, out = False, f"timed out after {timeout} s", []
    report.add(f"\nGPU tests ({' '.join(cmd[2:])}): {'OK' if ok else 'FAILED'}: {summary} "
               f"[{time.perf_counter() - t0:.1f} s]")
    if not ok:
        report.add("\n".join(out[-40:]))
    return ok


def run_cost_grad(report, shapes, reps, smoke=False):
    from numba import cuda

    import fastsae.cuda as fc
    from fastsae.cuda import _matmul as mm
    from fastsae.kernels import sae as numba_sae

    eng = fc.matmul_engine()
    torch, tdev = torch_device(smoke)
    tsync = (lambda: torch.cuda.synchronize()) if tdev == "cuda" else (lambda: None)
    rows = []
    for name, v, h, m, dtype in shapes:
        theta, X = sae_problem(v, h, m, dtype)
        flops = sae_flops(v, h, m)
        Xd = fc.to_device(X)

        def ours():
            return fc.sae_cost_grad(theta, Xd, v, h, **SAE_HYPER)

        t_ours = median_time(ours, reps, cuda.synchronize)
        c_ours, g_ours = ours()

        t_floor = median_time(five_gemms(cuda, mm, Xd, v, h, eng), reps, cuda.synchronize)

        theta_dev = cuda.device_array(theta.size, np.float64)
        out_dev = cuda.device_array(theta.size + 4, np.float64)

        def copies():
            theta_dev.copy_to_device(theta)
            out_dev.copy_to_host()
        t_copy = median_time(copies, reps, cuda.synchronize)

        t_torch = dev = None
        if torch is not None:
            torch.backends.cuda.matmul.allow_tf32 = False
            fn = torch_sae(torch, X, v, h, tdev)
            t_torch = median_time(lambda: fn(theta), reps, tsync)
            c_t, g_t = fn(theta)
            dev = np.abs(g_t - g_ours).max() / np.abs(g_t).max()
            del fn
            if tdev == "cuda":
                torch.cuda.empty_cache()

        numba_sae.sae_cost_grad(theta, X[:64], v, h, **SAE_HYPER)           # compile
        t0 = time.perf_counter()
        c_cpu, g_cpu = numba_sae.sae_cost_grad(theta, X, v, h, **SAE_HYPER)
        t_cpu = time.perf_counter() - t0
        dev_cpu = np.abs(g_cpu - g_ours).max() / np.abs(g_cpu).max()

        rows.append([
            f"{name} ({v}, {h}, {m:,}) {np.dtype(dtype).name}",
            f"{t_ours * 1e3:.2f}", f"{flops / t_ours / 1e12:.1f}",
            f"{t_floor * 1e3:.2f}", f"{t_ours / t_floor:.2f}",
            f"{t_copy * 1e3:.2f}", f"{(t_ours - t_copy) / t_floor:.2f}",
            "-" if t_torch is None else f"{t_torch * 1e3:.2f}",
            "-" if t_torch is None else f"{t_torch / t_ours:.2f}",
            f"{t_cpu * 1e3:.0f}", f"{t_cpu / t_ours:.1f}",
            f"{dev_cpu:.1e}" + ("" if dev is None else f" / {dev:.1e}"),
        ])
        Xd = None                    # free the device copy before the next shape
        fc.clear_workspace()
    floor_name = "cuBLAS (CuPy)" if eng == "cupy" else "numba kernel"
    report.table(
        f"Sparse autoencoder cost+grad, X on the device, median of {reps} (products: {eng}; "
        f"hyper-parameters {SAE_HYPER})",
        ["shape", "fastsae cuda ms", "TFLOP/s", f"5 GEMMs {floor_name} ms", "cuda / floor",
         "theta+grad copies ms", "(cuda - copies) / floor", f"PyTorch {tdev or 'CUDA'} ms", "torch / cuda",
         "Numba CPU ms (1 call)",
         "CPU / cuda", "max rel |Δgrad| vs CPU / torch"],
        rows)


def other_cases(smoke):
    """(kernel, shape label, cuda call, numba call, flops or None) for :func:`run_other_kernels`."""
    import fastsae.cuda as fc
    from fastsae.benchmarks import convae as bc
    from fastsae.kernels import convae as nb_convae, convnet as nb_convnet
    from fastsae.kernels import sae_stats as nb_stats

    cases = []
    v, h, m = (9, 5, 40) if smoke else (512, 256, 50_000)
    theta, X = sae_problem(v, h, m, np.float32)
    Xd = fc.to_device(X)
    cases.append(("sae_shard_stats", f"({v}, {h}, {m:,}) float32",
                  lambda: fc.sae_shard_stats(theta, Xd, v, h),
                  lambda: nb_stats.sae_shard_stats(theta, X, v, h), 6 * 2.0 * m * v * h))
    for name, K, ph, pw, N, C, H, W, dtype in (
            [("smoke", 3, 2, 2, 3, 1, 5, 6, np.float32)] if smoke else bc.CONVAE_CASES):
        th, Xc = bc.convae_problem(K, ph, pw, N, C, H, W, dtype)
        Xcd = fc.to_device(Xc)
        cases.append(("conv_ae_cost_grad",
                      f"{name}: {N} x {C}x{H}x{W}, {K} filters {ph}x{pw} {np.dtype(dtype).name}",
                      lambda th=th, Xcd=Xcd, K=K, ph=ph, pw=pw:
                          fc.conv_ae_cost_grad(th, Xcd, K, (ph, pw), **bc.HYPER),
                      lambda th=th, Xc=Xc, K=K, ph=ph, pw=pw:
                          nb_convae.conv_ae_cost_grad(th, Xc, K, (ph, pw), **bc.HYPER),
                      bc.convae_flops(K, ph, pw, N, C, H, W)))
    smoke_net = [dict(n_filters=2, patch_shape=(2, 2), pool_shape=(2, 2)),
                 dict(n_filters=2, patch_shape=(2, 2), n_pool_regions=(1, 1), pool="max")]
    for name, layers, N, shape, n_classes, dtype in (
            [("smoke", smoke_net, 3, (1, 7, 8), 2, np.float32)] if smoke else bc.NET_CASES):
        th, Xn, y = bc.net_problem(layers, N, shape, n_classes, dtype)
        Xnd = fc.to_device(Xn)
        kw = dict(weight_decay=1e-4)
        cases.append(("conv_net_cost_grad",
                      f"{name}: {N} x {'x'.join(map(str, shape))} {np.dtype(dtype).name}",
                      lambda th=th, Xnd=Xnd, y=y, layers=layers, k=n_classes:
                          fc.conv_net_cost_grad(th, Xnd, y, layers, k, **kw),
                      lambda th=th, Xn=Xn, y=y, layers=layers, k=n_classes:
                          nb_convnet.conv_net_cost_grad(th, Xn, y, layers, k, **kw), None))
    return cases


def run_other_kernels(report, reps, smoke=False):
    from numba import cuda

    import fastsae.cuda as fc

    rows = []
    for kernel, label, ours, cpu, flops in other_cases(smoke):
        t_ours = median_time(ours, reps, cuda.synchronize)
        got = ours()
        cpu()                                                # compile, warm up
        t0 = time.perf_counter()
        want = cpu()
        t_cpu = time.perf_counter() - t0
        g, w = (got[1], want[1]) if isinstance(got, tuple) else (got, want)
        rows.append([kernel, label, f"{t_ours * 1e3:.2f}",
                     "-" if flops is None else f"{flops / t_ours / 1e12:.2f}",
                     f"{t_cpu * 1e3:.0f}", f"{t_cpu / t_ours:.1f}",
                     f"{np.abs(g - w).max() / np.abs(w).max():.1e}"])
        fc.clear_workspace()
    report.table(
        f"Other kernels, X on the device, median of {reps} (products: {fc.matmul_engine()})",
        ["kernel", "shape", "fastsae cuda ms", "TFLOP/s", "Numba CPU ms (1 call)",
         "CPU / cuda", "max rel |Δ| vs CPU"],
        rows)


def run_training(report, shapes, max_iter, cpu_budget):
    from fastsae import SparseAutoencoder

    rows = []
    for name, v, h, m, dtype in shapes:
        _, X = sae_problem(v, h, m, dtype, seed=1)
        result = {}
        for backend in ("cuda", "numba"):
            t_start = time.perf_counter()
            budget = cpu_budget if backend == "numba" else None

            def stop_after_budget(iteration, theta, cost, t_start=t_start, budget=budget):
                if budget is not None and time.perf_counter() - t_start > budget:
                    raise StopIteration

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sae = SparseAutoencoder(n_hidden=h, max_iter=max_iter, backend=backend,
                                        dtype=np.dtype(dtype).name, random_state=0, **SAE_HYPER)
                sae.fit(X, callback=stop_after_budget)
            full = not sae.interrupted_      # stopped by the budget: extrapolate
            total = sae.fit_time_ if full else sae.fit_time_ / sae.n_iter_ * max_iter
            result[backend] = (total, full, sae)
        (t_gpu, _, g), (t_cpu, cpu_full, c) = result["cuda"], result["numba"]
        rows.append([
            f"{name} ({v}, {h}, {m:,}) {np.dtype(dtype).name}", g.n_iter_,
            f"{t_gpu:.2f}", f"{g.objective_time_:.2f}", f"{g.fit_time_ - g.objective_time_:.2f}",
            f"{t_cpu:.2f}" + ("" if cpu_full else f" est. ({c.n_iter_} it run)"),
            f"{c.objective_time_ / max(c.n_iter_, 1) * 1e3:.1f}",
            f"{t_cpu / t_gpu:.1f}", f"{g.loss_curve_[-1]:.6g} / {c.loss_curve_[-1]:.6g}",
        ])
    report.table(
        f"Whole training: SparseAutoencoder.fit, {max_iter} L-BFGS iterations (from the same "
        "start; the optimizer runs on the CPU for both)",
        ["shape", "iterations (cuda)", "cuda total s", "cuda objective s", "cuda optimizer s",
         "numba CPU total s", "CPU objective ms/it", "CPU / cuda", "final cost cuda / CPU"],
        rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="also write the tables to this file")
    p.add_argument("--skip-tests", action="store_true", help="do not run tests/test_cuda.py first")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per cost+grad")
    p.add_argument("--train-iters", type=int, default=400)
    p.add_argument("--cpu-train-budget", type=float, default=45.0,
                   help="seconds after which a CPU training run is stopped and extrapolated")
    p.add_argument("--test-timeout", type=float, default=150.0)
    p.add_argument("--smoke", action="store_true", help="tiny shapes (checks this script)")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    report = Report(args.out)
    import fastsae.cuda as fc
    fc.ensure_available()
    from numba import cuda
    report.add(f"fastsae GPU benchmark\nGPU: {gpu_description(cuda)}\nCPU: {machine_summary()}")
    if not args.skip_tests:
        run_tests(report, args.test_timeout)
    run_cost_grad(report, SMOKE_COST_SHAPES if args.smoke else COST_SHAPES,
                  2 if args.smoke else args.reps, smoke=args.smoke)
    run_other_kernels(report, 2 if args.smoke else args.reps, smoke=args.smoke)
    run_training(report, SMOKE_TRAIN_SHAPES if args.smoke else TRAIN_SHAPES,
                 5 if args.smoke else args.train_iters, args.cpu_train_budget)
    report.add(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
