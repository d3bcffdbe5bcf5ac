"""Sparse autoencoder in bfloat16 (``dtype="bfloat16"``, the extra fastsae-audio[mkl]):
cost+grad against float32 and the five bf16 GEMMs alone, and whole training
to the same cost, float32 against the bfloat16 precision schedule."""
from __future__ import annotations

import ctypes
import time
import warnings

import numba
import numpy as np

from fastsae import reference
from fastsae.autoencoder import SparseAutoencoder
from fastsae.core.bfloat16 import bfloat16_dtype
from fastsae.kernels import _mkl
from fastsae.params import init_params
from fastsae.kernels import sae as numba_sae

from ._util import print_table, time_side_by_side, torch_or_none, torch_weights
from .cases import (SAE_BF16_SHAPES, SAE_BF16_SHAPES_QUICK, SAE_BF16_TRAINING,
                    SAE_BF16_TRAINING_QUICK, SAE_HYPER, sae_flops)

F32, BF16, REF_BF16, FLOOR_BF16, TORCH_BF16 = (
    "numba float32", "numba bfloat16", "numpy reference bfloat16",
    "5 bf16 GEMMs alone (oneMKL, its threads)", "pytorch CPU bfloat16, hand-written grad")


def five_gemms_bf16(theta, X16, v, h):
    """The five products of one evaluation in oneMKL's bf16 GEMM, whole matrices,
    preallocated outputs, MKL's own threads (as many as Numba's)."""
    mkl = _mkl.library()
    i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    gemm = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, f32,
                            ptr, i64, ptr, i64, f32, ptr, i64)(mkl.gemm)
    mkl.lib.MKL_Set_Num_Threads(ctypes.c_int(numba.get_num_threads()))
    bf16 = X16.dtype
    m = X16.shape[0]
    W1 = theta[:h * v].reshape(h, v).astype(np.float32).astype(bf16)
    W2 = theta[h * v:2 * h * v].reshape(v, h).astype(np.float32).astype(bf16)
    A2, Z3, D = (np.empty((m, h), np.float32), np.empty((m, v), np.float32),
                 np.empty((m, h), np.float32))
    A16, D3, D2 = np.zeros((m, h), bf16), np.zeros((m, v), bf16), np.zeros((m, h), bf16)
    g1, g2 = np.empty((h, v), np.float32), np.empty((v, h), np.float32)

    def mm(A, B, C, ta=False, tb=False):
        M, N = C.shape
        gemm(101, 112 if ta else 111, 112 if tb else 111, M, N, A.shape[0] if ta else A.shape[1],
             1.0, A.ctypes.data, A.shape[1], B.ctypes.data, B.shape[1], 0.0, C.ctypes.data, N)

    def run():
        mm(X16, W1, A2, tb=True)
        mm(A16, W2, Z3, tb=True)
        mm(D3, A16, g2, ta=True)
        mm(D3, W2, D)
        mm(D2, X16, g1, ta=True)
    return run


def torch_sae_bf16(theta, X, v, h, torch):
    """The objective in PyTorch with bfloat16 tensors and a hand-written gradient."""
    bf = torch.bfloat16
    Xt = torch.from_numpy(np.asarray(X, np.float32)).to(bf)
    rho, beta, lam = SAE_HYPER["sparsity"], SAE_HYPER["beta"], SAE_HYPER["weight_decay"]
    m = X.shape[0]

    def run():
        th = torch.from_numpy(theta)
        W1, W2, b1, b2 = torch_weights(theta, v, h, bf, torch)
        A2 = torch.sigmoid(torch.addmm(b1, Xt, W1.T))
        A3 = torch.sigmoid(torch.addmm(b2, A2, W2.T))
        diff = A3 - Xt
        rho_hat = A2.float().mean(0).double()
        kl = torch.sum(rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat)))
        cost = (0.5 * (diff.float() ** 2).sum() / m + 0.5 * lam * (th[:2 * h * v] ** 2).sum()
                + beta * kl)
        d3 = diff * A3 * (1 - A3)
        s = (beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))).to(bf)
        d2 = (d3 @ W2 + s) * A2 * (1 - A2)
        g = torch.cat([(d2.T @ Xt).double().ravel() / m + lam * th[:h * v],
                       (d3.T @ A2).double().ravel() / m + lam * th[h * v:2 * h * v],
                       d2.double().sum(0) / m, d3.double().sum(0) / m])
        return float(cost), g.numpy()
    return run


