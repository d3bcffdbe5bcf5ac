"""NumPy reference for the convolutional autoencoder and the convolutional network.

Twins of :mod:`fastsae.kernels.convae` (same names, same signatures, same
results). Readable rather than fast: sliding windows, ``tensordot`` and an
explicit col2im; they allocate freely.

Conventions (as in :mod:`fastsae.reference`): inputs are images
``X (n_images, n_channels, H, W)`` (one channel for a spectrogram:
``n_bands × n_frames``); the computation runs in ``X.dtype``; ``theta`` and
the returned gradient are float64. Convolution here means the valid 2-D
*cross-correlation* of :func:`fastsae.reference.convolve` (the filter is not
flipped), summed over input channels; its adjoint, the *transposed
convolution*, scatters each activation back over the patch it came from.

Parameter layouts (C order, one flat float64 vector, UFLDL's order of
weights before biases):

* convolutional autoencoder (:func:`conv_ae_layout`):
  ``W (K, C, ph, pw)``, ``V (K, C, ph, pw)`` (absent when ``tied``),
  ``b (K,)``, ``c (C,)``;
* convolutional network (:func:`conv_net_layout`): the softmax first,
  ``W (n_classes, n_features)``, ``b (n_classes,)``, then for each layer
  ``W_l (K_l, C_l, ph_l, pw_l)``, ``b_l (K_l,)`` (as UFLDL's
  ``stackedAECost`` puts ``softmaxTheta`` first).

"""
from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

from ._reference_conv import pool_regions, region_bounds
from ._validation import (DECODERS, FLOAT_DTYPES, POOL_MODES, check_bool, check_choice,
                          check_int, check_scalar)
from .exceptions import ParameterError
from .params import layout_size, unpack

# ---------------------------------------------------------------------------
# Layouts and argument checks (shared by both backends and the estimators)
# ---------------------------------------------------------------------------


def check_patch_shape(patch_shape, name="patch_shape"):
    """``(ph, pw)`` as two positive ints, or ParameterError naming ``name``."""
    if isinstance(patch_shape, (str, bytes)) or not hasattr(patch_shape, "__len__") \
            or len(patch_shape) != 2:
        raise ParameterError(f"{name} must be a pair (rows, columns); got {patch_shape!r}")
    return (check_int(patch_shape[0], f"{name}[0]", low=1),
            check_int(patch_shape[1], f"{name}[1]", low=1))


def conv_ae_layout(n_filters: int, n_channels: int, patch_shape, tied: bool = False):
    """Shapes packed in a convolutional autoencoder's theta, in order.

    ``W (K, C, ph, pw)``, ``V (K, C, ph, pw)`` (not stored when ``tied``:
    then ``V = W``), ``b (K,)``, ``c (C,)``.
    """
    ph, pw = patch_shape
    F = (n_filters, n_channels, ph, pw)
    if tied:
        return (F, (n_filters,), (n_channels,))
    return (F, F, (n_filters,), (n_channels,))


def unpack_conv_ae(theta, n_filters: int, n_channels: int, patch_shape, tied: bool = False):
    """Views ``(W, V, b, c)`` into a convolutional autoencoder's theta (``V is W`` if tied)."""
    if tied:
        W, b, c = unpack(theta, conv_ae_layout(n_filters, n_channels, patch_shape, True))
        return W, W, b, c
    return tuple(unpack(theta, conv_ae_layout(n_filters, n_channels, patch_shape, False)))


def _check_images(X, name="X"):
    if not isinstance(X, np.ndarray) or X.ndim != 4:
        raise ParameterError(
            f"{name} must be a 4-D array (n_images, n_channels, H, W); "
            f"got {getattr(X, 'shape', type(X))}")
    if X.dtype not in FLOAT_DTYPES:
        raise ParameterError(f"{name} must be float32 or float64; got dtype {X.dtype}")
    if min(X.shape) < 1:
        raise ParameterError(f"{name} must have no empty axis; got shape {X.shape}")


def _check_theta(theta, need, what):
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.size != need:
        raise ParameterError(
            f"theta must be a 1-D array of {need} parameters for {what}; "
            f"got shape {getattr(theta, 'shape', None)}")


