"""CUDA kernel for the sparse autoencoder objective (twin of
:func:`fastsae.reference.sae_cost_grad` and :func:`fastsae.kernels.sae.sae_cost_grad`).

One evaluation on the device, with ``X`` already there (:func:`fastsae.cuda.to_device`):

1. theta (float64) is copied in and cast to the compute dtype on the device
   (``cast_params``, which also zeroes the accumulators);
2. ``A2 = X W1ᵀ`` (GEMM), then bias + sigmoid in place, summing the columns
   for ``ρ̂`` in the same pass;
3. ``ρ̂``, the KL term and the sparsity delta ``s`` (one small kernel);
4. ``Z3 = A2 W2ᵀ`` (GEMM), turned in place into the output delta ``δ3`` while
   its data-cost terms and the output bias gradient are summed;
5. ``gW2 = δ3ᵀ A2`` and ``D = δ3 W2`` (GEMMs); ``δ2 = (D + s) ⊙ A2(1 − A2)`` in
   place, summing the hidden bias gradient;
6. ``gW1 = δ2ᵀ X`` (GEMM);
7. one kernel assembles the float64 gradient (scaling by ``1/m``, adding the
   weight decay and summing ``‖W‖²``), and one copy brings it back with the
   cost's partial sums.

With tied weights ``W2 = W1ᵀ`` is never formed: the products read ``W1``
transposed, and ``A2ᵀ δ3`` (= ``gW2ᵀ``) goes straight into ``gW1``'s buffer.

All ``(n_samples × ·)`` buffers live in a workspace made once per shape.
"""
from __future__ import annotations

import numpy as np

from ..core.args import check_sae_options
from . import _matmul as mm
from ._arrays import device_input, shape_proxy
from ._device import cuda, ensure_available, launcher, theta_to_device, workspace
from ._elementwise import (LINEAR_SQUARED, SIGMOID_CROSS_ENTROPY, SIGMOID_SQUARED, grid1d,
                           grid2d, kernels)

#: scalar slots after the gradient: data cost, KL, (unused), ‖W‖² weighted
N_SCALARS = 4
DATA, KL, _SPARE, NORM = range(N_SCALARS)


class _Workspace:
    """Device buffers and launch shapes for one (m, v, h, dtype, tied, engine)."""

    def __init__(self, m, v, h, dtype, tied, eng):
        c = cuda()
        self.eng = eng
        hv = h * v
        n_w2 = 0 if tied else hv
        off_b1 = hv + n_w2
        off_b2 = off_b1 + h
        n = off_b2 + v
        self.n = n
        self.theta = c.device_array(n, np.float64)
        self.w = c.device_array(n, dtype)
        self.g = c.device_array(n, dtype)
        self.acc = c.device_array(n + N_SCALARS + h, np.float64)
        self.out = c.device_array(n + N_SCALARS, np.float64)
        code = np.zeros(n, np.int8)
        code[:hv + n_w2] = 1
        self.code = c.to_device(code)
        self.A2 = c.device_array((m, h), dtype)
        self.Z3 = c.device_array((m, v), dtype)
        self.D = c.device_array((m, h), dtype)
        self.s = c.device_array(h, dtype)
        # views
        self.W1 = self.w[:hv].reshape(h, v)
        self.W2 = None if tied else self.w[hv:off_b1].reshape(v, h)
        self.b1 = self.w[off_b1:off_b2]
        self.b2 = self.w[off_b2:n]
        self.gW1 = self.g[:hv].reshape(h, v)
        self.gW2 = None if tied else self.g[hv:off_b1].reshape(v, h)
        self.gb1 = self.acc[off_b1:off_b2]
        self.gb2 = self.acc[off_b2:n]
        self.data = self.acc[n + DATA:n + DATA + 1]
        self.kl = self.acc[n + KL:n + KL + 1]
        self.rho = self.acc[n + N_SCALARS:]
        self.norm = self.out[n + NORM:n + NORM + 1]
        # GEMM operands (zero-copy CuPy views when cuBLAS does the products)
        op = lambda a: None if a is None else mm.operand(a, eng)  # noqa: E731
        self.op = {name: op(getattr(self, name))
                   for name in ("W1", "W2", "gW1", "gW2", "A2", "Z3", "D")}
        self._x = (None, None)
        # launch shapes
        self.grid_h = grid2d(m, h)
        self.grid_v = grid2d(m, v)
        self.grid_n = grid1d(max(n + N_SCALARS + h, n))
        self.grid_hidden = grid1d(h)
        self.grid_grad = grid1d(n)

    def x_operand(self, X):
        if self._x[0] is not X:
            self._x = (X, mm.operand(X, self.eng))
        return self._x[1]