def bf16_impls(theta, X, v, h, torch=None, with_reference=False):
    """name -> zero-argument callable for one bfloat16 case (``X`` float32 or float64)."""
    X32 = np.asarray(X, np.float32)
    X16 = X32.astype(bfloat16_dtype())
    impls = {
        F32: lambda: numba_sae.sae_cost_grad(theta, X32, v, h, **SAE_HYPER),
        BF16: lambda: numba_sae.sae_cost_grad(theta, X16, v, h, **SAE_HYPER),
        FLOOR_BF16: five_gemms_bf16(theta, X16, v, h),
    }
    if with_reference:
        impls[REF_BF16] = lambda: reference.sae_cost_grad(theta, X16, v, h, **SAE_HYPER)
    if torch is not None:
        impls[TORCH_BF16] = torch_sae_bf16(theta, X32, v, h, torch)
    return impls


def run_cost_grad(quick=False):
    torch = torch_or_none()
    results = {}
    for name, v, h, m in (SAE_BF16_SHAPES_QUICK if quick else SAE_BF16_SHAPES):
        theta = init_params(v, h, random_state=0)
        X = np.random.default_rng(0).uniform(0.0, 1.0, (m, v)).astype(np.float32)  # as sae_problem
        impls = bf16_impls(theta, X, v, h, torch)
        times = {impl: t for impl, (t, _) in time_side_by_side(
            impls, rounds=2, per_block=3 if m > 20_000 else 9).items()}
        flops = sae_flops(v, h, m)
        rows = [[impl, f"{t * 1e3:.1f}", f"{flops / t / 1e9:.0f}", f"{t / times[F32]:.3f}",
                 f"{t / times[FLOOR_BF16]:.2f}"] for impl, t in times.items()]
        print_table(f"Sparse autoencoder cost+grad in bfloat16, {name} shape (n_visible={v}, "
                    f"n_hidden={h}, n_samples={m:,}); 5 GEMMs = {flops / 1e9:.2f} GFLOP",
                    ["implementation", "median ms", "GFLOP/s", "time / numba float32",
                     "time / 5 bf16 GEMMs"], rows)
        results[name] = times
    return results


def _structured(v, m, seed=0):
    """Rows in [0, 1] mixed from a few patterns (something for the autoencoder to learn)."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0.0, 1.0, (40, v))
    mix = rng.dirichlet(np.full(40, 0.3), m)
    return np.clip(mix @ patterns + 0.05 * rng.standard_normal((m, v)), 0.0, 1.0).astype(np.float32)


def _fit_timed(X, h, max_iter, dtype):
    marks = []
    t0 = [0.0]

    def note(it, theta, cost):
        marks.append((time.perf_counter() - t0[0], cost))

    sae = SparseAutoencoder(n_hidden=h, max_iter=max_iter, dtype=dtype, random_state=0,
                            **SAE_HYPER)
    t0[0] = time.perf_counter()
    sae.fit(X, callback=note)
    return sae, marks


def run_training(quick=False):
    name, v, h, m, max_iter = SAE_BF16_TRAINING_QUICK if quick else SAE_BF16_TRAINING
    X = _structured(v, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dt in ("float32", "bfloat16"):      # compile both paths first
            SparseAutoencoder(n_hidden=8, max_iter=3, dtype=dt).fit(X[:300, :32])
        time.sleep(0.3)
        f32, marks32 = _fit_timed(X, h, max_iter, "float32")
        time.sleep(0.3)
        b16, marks16 = _fit_timed(X, h, max_iter, "bfloat16")
    hyper = dict(SAE_HYPER)
    exact = {k: reference.sae_cost_grad(s._theta(), X.astype(np.float64), v, h, **hyper)[0]
             for k, s in (("float32", f32), ("bfloat16", b16))}
    # the cost both runs reach (their own curves; the last points are float32 in both)
    target = max(marks32[-1][1], marks16[-1][1])

    def time_to(marks):
        return next(t for t, c in marks if c <= target)

    t32, t16 = time_to(marks32), time_to(marks16)
    rows = [[f"SparseAutoencoder(dtype={k!r})", f"{s.fit_time_:.2f}", s.n_iter_,
             s.n_bfloat16_iter_, f"{s.loss_curve_[-1]:.6f}", f"{exact[k]:.6f}", f"{t:.2f}",
             f"{t32 / t:.2f}"]
            for k, s, t in (("float32", f32, t32), ("bfloat16", b16, t16))]
    print_table(f"Whole training in bfloat16, {name} ({v}, {h}, {m:,}), {max_iter} L-BFGS "
                f"iterations; time to the cost both reach ({target:.6f})",
                ["run", "total s", "iterations", "of them bf16", "final cost",
                 "float64 cost of the weights", "s to the common cost", "x sooner than float32"],
                rows)
    return {"float32": t32, "bfloat16": t16, "final": exact,
            "iterations": (f32.n_iter_, b16.n_iter_, b16.n_bfloat16_iter_)}


def run(quick=False):
    if not _mkl.available():
        print('\nbfloat16: oneMKL / ml-dtypes are not installed (pip install "fastsae-audio[mkl]"): '
              "skipped")
        return None
    print(f"\nbfloat16 through {_mkl.library().version}")
    return run_cost_grad(quick=quick), run_training(quick=quick)
