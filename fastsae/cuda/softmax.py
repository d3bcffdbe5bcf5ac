"""CUDA kernels for softmax regression (twins of :func:`fastsae.reference.softmax_cost_grad`
and :func:`fastsae.reference.softmax_predict_proba`).

Softmax regression is the network of :mod:`fastsae.cuda.stacked` with no
sigmoid layer, and both run through :func:`network_cost_grad` here: the
forward pass (GEMM, then bias + sigmoid in place, per layer), the logits
``Z = A_L Wᵀ`` (GEMM), one kernel that turns each row of ``Z`` into
``P − onehot(y)`` in place (overflow-safe) while summing the negative
log-likelihood and the columns for the softmax bias gradient, ``gW = δᵀ A_L``
(GEMM), and back through the sigmoid layers (two GEMMs and one fused
``δ ⊙ A(1 − A)`` + column-sum kernel per layer, each delta overwriting the
activations it came from). The labels are copied to the device only when
they change.
"""
from __future__ import annotations

import numpy as np

from ..core.args import check_proba_args, check_softmax_args
from ..core.layouts import stacked_layout
from . import _matmul as mm
from ._arrays import device_input, shape_proxy
from ._device import cuda, ensure_available, launcher, theta_to_device, workspace
from ._elementwise import grid1d, grid2d, kernels

N_SCALARS = 2
NLL, NORM = range(N_SCALARS)


class _NetworkWorkspace:
    """Device buffers for one (m, layer sizes, n_classes, dtype, engine)."""

    def __init__(self, m, sizes, K, dtype, eng):
        c = cuda()
        self.eng = eng
        L = len(sizes) - 1
        hL = sizes[-1]
        layout = stacked_layout(sizes, K)
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in layout])
        n = int(offsets[-1])
        self.n = n
        self.L = L
        self.theta = c.device_array(n, np.float64)
        self.w = c.device_array(n, dtype)
        self.g = c.device_array(n, dtype)
        self.acc = c.device_array(n + N_SCALARS, np.float64)
        self.out = c.device_array(n + N_SCALARS, np.float64)
        code = np.zeros(n, np.int8)
        code[:K * hL] = 1                                  # softmax weights: λ
        for l in range(L):
            code[offsets[2 + 2 * l]:offsets[3 + 2 * l]] = 2  # layer weights: λ_s

        def seg(buf, i, shape=None):
            view = buf[int(offsets[i]):int(offsets[i + 1])]
            return view if shape is None else view.reshape(*shape)

        self.Ws = seg(self.w, 0, (K, hL))
        self.bs = seg(self.w, 1)
        self.gWs = seg(self.g, 0, (K, hL))
        self.gbs = seg(self.acc, 1)
        self.W = [seg(self.w, 2 + 2 * l, layout[2 + 2 * l]) for l in range(L)]
        self.b = [seg(self.w, 3 + 2 * l) for l in range(L)]
        self.gW = [seg(self.g, 2 + 2 * l, layout[2 + 2 * l]) for l in range(L)]
        self.gb = [seg(self.acc, 3 + 2 * l) for l in range(L)]
        self.nll = self.acc[n + NLL:n + NLL + 1]
        self.norm = self.out[n + NORM:n + NORM + 1]
        self.code = c.to_device(code)
        self.A = [c.device_array((m, sizes[l + 1]), dtype) for l in range(L)]
        self.Z = c.device_array((m, K), dtype)
        hmax = max(sizes[1:], default=1)
        self.Bflat = c.device_array(m * hmax, dtype)
        self.B = {h: self.Bflat[:m * h].reshape(m, h) for h in set(sizes[1:])}
        self.zeros = c.to_device(np.zeros(hmax, dtype))
        op = lambda a: mm.operand(a, eng)  # noqa: E731
        self.op = dict(Ws=op(self.Ws), gWs=op(self.gWs), Z=op(self.Z),
                       W=[op(a) for a in self.W], gW=[op(a) for a in self.gW],
                       A=[op(a) for a in self.A], B={h: op(a) for h, a in self.B.items()})
        self.y_host = None
        self.y_dev = c.device_array(m, np.int64)
        self._x = (None, None)
        self.grids = {h: grid2d(m, h) for h in set(sizes[1:])}
        self.grid_rows = grid1d(m)
        self.grid_n = grid1d(n + N_SCALARS)
        self.grid_grad = grid1d(n)

    def x_operand(self, X):
        if self._x[0] is not X:
            self._x = (X, mm.operand(X, self.eng))
        return self._x[1]

    def labels(self, y):
        if self.y_host is None or not np.array_equal(self.y_host, y):
            self.y_dev.copy_to_device(np.ascontiguousarray(y, dtype=np.int64))
            self.y_host = np.array(y, copy=True)
        return self.y_dev


