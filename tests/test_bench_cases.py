"""Every benchmark case, sample dimension cut down, through the benchmarks' own
implementation builders: each timed implementation equals the NumPy reference.

The shapes (features, hidden units, filters, image sizes) come from
``fastsae.benchmarks.cases``, the table that also drives ``fastsae bench`` and
``pytest bench/``: a benchmarked implementation that computes something else
fails here.
"""
import numpy as np
import pytest

from fastsae.benchmarks import cases
from fastsae.benchmarks.conv import GEMM_FLOOR, conv_impls, conv_problem, pool_impls
from fastsae.benchmarks.sae import FLOOR, REFERENCE, sae_impls, sae_problem
from fastsae.benchmarks.softmax import softmax_impls, softmax_problem, stacked_impls, stacked_problem
from fastsae.benchmarks._util import torch_or_none
from fastsae.conv import region_bounds

TORCH = torch_or_none()


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-9,
                                                                                  atol=1e-11)


def _compare(impls, dtype, skip=()):
    cost0, grad0 = impls[REFERENCE]()
    checked = 0
    for name, fn in impls.items():
        if name in skip or name == REFERENCE:
            continue
        cost, grad = fn()
        tol = _tol(dtype)
        assert cost == pytest.approx(cost0, rel=tol["rtol"]), name
        np.testing.assert_allclose(grad, grad0, rtol=tol["rtol"],
                                   atol=tol["atol"] * np.abs(grad0).max(), err_msg=name)
        checked += 1
    assert checked >= 1


SAE_CASES = [(shape, opt) for shape in cases.SAE_SHAPES + cases.SAE_OPTION_SHAPES
             for opt in cases.SAE_OPTIONS]


@pytest.mark.parametrize("case,option", SAE_CASES,
                         ids=[f"{s[0]}-{np.dtype(s[4]).name}-{o[0]}" for s, o in SAE_CASES])
def test_sae_cases(case, option):
    name, v, h, m, dtype = case
    theta, X = sae_problem(v, h, min(m, 300), dtype)
    impls = sae_impls(theta, X, v, h, option[1] or None, TORCH)
    impls[FLOOR]()                                   # the floor runs; it computes no objective
    _compare(impls, dtype, skip=(FLOOR,))


