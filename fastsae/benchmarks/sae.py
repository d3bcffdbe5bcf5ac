"""Sparse autoencoder benchmarks: cost+grad per backend against the five-GEMM
floor and PyTorch, and whole L-BFGS training at the UFLDL shape."""
from __future__ import annotations

import time
import warnings

import numpy as np

from fastsae import reference
from fastsae.autoencoder import SparseAutoencoder
from fastsae.params import init_params
from fastsae.kernels import sae as numba_sae

from ._util import (keep_freed_memory, print_table, time_side_by_side, torch_or_none,
                    torch_weights, with_scipy_blas_row)
from .cases import (SAE_HYPER, SAE_OPTION_SHAPES, SAE_OPTIONS, SAE_SHAPES, SAE_SHAPES_QUICK,
                    sae_flops)


def sae_problem(v, h, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (m, v)).astype(dtype)
    theta = init_params(v, h, random_state=seed)
    return theta, X


def five_gemms(theta, X, v, h):
    """The five products of one evaluation, alone, in NumPy's BLAS (preallocated outputs)."""
    dt = X.dtype
    m = X.shape[0]
    W1 = theta[:h * v].reshape(h, v).astype(dt)
    W2 = theta[h * v:2 * h * v].reshape(v, h).astype(dt)
    A2, A3, D = np.empty((m, h), dt), np.empty((m, v), dt), np.empty((m, h), dt)
    g1, g2 = np.empty((h, v), dt), np.empty((v, h), dt)

    def run():
        np.matmul(X, W1.T, out=A2)
        np.matmul(A2, W2.T, out=A3)
        np.matmul(A3.T, A2, out=g2)
        np.matmul(A3, W2, out=D)
        np.matmul(D.T, X, out=g1)
    return run


def torch_sae(theta, X, v, h, torch):
    """The same objective in PyTorch with a hand-written gradient (no autograd)."""
    dt = {np.float32: torch.float32, np.float64: torch.float64}[X.dtype.type]
    Xt = torch.from_numpy(X)
    rho, beta, lam = SAE_HYPER["sparsity"], SAE_HYPER["beta"], SAE_HYPER["weight_decay"]
    m = X.shape[0]

    def run():
        W1, W2, b1, b2 = torch_weights(theta, v, h, dt, torch)
        A2 = torch.sigmoid(torch.addmm(b1, Xt, W1.T))
        A3 = torch.sigmoid(torch.addmm(b2, A2, W2.T))
        diff = A3 - Xt
        rho_hat = A2.mean(0)
        kl = torch.sum(rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat)))
        cost = 0.5 * (diff * diff).sum() / m + 0.5 * lam * ((W1 * W1).sum() + (W2 * W2).sum()) + beta * kl
        d3 = diff * A3 * (1 - A3)
        s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
        d2 = (d3 @ W2 + s) * A2 * (1 - A2)
        g = torch.cat([(d2.T @ Xt / m + lam * W1).ravel(), (d3.T @ A2 / m + lam * W2).ravel(),
                       d2.sum(0) / m, d3.sum(0) / m]).double()
        return float(cost), g.numpy()
    return run


REFERENCE, NUMBA, FLOOR, TORCH = ("numpy reference", "numba", "5 GEMMs alone (NumPy BLAS)",
                                  "pytorch CPU, hand-written grad")


def sae_impls(theta, X, v, h, options=None, torch=None):
    """The implementations timed for one case: name -> zero-argument callable.

    ``options`` are the autoencoder's keywords (``decoder``, ``loss``,
    ``tied``); PyTorch (hand-written gradient) only for the default ones.
    The GEMM floor returns nothing; the others return ``(cost, grad)``.
    """
    kw = dict(SAE_HYPER, **(options or {}))
    th = theta
    if kw.get("tied"):                        # tied: theta holds W1, b1, b2 only
        th = np.concatenate([theta[:h * v], theta[2 * h * v:]])
    impls = {
        REFERENCE: lambda: reference.sae_cost_grad(th, X, v, h, **kw),
        NUMBA: lambda: numba_sae.sae_cost_grad(th, X, v, h, **kw),
        FLOOR: five_gemms(theta, X, v, h),
    }
    if torch is not None and not options:
        impls[TORCH] = torch_sae(theta, X, v, h, torch)
    return with_scipy_blas_row(impls, NUMBA)


