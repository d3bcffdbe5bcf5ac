"""NumPy reference: the convolutional network (pooled sigmoid convolutions, then a softmax).

The layer shapes come from :func:`fastsae.core.layouts.conv_net_plan`, the
parameter layout from :func:`fastsae.core.layouts.conv_net_layout`: the
softmax first, ``W (n_classes, n_features)``, ``b (n_classes,)``, then for
each layer ``W_l (K_l, C_l, ph_l, pw_l)``, ``b_l (K_l,)`` (as UFLDL's
``stackedAECost`` puts ``softmaxTheta`` first).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..core.args import check_conv_net_args
from ..core.bfloat16 import bf16_rounded, bf16_two_parts, is_bfloat16
from ..core.layouts import unpack
from .conv import pool_regions
from .convae import conv_filter_grad, conv_forward, conv_transpose
from .softmax import network_cost_grad, softmax_loss_delta


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
        :func:`fastsae.core.layouts.conv_net_layout`; ``C_1`` is the input's channels, ``C_l =
        K_{l−1}``).
    X : np.ndarray [shape=(n_images, n_channels, H, W), dtype=float32, float64 or bfloat16]
        bfloat16 (``ml_dtypes.bfloat16``): see :func:`_conv_net_cost_grad_bfloat16`.
    y : np.ndarray [shape=(n_images,), integer]
        Labels in ``0 .. n_classes-1``.
    layers : list of dict
        ``n_filters``, ``patch_shape``, ``pool`` and ``pool_shape`` or
        ``n_pool_regions`` of each layer (see :func:`fastsae.core.layouts.normalize_layers`).
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
    plan, n_features, y, layout = check_conv_net_args(theta, X, y, layers, n_classes,
                                                      weight_decay, conv_weight_decay,
                                                      bfloat16=True)
    if is_bfloat16(X.dtype):
        return _conv_net_cost_grad_bfloat16(theta, X, y, plan, layout, weight_decay,
                                            conv_weight_decay)
    dt = X.dtype
    N = X.shape[0]
    views = unpack(theta, layout)
    Ws, bs = (v.astype(dt) for v in views[:2])
    params = [(views[i].astype(dt), views[i + 1].astype(dt)) for i in range(2, len(views), 2)]

    acts = conv_net_forward(params, X, plan)
    F = acts[-1][1].reshape(N, -1)
    data, D = softmax_loss_delta(F @ Ws.T + bs, y)
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
    return network_cost_grad(data, Ws, weight_decay, [W for W, _ in params], conv_weight_decay, grads,
                             layer_grads)


def _conv_net_cost_grad_bfloat16(theta, X, y, plan, layout, weight_decay, conv_weight_decay):
    """The same objective with bfloat16 products in the layers (the arithmetic of the
    compiled bfloat16 kernel, written plainly).

    The filters are carried as two bfloat16 parts (high and low,
    :func:`fastsae.core.bfloat16.bf16_two_parts`); the other operands of each
    layer's three products are rounded to bfloat16: the layer's input (the
    image, exact; or the pooled maps below) and the delta ``δ = dA ⊙ A'`` (its sum, the bias
    gradient, too: the kernel forms it in the same product). Everything else
    is float32: biases, activations, pooling, the softmax; weight decay uses
    the float32 parameters.
    """
    f32 = np.float32
    N = X.shape[0]
    views = [v.astype(f32) for v in unpack(theta, layout)]
    Ws, bs = views[:2]
    params = [(views[i], views[i + 1]) for i in range(2, len(views), 2)]

    inputs, acts = [], []
    P = X.astype(f32)                                   # exact
    for (W, b), step in zip(params, plan):
        Pr = bf16_rounded(P)
        A = expit(conv_forward(bf16_two_parts(W), b, Pr))
        inputs.append(Pr)
        P = pool_regions(A, *step["bounds"], mode=step["pool"])
        acts.append((A, P))
    F = P.reshape(N, -1)
    data, D = softmax_loss_delta(F @ Ws.T + bs, y)
    D /= N
    grads = [D.T @ F + weight_decay * Ws, D.sum(axis=0)]

    dP = (D @ Ws).reshape(P.shape)
    layer_grads = []
    for l in range(len(plan) - 1, -1, -1):
        A, _ = acts[l]
        W, _ = params[l]
        delta = bf16_rounded(pool_backward(dP, A, plan[l]["bounds"], plan[l]["pool"]) * A * (1 - A))
        layer_grads.append((conv_filter_grad(delta, inputs[l], W.shape[2:])
                            + conv_weight_decay * W, delta.sum(axis=(0, 2, 3))))
        if l > 0:
            dP = conv_transpose(delta, bf16_two_parts(W), inputs[l].shape[2:])
    return network_cost_grad(data, Ws, weight_decay, [W for W, _ in params], conv_weight_decay,
                             grads, layer_grads)
