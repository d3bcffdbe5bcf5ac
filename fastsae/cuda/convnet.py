"""CUDA kernel for the convolutional network's fine-tuning (twin of
:func:`fastsae.reference.convnet.conv_net_cost_grad` and
:func:`fastsae.kernels.convnet.conv_net_cost_grad`): sigmoid convolution
layers with pooling, and a softmax on top.

No term couples the images (no sparsity penalty), so the images go through
in chunks (sized by :data:`CHUNK_BYTES`), each chunk all the way forward and
back, and the gradients add up over the chunks. Each layer works on the
patch matrix of its input (one row per image and output position, one column
per filter offset; see :mod:`fastsae.cuda._patches`). Per chunk:

* forward, layer by layer: ``Xp_l = im2col(P_{l−1})`` (``P_0 = X``);
  ``A_l = σ(Xp_l W_lᵀ + b_l)`` (GEMM, then bias + sigmoid in place);
  ``P_l = pool(A_l)`` (mean or max over each region; the position of each
  maximum is kept), laid out ``(images, filters, R, S)``, which is both the
  next layer's input and, flattened, the softmax's features ``F``;
* the softmax: ``Z = F Wsᵀ`` (GEMM), turned in place into ``P − onehot(y)``
  by the kernel of :mod:`fastsae.cuda.softmax` (summing the negative
  log-likelihood and the bias gradient); ``gWs += δᵀ F`` and ``dF = δ Ws``
  (GEMMs);
* backward, layer by layer from the top: one kernel carries ``dP_l`` back
  through the pooling (spread over the region, or routed to its maximum) and
  the sigmoid, in place of ``A_l``, summing the bias gradient;
  ``gW_l += δ_lᵀ Xp_l`` (GEMM); above the first layer, ``δ_l W_l`` (GEMM, into
  ``Xp_l``'s buffer, no longer needed) folded back by ``col2im`` (the transposed
  convolution) is ``dP_{l−1}``, the gradient with respect to the pooled maps below.

Theta and the gradient are laid out as in
:func:`fastsae.core.layouts.conv_net_layout` (the softmax first). As in the
stacked network of :mod:`fastsae.cuda.softmax`, the weight gradients are GEMM
outputs in the compute dtype, the bias gradients and the cost float64 sums,
and one kernel assembles the float64 gradient with the weight decay (``λ`` on
the softmax, ``λ_c`` on the filters) before one copy brings it back.
"""
from __future__ import annotations

import numpy as np

from ..core.args import check_conv_net_args
from . import _matmul as mm
from ._arrays import device_input, shape_proxy
from ._device import (cuda, ensure_available, is_simulator, launcher, theta_to_device,
                      workspace)
from ._elementwise import MAX, MEAN, grid1d, grid2d, kernels
from ._patches import col2im, containing_regions, im2col, kernels as patch_kernels, pool_forward

#: device bytes for one chunk's buffers (tiny on the simulator, so that the tests go
#: through several chunks)
CHUNK_BYTES = 4096 if is_simulator() else 512 * 1024 * 1024

N_SCALARS = 2
NLL, NORM = range(N_SCALARS)


def _layers_key(plan):
    """The plan as a hashable key: each layer's shapes, pooling mode and regions."""
    return tuple((s["n_filters"], s["n_channels"], tuple(s["patch_shape"]), tuple(s["in_shape"]),
                  s["pool"], tuple(tuple(int(x) for x in b) for b in s["bounds"]))
                 for s in plan)


