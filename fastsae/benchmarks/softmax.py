"""Softmax regression and stacked autoencoder cost+grad: NumPy reference vs Numba vs PyTorch.

``python -m fastsae.benchmarks softmax`` prints the ratio tables;
``python -m pytest bench/bench_softmax.py`` runs each implementation of each case
as a pytest-benchmark. Every implementation computes in the
data's dtype from the same float64 ``theta``; PyTorch uses a hand-written
gradient (no autograd) and is skipped when it is not installed.

All implementations of a case are timed in one process, in alternating blocks
of consecutive calls (so that slow phases of a shared machine hit all of them,
and no block pays for switching thread pools), after a warm-up call that also
compiles the Numba kernels.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastsae import reference
from fastsae.kernels import softmax as numba_softmax
from fastsae.kernels import stacked as numba_stacked
from fastsae.params import layout_size, stacked_layout

from ._util import print_table, time_side_by_side, with_scipy_blas_row
from .cases import QUICK_SOFTMAX, QUICK_STACKED, SOFTMAX_CASES, STACKED_CASES  # noqa: F401

WEIGHT_DECAY = 1e-4


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# -- problems and implementations ---------------------------------------------

def softmax_problem(m, n, K, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (m, n)).astype(dtype)
    y = rng.integers(0, K, m)
    theta = np.concatenate([0.005 * rng.standard_normal(K * n), np.zeros(K)])
    return theta, X, y


def stacked_problem(m, sizes, K, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (m, sizes[0])).astype(dtype)
    y = rng.integers(0, K, m)
    theta = 0.05 * rng.standard_normal(layout_size(stacked_layout(sizes, K)))
    return theta, X, y


def softmax_two_gemms(theta, X, K):
    """The two products of one evaluation alone (X Wᵀ and Dᵀ X), NumPy's BLAS, outputs preallocated."""
    m, n = X.shape
    W = theta[:K * n].reshape(K, n).astype(X.dtype)
    Z, g = np.empty((m, K), X.dtype), np.empty((K, n), X.dtype)

    def run():
        np.matmul(X, W.T, out=Z)
        np.matmul(Z.T, X, out=g)
    return run


def torch_softmax(theta, X, y, K, torch):
    """Softmax cost+grad in PyTorch, same dtype, hand-written gradient: the stacked
    network with no sigmoid layer (its theta is the softmax's ``W, b``)."""
    return torch_stacked(theta, X, y, (X.shape[1],), K, torch)


def torch_stacked(theta, X, y, sizes, K, torch, bfloat16=False):
    """Stacked cost+grad in PyTorch, same dtype, hand-written backprop; ``bfloat16``:
    every product's operands in bfloat16 (float32 results), the rest in float32."""
    if bfloat16:
        dt = torch.float32
        X = np.asarray(X, np.float32)
        X16 = torch.from_numpy(X).to(torch.bfloat16)        # converted once, as ours is

        def bf(A):
            return X16 if A is Xt else A.to(torch.bfloat16)

        def mm(A, B):
            return (bf(A) @ bf(B)).float()

        def affine(b, A, B):
            return mm(A, B) + b
    else:
        affine = torch.addmm
        dt = {np.float32: torch.float32, np.float64: torch.float64}[X.dtype.type]

        def mm(A, B):
            return A @ B
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    m = X.shape[0]
    rows = torch.arange(m)
    shapes = stacked_layout(sizes, K)

    def run():
        th = torch.from_numpy(theta).to(dt)
        views, pos = [], 0
        for s in shapes:
            size = int(np.prod(s))
            views.append(th[pos:pos + size].view(*s))
            pos += size
        Ws, bs = views[:2]
        stack = [(views[i], views[i + 1]) for i in range(2, len(views), 2)]
        acts = [Xt]
        for W, b in stack:
            acts.append(torch.sigmoid(affine(b, acts[-1], W.T)))
        Z = affine(bs, acts[-1], Ws.T)
        Z = Z - Z.max(dim=1, keepdim=True).values
        E = torch.exp(Z)
        S = E.sum(dim=1)
        cost = -(Z[rows, yt] - torch.log(S)).double().sum() / m \
            + 0.5 * WEIGHT_DECAY * (Ws.double() ** 2).sum()
        D = E / S[:, None]
        D[rows, yt] -= 1
        D /= m
        grads = [mm(D.T, acts[-1]) + WEIGHT_DECAY * Ws, D.sum(0)]
        delta = mm(D, Ws) * acts[-1] * (1 - acts[-1])
        back = []
        for layer in range(len(stack), 0, -1):
            W = stack[layer - 1][0]
            back.append((mm(delta.T, acts[layer - 1]), delta.sum(0)))
            if layer > 1:
                a = acts[layer - 1]
                delta = mm(delta, W) * a * (1 - a)
        for gW, gb in reversed(back):
            grads += [gW, gb]
        return float(cost), torch.cat([g.ravel() for g in grads]).double().numpy()
    return run


