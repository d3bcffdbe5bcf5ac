"""Convolutional autoencoder and convolutional network cost+grad: NumPy reference vs Numba.

``python -m fastsae.benchmarks convae`` prints the table;
``python -m pytest bench/bench_convae.py`` runs each implementation of each case
as a pytest-benchmark. Both implementations compute in the
data's dtype from the same float64 ``theta``.

One evaluation is six ``K × C·ph·pw × positions`` products per input (the
encoder, the decoder, the decoder-filter gradient, the decoder's adjoint and
the two-block encoder-filter gradient of the one-pass sparsity statistics),
so ``flops = 12 · N · P · K · C·ph·pw``; the GFLOP/s column is against that.
The network case (fine-tuning objective of a two-layer stack with a
10-class softmax) is timed the same way.

Implementations of a case are timed in alternating blocks in one process,
after a warm-up call that also compiles the Numba kernel.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastsae.core import layouts  # noqa: E402
from fastsae.reference import convae as ref_convae, convnet as ref_convnet  # noqa: E402
from fastsae.kernels import convae as numba_convae, convnet as numba_convnet  # noqa: E402
from fastsae.params import layout_size  # noqa: E402

#: (name, n_filters, ph, pw, n_inputs, n_channels, H, W, dtype)
CONVAE_CASES = [
    ("spectrogram 40x64", 64, 8, 8, 100, 1, 40, 64, np.float32),
    ("spectrogram 40x64", 64, 8, 8, 100, 1, 40, 64, np.float64),
]
QUICK_CASES = [("spectrogram 40x64 /4", 64, 8, 8, 25, 1, 40, 64, np.float32)]
HYPER = dict(sparsity=0.05, beta=3.0, weight_decay=1e-4)
IMPLS = {"numpy": ref_convae.conv_ae_cost_grad, "numba": numba_convae.conv_ae_cost_grad}
NET_IMPLS = {"numpy": ref_convnet.conv_net_cost_grad, "numba": numba_convnet.conv_net_cost_grad}
#: (name, layers, n_inputs, input shape (C, H, W), n_classes, dtype)
NET_LAYERS = [dict(n_filters=64, patch_shape=(8, 8), pool_shape=(2, 2)),
              dict(n_filters=32, patch_shape=(3, 3), n_pool_regions=(2, 4), pool="max")]
NET_CASES = [
    ("2 layers 40x64", NET_LAYERS, 100, (1, 40, 64), 10, np.float32),
    ("2 layers 40x64", NET_LAYERS, 100, (1, 40, 64), 10, np.float64),
]
QUICK_NET_CASES = [("2 layers 40x64 /4", NET_LAYERS, 25, (1, 40, 64), 10, np.float32)]


def convae_problem(K, ph, pw, N, C, H, W, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (N, C, H, W)).astype(dtype)
    r = np.sqrt(6.0 / (C * ph * pw + K * ph * pw + 1))
    theta = rng.uniform(-r, r, layout_size(layouts.conv_ae_layout(K, C, (ph, pw))))
    theta[-(K + C):] = 0.0
    return theta, X


def net_problem(layers, N, shape, n_classes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (N,) + shape).astype(dtype)
    y = rng.integers(0, n_classes, N)
    plan, n_features = layouts.conv_net_plan(layers, shape)
    theta = rng.uniform(-0.05, 0.05,
                        layout_size(layouts.conv_net_layout(plan, n_features, n_classes)))
    return theta, X, y


def _net_runner(impl, layers, theta, X, y, n_classes):
    fn = NET_IMPLS[impl]
    return lambda: fn(theta, X, y, layers, n_classes, weight_decay=1e-4)


def convae_flops(K, ph, pw, N, C, H, W):
    return 12.0 * N * (H - ph + 1) * (W - pw + 1) * K * C * ph * pw


def _runner(impl, theta, X, K, ph, pw):
    fn = IMPLS[impl]
    return lambda: fn(theta, X, K, (ph, pw), **HYPER)


def time_alternating(fns, *, blocks=3, per_block=2):
    """Median seconds per call of each function, timed in alternating blocks."""
    times = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            for _ in range(per_block):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) for name, t in times.items()}


def run(quick=False):
    import numba

    print(f"numba threads: {numba.get_num_threads()}")
    print(f"{'case':<24}{'dtype':<9}{'impl':<7}{'time':>10}{'GFLOP/s':>9}{'vs numpy':>10}")
    for name, K, ph, pw, N, C, H, W, dtype in (QUICK_CASES if quick else CONVAE_CASES):
        theta, X = convae_problem(K, ph, pw, N, C, H, W, dtype)
        fns = {impl: _runner(impl, theta, X, K, ph, pw) for impl in IMPLS}
        c_ref, g_ref = fns["numpy"]()
        c_nb, g_nb = fns["numba"]()                       # compiles
        err = np.abs(g_nb - g_ref).max() / np.abs(g_ref).max()
        t = time_alternating(fns, blocks=2 if quick else 3)
        gflop = convae_flops(K, ph, pw, N, C, H, W) / 1e9
        for impl in IMPLS:
            print(f"{name:<24}{np.dtype(dtype).name:<9}{impl:<7}{t[impl] * 1e3:>8.1f}ms"
                  f"{gflop / t[impl]:>9.1f}{t['numpy'] / t[impl]:>9.1f}x")
        print(f"{'':<24}max |grad numba - grad numpy| / max |grad| = {err:.1e}")
    for name, layers, N, shape, n_classes, dtype in (QUICK_NET_CASES if quick else NET_CASES):
        theta, X, y = net_problem(layers, N, shape, n_classes, dtype)
        fns = {impl: _net_runner(impl, layers, theta, X, y, n_classes) for impl in NET_IMPLS}
        g_ref, g_nb = fns["numpy"]()[1], fns["numba"]()[1]
        err = np.abs(g_nb - g_ref).max() / np.abs(g_ref).max()
        t = time_alternating(fns, blocks=2 if quick else 3)
        for impl in NET_IMPLS:
            print(f"{'net ' + name:<24}{np.dtype(dtype).name:<9}{impl:<7}{t[impl] * 1e3:>8.1f}ms"
                  f"{'':>9}{t['numpy'] / t[impl]:>9.1f}x")
        print(f"{'':<24}max |grad numba - grad numpy| / max |grad| = {err:.1e}")
    run_bf16(quick=quick)


def torch_conv_ae_bf16(theta, X, K, ph, pw, torch):
    """The same objective in PyTorch bfloat16 (conv2d, its transpose, autograd), or None."""
    import torch.nn.functional as F

    N, C, H, W = X.shape
    n = K * C * ph * pw
    th = torch.from_numpy(theta).float()
    Xt = torch.from_numpy(X).to(torch.bfloat16)
    rho, beta, lam = HYPER["sparsity"], HYPER["beta"], HYPER["weight_decay"]

    def run():
        params = [th[:n].view(K, C, ph, pw), th[n:2 * n].view(K, C, ph, pw),
                  th[2 * n:2 * n + K], th[2 * n + K:]]
        params = [p.clone().requires_grad_(True) for p in params]
        Wt, Vt, b, c = params
        A = torch.sigmoid(F.conv2d(Xt, Wt.bfloat16(), b.bfloat16()))
        Xh = torch.sigmoid(F.conv_transpose2d(A, Vt.bfloat16(), c.bfloat16()))
        rho_hat = A.float().mean(dim=(0, 2, 3))
        kl = (rho * torch.log(rho / rho_hat)
              + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()
        cost = 0.5 * ((Xh.float() - Xt.float()) ** 2).sum() / N \
            + 0.5 * lam * (Wt.pow(2).sum() + Vt.pow(2).sum()) + beta * kl
        cost.backward()
        grad = torch.cat([p.grad.ravel() for p in params]).double().numpy()
        return float(cost.detach()), grad

    return run


def run_bf16(quick=False):
    """The convolutional autoencoder and network cost+grad in bfloat16 (the extra
    fastsae-audio[mkl]) against float32, the NumPy twin and PyTorch bfloat16."""
    from fastsae.benchmarks._util import print_table, torch_or_none
    from fastsae.core.bfloat16 import bfloat16_dtype
    from fastsae.kernels import _mkl

    if not _mkl.available():
        print('\nconvolutional models in bfloat16: oneMKL / ml-dtypes are not installed '
              '(pip install "fastsae-audio[mkl]"): skipped')
        return None
    torch = torch_or_none()
    name, K, ph, pw, N, C, H, W, _ = (QUICK_CASES if quick else CONVAE_CASES)[0]
    theta, X = convae_problem(K, ph, pw, N, C, H, W, np.float32)
    X16 = X.astype(bfloat16_dtype())
    cae = {"numba float32": _runner("numba", theta, X, K, ph, pw),
           "numba bfloat16": _runner("numba", theta, X16, K, ph, pw),
           "numpy reference bfloat16": _runner("numpy", theta, X16, K, ph, pw)}
    if torch is not None:
        cae["pytorch CPU bfloat16, autograd"] = torch_conv_ae_bf16(theta, X, K, ph, pw, torch)
    for fn in cae.values():
        fn()                                               # compile / warm up
    t = time_alternating(cae, blocks=2 if quick else 3)
    header = ["implementation", "median ms", "time / numba float32", "time / numba bfloat16"]
    gflop = convae_flops(K, ph, pw, N, C, H, W) / 1e9
    print_table(f"Convolutional autoencoder cost+grad in bfloat16, {name} ({N} inputs, {K} "
                f"filters {ph}x{pw}; {gflop:.1f} GFLOP in float32, the weights' products twice "
                "in bfloat16)", header,
                [[impl, f"{v * 1e3:.1f}", f"{v / t['numba float32']:.2f}",
                  f"{v / t['numba bfloat16']:.2f}"] for impl, v in t.items()])

    name, layers, N, shape, n_classes, _ = (QUICK_NET_CASES if quick else NET_CASES)[0]
    theta, X, y = net_problem(layers, N, shape, n_classes, np.float32)
    X16 = X.astype(bfloat16_dtype())
    net = {"numba float32": _net_runner("numba", layers, theta, X, y, n_classes),
           "numba bfloat16": _net_runner("numba", layers, theta, X16, y, n_classes),
           "numpy reference bfloat16": _net_runner("numpy", layers, theta, X16, y, n_classes)}
    for fn in net.values():
        fn()
    tn = time_alternating(net, blocks=2 if quick else 3)
    print_table(f"Convolutional network cost+grad in bfloat16, {name} ({N} inputs)", header,
                [[impl, f"{v * 1e3:.1f}", f"{v / tn['numba float32']:.2f}",
                  f"{v / tn['numba bfloat16']:.2f}"] for impl, v in tn.items()])
    return t, tn


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a quarter of the inputs, float32 only")
    run(quick=p.parse_args().quick)