def _chunk_images(N, plan, n_classes, itemsize):
    per_image = n_classes
    for s in plan:
        (oh, ow), (R, S) = s["map_shape"], s["out_shape"]
        K, CK = s["n_filters"], s["n_channels"] * s["patch_shape"][0] * s["patch_shape"][1]
        per_image += oh * ow * (CK + K) + 3 * K * R * S
    return int(max(1, min(N, CHUNK_BYTES // (per_image * itemsize))))


class _Layer:
    """One layer's shapes, parameter views, pooling tables and chunk buffers."""

    def __init__(self, step, chunk, dtype, w, g, acc, offset):
        c = cuda()
        self.K, self.C = step["n_filters"], step["n_channels"]
        self.ph, self.pw = step["patch_shape"]
        self.oh, self.ow = step["map_shape"]
        self.R, self.S = step["out_shape"]
        self.mode = MEAN if step["pool"] == "mean" else MAX
        self.P = self.oh * self.ow
        self.CK = self.C * self.ph * self.pw
        K, CK = self.K, self.CK
        self.w_range = (offset, offset + K * CK)
        self.W = w[offset:offset + K * CK].reshape(K, CK)
        self.b = w[offset + K * CK:offset + K * CK + K]
        self.gW = g[offset:offset + K * CK].reshape(K, CK)
        self.gb = acc[offset + K * CK:offset + K * CK + K]
        rs, re, cs, ce = (np.asarray(a, np.int64) for a in step["bounds"])
        rlo, rhi = containing_regions(rs, re, self.oh)
        clo, chi = containing_regions(cs, ce, self.ow)
        self.bounds = tuple(c.to_device(a) for a in (rs, re, cs, ce))
        self.inside = tuple(c.to_device(a) for a in (rlo, rhi, clo, chi))
        rows = chunk * self.P
        self.Xp = c.device_array((rows, CK), dtype)         # patches; later δ W
        self.A = c.device_array((rows, K), dtype)           # activations; later δ
        self.pooled = c.device_array((chunk, K, self.R, self.S), dtype)
        self.dP = c.device_array((chunk, K, self.R, self.S), dtype)
        self.arg = c.device_array((chunk, K, self.R, self.S), np.int64)
        self.size = K * CK + K


class _Workspace:
    """Device buffers for one (plan, N, n_classes, chunk, dtype, engine)."""

    def __init__(self, plan, n_features, N, n_classes, chunk, dtype, eng):
        c = cuda()
        self.eng = eng
        nf, Kc = n_features, n_classes
        n_soft = Kc * nf + Kc
        n = n_soft + sum(s["n_filters"] * (s["n_channels"] * s["patch_shape"][0]
                                           * s["patch_shape"][1] + 1) for s in plan)
        self.n = n
        self.theta = c.device_array(n, np.float64)
        self.w = c.device_array(n, dtype)
        self.g = c.device_array(n, dtype)                   # weight gradients (GEMMs)
        self.acc = c.device_array(n + N_SCALARS, np.float64)  # bias gradients, the NLL
        self.out = c.device_array(n + N_SCALARS, np.float64)
        self.Ws = self.w[:Kc * nf].reshape(Kc, nf)
        self.bs = self.w[Kc * nf:n_soft]
        self.gWs = self.g[:Kc * nf].reshape(Kc, nf)
        self.gbs = self.acc[Kc * nf:n_soft]
        self.nll = self.acc[n + NLL:n + NLL + 1]
        self.norm = self.out[n + NORM:n + NORM + 1]
        code = np.zeros(n, np.int8)
        code[:Kc * nf] = 1                                  # softmax weights: λ
        self.layers = []
        offset = n_soft
        for step in plan:
            layer = _Layer(step, chunk, dtype, self.w, self.g, self.acc, offset)
            code[slice(*layer.w_range)] = 2                 # filters: λ_c
            self.layers.append(layer)
            offset += layer.size
        self.code = c.to_device(code)
        self.Z = c.device_array((chunk, Kc), dtype)
        self.no_sum = c.device_array(1, np.float64)         # bias_sigmoid sums nothing here
        self.y_host = None
        self.y_dev = c.device_array(N, np.int64)
        self._chunks = {}
        self.grid_n = grid1d(n + N_SCALARS)
        self.grid_grad = grid1d(n)

    def labels(self, y):
        if self.y_host is None or not np.array_equal(self.y_host, y):
            self.y_dev.copy_to_device(np.ascontiguousarray(y, dtype=np.int64))
            self.y_host = np.array(y, copy=True)
        return self.y_dev

    def chunk(self, nc):
        """Per layer, views of its buffers for ``nc`` images, their operands and grids;
        and the softmax's."""
        views = self._chunks.get(nc)
        if views is None:
            op = lambda a: mm.operand(a, self.eng)  # noqa: E731
            views = []
            for L in self.layers:
                rows = nc * L.P
                v = dict(Xp=L.Xp[:rows], A=L.A[:rows], pooled=L.pooled[:nc], dP=L.dP[:nc],
                         arg=L.arg[:nc], grid=grid2d(rows, L.K))
                v.update(Xp_op=op(v["Xp"]), A_op=op(v["A"]), W_op=op(L.W), gW_op=op(L.gW))
                views.append(v)
            top = views[-1]
            F = top["pooled"].reshape(nc, -1)
            dF = top["dP"].reshape(nc, -1)
            Z = self.Z[:nc]
            soft = dict(Z=Z, Z_op=op(Z), F_op=op(F), dF_op=op(dF), Ws_op=op(self.Ws),
                        gWs_op=op(self.gWs), grid=grid1d(nc))
            views = self._chunks[nc] = (views, soft)
        return views


def conv_net_cost_grad(theta, X, y, layers, n_classes, *, weight_decay, conv_weight_decay=0.0):
    """Convolutional network fine-tuning cost and gradient, CUDA backend.

    Same signature, layout (softmax first, then each layer's ``W_l, b_l``),
    objective and results as
    :func:`fastsae.reference.convnet.conv_net_cost_grad` (see there).
    ``X (n_images, n_channels, H, W)`` may be a device array (used in place)
    or a NumPy array (copied to the device); the labels are copied only when
    they change. Computes in ``X.dtype``; returns ``(float, float64 gradient)``.
    """
    ensure_available()
    plan, n_features, y, _ = check_conv_net_args(theta, shape_proxy(X), y, layers, n_classes,
                                                 weight_decay, conv_weight_decay)
    Xd = device_input(X)
    dt = np.dtype(Xd.dtype)
    N = Xd.shape[0]
    Kc = int(n_classes)
    chunk = _chunk_images(N, plan, Kc, dt.itemsize)
    eng = mm.engine()
    ws = workspace("convnet", (_layers_key(plan), N, Kc, chunk, dt, eng),
                   lambda: _Workspace(plan, n_features, N, Kc, chunk, dt, eng))
    E = kernels(dt)
    pool_backward = patch_kernels(dt).pool_sigmoid_backward
    yd = ws.labels(y)

    theta_to_device(theta, ws.theta)
    with mm.stream_scope(eng):
        launcher(E.cast_params, *ws.grid_n)(ws.theta, ws.w, ws.acc, ws.norm)
        for n0 in range(0, N, chunk):
            nc = min(chunk, N - n0)
            views, soft = ws.chunk(nc)
            acc = 0.0 if n0 == 0 else 1.0            # the weight gradients add up over chunks
            # forward: A_l = σ(im2col(P_{l−1}) W_lᵀ + b_l), P_l = pool(A_l)
            src, first = Xd, n0
            for L, v in zip(ws.layers, views):
                im2col(src, first, L.ph, L.pw, L.oh, L.ow, v["Xp"])
                mm.gemm(eng, False, True, 1.0, v["Xp_op"], v["W_op"], 0.0, v["A_op"])
                grid, block, rpb = v["grid"]
                launcher(E.bias_sigmoid, grid, block)(v["A"], L.b, ws.no_sum, rpb, 0)
                pool_forward(v["A"], L.P, L.ow, L.bounds, L.mode, v["pooled"], v["arg"])
                src, first = v["pooled"], 0
            # the softmax on the top layer's pooled maps F: δ = P − onehot(y)
            mm.gemm(eng, False, True, 1.0, soft["F_op"], soft["Ws_op"], 0.0, soft["Z_op"])
            launcher(E.softmax_delta, *soft["grid"])(soft["Z"], ws.bs, yd[n0:n0 + nc], ws.gbs,
                                                     ws.nll)
            mm.gemm(eng, True, False, 1.0, soft["Z_op"], soft["F_op"], acc, soft["gWs_op"])
            mm.gemm(eng, False, False, 1.0, soft["Z_op"], soft["Ws_op"], 0.0, soft["dF_op"])
            # backward, from the top layer down
            for l in range(len(ws.layers) - 1, -1, -1):
                L, v = ws.layers[l], views[l]
                grid, block, rpb = v["grid"]
                launcher(pool_backward, grid, block)(v["dP"], v["arg"], v["A"], L.P, L.ow,
                                                     *L.bounds, *L.inside, L.mode, L.gb, rpb)
                mm.gemm(eng, True, False, 1.0, v["A_op"], v["Xp_op"], acc, v["gW_op"])
                if l > 0:                            # dP_{l−1} = col2im(δ_l W_l)
                    mm.gemm(eng, False, False, 1.0, v["A_op"], v["W_op"], 0.0, v["Xp_op"])
                    col2im(v["Xp"], L.ph, L.pw, L.oh, L.ow, views[l - 1]["dP"])
        launcher(E.assemble, *ws.grid_grad)(ws.g, ws.acc, ws.theta, ws.w, ws.code,
                                            float(weight_decay), float(conv_weight_decay),
                                            1.0 / N, ws.out, ws.norm)
        launcher(E.copy_scalars, 1, N_SCALARS)(ws.acc, ws.out, ws.n, N_SCALARS - 1)
    host = ws.out.copy_to_host()  # a fresh array: L-BFGS keeps the gradients it is given
    cost = host[ws.n + NLL] / N + 0.5 * host[ws.n + NORM]
    return float(cost), host[:ws.n]


__all__ = ["conv_net_cost_grad"]