def softmax_impls(theta, X, y, K, torch=None):
    impls = {
        "numpy reference": lambda: reference.softmax_cost_grad(theta, X, y, K,
                                                               weight_decay=WEIGHT_DECAY),
        "numba": lambda: numba_softmax.softmax_cost_grad(theta, X, y, K,
                                                         weight_decay=WEIGHT_DECAY),
        "2 GEMMs alone (NumPy BLAS)": softmax_two_gemms(theta, X, K),
    }
    if torch is not None:
        impls["pytorch CPU, hand-written grad"] = torch_softmax(theta, X, y, K, torch)
    return with_scipy_blas_row(impls)


def stacked_impls(theta, X, y, sizes, K, torch=None):
    kw = dict(weight_decay=WEIGHT_DECAY)
    impls = {
        "numpy reference": lambda: reference.stacked_cost_grad(theta, X, y, sizes, K, **kw),
        "numba": lambda: numba_stacked.stacked_cost_grad(theta, X, y, sizes, K, **kw),
    }
    if torch is not None:
        impls["pytorch CPU, hand-written grad"] = torch_stacked(theta, X, y, sizes, K, torch)
    return with_scipy_blas_row(impls)


# -- timing and tables ----------------------------------------------------------

def check_agreement(impls):
    """Every implementation's (cost, grad) against the reference: max relative differences."""
    c0, g0 = impls["numpy reference"]()
    out = {}
    for name, fn in impls.items():
        r = fn()
        if isinstance(r, tuple):
            out[name] = (abs(r[0] - c0) / abs(c0), float(np.abs(r[1] - g0).max() / np.abs(g0).max()))
    return out


HEADER = ["implementation", "median ms", "min ms", "x vs reference (median / min)",
          "x vs pytorch (median / min)", "max rel. diff cost / grad"]


def _rows(times, agree):
    ref = times["numpy reference"]
    torch_t = times.get("pytorch CPU, hand-written grad")
    rows = []
    for name, (med, best) in times.items():
        diff = agree.get(name)
        rows.append([name, f"{med * 1e3:.2f}", f"{best * 1e3:.2f}",
                     f"{ref[0] / med:.2f} / {ref[1] / best:.2f}",
                     f"{torch_t[0] / med:.2f} / {torch_t[1] / best:.2f}" if torch_t else "-",
                     f"{diff[0]:.1e} / {diff[1]:.1e}" if diff else "-"])
    return rows


