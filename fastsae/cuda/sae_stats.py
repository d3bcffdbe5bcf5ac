"""CUDA kernel for one shard's sparse-autoencoder statistics (twin of
:func:`fastsae.reference.sae_stats.sae_shard_stats` and
:func:`fastsae.kernels.sae_stats.sae_shard_stats`).

A shard does not know ``ρ̂`` (a mean over every shard), so instead of the
hidden deltas it returns the sums from which the driver forms them (see
:mod:`fastsae.reference.sae_stats`). The evaluation is that of
:mod:`fastsae.cuda.sae` up to the hidden layer, with ``X`` on the device:

1. theta (float64) is copied in and cast to the compute dtype
   (``cast_params``, which also zeroes the float64 sums);
2. ``A2 = X W1ᵀ`` (GEMM), then bias + sigmoid in place, summing ``Σ a2``;
3. ``Z3 = A2 W2ᵀ`` (GEMM), turned in place into ``δ3`` while the data cost and
   ``Σ δ3`` are summed; ``gW2 = δ3ᵀ A2`` (GEMM);
4. ``D = δ3 W2`` (GEMM), then one kernel writes ``[D ⊙ a2' | a2']`` (a
   ``(n_samples × 2h)`` buffer; ``a2' = a2(1 − a2)``) and sums the columns of
   both halves (``p`` and ``q``), so that one GEMM
   ``[P; Q] = [D ⊙ a2' | a2']ᵀ X`` forms both ``P`` and ``Q``. Without the
   sparsity term (``with_sparsity=False``) ``D ⊙ a2'`` overwrites ``D`` and the
   GEMM forms ``P`` alone.

The float64 sums are accumulated in place in the statistics vector itself
(laid out by :func:`fastsae.core.layouts.sae_stats_layout`), and in float64
the GEMMs write their parts of it too, so that one copy brings the whole
vector back; in float32 the products go to a float32 buffer that one kernel
casts into the vector. With tied weights ``W2 = W1ᵀ`` is never formed: the
products read ``W1`` transposed.
"""
from __future__ import annotations

import numpy as np

from ..core.args import check_stats_options
from ..core.layouts import layout_size, sae_layout, sae_stats_layout
from . import _matmul as mm
from ._arrays import device_input, shape_proxy
from ._device import cuda, ensure_available, launcher, theta_to_device, workspace
from ._elementwise import (LINEAR_SQUARED, SIGMOID_CROSS_ENTROPY, SIGMOID_SQUARED, cast_into,
                           grid1d, grid2d, kernels)

#: the parts of the statistics vector that are float64 sums (count, data, rho_sum, gb2, p, q)
_N_SUMS = 6


class _Workspace:
    """Device buffers and launch shapes for one (m, v, h, dtype, tied, with_q, engine)."""

    def __init__(self, m, v, h, dtype, tied, with_q, eng):
        c = cuda()
        self.eng = eng
        n_params = layout_size(sae_layout(v, h, tied))
        sizes = sae_stats_layout(v, h, with_q)
        bounds = np.cumsum((0,) + sizes)
        n_sums = int(bounds[_N_SUMS])
        self.n_params = n_params
        self.theta = c.device_array(n_params, np.float64)
        self.w = c.device_array(n_params, dtype)
        self.out = c.device_array(int(bounds[-1]), np.float64)

        def part(i):
            return self.out[int(bounds[i]):int(bounds[i + 1])]

        self.sums = self.out[:n_sums]           # zeroed at every call
        self.data, self.rho, self.gb2, self.p, self.q = (part(i) for i in range(1, _N_SUMS))
        # the GEMMs' parts: gW2 (v, h), then P (h, v) and Q (h, v) one after the other
        self.products = self.out[n_sums:]
        self.prod = self.products if dtype == np.float64 else \
            c.device_array(self.products.size, dtype)
        self.gW2 = self.prod[:v * h].reshape(v, h)
        self.PQ = self.prod[v * h:].reshape((2 if with_q else 1) * h, v)
        # parameter views
        hv = h * v
        n_w2 = 0 if tied else hv
        self.W1 = self.w[:hv].reshape(h, v)
        self.W2 = None if tied else self.w[hv:hv + n_w2].reshape(v, h)
        self.b1 = self.w[hv + n_w2:hv + n_w2 + h]
        self.b2 = self.w[hv + n_w2 + h:]
        # (m × ·) buffers
        self.A2 = c.device_array((m, h), dtype)
        self.Z3 = c.device_array((m, v), dtype)
        self.D = c.device_array((m, h), dtype)
        self.D2 = c.device_array((m, 2 * h), dtype) if with_q else self.D
        op = lambda a: None if a is None else mm.operand(a, eng)  # noqa: E731
        self.op = {name: op(getattr(self, name))
                   for name in ("W1", "W2", "A2", "Z3", "D", "D2", "gW2", "PQ")}
        self._x = (None, None)
        self.grid_h = grid2d(m, h)
        self.grid_v = grid2d(m, v)
        self.grid_n = grid1d(max(n_params, n_sums))

    def x_operand(self, X):
        if self._x[0] is not X:
            self._x = (X, mm.operand(X, self.eng))
        return self._x[1]


