"""NumPy reference: the convolutional sparse autoencoder.

Readable rather than fast: sliding windows, ``tensordot`` and an explicit
col2im; they allocate freely. Inputs are images ``X (n_images, n_channels,
H, W)`` (one channel for a spectrogram: ``n_bands × n_frames``); the
computation runs in ``X.dtype``; ``theta`` and the returned gradient are
float64. Convolution here means the valid 2-D *cross-correlation* of
:func:`fastsae.reference.convolve` (the filter is not flipped), summed over
input channels; its adjoint, the *transposed convolution*, scatters each
activation back over the patch it came from. The parameter layout is
:func:`fastsae.core.layouts.conv_ae_layout`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

from ..core.args import check_conv_ae_args
from ..core.bfloat16 import bf16_rounded, bf16_two_parts, is_bfloat16
from ..core.layouts import unpack_conv_ae
from .sae import kl_sparsity


def conv_forward(W, b, X):
    """``Z[n, k] = Σ_c corr_valid(X[n, c], W[k, c]) + b[k]`` (no activation).

    ``W (K, C, ph, pw)``, ``b (K,)``, ``X (N, C, H, Wd)`` ->
    ``Z (N, K, H - ph + 1, Wd - pw + 1)``, in ``X.dtype``.
    """
    ph, pw = W.shape[2:]
    win = sliding_window_view(X, (ph, pw), axis=(2, 3))            # (N, C, oh, ow, ph, pw)
    Z = np.tensordot(win, W.astype(X.dtype), axes=([1, 4, 5], [1, 2, 3]))   # (N, oh, ow, K)
    return Z.transpose(0, 3, 1, 2) + b.astype(X.dtype)[None, :, None, None]


def conv_transpose(A, V, out_shape):
    """Transposed convolution (the adjoint of :func:`conv_forward` without bias).

    ``Y[n, c, i + a, j + b] += Σ_k A[n, k, i, j] V[k, c, a, b]``: every
    activation scattered back, weighted by the filter, over the patch it was
    computed from (an explicit col2im: one ``tensordot`` per filter offset).
    ``A (N, K, oh, ow)``, ``V (K, C, ph, pw)`` -> ``Y (N, C, H, W)``.
    """
    N, K, oh, ow = A.shape
    C, ph, pw = V.shape[1:]
    Y = np.zeros((N, C) + tuple(out_shape), A.dtype)
    for a in range(ph):
        for c in range(pw):
            part = np.tensordot(A, V[:, :, a, c], axes=([1], [0]))   # (N, oh, ow, C)
            Y[:, :, a:a + oh, c:c + ow] += part.transpose(0, 3, 1, 2)
    return Y


def conv_filter_grad(D, X, patch_shape):
    """``G[k, c, a, b] = Σ_{n, i, j} D[n, k, i, j] X[n, c, i + a, j + b]``.

    The gradient of ``Σ D ⊙ conv_forward(W, ·, X)`` with respect to ``W``.
    """
    ph, pw = patch_shape
    win = sliding_window_view(X, (ph, pw), axis=(2, 3))             # (N, C, oh, ow, ph, pw)
    return np.tensordot(D, win, axes=([0, 2, 3], [0, 2, 3]))        # (K, C, ph, pw)


def conv_ae_cost_grad(theta, X, n_filters, patch_shape, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", tied=False):
    """Convolutional sparse autoencoder objective and its gradient.

    The encoder computes ``K`` feature maps of each image,
    ``A[n, k] = σ(Σ_c corr_valid(X[n, c], W[k, c]) + b[k])``
    (shape ``(oh, ow) = (H − ph + 1, W − pw + 1)``); the decoder reconstructs
    the image by the transposed convolution
    ``X̂[n, c] = g(Σ_k full_conv(A[n, k], V[k, c]) + c[c])``, i.e.
    ``X̂[i + a, j + b] += A[i, j] V[a, b]`` before ``g`` (``g = σ`` for
    ``decoder="sigmoid"``, the identity for ``"linear"``). The objective is
    UFLDL's, per image:

    ``J = (1/N) Σ_n ½‖X̂_n − X_n‖² + (λ/2)(‖W‖² + ‖V‖²) + β Σ_k KL(ρ ‖ ρ̂_k)``

    with ``ρ̂_k`` the mean of ``A[:, k]`` over images *and positions*. With
    ``tied=True``, ``V = W`` is not stored and the decay term counts ``W``
    twice (as :func:`fastsae.reference.sae_cost_grad` does). With a single
    output position (``patch_shape`` equal to the image size) this is the
    dense sparse autoencoder on the flattened images.

    Parameters
    ----------
    theta : np.ndarray [shape=(n_params,), dtype=float64]
        ``W (K, C, ph, pw)``, ``V (K, C, ph, pw)`` (absent when ``tied``),
        ``b (K,)``, ``c (C,)``, C order (see :func:`fastsae.core.layouts.conv_ae_layout`).
    X : np.ndarray [shape=(n_images, n_channels, H, W), dtype=float32, float64 or bfloat16]
        bfloat16 (``ml_dtypes.bfloat16``): see :func:`_conv_ae_cost_grad_bfloat16`.
    n_filters : int
        ``K``.
    patch_shape : (int, int)
        ``(ph, pw)``, at most ``(H, W)``.
    sparsity : float in (0, 1)
        The target mean activation ρ.
    beta : float >= 0
        Weight of the sparsity penalty.
    weight_decay : float >= 0
        λ.
    decoder : {"sigmoid", "linear"}
    tied : bool

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=(n_params,), dtype=float64]
    """
    K, (ph, pw) = check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta,
                                     weight_decay, decoder, tied, bfloat16=True)
    if is_bfloat16(X.dtype):
        return _conv_ae_cost_grad_bfloat16(theta, X, K, (ph, pw), sparsity, beta, weight_decay,
                                           decoder, tied)
    dt = X.dtype
    N, C, H, Wd = X.shape
    W, V, b, c = (p.astype(dt) for p in unpack_conv_ae(theta, K, C, (ph, pw), tied))
    n_pos = (H - ph + 1) * (Wd - pw + 1)

    # forward
    A = expit(conv_forward(W, b, X))                          # (N, K, oh, ow)
    Y = conv_transpose(A, V, (H, Wd)) + c[None, :, None, None]
    Xhat = expit(Y) if decoder == "sigmoid" else Y
    diff = Xhat - X
    data = 0.5 * np.sum(diff.astype(np.float64) ** 2) / N
    E = diff * Xhat * (1 - Xhat) if decoder == "sigmoid" else diff

    # sparsity: ρ̂ over images and positions
    rho_hat = A.astype(np.float64).mean(axis=(0, 2, 3))
    kl, dkl = kl_sparsity(sparsity, rho_hat)

    # backward: the decoder is a transposed convolution, so its adjoint (the
    # gradient with respect to A) is the plain correlation of E with V.
    # dJ/dV[k, c, a, b] = Σ A[n, k, i, j] E[n, c, i + a, j + b]
    gV = conv_filter_grad(A, E, (ph, pw)) / N + weight_decay * V
    dA = conv_forward(V, np.zeros(K, dt), E)                  # (N, K, oh, ow)
    delta = (dA + (beta * dkl / n_pos).astype(dt)[None, :, None, None]) * A * (1 - A)
    gW = conv_filter_grad(delta, X, (ph, pw)) / N + weight_decay * W
    gb = delta.sum(axis=(0, 2, 3)) / N
    gc = E.sum(axis=(0, 2, 3)) / N

    W64, V64 = W.astype(np.float64), V.astype(np.float64)
    cost = data + 0.5 * weight_decay * (np.sum(W64 ** 2) + np.sum(V64 ** 2)) + beta * kl
    parts = [gW + gV] if tied else [gW, gV]
    grad = np.concatenate([p.ravel() for p in parts + [gb, gc]])
    return float(cost), grad.astype(np.float64)


def _conv_ae_cost_grad_bfloat16(theta, X, K, patch_shape, sparsity, beta, weight_decay, decoder,
                                tied):
    """The same objective with bfloat16 products (the arithmetic of the compiled
    bfloat16 kernel, written plainly).

    The weights and the encoder's bias (which rides in the encoder's
    product, on a row of ones) are carried as two bfloat16 parts
    (:func:`~fastsae.core.bfloat16.bf16_two_parts`: about 16 significant bits);
    the other operands of the five products are rounded to bfloat16: the
    activations ``A``, the output delta ``E``, and
    the two factors ``dA ⊙ A'`` and ``A'`` of the encoder's gradient (the
    kernel multiplies both by the patches and adds the sparsity term after
    the sum: ``gW = Σ [dA ⊙ A'] Qᵀ + s Σ [A'] Qᵀ``, with ``[·]`` rounding).
    ``ρ̂`` is the mean of the rounded ``A`` (the kernel sums it in the same
    product as the decoder's gradient). Everything else is float32, with the
    sums of costs and biases in float64; weight decay and the returned
    gradient use the float64 parameters.
    """
    f32 = np.float32
    N, C, H, Wd = X.shape
    W, V, b, c = unpack_conv_ae(theta, K, C, patch_shape, tied)
    Wr, Vr = bf16_two_parts(W), bf16_two_parts(V)
    Xf = X.astype(f32)                                        # exact
    n_pos = (H - patch_shape[0] + 1) * (Wd - patch_shape[1] + 1)

    A = expit(conv_forward(Wr, bf16_two_parts(b), Xf))            # float32
    Ar = bf16_rounded(A)
    Y = conv_transpose(Ar, Vr, (H, Wd)) + c.astype(f32)[None, :, None, None]
    Xhat = expit(Y) if decoder == "sigmoid" else Y
    diff = Xhat - Xf
    data = 0.5 * np.sum(diff.astype(np.float64) ** 2) / N
    E = diff * Xhat * (1 - Xhat) if decoder == "sigmoid" else diff
    Er = bf16_rounded(E)

    rho_hat = Ar.astype(np.float64).mean(axis=(0, 2, 3))
    kl, dkl = kl_sparsity(sparsity, rho_hat)
    s = beta * dkl / n_pos

    gV = conv_filter_grad(Ar, Er, patch_shape).astype(np.float64) / N + weight_decay * V
    dA = conv_forward(Vr, np.zeros(K, f32), Er)
    Ap = A * (1 - A)
    D1, D2 = bf16_rounded(dA * Ap), bf16_rounded(Ap)
    G1 = conv_filter_grad(D1, Xf, patch_shape).astype(np.float64)
    G2 = conv_filter_grad(D2, Xf, patch_shape).astype(np.float64)
    gW = (G1 + s[:, None, None, None] * G2) / N + weight_decay * W
    gb = (D1.sum(axis=(0, 2, 3), dtype=np.float64)
          + s * D2.sum(axis=(0, 2, 3), dtype=np.float64)) / N
    gc = E.sum(axis=(0, 2, 3), dtype=np.float64) / N

    cost = data + 0.5 * weight_decay * (np.sum(W ** 2) + np.sum(V ** 2)) + beta * kl
    parts = [gW + gV] if tied else [gW, gV]
    grad = np.concatenate([p.ravel() for p in parts + [gb, gc]])
    return float(cost), grad.astype(np.float64)


def conv_ae_reconstruct(W, V, b, c, X, *, decoder="sigmoid"):
    """The decoder's output ``X̂`` [shape=X.shape] for images ``X (N, C, H, W)``."""
    A = expit(conv_forward(W, b, X))
    Y = conv_transpose(A, V.astype(X.dtype), X.shape[2:]) + c.astype(X.dtype)[None, :, None, None]
    return expit(Y) if decoder == "sigmoid" else Y