def check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta, weight_decay,
                       decoder, tied):
    """Cheap checks shared by every ``conv_ae_cost_grad`` implementation.

    Shapes, options and hyper-parameter ranges; not the O(n) scan of ``X`` for
    NaN (the estimators do that once). Returns ``(n_filters, (ph, pw))``.
    """
    K = check_int(n_filters, "n_filters", low=1)
    ph, pw = check_patch_shape(patch_shape)
    check_scalar(sparsity, "sparsity", low=0.0, high=1.0, low_open=True, high_open=True)
    check_scalar(beta, "beta", low=0.0)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_choice(decoder, "decoder", DECODERS)
    check_bool(tied, "tied")
    _check_images(X)
    H, W = X.shape[2:]
    if ph > H or pw > W:
        raise ParameterError(
            f"patch_shape {(ph, pw)} must fit inside the images of X ({H} x {W})")
    C = X.shape[1]
    _check_theta(theta, layout_size(conv_ae_layout(K, C, (ph, pw), tied)),
                 f"n_filters={K}, n_channels={C}, patch_shape={(ph, pw)}, tied={tied}")
    return K, (ph, pw)


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


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


def _kl_sparsity(rho, rho_hat):
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    dkl = -rho / rho_hat + (1 - rho) / (1 - rho_hat)
    return kl, dkl


# ---------------------------------------------------------------------------
# Convolutional sparse autoencoder
# ---------------------------------------------------------------------------


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
        ``b (K,)``, ``c (C,)``, C order (see :func:`conv_ae_layout`).
    X : np.ndarray [shape=(n_images, n_channels, H, W), dtype=float32 or float64]
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
                                     weight_decay, decoder, tied)
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
    kl, dkl = _kl_sparsity(sparsity, rho_hat)

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


def conv_ae_reconstruct(W, V, b, c, X, *, decoder="sigmoid"):
    """The decoder's output ``X̂`` [shape=X.shape] for images ``X (N, C, H, W)``."""
    A = expit(conv_forward(W, b, X))
    Y = conv_transpose(A, V.astype(X.dtype), X.shape[2:]) + c.astype(X.dtype)[None, :, None, None]
    return expit(Y) if decoder == "sigmoid" else Y


# ---------------------------------------------------------------------------
# Convolutional network: sigmoid conv layers with pooling, then a softmax
# ---------------------------------------------------------------------------

_LAYER_KEYS = ("n_filters", "patch_shape", "pool", "pool_shape", "n_pool_regions", "remainder")


def _pair_or_none(value, name):
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    return check_patch_shape(value, name)


