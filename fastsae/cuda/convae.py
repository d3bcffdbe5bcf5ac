"""CUDA kernel for the convolutional sparse autoencoder (twin of
:func:`fastsae.reference.convae.conv_ae_cost_grad` and
:func:`fastsae.kernels.convae.conv_ae_cost_grad`).

The images go through in chunks of ``nc`` (sized so that a chunk's buffers
stay within :data:`CHUNK_BYTES`), each laid out as a patch matrix ``Xp``
(one row per image and output position, ``P = oh·ow`` per image; one column
per filter offset, ``CK = C·ph·pw``; see :mod:`fastsae.cuda._patches`). On
that matrix the convolutional autoencoder is the dense one, its rows the
patches, except that the decoder's output is folded back into images. Per
chunk:

1. ``Xp = im2col(X)``; ``A = σ(Xp Wᵀ + b)`` (GEMM, then bias + sigmoid in
   place, summing the columns for ``ρ̂``);
2. ``X̂ = g(col2im(A V) + c)``: the GEMM ``A V`` gives each patch's share of
   the reconstruction, ``col2im`` adds the shares up per pixel (the transposed
   convolution); the output-delta kernel of the dense autoencoder then turns
   the images into ``E = (X̂ − X) g'`` in place, summing the data cost and
   ``Σ E`` per pixel (per channel on the host);
3. ``Ep = im2col(E)``; ``gV += Aᵀ Ep`` and ``dA = Ep Vᵀ`` (GEMMs: the decoder's
   gradient and its adjoint);
4. the hidden statistics kernel writes ``[dA ⊙ A' | A']`` (``A' = A(1 − A)``)
   and sums its columns, and one GEMM adds ``[G1; G2] += [dA ⊙ A' | A']ᵀ Xp``.

**The sparsity term in one pass.** The hidden delta is
``δ = (dA + s) ⊙ A'`` with ``s_k = β KL'(ρ̂_k) / P``, and ``ρ̂`` is known
only once every chunk has been encoded. As in the Numba kernel, each chunk
adds to the statistics ``G1 = Σ (dA ⊙ A')ᵀ Xp`` and ``G2 = Σ A'ᵀ Xp`` (and
their column sums ``p``, ``q``), and the host forms
``gW = (G1 + diag(s) G2) / N``, ``gb = (p + s ⊙ q) / N`` at the end: no
``(N·P × K)`` activations are kept, each chunk is encoded once. With
``β = 0`` the ``G2`` rows are skipped.

The GEMMs accumulate over chunks in the compute dtype (as one longer GEMM
would); the column sums, the cost and ``ρ̂`` in float64. Everything that
comes back (``O(K·CK + C·H·W)`` values) is one float64 vector, copied once;
the host finishes the small ``O(K·CK)`` gradient, as the Numba kernel does.
"""
from __future__ import annotations

import numpy as np

from ..core.args import check_conv_ae_args
from ..core.layouts import conv_ae_layout, layout_size, unpack_conv_ae
from ..core.numerics import kl_sparsity
from . import _matmul as mm
from ._arrays import device_input, shape_proxy
from ._device import (cuda, ensure_available, is_simulator, launcher, theta_to_device,
                      workspace)
from ._elementwise import LINEAR_SQUARED, SIGMOID_SQUARED, cast_into, grid1d, grid2d, kernels
from ._patches import col2im, expand_channels, im2col

#: device bytes for one chunk's buffers (tiny on the simulator, so that the tests go
#: through several chunks)
CHUNK_BYTES = 4096 if is_simulator() else 512 * 1024 * 1024