def sae_rows(v, h, m, dtype, gemm_rates, repeat=7, options=None):
    theta, X = sae_problem(v, h, m, dtype)
    flops = sae_flops(v, h, m)
    torch = torch_or_none()
    impls = sae_impls(theta, X, v, h, options, torch)
    torch = torch if TORCH in impls else None
    # side by side: the ratios to the floor and to PyTorch come from the same spells
    per_block = max(1, repeat // 3)
    times = {name: t for name, (t, _) in time_side_by_side(impls, rounds=3,
                                                           per_block=per_block).items()}
    rate = gemm_rates[np.dtype(dtype)]
    rows = []
    for name, t in times.items():
        rows.append([name, f"{t * 1e3:.2f}", f"{flops / t / 1e9:.1f}",
                     f"{times[REFERENCE] / t:.2f}",
                     f"{times[name] / times[FLOOR]:.2f}",
                     f"{times[TORCH] / t:.2f}" if torch else "-",
                     f"{flops / t / 1e9 / rate:.0%}"])
    return rows, times


SAE_HEADER = ["implementation", "median ms", "GFLOP/s", "x vs reference", "time / 5-GEMM floor",
              "x vs pytorch", "of GEMM peak"]


def run_cost_grad(gemm_rates, quick=False):
    shapes = SAE_SHAPES_QUICK if quick else SAE_SHAPES
    results = {}
    for name, v, h, m, dtype in shapes:
        rows, times = sae_rows(v, h, m, dtype, gemm_rates, repeat=5 if m > 20_000 else 15)
        results[(name, np.dtype(dtype).name)] = times
        print_table(f"Sparse autoencoder cost+grad, {name} shape (n_visible={v}, n_hidden={h}, "
                    f"n_samples={m:,}, {np.dtype(dtype).name}); 5 GEMMs = {sae_flops(v, h, m) / 1e9:.2f} GFLOP",
                    SAE_HEADER, rows)
    return results


def run_options(gemm_rates, quick=False):
    """Every autoencoder option, numba against the reference and the GEMM floor."""
    for name, v, h, m, dtype in SAE_OPTION_SHAPES:
        if quick:
            m //= 10
        rows = []
        for opt_name, opts in SAE_OPTIONS:
            r, _ = sae_rows(v, h, m, dtype, gemm_rates, repeat=3 if m > 20_000 else 9,
                            options=opts or None)
            rows += [[opt_name] + row for row in r if row[0] in (NUMBA, REFERENCE)]
        print_table(f"Autoencoder options, {name} shape ({v}, {h}, {m:,}, {np.dtype(dtype).name})",
                    ["option"] + SAE_HEADER, rows)


def run_training(max_iter=400):
    """Whole UFLDL-shape training on both backends, and SciPy without the thread limits."""
    from scipy.optimize import minimize

    v, h, m = 64, 25, 10_000
    theta, X = sae_problem(v, h, m, np.float64, seed=1)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in ("numba", "numpy"):
            sae = SparseAutoencoder(n_hidden=h, max_iter=max_iter, backend=backend, random_state=0,
                                    **SAE_HYPER).fit(X)
            rows.append([f"SparseAutoencoder(backend={backend!r})", f"{sae.fit_time_:.2f}",
                         f"{sae.objective_time_:.2f}", f"{sae.fit_time_ - sae.objective_time_:.2f}",
                         sae.n_iter_, f"{sae.loss_curve_[-1]:.6f}"])
        theta0 = init_params(v, h, random_state=0)
        from fastsae.optim import lbfgs

        def scipy_lbfgs_b(f):
            r = lbfgs(f, theta0, max_iter=max_iter, method="scipy")
            return r.n_iter, r.cost

        def plain_minimize(f):
            r = minimize(f, theta0, jac=True, method="L-BFGS-B",
                         options=dict(maxiter=max_iter, maxcor=100, ftol=1e-9, gtol=1e-5))
            return r.nit, r.fun

        # SciPy's L-BFGS-B on the reference: first with SciPy's BLAS held to one
        # thread (fastsae.lbfgs(method="scipy"), the thread-pool trap removed),
        # then plain scipy.optimize.minimize with no thread-pool care (the trap)
        for name, optimize in [("SciPy L-BFGS-B + reference, one BLAS pool at a time",
                                scipy_lbfgs_b),
                               ("plain scipy.optimize.minimize + reference", plain_minimize)]:
            t_fun = [0.0]

            def f(t):
                t0 = time.perf_counter()
                r = reference.sae_cost_grad(t, X, v, h, **SAE_HYPER)
                t_fun[0] += time.perf_counter() - t0
                return r
            t0 = time.perf_counter()
            n_iter, cost = optimize(f)
            total = time.perf_counter() - t0
            rows.append([name, f"{total:.2f}", f"{t_fun[0]:.2f}", f"{total - t_fun[0]:.2f}",
                         n_iter, f"{cost:.6f}"])
    print_table(f"Whole training, UFLDL shape ({v}, {h}, {m:,}, float64), {max_iter} L-BFGS iterations",
                ["run", "total s", "objective s", "optimizer s", "iterations", "final cost"], rows)
    return rows


def run(gemm_rates, quick=False):
    print("\nNumPy reference with glibc's default allocator thresholds:")
    results = run_cost_grad(gemm_rates, quick=quick)
    if keep_freed_memory():
        print("\nThe same, after mallopt() keeps freed temporaries mapped (no page faults in the reference):")
        results_kept = run_cost_grad(gemm_rates, quick=quick)
    else:
        results_kept = None
    run_options(gemm_rates, quick=quick)
    run_training(max_iter=100 if quick else 400)
    from . import sae_bf16
    sae_bf16.run(quick=quick)
    return results, results_kept