def normalize_layers(layers):
    """Validate a list of layer specifications; return them as complete dicts.

    Each layer is a dict with ``n_filters`` (int), ``patch_shape`` (pair),
    ``pool`` (``"mean"`` or ``"max"``, default ``"mean"``), at most one of
    ``pool_shape`` (pair) and ``n_pool_regions`` (pair) — neither means no
    pooling — and ``remainder`` (``"drop"`` or ``"partial"``, default
    ``"drop"``, used with ``pool_shape``; see :func:`fastsae.reference.region_bounds`).
    """
    if isinstance(layers, (dict, str, bytes)) or not hasattr(layers, "__len__") \
            or len(layers) == 0:
        raise ParameterError(
            "layers must be a non-empty list of dicts, e.g. [dict(n_filters=16, "
            f"patch_shape=(5, 5), pool_shape=(2, 2))]; got {layers!r}")
    out = []
    for i, spec in enumerate(layers):
        name = f"layers[{i}]"
        if not isinstance(spec, dict):
            raise ParameterError(f"{name} must be a dict; got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(_LAYER_KEYS))
        if unknown:
            raise ParameterError(
                f"{name} has unknown key(s) {unknown}; valid keys: {', '.join(_LAYER_KEYS)}")
        for key in ("n_filters", "patch_shape"):
            if key not in spec:
                raise ParameterError(f"{name} must give {key!r}; got {spec!r}")
        shape = _pair_or_none(spec.get("pool_shape"), f"{name}['pool_shape']")
        regions = _pair_or_none(spec.get("n_pool_regions"), f"{name}['n_pool_regions']")
        if shape is not None and regions is not None:
            raise ParameterError(f"{name} must give at most one of 'pool_shape' and "
                                 f"'n_pool_regions'; got both")
        out.append(dict(
            n_filters=check_int(spec["n_filters"], f"{name}['n_filters']", low=1),
            patch_shape=check_patch_shape(spec["patch_shape"], f"{name}['patch_shape']"),
            pool=check_choice(spec.get("pool", "mean"), f"{name}['pool']", POOL_MODES),
            # neither given: regions of one element, i.e. no pooling
            pool_shape=(1, 1) if shape is None and regions is None else shape,
            n_pool_regions=regions,
            remainder=check_choice(spec.get("remainder", "drop"), f"{name}['remainder']",
                                   ("drop", "partial")),
        ))
    return out


def conv_net_plan(layers, input_shape):
    """Shapes of every layer of a convolutional network on inputs of ``input_shape``.

    Parameters
    ----------
    layers : list of dict
        See :func:`normalize_layers`.
    input_shape : (C, H, W)

    Returns
    -------
    plan : list of dict
        Per layer: the normalised spec plus ``n_channels`` (input channels),
        ``in_shape`` ``(H, W)``, ``map_shape`` ``(oh, ow)``, ``bounds``
        (row starts, row ends, column starts, column ends of the pooling
        regions) and ``out_shape`` ``(R, S)`` of the pooled maps.
    n_features : int
        ``K_L · R_L · S_L``, the inputs of the softmax.
    """

    layers = normalize_layers(layers)
    C, H, W = (int(s) for s in input_shape)
    plan = []
    for i, spec in enumerate(layers):
        ph, pw = spec["patch_shape"]
        if ph > H or pw > W:
            what = "the input" if i == 0 else f"the pooled maps of layers[{i - 1}]"
            raise ParameterError(
                f"layers[{i}]['patch_shape'] {(ph, pw)} must fit inside {what} ({H} x {W})")
        oh, ow = H - ph + 1, W - pw + 1
        if spec["n_pool_regions"] is not None:
            R, S = spec["n_pool_regions"]
            rows = region_bounds(oh, n_regions=R)
            cols = region_bounds(ow, n_regions=S)
        else:
            rs, cs = spec["pool_shape"]
            rows = region_bounds(oh, size=rs, remainder=spec["remainder"])
            cols = region_bounds(ow, size=cs, remainder=spec["remainder"])
        step = dict(spec, n_channels=C, in_shape=(H, W), map_shape=(oh, ow),
                    bounds=rows + cols, out_shape=(len(rows[0]), len(cols[0])))
        plan.append(step)
        C, (H, W) = spec["n_filters"], step["out_shape"]
    return plan, C * H * W


def conv_net_layout(plan, n_features, n_classes):
    """Shapes packed in a convolutional network's theta: softmax, then each layer's W, b."""
    shapes = [(n_classes, n_features), (n_classes,)]
    for step in plan:
        ph, pw = step["patch_shape"]
        shapes += [(step["n_filters"], step["n_channels"], ph, pw), (step["n_filters"],)]
    return tuple(shapes)


def check_conv_net_args(theta, X, y, layers, n_classes, weight_decay, conv_weight_decay):
    """Checks shared by every ``conv_net_cost_grad``; returns ``(plan, n_features, y, layout)``."""
    from ._validation import check_labels

    n_classes = check_int(n_classes, "n_classes", low=2)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_scalar(conv_weight_decay, "conv_weight_decay", low=0.0)
    _check_images(X)
    plan, n_features = conv_net_plan(layers, X.shape[1:])
    layout = conv_net_layout(plan, n_features, n_classes)
    _check_theta(theta, layout_size(layout),
                 f"{len(plan)} layer(s) on inputs {X.shape[1:]} and n_classes={n_classes}")
    y = check_labels(y, X.shape[0], n_classes)
    return plan, n_features, y, layout


def pool_backward(dP, maps, bounds, mode):
    """Gradient of :func:`fastsae.reference.pool_regions` with respect to ``maps``.

    Mean pooling spreads ``dP[..., r, s]`` evenly over region ``(r, s)``; max
    pooling routes it to the region's maximum (the first one, as
    ``np.argmax``, on ties). Elements in no region (``remainder="drop"``) get
    zero; elements in several regions (more regions than elements) add up.
    """
    rs, re, cs, ce = bounds
    G = np.zeros_like(maps)
    lead = maps.shape[:-2]
    index = np.indices(lead).reshape(len(lead), -1) if lead else None
    for r, (r0, r1) in enumerate(zip(rs, re)):
        for s, (c0, c1) in enumerate(zip(cs, ce)):
            g = dP[..., r, s]
            if mode == "mean":
                G[..., r0:r1, c0:c1] += (g / ((r1 - r0) * (c1 - c0)))[..., None, None]
            else:
                block = maps[..., r0:r1, c0:c1].reshape(lead + (-1,))
                ii, jj = np.unravel_index(block.argmax(axis=-1).ravel(), (r1 - r0, c1 - c0))
                np.add.at(G, tuple(index) + (r0 + ii, c0 + jj), g.ravel())
    return G


def conv_net_forward(layer_params, X, plan):
    """Activations of every layer: ``[(A_1, P_1), ..., (A_L, P_L)]``.

    ``A_l = σ(conv(W_l, P_{l-1}) + b_l)`` (``P_0 = X``) and ``P_l`` its pooled maps.
    """
    out = []
    P = X
    for (W, b), step in zip(layer_params, plan):
        A = expit(conv_forward(W.astype(X.dtype), b.astype(X.dtype), P))
        P = pool_regions(A, *step["bounds"], mode=step["pool"])
        out.append((A, P))
    return out


def conv_net_cost_grad(theta, X, y, layers, n_classes, *, weight_decay, conv_weight_decay=0.0):
    """Convolutional network objective (softmax on pooled sigmoid conv layers) and its gradient.

    The network is ``P_0 = X``; for ``l = 1..L``,
    ``A_l = σ(conv(W_l, P_{l−1}) + b_l)`` (the multi-channel valid
    correlation of :func:`conv_ae_cost_grad`'s encoder) and
    ``P_l = pool(A_l)`` (mean or max over the layer's regions); a softmax
    (with bias) classifies the flattened ``P_L``:

    ``J = −(1/m) Σ_i log p(y_i | P_L(x_i)) + (λ/2) ‖W_softmax‖² + (λ_c/2) Σ_l ‖W_l‖²``.

    The gradient backpropagates through the softmax, then each pooling layer
    (mean: spread evenly over the region; max: routed to the region's
    maximum), the sigmoid and the convolution (its adjoint, a transposed
    convolution, carries the gradient to the layer below).

    Parameters
    ----------
    theta : np.ndarray [shape=(n_params,), dtype=float64]
        Softmax ``W (n_classes, n_features)``, ``b (n_classes,)``, then per
        layer ``W_l (K_l, C_l, ph_l, pw_l)``, ``b_l (K_l,)`` (see
        :func:`conv_net_layout`; ``C_1`` is the input's channels, ``C_l =
        K_{l−1}``).
    X : np.ndarray [shape=(n_images, n_channels, H, W), dtype=float32 or float64]
    y : np.ndarray [shape=(n_images,), integer]
        Labels in ``0 .. n_classes-1``.
    layers : list of dict
        ``n_filters``, ``patch_shape``, ``pool`` and ``pool_shape`` or
        ``n_pool_regions`` of each layer (see :func:`normalize_layers`).
    n_classes : int >= 2
    weight_decay : float >= 0
        λ, on the softmax weights (as UFLDL's fine-tuning).
    conv_weight_decay : float >= 0
        λ_c, on the convolution filters (default 0).

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    from .reference import _softmax_loss_delta

    plan, n_features, y, layout = check_conv_net_args(theta, X, y, layers, n_classes,
                                                      weight_decay, conv_weight_decay)
    dt = X.dtype
    N = X.shape[0]
    views = unpack(theta, layout)
    Ws, bs = (v.astype(dt) for v in views[:2])
    params = [(views[i].astype(dt), views[i + 1].astype(dt)) for i in range(2, len(views), 2)]

    acts = conv_net_forward(params, X, plan)
    F = acts[-1][1].reshape(N, -1)
    data, D = _softmax_loss_delta(F @ Ws.T + bs, y)
    D /= N
    grads = [D.T @ F + weight_decay * Ws, D.sum(axis=0)]

    dP = (D @ Ws).reshape(acts[-1][1].shape)
    layer_grads = []
    for l in range(len(plan) - 1, -1, -1):
        A, _ = acts[l]
        W, _ = params[l]
        below = X if l == 0 else acts[l - 1][1]
        dA = pool_backward(dP, A, plan[l]["bounds"], plan[l]["pool"])
        delta = dA * A * (1 - A)
        layer_grads.append((conv_filter_grad(delta, below, W.shape[2:]) + conv_weight_decay * W,
                            delta.sum(axis=(0, 2, 3))))
        if l > 0:
            dP = conv_transpose(delta, W, below.shape[2:])
    for gW, gb in reversed(layer_grads):
        grads += [gW, gb]

    cost = data + 0.5 * weight_decay * np.sum(Ws.astype(np.float64) ** 2)
    if conv_weight_decay:
        cost += 0.5 * conv_weight_decay * sum(np.sum(W.astype(np.float64) ** 2)
                                              for W, _ in params)
    return float(cost), np.concatenate([g.ravel() for g in grads]).astype(np.float64)


__all__ = ["conv_ae_cost_grad", "conv_net_cost_grad", "conv_ae_layout", "unpack_conv_ae",
           "conv_net_plan", "conv_net_layout", "normalize_layers", "conv_forward",
           "conv_transpose", "pool_backward"]