def network_cost_grad(theta, X, y, sizes, K, weight_decay, stack_weight_decay):
    """Cost and float64 gradient of a softmax on ``len(sizes) - 1`` sigmoid layers
    (checked arguments; theta in :func:`fastsae.core.layouts.stacked_layout` order)."""
    Xd = device_input(X)
    dt = np.dtype(Xd.dtype)
    m = Xd.shape[0]
    sizes = tuple(int(s) for s in sizes)
    eng = mm.engine()
    ws = workspace("network", (m, sizes, K, dt, eng),
                   lambda: _NetworkWorkspace(m, sizes, K, dt, eng))
    E = kernels(dt)
    n, L, op = ws.n, ws.L, ws.op
    yd = ws.labels(y)
    Xop = ws.x_operand(Xd)
    acts = [Xd] + ws.A
    act_ops = [Xop] + op["A"]

    theta_to_device(theta, ws.theta)
    with mm.stream_scope(eng):
        launcher(E.cast_params, *ws.grid_n)(ws.theta, ws.w, ws.acc, ws.norm)
        for l in range(L):                                   # A_l = σ(A_{l-1} W_lᵀ + b_l)
            mm.gemm(eng, False, True, 1.0, act_ops[l], op["W"][l], 0.0, act_ops[l + 1])
            grid, block, rpb = ws.grids[sizes[l + 1]]
            launcher(E.bias_sigmoid, grid, block)(acts[l + 1], ws.b[l], ws.zeros, rpb, 0)
        mm.gemm(eng, False, True, 1.0, act_ops[L], op["Ws"], 0.0, op["Z"])   # Z = A_L Wsᵀ
        launcher(E.softmax_delta, *ws.grid_rows)(ws.Z, ws.bs, yd, ws.gbs, ws.nll)
        mm.gemm(eng, True, False, 1.0, op["Z"], act_ops[L], 0.0, op["gWs"])  # gWs = δᵀ A_L
        if L:
            hL = sizes[L]
            mm.gemm(eng, False, False, 1.0, op["Z"], op["Ws"], 0.0, op["B"][hL])  # δ Ws
            grid, block, rpb = ws.grids[hL]
            launcher(E.sigmoid_delta, grid, block)(ws.B[hL], acts[L], ws.zeros, acts[L],
                                                   ws.gb[L - 1], rpb)
        for l in range(L, 0, -1):                             # acts[l] now holds δ_l
            mm.gemm(eng, True, False, 1.0, act_ops[l], act_ops[l - 1], 0.0, op["gW"][l - 1])
            if l > 1:
                h_in = sizes[l - 1]
                mm.gemm(eng, False, False, 1.0, act_ops[l], op["W"][l - 1], 0.0, op["B"][h_in])
                grid, block, rpb = ws.grids[h_in]
                launcher(E.sigmoid_delta, grid, block)(ws.B[h_in], acts[l - 1], ws.zeros,
                                                       acts[l - 1], ws.gb[l - 2], rpb)
        launcher(E.assemble, *ws.grid_grad)(ws.g, ws.acc, ws.theta, ws.w, ws.code,
                                            float(weight_decay), float(stack_weight_decay),
                                            1.0 / m, ws.out, ws.norm)
        launcher(E.copy_scalars, 1, N_SCALARS)(ws.acc, ws.out, n, N_SCALARS - 1)
    host = ws.out.copy_to_host()  # a fresh array: L-BFGS keeps the gradients it is given
    cost = host[n + NLL] / m + 0.5 * host[n + NORM]
    return float(cost), host[:n]


def softmax_cost_grad(theta, X, y, n_classes, *, weight_decay):
    """Softmax regression cost and gradient, CUDA backend.

    Same signature, layout (``W (n_classes, n_features)`` then ``b``), objective
    and results as :func:`fastsae.reference.softmax_cost_grad` (see there).
    ``X`` may be a device array (used in place) or a NumPy array (copied).
    Computes in ``X.dtype``; returns ``(float, float64 gradient)``.
    """
    ensure_available()
    K, y, _ = check_softmax_args(theta, shape_proxy(X), y, n_classes, weight_decay)
    return network_cost_grad(theta, X, y, (X.shape[1],), K, weight_decay, 0.0)


def softmax_predict_proba(W, b, X):
    """Class probabilities ``softmax(X Wᵀ + b)`` as a NumPy array, CUDA backend (twin of
    :func:`fastsae.reference.softmax_predict_proba`); ``X`` on the host or the device."""
    ensure_available()
    W, b = check_proba_args(W, b, shape_proxy(X))
    c = cuda()
    Xd = device_input(X)
    dt = np.dtype(Xd.dtype)
    m, K = Xd.shape[0], W.shape[0]
    if m == 0:
        return np.empty((0, K), dt)
    Wd = c.to_device(np.ascontiguousarray(W, dtype=dt))
    bd = c.to_device(np.ascontiguousarray(b, dtype=dt))
    P = c.device_array((m, K), dt)
    eng = mm.engine()
    with mm.stream_scope(eng):
        mm.gemm(eng, False, True, 1.0, mm.operand(Xd, eng), mm.operand(Wd, eng), 0.0,
                mm.operand(P, eng))
        launcher(kernels(dt).softmax_rows, *grid1d(m))(P, bd)
    return P.copy_to_host()


__all__ = ["softmax_cost_grad", "softmax_predict_proba"]
