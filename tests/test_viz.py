import numpy as np
import pytest
from matplotlib.image import imread

from fastsae import ParameterError
from fastsae.viz import (confusion_matrix, display_network, plot_confusion_matrix,
                         plot_training_curve)


def test_filter_picture_grid_size_and_content(tmp_path):
    rng = np.random.default_rng(0)
    n_bands, n_frames, K = 40, 4, 10
    W = rng.standard_normal((K, n_bands * n_frames))
    path = tmp_path / "filters.png"
    img = display_network(W, n_bands, n_frames, path=path, n_cols=4, scale=(2, 5), pad=1)
    png = imread(path)
    # 3 rows x 4 columns of (80 x 20)-pixel tiles with 1-pixel gaps
    assert png.shape[:2] == (3 * (80 + 1) + 1, 4 * (20 + 1) + 1) == img.shape[:2]
    assert png[..., :3].std() > 0.1          # not blank
    # frequency up: band 0 of filter 0 is the bottom row of the first tile
    w0 = W[0].reshape(n_frames, n_bands).T
    top_left = img[1:81, 1:21]
    low_band_color = top_left[-1, 0]
    high_band_color = top_left[0, 0]
    # red for positive, blue for negative (RdBu_r): compare red-blue balance with the sign
    assert np.sign(low_band_color[0] - low_band_color[2]) == np.sign(w0[0, 0])
    assert np.sign(high_band_color[0] - high_band_color[2]) == np.sign(w0[-1, 0])
    # a zero filter is white (the centre of the diverging map) where it is drawn
    img0 = display_network(np.zeros((1, 6)), 3, 2, scale=(1, 1), pad=0)
    assert np.allclose(img0, img0[0, 0]) and img0[0, 0].min() > 0.9


def test_filter_picture_errors():
    with pytest.raises(ParameterError, match="n_bands \\* n_frames"):
        display_network(np.ones((3, 10)), 4, 3)
    with pytest.raises(ParameterError, match="normalize"):
        display_network(np.ones((3, 12)), 4, 3, normalize="max")


def test_training_curve_and_confusion_plots(tmp_path):
    plot_training_curve({"a": [3, 2, 1], "b": [4, 3.5, 3]}, tmp_path / "curve.png")
    assert imread(tmp_path / "curve.png").shape[:2] == (400, 600)
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    C = confusion_matrix(y, p)
    np.testing.assert_array_equal(C, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    fig = plot_confusion_matrix(y, p, tmp_path / "cm.png", labels=[0, 1, 2])
    assert "66.7%" in fig.axes[0].get_title()
    assert imread(tmp_path / "cm.png").std() > 0.05
    with pytest.raises(ParameterError):
        plot_training_curve([], tmp_path / "x.png")


def test_plot_filters_orders_by_centre_frequency_and_labels_hz(tmp_path):
    from fastsae.viz import filter_centres, plot_filters
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 4 * 3))
    position = np.zeros((5, 10))
    position[np.arange(5), [7, 1, 9, 3, 5]] = 1.0       # where each filter responds
    centres = filter_centres(W, (4, 3), position=position)
    assert list(np.argsort(centres)) == [1, 3, 4, 0, 2]
    hz = np.linspace(100.0, 3000.0, 13)
    fig = plot_filters(W, (4, 3), tmp_path / "f.png", band_hz=hz, position=position)
    axes = fig.axes[:5]
    labels = [[t.get_text() for t in ax.get_yticklabels()] for ax in axes]
    assert labels[0] == [f"{hz[1]:.0f}", f"{hz[4]:.0f}"]          # filter 1 first, bands 1-4
    assert labels[-1] == [f"{hz[9]:.0f}", f"{hz[12]:.0f}"]
    assert fig.axes[-1].get_ylabel().startswith("weight")          # the colour bar
    assert (tmp_path / "f.png").stat().st_size > 1000
    with pytest.raises(ParameterError):
        plot_filters(W, (5, 3))