@pytest.mark.parametrize("case", cases.SOFTMAX_CASES + cases.QUICK_SOFTMAX,
                         ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_softmax_cases(case):
    name, m, n, K, dtype = case
    theta, X, y = softmax_problem(min(m, 500), n, K, dtype)
    _compare(softmax_impls(theta, X, y, K, TORCH), dtype, skip=("2 GEMMs alone (NumPy BLAS)",))


@pytest.mark.parametrize("case", cases.STACKED_CASES + cases.QUICK_STACKED,
                         ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_stacked_cases(case):
    name, m, sizes, K, dtype = case
    theta, X, y = stacked_problem(min(m, 200), sizes, K, dtype)
    _compare(stacked_impls(theta, X, y, sizes, K, TORCH), dtype)


@pytest.mark.parametrize("case", cases.CONV_SHAPES + cases.CONV_SHAPES_QUICK,
                         ids=lambda c: f"{c[0]}-{np.dtype(c[7]).name}")
def test_conv_cases(case):
    name, K, ph, pw, N, H, W, dtype = case
    F, b, images = conv_problem(min(K, 64), ph, pw, 2, H, W, dtype)
    impls = conv_impls(F, b, images)
    ref = impls.pop("numpy reference")()
    assert impls.pop(GEMM_FLOOR)().shape == (F.shape[0], ref.shape[0] * ref[0, 0].size)
    assert len(impls) >= 1
    for impl, fn in impls.items():
        out = np.asarray(fn())
        if "bfloat16" in impl:            # bfloat16 operands: maps within a few 1e-3
            np.testing.assert_allclose(out, ref, rtol=0, atol=2e-2, err_msg=impl)
        else:
            np.testing.assert_allclose(out, ref, **_tol(dtype), err_msg=impl)


@pytest.mark.parametrize("mode", ["mean", "max", ("mean", "max")], ids=str)
@pytest.mark.parametrize("case", cases.POOL_SHAPES + cases.POOL_SHAPES_QUICK,
                         ids=lambda c: f"{c[0]}-{np.dtype(c[3]).name}")
def test_pool_cases(case, mode):
    name, shape, (ph, pw), dtype = case
    maps = np.random.default_rng(0).standard_normal((2, min(shape[1], 16)) + shape[2:]).astype(dtype)
    rs, re = region_bounds(shape[2], size=ph)
    cs, ce = region_bounds(shape[3], size=pw)
    impls = pool_impls(maps, rs, re, cs, ce, mode, TORCH, (ph, pw))
    ref = impls.pop("numpy reference")()
    for impl, fn in impls.items():
        out = np.asarray(fn())
        if out.shape != ref.shape:        # PyTorch drops the remainder: compare what it pools
            out = out[..., :ref.shape[-2], :ref.shape[-1]]
            ref_cmp = ref[..., :out.shape[-2], :out.shape[-1]]
        else:
            ref_cmp = ref
        np.testing.assert_allclose(out, ref_cmp, **_tol(dtype), err_msg=impl)


@pytest.mark.parametrize("case", cases.SAE_BF16_SHAPES + cases.SAE_BF16_SHAPES_QUICK,
                         ids=lambda c: c[0])
def test_sae_bf16_cases(case):
    from fastsae.kernels import _mkl
    if not _mkl.available():
        pytest.skip('needs the mkl extra (pip install "fastsae-audio[mkl]")')
    from fastsae.benchmarks.sae_bf16 import BF16, F32, FLOOR_BF16, REF_BF16, bf16_impls
    name, v, h, m = case
    theta, X = sae_problem(v, h, min(m, 300), np.float32)
    impls = bf16_impls(theta, X, v, h, TORCH, with_reference=True)
    impls.pop(FLOOR_BF16)()                          # the floor runs; it computes no objective
    cost0, grad0 = impls.pop(REF_BF16)()
    c32, g32 = impls.pop(F32)()
    assert c32 == pytest.approx(cost0, rel=1e-2)
    for impl, fn in impls.items():                   # numba bfloat16, and PyTorch's where present
        cost, grad = fn()
        tight = impl == BF16
        assert cost == pytest.approx(cost0, rel=5e-6 if tight else 1e-2), impl
        np.testing.assert_allclose(grad, grad0, rtol=0, err_msg=impl,
                                   atol=(1e-4 if tight else 5e-2) * np.abs(grad0).max())


def test_softmax_bf16_implementations_agree():
    from fastsae.kernels import _mkl
    if not _mkl.available():
        pytest.skip('needs the mkl extra (pip install "fastsae-audio[mkl]")')
    from fastsae import reference
    from fastsae.benchmarks.softmax import WEIGHT_DECAY, torch_softmax_bf16
    from fastsae.core.bfloat16 import bfloat16_dtype
    from fastsae.kernels import softmax as numba_softmax

    theta, X, y = softmax_problem(300, 37, 5, np.float32)
    theta = theta + 0.05 * np.random.default_rng(1).standard_normal(theta.size)
    X16 = X.astype(bfloat16_dtype())
    c0, g0 = reference.softmax_cost_grad(theta, X16, y, 5, weight_decay=WEIGHT_DECAY)
    c, g = numba_softmax.softmax_cost_grad(theta, X16, y, 5, weight_decay=WEIGHT_DECAY)
    assert c == pytest.approx(c0, rel=5e-6)
    np.testing.assert_allclose(g, g0, rtol=0, atol=1e-5 * np.abs(g0).max())
    if TORCH is not None:
        ct, gt = torch_softmax_bf16(theta, X, y, 5, TORCH)()
        assert ct == pytest.approx(c0, rel=1e-2)
        np.testing.assert_allclose(gt, g0, rtol=0, atol=5e-2 * np.abs(g0).max())


def test_compile_probe_counts_outermost_compilations_only():
    from numba import njit
    from numba.core import event

    from fastsae.benchmarks._compile_probe import _CompileTimes

    @njit
    def _inner(x):
        return x * 2.0

    @njit
    def _outer(x):
        return _inner(x) + 1.0

    listener = _CompileTimes()
    with event.install_listener("numba:compile", listener):
        assert _outer(1.5) == 4.0
        _outer(2.5)                       # compiled already: no new event
        _outer(3)                         # a second signature
    names = [n for n in listener.seconds if n.endswith("_outer")]
    assert len(names) == 1 and listener.count[names[0]] == 2
    assert not any(n.endswith("_inner") for n in listener.seconds)
    assert listener.seconds[names[0]] > 0 and not listener.stack


def test_convolutional_bfloat16_tables_time_what_they_name(monkeypatch, capsys):
    from fastsae.benchmarks import convae as bc
    from fastsae.benchmarks._util import record_tables
    from fastsae.kernels import _mkl

    if not _mkl.available():
        pytest.skip('needs the mkl extra (pip install "fastsae-audio[mkl]")')
    monkeypatch.setattr(bc, "QUICK_CASES", [("tiny", 4, 3, 3, 3, 1, 9, 10, np.float32)])
    layers = [dict(n_filters=3, patch_shape=(3, 3), n_pool_regions=(2, 2))]
    monkeypatch.setattr(bc, "QUICK_NET_CASES", [("tiny", layers, 3, (1, 9, 10), 3, np.float32)])
    with record_tables() as tables:
        bc.run_bf16(quick=True)
    assert [t["title"].split(" cost+grad")[0] for t in tables] == [
        "Convolutional autoencoder", "Convolutional network"]
    names = [r["implementation"] for r in tables[0]["rows"]]
    assert names[:3] == ["numba float32", "numba bfloat16", "numpy reference bfloat16"]
    assert ("pytorch CPU bfloat16, autograd" in names) == (TORCH is not None)
    for t in tables:
        row = {r["implementation"]: r for r in t["rows"]}
        assert row["numba bfloat16"]["time / numba bfloat16"] == "1.00"
    if TORCH is not None:                  # the PyTorch column computes the same objective
        theta, X = bc.convae_problem(4, 3, 3, 3, 1, 9, 10, np.float32)
        c_ref, g_ref = bc._runner("numpy", theta, X.astype(np.float64), 4, 3, 3)()
        c_t, g_t = bc.torch_conv_ae_bf16(theta, X, 4, 3, 3, TORCH)()
        assert c_t == pytest.approx(c_ref, rel=1e-2)
        assert np.linalg.norm(g_t - g_ref) <= 2e-2 * np.linalg.norm(g_ref)


@pytest.mark.parametrize("case", cases.LBFGS_CASES + cases.QUICK_LBFGS, ids=lambda c: c[0])
def test_lbfgs_cases(case):
    from fastsae.benchmarks import lbfgs as bench_lbfgs
    name, n, history = case
    # the case's history, over fewer parameters (its share of the real one's)
    impls = bench_lbfgs.lbfgs_impls(*bench_lbfgs.lbfgs_problem(n // 100 + 1, history),
                                    torch=TORCH)
    impls.pop(bench_lbfgs.FLOOR)()                   # the floor runs; it computes no direction
    ref = impls.pop(bench_lbfgs.REFERENCE)()
    assert len(impls) >= 2
    for label, fn in impls.items():
        tol = 1e-4 if "PyTorch" in label else 1e-6   # float32 pairs vs float64 ones: 1e-7 apart
        np.testing.assert_allclose(fn(), ref, rtol=tol, atol=tol * np.abs(ref).max(),
                                   err_msg=label)