def sae_cost_grad(theta, X, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                  decoder="sigmoid", loss="squared", tied=False):
    """Sparse autoencoder cost and gradient, CUDA backend.

    Same signature, objective and results as
    :func:`fastsae.reference.sae_cost_grad` (see there). ``X`` may be a device
    array (numba, CuPy, any ``__cuda_array_interface__``; used in place) or a
    NumPy array (copied to the device at each call: for training, move it once
    with :func:`fastsae.cuda.to_device`). Computes in ``X.dtype``; returns
    ``(float, float64 gradient)``.
    """
    ensure_available()
    check_sae_options(theta, shape_proxy(X), n_visible, n_hidden, sparsity, beta,
                      weight_decay, decoder, loss, tied)
    Xd = device_input(X)
    dt = np.dtype(Xd.dtype)
    m, v, h = Xd.shape[0], int(n_visible), int(n_hidden)
    tied = bool(tied)
    kind = (SIGMOID_CROSS_ENTROPY if loss == "cross_entropy"
            else LINEAR_SQUARED if decoder == "linear" else SIGMOID_SQUARED)
    eng = mm.engine()
    ws = workspace("sae", (m, v, h, dt, tied, eng), lambda: _Workspace(m, v, h, dt, tied, eng))
    K = kernels(dt)
    n = ws.n
    op = ws.op
    Xop = ws.x_operand(Xd)

    theta_to_device(theta, ws.theta)
    with mm.stream_scope(eng):
        launcher(K.cast_params, *ws.grid_n)(ws.theta, ws.w, ws.acc, ws.norm)
        # encode: A2 = σ(X W1ᵀ + b1), ρ̂ sums
        mm.gemm(eng, False, True, 1.0, Xop, op["W1"], 0.0, op["A2"])
        grid, block, rpb = ws.grid_h
        launcher(K.bias_sigmoid, grid, block)(ws.A2, ws.b1, ws.rho, rpb, 1)
        launcher(K.sparsity, *ws.grid_hidden)(ws.rho, 1.0 / m, float(sparsity), float(beta),
                                              ws.s, ws.kl)
        # decode and output delta: Z3 = A2 W2ᵀ  ->  δ3
        if tied:
            mm.gemm(eng, False, False, 1.0, op["A2"], op["W1"], 0.0, op["Z3"])
        else:
            mm.gemm(eng, False, True, 1.0, op["A2"], op["W2"], 0.0, op["Z3"])
        grid, block, rpb = ws.grid_v
        launcher(K.output_delta, grid, block)(ws.Z3, Xd, ws.b2, kind, ws.data, ws.gb2, rpb)
        # gW2 = δ3ᵀ A2 and D = δ3 W2 (tied: A2ᵀ δ3 into gW1, D = δ3 W1ᵀ)
        if tied:
            mm.gemm(eng, True, False, 1.0, op["A2"], op["Z3"], 0.0, op["gW1"])
            mm.gemm(eng, False, True, 1.0, op["Z3"], op["W1"], 0.0, op["D"])
        else:
            mm.gemm(eng, True, False, 1.0, op["Z3"], op["A2"], 0.0, op["gW2"])
            mm.gemm(eng, False, False, 1.0, op["Z3"], op["W2"], 0.0, op["D"])
        # hidden delta δ2 = (D + s) ⊙ A2(1 − A2), in place
        grid, block, rpb = ws.grid_h
        launcher(K.sigmoid_delta, grid, block)(ws.D, ws.A2, ws.s, ws.D, ws.gb1, rpb)
        # gW1 (+)= δ2ᵀ X
        mm.gemm(eng, True, False, 1.0, op["D"], Xop, 1.0 if tied else 0.0, op["gW1"])
        lam = 2.0 * weight_decay if tied else float(weight_decay)
        launcher(K.assemble, *ws.grid_grad)(ws.g, ws.acc, ws.theta, ws.w, ws.code, lam, 0.0,
                                            1.0 / m, ws.out, ws.norm)
        launcher(K.copy_scalars, 1, N_SCALARS)(ws.acc, ws.out, n, N_SCALARS - 1)
    host = ws.out.copy_to_host()  # a fresh array: L-BFGS keeps the gradients it is given

    tail = host[n:]
    data = tail[DATA] / m if kind == SIGMOID_CROSS_ENTROPY else 0.5 * tail[DATA] / m
    cost = data + beta * tail[KL] + 0.5 * tail[NORM]
    return float(cost), host[:n]
