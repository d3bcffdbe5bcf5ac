"""Convolution and pooling benchmarks: Numba vs NumPy reference vs PyTorch CPU."""
from __future__ import annotations

import numpy as np

from fastsae import reference
from fastsae.conv import region_bounds
from fastsae.core.bfloat16 import bfloat16_dtype
from fastsae.kernels import _mkl
from fastsae.kernels import conv as numba_conv

from ._util import print_table, time_side_by_side, timeit, torch_or_none, with_scipy_blas_row
from .cases import (CONV_SHAPES, CONV_SHAPES_QUICK, POOL_SHAPES, POOL_SHAPES_QUICK, conv_flops)


GEMM_FLOOR = "its one GEMM alone (NumPy BLAS, out= preallocated)"


def conv_problem(K, ph, pw, N, H, W, dtype, seed=0):
    rng = np.random.default_rng(seed)
    F = (rng.standard_normal((K, ph, pw)) / np.sqrt(ph * pw)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    images = rng.uniform(0, 1, (N, H, W)).astype(dtype)
    return F, b, images


def conv_impls(F, b, images, include_reference=True):
    K, ph, pw = F.shape
    N, H, W = images.shape
    buf = np.empty((N, K, H - ph + 1, W - pw + 1), images.dtype)
    impls = {"numba": lambda: numba_conv.convolve(F, b, images, activation="sigmoid"),
             "numba, out= a reused buffer": lambda: numba_conv.convolve(
                 F, b, images, activation="sigmoid", out=buf)}
    # the floor: the one GEMM of the same shape as the convolution's im2col product
    # (filters x patches), NumPy's BLAS, into a preallocated output
    P = (H - ph + 1) * (W - pw + 1)
    Wmat = np.ascontiguousarray(F.reshape(K, ph * pw))
    cols = np.random.default_rng(1).uniform(0, 1, (ph * pw, N * P)).astype(images.dtype)
    gemm_out = np.empty((K, N * P), images.dtype)
    impls[GEMM_FLOOR] = lambda: np.matmul(Wmat, cols, out=gemm_out)
    if include_reference:
        impls["numpy reference"] = lambda: reference.convolve(F, b, images, activation="sigmoid")
    torch = torch_or_none()
    if images.dtype == np.float32 and _mkl.available():
        images16 = images.astype(bfloat16_dtype())
        impls["numba bfloat16 (oneMKL)"] = lambda: numba_conv.convolve(F, b, images16,
                                                                       activation="sigmoid")
        if torch is not None:
            x16 = torch.from_numpy(images)[:, None].to(torch.bfloat16)
            w16 = torch.from_numpy(F)[:, None].to(torch.bfloat16)
            b16 = torch.from_numpy(b).to(torch.bfloat16)
            impls["pytorch conv2d bfloat16"] = lambda: torch.sigmoid(
                torch.nn.functional.conv2d(x16, w16, b16).float())
    if torch is not None:
        x = torch.from_numpy(images)[:, None]
        w = torch.from_numpy(F)[:, None]
        bb = torch.from_numpy(b)
        impls["pytorch conv2d + sigmoid"] = lambda: torch.sigmoid(torch.nn.functional.conv2d(x, w, bb))
    return with_scipy_blas_row(impls, "numba, out= a reused buffer")


def pool_impls(maps, rs, re, cs, ce, mode, torch=None, pool_shape=None):
    """Pooling implementations of one case: name -> zero-argument callable."""
    impls = {
        "numba": lambda: numba_conv.pool_regions(maps, rs, re, cs, ce, mode=mode),
        "numpy reference": lambda: reference.pool_regions(maps, rs, re, cs, ce, mode=mode),
    }
    if torch is not None and pool_shape is not None:
        x = torch.from_numpy(maps)
        fns = {"mean": torch.nn.functional.avg_pool2d, "max": torch.nn.functional.max_pool2d}
        chosen = [fns[m] for m in ((mode,) if isinstance(mode, str) else mode)]
        name = " + ".join(f.__name__ for f in chosen)
        impls[f"pytorch {name}"] = ((lambda: chosen[0](x, pool_shape)) if len(chosen) == 1
                                    else lambda: torch.stack([f(x, pool_shape) for f in chosen]))
    return impls


def run_conv(gemm_rates, quick=False):
    for name, K, ph, pw, N, H, W, dtype in (CONV_SHAPES_QUICK if quick else CONV_SHAPES):
        F, b, images = conv_problem(K, ph, pw, N, H, W, dtype)
        flops = conv_flops(K, ph, pw, N, H, W)
        big = flops > 5e9
        impls = conv_impls(F, b, images, include_reference=True)
        times = {k: t for k, (t, _) in time_side_by_side(impls, rounds=3,
                                                          per_block=1 if big else 3).items()}
        rate = gemm_rates[np.dtype(dtype)]
        rows = []
        for impl, t in times.items():
            rows.append([impl, f"{t * 1e3:.1f}", f"{flops / t / 1e9:.1f}", f"{flops / t / 1e9 / rate:.0%}",
                         f"{t / times[GEMM_FLOOR]:.2f}",
                         f"{times['numpy reference'] / t:.2f}",
                         f"{times['pytorch conv2d + sigmoid'] / t:.2f}" if "pytorch conv2d + sigmoid" in times else "-"])
        print_table(f"Convolution + sigmoid, {name}: {K} filters {ph}x{pw} over {N} inputs {H}x{W}, "
                    f"{np.dtype(dtype).name} ({flops / 1e9:.2f} GFLOP useful)",
                    ["implementation", "median ms", "GFLOP/s", "of GEMM peak",
                     "time / its GEMM", "x vs reference", "x vs pytorch"], rows)


def run_pool(quick=False):
    torch = torch_or_none()
    for name, shape, (ph, pw), dtype in (POOL_SHAPES_QUICK if quick else POOL_SHAPES):
        maps = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        rs, re = region_bounds(shape[2], size=ph)
        cs, ce = region_bounds(shape[3], size=pw)
        rows = []
        for mode in ("mean", "max", ("mean", "max")):     # the last: both in one read
            impls = pool_impls(maps, rs, re, cs, ce, mode, torch, (ph, pw))
            times = {k: timeit(fn, repeat=7)[0] for k, fn in impls.items()}
            tt = [t for k, t in times.items() if k.startswith("pytorch")]
            for impl, t in times.items():
                rows.append([mode if isinstance(mode, str) else "+".join(mode), impl,
                             f"{t * 1e3:.2f}", f"{maps.nbytes / t / 1e9:.1f}",
                             f"{times['numpy reference'] / t:.2f}", f"{tt[0] / t:.2f}" if tt else "-"])
        print_table(f"Pooling {ph}x{pw}, {name} {shape}, {np.dtype(dtype).name} ({maps.nbytes / 1e6:.0f} MB read)",
                    ["mode", "implementation", "median ms", "GB/s read", "x vs reference", "x vs pytorch"], rows)


def run(gemm_rates, quick=False):
    run_conv(gemm_rates, quick=quick)
    run_pool(quick=quick)