def sae_shard_stats(theta, X, n_visible, n_hidden, *, decoder="sigmoid", loss="squared",
                    tied=False, with_sparsity=True):
    """One shard's sufficient statistics, CUDA backend.

    Same signature and results as
    :func:`fastsae.reference.sae_stats.sae_shard_stats` (see there). ``X``
    may be a device array (used in place) or a NumPy array (copied to the
    device: what a Dask worker passes). Computes in ``X.dtype``; returns the
    float64 statistics vector laid out by
    :func:`~fastsae.core.layouts.sae_stats_layout`.
    """
    ensure_available()
    check_stats_options(theta, shape_proxy(X), n_visible, n_hidden, decoder, loss, tied,
                        with_sparsity)
    Xd = device_input(X)
    dt = np.dtype(Xd.dtype)
    m, v, h = Xd.shape[0], int(n_visible), int(n_hidden)
    tied, with_q = bool(tied), bool(with_sparsity)
    kind = (SIGMOID_CROSS_ENTROPY if loss == "cross_entropy"
            else LINEAR_SQUARED if decoder == "linear" else SIGMOID_SQUARED)
    eng = mm.engine()
    ws = workspace("sae_stats", (m, v, h, dt, tied, with_q, eng),
                   lambda: _Workspace(m, v, h, dt, tied, with_q, eng))
    K = kernels(dt)
    op = ws.op
    Xop = ws.x_operand(Xd)

    theta_to_device(theta, ws.theta)
    with mm.stream_scope(eng):
        # the data slot stands in for cast_params' scalar: it is zeroed either way
        launcher(K.cast_params, *ws.grid_n)(ws.theta, ws.w, ws.sums, ws.data)
        # encode: A2 = σ(X W1ᵀ + b1), Σ a2
        mm.gemm(eng, False, True, 1.0, Xop, op["W1"], 0.0, op["A2"])
        grid, block, rpb = ws.grid_h
        launcher(K.bias_sigmoid, grid, block)(ws.A2, ws.b1, ws.rho, rpb, 1)
        # decode and output delta: Z3 = A2 W2ᵀ -> δ3, its data cost and Σ δ3
        if tied:
            mm.gemm(eng, False, False, 1.0, op["A2"], op["W1"], 0.0, op["Z3"])
        else:
            mm.gemm(eng, False, True, 1.0, op["A2"], op["W2"], 0.0, op["Z3"])
        grid, block, rpb = ws.grid_v
        launcher(K.output_delta, grid, block)(ws.Z3, Xd, ws.b2, kind, ws.data, ws.gb2, rpb)
        # gW2 = δ3ᵀ A2 (the same with tied weights: the driver transposes it)
        mm.gemm(eng, True, False, 1.0, op["Z3"], op["A2"], 0.0, op["gW2"])
        # D = δ3 W2 (tied: δ3 W1ᵀ), then [D ⊙ a2' | a2'] with p, q
        if tied:
            mm.gemm(eng, False, True, 1.0, op["Z3"], op["W1"], 0.0, op["D"])
        else:
            mm.gemm(eng, False, False, 1.0, op["Z3"], op["W2"], 0.0, op["D"])
        grid, block, rpb = ws.grid_h
        launcher(K.hidden_stats, grid, block)(ws.D, ws.A2, ws.D2, ws.p, ws.q, rpb, int(with_q))
        # [P; Q] = [D ⊙ a2' | a2']ᵀ X (P alone without the sparsity term)
        mm.gemm(eng, True, False, 1.0, op["D2"], Xop, 0.0, op["PQ"])
        if ws.prod is not ws.products:
            cast_into(ws.prod, ws.products)
    out = ws.out.copy_to_host()  # a fresh array: the shards' vectors are summed afterwards
    out[0] = m
    if kind != SIGMOID_CROSS_ENTROPY:
        out[1] *= 0.5  # the kernel sums (a3 − x)²
    return out


__all__ = ["sae_shard_stats"]