def _chunk_images(N, C, H, Wd, K, P, CK, itemsize, with_q):
    per_image = (P * (2 * CK + (4 if with_q else 2) * K) + C * H * Wd) * itemsize
    return int(max(1, min(N, CHUNK_BYTES // per_image)))


class _Workspace:
    """Device buffers for one (image shape, K, patch, chunk, dtype, tied, with_q, engine)."""

    def __init__(self, C, H, Wd, K, ph, pw, chunk, dtype, tied, with_q, eng):
        c = cuda()
        self.eng = eng
        oh, ow = H - ph + 1, Wd - pw + 1
        P, CK, CHW = oh * ow, C * ph * pw, C * H * Wd
        self.P, self.CK, self.CHW = P, CK, CHW
        n_params = layout_size(conv_ae_layout(K, C, (ph, pw), tied))
        self.n_params = n_params
        self.theta = c.device_array(n_params, np.float64)
        self.w = c.device_array(n_params, dtype)
        nW = K * CK
        self.W = self.w[:nW].reshape(K, CK)
        self.V = self.W if tied else self.w[nW:2 * nW].reshape(K, CK)
        off = nW if tied else 2 * nW
        self.b = self.w[off:off + K]
        self.cb = self.w[off + K:off + K + C]
        self.cpix = c.device_array(CHW, dtype)          # the output bias, per pixel
        # what comes back, float64: data, ρ sums, p, q, Σ E per pixel | gV, [G1; G2]
        self.n_sums = n_sums = 1 + 3 * K + CHW
        n_g = (2 if with_q else 1) * K
        self.out = c.device_array(n_sums + (K + n_g) * CK, np.float64)
        self.sums = self.out[:n_sums]
        self.data = self.out[0:1]
        self.rho = self.out[1:1 + K]
        self.p = self.out[1 + K:1 + 2 * K]
        self.q = self.out[1 + 2 * K:1 + 3 * K]
        self.gc = self.out[1 + 3 * K:n_sums]
        self.products = self.out[n_sums:]
        self.prod = self.products if dtype == np.float64 else \
            c.device_array(self.products.size, dtype)
        self.gV = self.prod[:nW].reshape(K, CK)
        self.G = self.prod[nW:].reshape(n_g, CK)
        # one chunk's buffers (the last, shorter chunk uses their first rows)
        rows = chunk * P
        self.Xp = c.device_array((rows, CK), dtype)
        self.cols = c.device_array((rows, CK), dtype)  # A V, then im2col(E)
        self.A = c.device_array((rows, K), dtype)
        self.dA = c.device_array((rows, K), dtype)
        self.D2 = c.device_array((rows, 2 * K), dtype) if with_q else self.dA
        self.img = c.device_array((chunk, C, H, Wd), dtype)
        op = lambda a: mm.operand(a, eng)  # noqa: E731
        self.op = dict(W=op(self.W), V=op(self.V), gV=op(self.gV), G=op(self.G))
        self._chunks = {}
        self.grid_params = grid1d(max(n_params, n_sums))

    def chunk(self, nc):
        """Views of the buffers for a chunk of ``nc`` images, their operands and grids."""
        views = self._chunks.get(nc)
        if views is None:
            rows = nc * self.P
            views = dict(Xp=self.Xp[:rows], cols=self.cols[:rows], A=self.A[:rows],
                         dA=self.dA[:rows], D2=self.D2[:rows], img=self.img[:nc])
            views["img2d"] = views["img"].reshape(nc, self.CHW)
            views.update({f"{name}_op": mm.operand(views[name], self.eng)
                          for name in ("Xp", "cols", "A", "dA", "D2")})
            views["grid_hidden"] = grid2d(rows, self.A.shape[1])
            views["grid_pixels"] = grid2d(nc, self.CHW)
            self._chunks[nc] = views
        return views


def conv_ae_cost_grad(theta, X, n_filters, patch_shape, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", tied=False):
    """Convolutional sparse autoencoder cost and gradient, CUDA backend.

    Same signature, objective and results as
    :func:`fastsae.reference.convae.conv_ae_cost_grad` (see there; ``theta``
    packs ``W (K, C, ph, pw)``, ``V`` (absent when tied), ``b (K,)``,
    ``c (C,)``). ``X (n_images, n_channels, H, W)`` may be a device array
    (used in place) or a NumPy array (copied to the device at each call: for
    training, move it once with :func:`fastsae.cuda.to_device`). Computes in
    ``X.dtype``; returns ``(float, float64 gradient)``.
    """
    ensure_available()
    K, (ph, pw) = check_conv_ae_args(theta, shape_proxy(X), n_filters, patch_shape, sparsity,
                                     beta, weight_decay, decoder, tied)
    Xd = device_input(X)
    dt = np.dtype(Xd.dtype)
    N, C, H, Wd = Xd.shape
    oh, ow = H - ph + 1, Wd - pw + 1
    P, CK = oh * ow, C * ph * pw
    tied, with_q = bool(tied), float(beta) > 0
    kind = SIGMOID_SQUARED if decoder == "sigmoid" else LINEAR_SQUARED
    chunk = _chunk_images(N, C, H, Wd, K, P, CK, dt.itemsize, with_q)
    eng = mm.engine()
    ws = workspace("convae", (C, H, Wd, K, ph, pw, chunk, dt, tied, with_q, eng),
                   lambda: _Workspace(C, H, Wd, K, ph, pw, chunk, dt, tied, with_q, eng))
    E = kernels(dt)
    op = ws.op
    X2d = Xd.reshape(N, C * H * Wd)

    theta_to_device(theta, ws.theta)
    with mm.stream_scope(eng):
        # the data slot stands in for cast_params' scalar: it is zeroed either way
        launcher(E.cast_params, *ws.grid_params)(ws.theta, ws.w, ws.sums, ws.data)
        expand_channels(ws.cb, H * Wd, ws.cpix)
        for n0 in range(0, N, chunk):
            nc = min(chunk, N - n0)
            v = ws.chunk(nc)
            acc = 0.0 if n0 == 0 else 1.0            # the filter gradients add up over chunks
            # encode: A = σ(Xp Wᵀ + b), Σ A for ρ̂
            im2col(Xd, n0, ph, pw, oh, ow, v["Xp"])
            mm.gemm(eng, False, True, 1.0, v["Xp_op"], op["W"], 0.0, v["A_op"])
            grid, block, rpb = v["grid_hidden"]
            launcher(E.bias_sigmoid, grid, block)(v["A"], ws.b, ws.rho, rpb, 1)
            # decode: the transposed convolution col2im(A V), then E = (X̂ − X) g' in place
            mm.gemm(eng, False, False, 1.0, v["A_op"], op["V"], 0.0, v["cols_op"])
            col2im(v["cols"], ph, pw, oh, ow, v["img"])
            grid, block, rpb = v["grid_pixels"]
            launcher(E.output_delta, grid, block)(v["img2d"], X2d[n0:n0 + nc], ws.cpix, kind,
                                                  ws.data, ws.gc, rpb)
            # the decoder's gradient gV += Aᵀ im2col(E), and its adjoint dA = im2col(E) Vᵀ
            im2col(v["img"], 0, ph, pw, oh, ow, v["cols"])
            mm.gemm(eng, True, False, 1.0, v["A_op"], v["cols_op"], acc, op["gV"])
            mm.gemm(eng, False, True, 1.0, v["cols_op"], op["V"], 0.0, v["dA_op"])
            # the encoder's statistics: [G1; G2] += [dA ⊙ A' | A']ᵀ Xp, with p and q
            grid, block, rpb = v["grid_hidden"]
            launcher(E.hidden_stats, grid, block)(v["dA"], v["A"], v["D2"], ws.p, ws.q, rpb,
                                                  int(with_q))
            mm.gemm(eng, True, False, 1.0, v["D2_op"], v["Xp_op"], acc, op["G"])
        if ws.prod is not ws.products:
            cast_into(ws.prod, ws.products)
    host = ws.out.copy_to_host()

    n_sums = ws.n_sums
    rho_hat = host[1:1 + K] / (N * P)
    p, q = host[1 + K:1 + 2 * K], host[1 + 2 * K:1 + 3 * K]
    gc = host[1 + 3 * K:n_sums].reshape(C, H * Wd).sum(axis=1) / N
    GV = host[n_sums:n_sums + K * CK].reshape(K, CK)
    G = host[n_sums + K * CK:].reshape(-1, CK)
    kl, dkl = kl_sparsity(sparsity, rho_hat)
    s = beta * dkl / P                           # δ = (dA + s) ⊙ A'
    gWm, gb = (G[:K] + s[:, None] * G[K:], p + s * q) if with_q else (G, p)
    # the weights rounded to X.dtype, as the reference computes with them
    W, V, _, _ = (a.astype(dt).astype(np.float64)
                  for a in unpack_conv_ae(theta, K, C, (ph, pw), tied))
    W, V = W.reshape(K, CK), V.reshape(K, CK)
    gW = gWm / N + weight_decay * W
    gV = GV / N + weight_decay * V
    data = 0.5 * host[0] / N
    cost = data + 0.5 * weight_decay * (np.vdot(W, W) + np.vdot(V, V)) + beta * kl

    parts = [gW + gV] if tied else [gW, gV]
    grad = np.concatenate([a.ravel() for a in parts] + [gb / N, gc])
    return float(cost), grad


__all__ = ["conv_ae_cost_grad"]