def run_training(m=50_000, n=256, K=10, max_iter=100):
    """Whole softmax training (float64) on both backends and in scikit-learn (same objective)."""
    import warnings

    from fastsae.softmax import SoftmaxRegression

    _, X, y = softmax_problem(m, n, K, np.float64, seed=1)
    # labels that depend on X, so that the optimum is not trivial
    y = np.argmax((X - 0.5) @ np.random.default_rng(2).standard_normal((n, K)), axis=1)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in ("numba", "numpy"):
            # compile (numba) and touch the code paths once, so that the row times training
            SoftmaxRegression(weight_decay=WEIGHT_DECAY, max_iter=2, backend=backend,
                              random_state=0).fit(X[:200], y[:200])
            clf = SoftmaxRegression(weight_decay=WEIGHT_DECAY, max_iter=max_iter, backend=backend,
                                    random_state=0).fit(X, y)
            rows.append([f"SoftmaxRegression(backend={backend!r})", f"{clf.fit_time_:.2f}",
                         clf.n_iter_, f"{clf.loss_curve_[-1]:.6f}", f"{clf.score(X, y):.4f}"])
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            LogisticRegression = None
        if LogisticRegression is not None:
            # sklearn minimises C Σ loss + ½‖W‖²: the same optimum for C = 1 / (λ m)
            lr = LogisticRegression(C=1.0 / (WEIGHT_DECAY * m), max_iter=max_iter, tol=1e-12)
            t0 = time.perf_counter()
            lr.fit(X, y)
            total = time.perf_counter() - t0
            theta = np.concatenate([lr.coef_.ravel(), lr.intercept_])
            cost = reference.softmax_cost_grad(theta, X, y, K, weight_decay=WEIGHT_DECAY)[0]
            rows.append(["sklearn LogisticRegression (lbfgs)", f"{total:.2f}", int(lr.n_iter_[0]),
                         f"{cost:.6f}", f"{lr.score(X, y):.4f}"])
    print_table(f"Whole softmax training, {m:,} x {n}, {K} classes, float64, {max_iter} L-BFGS "
                "iterations", ["run", "total s", "iterations", "final cost", "train accuracy"], rows)


def torch_softmax_bf16(theta, X, y, K, torch):
    """Softmax cost+grad in PyTorch with bfloat16 products (``X``, ``W`` and ``δ`` in
    bfloat16, the softmax in float32), hand-written gradient."""
    bf = torch.bfloat16
    Xt, yt = torch.from_numpy(np.asarray(X, np.float32)).to(bf), torch.from_numpy(y)
    m, n = X.shape
    rows = torch.arange(m)

    def run():
        th = torch.from_numpy(theta)
        W, b = th[:K * n].view(K, n), th[K * n:]
        Z = torch.addmm(b.to(bf), Xt, W.to(bf).T).float()
        Z = Z - Z.max(dim=1, keepdim=True).values
        E = torch.exp(Z)
        S = E.sum(dim=1)
        cost = -(Z[rows, yt] - torch.log(S)).double().sum() / m \
            + 0.5 * WEIGHT_DECAY * (W * W).sum()
        D = E / S[:, None]
        D[rows, yt] -= 1
        gW = (D.to(bf).T @ Xt).double() / m + WEIGHT_DECAY * W
        return float(cost), torch.cat([gW.ravel(), D.double().sum(0) / m]).numpy()
    return run


