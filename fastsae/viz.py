"""Pictures: learned spectro-temporal filters, training curves, confusion matrices.

Everything renders with matplotlib's Agg canvas (no display, no global pyplot
state) and writes PNG files.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .core.checks import check_array, check_int, check_output_path
from .core.types import ArrayLike, PathLike
from .exceptions import ParameterError


def filter_mosaic(W: ArrayLike, n_bands: int, n_frames: int, *, n_cols: int | None = None,
                  scale: tuple[int, int] | None = None, pad: int = 1,
                  normalize: str = "each", cmap: str = "RdBu_r",
                  background: tuple[float, float, float] = (0.85, 0.85, 0.85)) -> np.ndarray:
    """The filters as one RGB image: a grid of small spectro-temporal tiles.

    Each row of ``W`` is one filter in the window layout (frame-major:
    ``[frame0 bands…, frame1 bands…]``, as :func:`fastsae.audio.sample_windows`
    lays out its windows). Its tile shows frequency upwards (band 0 at the
    bottom) and time to the right, coloured with a diverging colour map
    centred on zero (white = 0).

    Parameters
    ----------
    W : array-like [shape=(n_filters, n_bands * n_frames)]
    n_bands, n_frames : int
    n_cols : int, optional
        Tiles per row (default: about square).
    scale : (int, int), optional
        Pixels per band and per frame (default: chosen so that tiles are not
        slivers, e.g. ``(2, 8)`` for 40 bands x 4 frames).
    pad : int
        Pixels between tiles.
    normalize : {"each", "all"}
        Colour range per tile (UFLDL's display_network) or shared by all.

    Returns
    -------
    image : np.ndarray [shape=(height, width, 3)], float in [0, 1]
        ``height = n_rows * (n_bands * scale[0] + pad) + pad``,
        ``width = n_cols * (n_frames * scale[1] + pad) + pad``.
    """
    from matplotlib import colormaps

    n_bands = check_int(n_bands, "n_bands", low=1)
    n_frames = check_int(n_frames, "n_frames", low=1)
    W = check_array(W, "W", dtype=np.float64)
    if W.shape[1] != n_bands * n_frames:
        raise ParameterError(f"W must have n_bands * n_frames = {n_bands * n_frames} columns; "
                             f"got shape {W.shape}")
    if normalize not in ("each", "all"):
        raise ParameterError(f"normalize must be 'each' or 'all'; got {normalize!r}")
    K = W.shape[0]
    n_cols = check_int(n_cols, "n_cols", low=1) if n_cols is not None else int(np.ceil(np.sqrt(K)))
    n_rows = int(np.ceil(K / n_cols))
    if scale is None:
        sy = -(-80 // n_bands) if n_bands < 80 else 1      # tiles at least 80 px tall
        sx = max(1, int(round(n_bands * sy / (2 * n_frames))))
        scale = (sy, min(sx, 32))
    sy, sx = (check_int(s, "scale", low=1) for s in scale)
    tiles = W.reshape(K, n_frames, n_bands).transpose(0, 2, 1)[:, ::-1, :]   # frequency up
    if normalize == "each":
        lim = np.abs(tiles).max(axis=(1, 2), keepdims=True)
    else:
        lim = np.full((K, 1, 1), np.abs(tiles).max())
    tiles = tiles / np.where(lim > 0, lim, 1.0)
    rgb = colormaps[cmap]((tiles + 1.0) / 2.0)[..., :3]
    th, tw = n_bands * sy, n_frames * sx
    height = n_rows * (th + pad) + pad
    width = n_cols * (tw + pad) + pad
    img = np.empty((height, width, 3))
    img[:] = background
    for k in range(K):
        r, c = divmod(k, n_cols)
        y0, x0 = pad + r * (th + pad), pad + c * (tw + pad)
        img[y0:y0 + th, x0:x0 + tw] = np.repeat(np.repeat(rgb[k], sy, axis=0), sx, axis=1)
    return img


def display_network(W: ArrayLike, n_bands: int, n_frames: int, path: PathLike | None = None,
                    **kwargs: Any) -> np.ndarray:
    """Draw learned filters as a grid (UFLDL's display_network with band and frame axes).

    Parameters
    ----------
    W : array-like [shape=(n_filters, n_bands * n_frames)]
        E.g. ``sae.W1_`` of an autoencoder trained on windows of ``n_frames``
        frames of ``n_bands`` bands.
    n_bands, n_frames : int
    path : str or path-like, optional
        Where to write the PNG.
    **kwargs
        See :func:`filter_mosaic`.

    Returns
    -------
    image : np.ndarray [shape=(height, width, 3)]

    Examples
    --------
    >>> W = np.random.default_rng(0).standard_normal((16, 40 * 4))
    >>> display_network(W, 40, 4).shape
    (325, 165, 3)
    """
    img = filter_mosaic(W, n_bands, n_frames, **kwargs)
    if path is not None:
        from matplotlib.image import imsave
        _makedirs_for(path)
        imsave(os.fspath(path), img)
    return img


def filter_centres(W: ArrayLike, patch_shape: tuple[int, int], *,
                   position: ArrayLike | None = None) -> np.ndarray:
    """Centre band of each filter: where in frequency it is, as a (fractional) band index.

    Full-height filters (``patch_shape[0]`` = the spectrogram's bands): the
    energy-weighted mean band of the filter. Frequency-local filters slide over
    every band; ``position`` (``(n_filters, n_positions)``, e.g.
    :attr:`fastsae.pipeline.SelfTaughtFeatures.frequency_profile_`, the mean
    activation at each offset) places each one where it responds most, plus
    half its height; without it, the offset of its energy within the patch.
    """
    ph, pw = patch_shape
    tiles = np.asarray(W, dtype=np.float64).reshape(len(W), pw, ph)
    energy = (tiles ** 2).sum(axis=1)                           # (K, ph)
    within = (energy * np.arange(ph)).sum(axis=1) / np.maximum(energy.sum(axis=1), 1e-300)
    if position is None:
        return within
    position = check_array(position, "position")
    if position.shape[0] != len(W):
        raise ParameterError(f"position must have one row per filter ({len(W)}); got shape "
                             f"{position.shape}")
    return np.argmax(position, axis=1) + within


def plot_filters(W: ArrayLike, patch_shape: tuple[int, int], path: PathLike | None = None, *,
                 band_hz: ArrayLike | None = None, position: ArrayLike | None = None,
                 hop_ms: float = 10.0, max_filters: int = 48, n_cols: int = 8,
                 title: str = "Learned spectro-temporal filters") -> Any:
    """The filters as a grid of small spectrograms with axes, ordered by centre frequency.

    Each filter is drawn as a patch of ``patch_shape = (bands, frames)``:
    time in ms to the right, frequency up, labelled in Hz at the bands where
    the filter sits (:func:`filter_centres`; a mel spectrogram's bands are
    evenly spaced on the mel scale, so the axis is the mel scale with Hz
    ticks). Colours share one symmetric scale, each filter divided by its
    largest absolute weight (the colour bar); filters go from the lowest
    centre frequency (top left) to the highest.

    Parameters
    ----------
    W : array-like [shape=(n_filters, bands * frames)]
        In the window layout (``SelfTaughtFeatures.filters("decoder")`` reads best).
    patch_shape : (int, int)
    path : str or path-like, optional
        Where to write the PNG.
    band_hz : array-like, optional
        Centre frequency of every band of the spectrogram
        (:func:`fastsae.audio.band_frequencies`); without it the axis counts bands.
    position : array-like [shape=(n_filters, n_positions)], optional
        Where each frequency-local filter responds (see :func:`filter_centres`).
    hop_ms : float
        Milliseconds per frame.
    max_filters : int
        Draw at most this many, evenly spread over the frequency order.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> W = np.random.default_rng(0).standard_normal((6, 12 * 8))
    >>> fig = plot_filters(W, (12, 8), band_hz=np.linspace(50, 3800, 40))
    >>> len(fig.axes)            # six filters and the colour bar
    7
    """
    ph, pw = (check_int(v, "patch_shape", low=1) for v in patch_shape)
    W = check_array(W, "W", dtype=np.float64)
    if W.shape[1] != ph * pw:
        raise ParameterError(f"W must have {ph} x {pw} = {ph * pw} columns for patch_shape "
                             f"{(ph, pw)}; got shape {W.shape}")
    max_filters = check_int(max_filters, "max_filters", low=1)
    n_cols = check_int(n_cols, "n_cols", low=1)
    centre = filter_centres(W, (ph, pw), position=position)
    order = np.argsort(centre, kind="stable")
    if order.size > max_filters:
        order = order[np.linspace(0, order.size - 1, max_filters).round().astype(int)]
    if band_hz is not None:
        band_hz = check_array(band_hz, "band_hz", ndim=1)
    # where each tile sits on the spectrogram's band axis (full-height filters: band 0)
    offset = np.zeros(len(W), int) if position is None else np.argmax(position, axis=1)
    tiles = W.reshape(len(W), pw, ph).transpose(0, 2, 1)
    tiles = tiles / np.maximum(np.abs(tiles).max(axis=(1, 2), keepdims=True), 1e-300)
    n_rows = int(np.ceil(order.size / n_cols))
    fig = _figure((1.5 * n_cols + 1.0, 1.55 * n_rows + 0.8))
    grid = fig.add_gridspec(n_rows, n_cols, left=0.06, right=0.9, bottom=0.06, top=0.9,
                            wspace=0.55, hspace=0.75)
    image = None
    for i, k in enumerate(order):
        ax = fig.add_subplot(grid[divmod(i, n_cols)])
        lo = int(offset[k])
        image = ax.imshow(tiles[k], origin="lower", aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                          extent=(0, pw * hop_ms, lo - 0.5, lo + ph - 0.5))
        ax.set_yticks([lo, lo + ph - 1])
        if band_hz is not None and lo + ph - 1 < band_hz.size:
            ax.set_yticklabels([f"{band_hz[lo]:.0f}", f"{band_hz[lo + ph - 1]:.0f}"], fontsize=6)
        else:
            ax.set_yticklabels([str(lo), str(lo + ph - 1)], fontsize=6)
        ax.set_xticks([0, pw * hop_ms])
        ax.tick_params(labelsize=6, length=2)
        if band_hz is not None:
            c = float(np.clip(centre[k], 0, band_hz.size - 1))
            hz = np.interp(c, np.arange(band_hz.size), band_hz)
            ax.set_title(f"{hz:.0f} Hz", fontsize=7, pad=2)
    fig.text(0.5, 0.015, "time (ms)", ha="center", fontsize=9)
    fig.text(0.01, 0.5, "frequency (Hz, mel scale)" if band_hz is not None else "band",
             va="center", rotation="vertical", fontsize=9)
    fig.suptitle(title, fontsize=11)
    if image is not None:
        bar = fig.colorbar(image, cax=fig.add_axes([0.925, 0.15, 0.015, 0.7]))
        bar.set_label("weight (each filter scaled to its largest)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if path is not None:
        _makedirs_for(path)
        fig.savefig(os.fspath(path), dpi=110)
    return fig


def _makedirs_for(path):
    check_output_path(path, "path")


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_training_curve(curves: ArrayLike | Mapping[str, ArrayLike],
                        path: PathLike | None = None, *, title: str = "Training",
                        logy: bool = True) -> Any:
    """Objective against L-BFGS iteration.

    Parameters
    ----------
    curves : list of float, or dict name -> list of float
        One curve (e.g. ``sae.loss_curve_``) or several, labelled.
    path : str, optional
        Where to write the PNG.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(curves, dict):
        curves = {"cost": curves}
    fig = _figure((6, 4))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        curve = np.asarray(curve, dtype=float)
        if curve.ndim != 1 or curve.size == 0:
            raise ParameterError(f"curve {name!r} must be a non-empty list of numbers")
        ax.plot(np.arange(1, curve.size + 1), curve, label=name)
    if logy and all(np.all(np.asarray(c) > 0) for c in curves.values()):
        ax.set_yscale("log")
    ax.set_xlabel("L-BFGS iteration")
    ax.set_ylabel("objective")
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        _makedirs_for(path)
        fig.savefig(os.fspath(path))
    return fig


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike,
                     labels: Sequence[Any] | np.ndarray | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of examples of class ``labels[i]`` predicted as ``labels[j]``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ParameterError(f"y_true and y_pred must be 1-D of the same length; got "
                             f"{y_true.shape} and {y_pred.shape}")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    C = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        if t in index and p in index:
            C[index[t], index[p]] += 1
    return C


def plot_confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, path: PathLike | None = None,
                          *, labels: Sequence[Any] | np.ndarray | None = None,
                          title: str = "Confusion matrix") -> Any:
    """A confusion matrix with counts in the cells; returns the Figure."""
    if labels is None:
        labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    C = confusion_matrix(y_true, y_pred, labels)
    n = len(labels)
    fig = _figure((1.2 + 0.45 * n, 1.0 + 0.45 * n))
    ax = fig.add_subplot()
    ax.imshow(C, cmap="Blues")
    ax.set_xticks(range(n), [str(x) for x in labels], rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), [str(x) for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(C) / max(C.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.1%})")
    top = C.max() if C.size else 0
    for i in range(n):
        for j in range(n):
            if C[i, j]:
                ax.text(j, i, str(C[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if C[i, j] > top / 2 else "black")
    fig.tight_layout()
    if path is not None:
        _makedirs_for(path)
        fig.savefig(os.fspath(path))
    return fig


__all__ = ["display_network", "filter_mosaic", "plot_filters", "filter_centres",
           "plot_training_curve", "plot_confusion_matrix", "confusion_matrix"]