def run_bf16(quick=False, rounds=None):
    """Softmax cost+grad in bfloat16 (the extra fastsae-audio[mkl]) against float32 and
    PyTorch's bfloat16, one process, alternating blocks."""
    from fastsae.core.bfloat16 import bfloat16_dtype
    from fastsae.kernels import _mkl

    if not _mkl.available():
        print('\nsoftmax in bfloat16: oneMKL / ml-dtypes are not installed '
              '(pip install "fastsae-audio[mkl]"): skipped')
        return None
    torch = torch_or_none()
    name, m, n, K, _ = (QUICK_SOFTMAX if quick else SOFTMAX_CASES)[0]
    theta, X, y = softmax_problem(m, n, K, np.float32)
    X16 = X.astype(bfloat16_dtype())
    kw = dict(weight_decay=WEIGHT_DECAY)
    impls = {"numba float32": lambda: numba_softmax.softmax_cost_grad(theta, X, y, K, **kw),
             "numba bfloat16": lambda: numba_softmax.softmax_cost_grad(theta, X16, y, K, **kw),
             "numpy reference bfloat16": lambda: reference.softmax_cost_grad(theta, X16, y, K,
                                                                             **kw)}
    if torch is not None:
        impls["pytorch CPU bfloat16, hand-written grad"] = torch_softmax_bf16(theta, X, y, K,
                                                                               torch)
    times = time_side_by_side(impls, rounds=rounds or (2 if quick else 3))
    f32 = times["numba float32"][0]
    ours = times["numba bfloat16"][0]
    rows = [[impl, f"{t * 1e3:.2f}", f"{t / f32:.2f}", f"{t / ours:.2f}"]
            for impl, (t, _) in times.items()]
    header = ["implementation", "median ms", "time / numba float32", "time / numba bfloat16"]
    print_table(f"Softmax cost+grad in bfloat16, {name} shape (n_samples={m:,}, n_features={n}, "
                f"n_classes={K}); GEMMs = {4 * m * n * K / 1e9:.2f} GFLOP", header, rows)

    name, m, sizes, K, _ = (QUICK_STACKED if quick else STACKED_CASES)[0]
    theta, X, y = stacked_problem(m, sizes, K, np.float32)
    X16 = X.astype(bfloat16_dtype())
    stacked = {"numba float32": lambda: numba_stacked.stacked_cost_grad(theta, X, y, sizes, K,
                                                                        **kw),
               "numba bfloat16": lambda: numba_stacked.stacked_cost_grad(theta, X16, y, sizes,
                                                                         K, **kw),
               "numpy reference bfloat16": lambda: reference.stacked_cost_grad(theta, X16, y,
                                                                               sizes, K, **kw)}
    if torch is not None:
        stacked["pytorch CPU bfloat16, hand-written grad"] = torch_stacked(
            theta, X, y, sizes, K, torch, bfloat16=True)
    s_times = time_side_by_side(stacked, rounds=rounds or (2 if quick else 3))
    f32, ours = s_times["numba float32"][0], s_times["numba bfloat16"][0]
    print_table(f"Stacked autoencoder cost+grad in bfloat16, {name}: "
                f"{'-'.join(map(str, sizes + (K,)))} network, n_samples={m:,}", header,
                [[impl, f"{t * 1e3:.2f}", f"{t / f32:.2f}", f"{t / ours:.2f}"]
                 for impl, (t, _) in s_times.items()])
    return times, s_times


def run(gemm_rates=None, quick=False, training=True, rounds=None):
    """Print the softmax and stacked tables (``gemm_rates`` is unused; for ``python -m bench``)."""
    torch = torch_or_none()
    if torch is None:
        print("PyTorch is not installed: its column is skipped")
    rounds = rounds or (2 if quick else 3)
    for name, m, n, K, dtype in (QUICK_SOFTMAX if quick else SOFTMAX_CASES):
        theta, X, y = softmax_problem(m, n, K, dtype)
        impls = softmax_impls(theta, X, y, K, torch)
        times = time_side_by_side(impls, rounds=rounds)
        print_table(f"Softmax cost+grad, {name} shape (n_samples={m:,}, n_features={n}, "
                    f"n_classes={K}, {np.dtype(dtype).name}); GEMMs = {4 * m * n * K / 1e9:.2f} GFLOP",
                    HEADER, _rows(times, check_agreement(impls)))
    for name, m, sizes, K, dtype in (QUICK_STACKED if quick else STACKED_CASES):
        theta, X, y = stacked_problem(m, sizes, K, dtype)
        impls = stacked_impls(theta, X, y, sizes, K, torch)
        times = time_side_by_side(impls, rounds=rounds)
        net = "-".join(map(str, sizes + (K,)))
        print_table(f"Stacked autoencoder cost+grad, {name}: {net} network, n_samples={m:,}, "
                    f"{np.dtype(dtype).name}", HEADER, _rows(times, check_agreement(impls)))
    run_bf16(quick=quick, rounds=rounds)
    if training:
        run_training(m=5_000 if quick else 50_000, max_iter=30 if quick else 100)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    p.add_argument("--no-training", action="store_true", help="skip the whole-training table")
    p.add_argument("--rounds", type=int, default=None, help="blocks of calls per implementation")
    a = p.parse_args()
    run(quick=a.quick, training=not a.no_training, rounds=a.rounds)
