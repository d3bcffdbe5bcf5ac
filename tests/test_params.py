import numpy as np
import pytest

from fastsae import ParameterError, init_params
from fastsae.params import (pack, params_to_stack, sae_layout, stack_to_params, unpack,
                            unpack_sae)


def test_init_params_range_and_zero_biases():
    v, h = 64, 25
    theta = init_params(v, h, random_state=0)
    r = np.sqrt(6.0 / (v + h + 1))
    W1, W2, b1, b2 = unpack_sae(theta, v, h)
    assert theta.size == 2 * v * h + v + h
    assert np.abs(W1).max() <= r and np.abs(W2).max() <= r
    # uniform over the whole range, not a narrow part of it
    assert np.abs(W1).max() > 0.9 * r and abs(W1.mean()) < 0.1 * r
    assert not b1.any() and not b2.any()
    np.testing.assert_array_equal(theta, init_params(v, h, random_state=0))
    assert not np.array_equal(theta, init_params(v, h, random_state=1))


def test_init_params_tied_layout():
    theta = init_params(10, 3, random_state=0, tied=True)
    assert theta.size == 30 + 3 + 10
    W1, W2, b1, b2 = unpack_sae(theta, 10, 3, tied=True)
    assert W2.shape == (10, 3) and np.shares_memory(W1, W2)
    np.testing.assert_array_equal(W2, W1.T)


def test_pack_unpack_round_trip_gives_views():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal((2, 3))]
    theta, layout = pack(arrays)
    assert layout == ((3, 4), (3,), (2, 3))
    views = unpack(theta, layout)
    for a, v in zip(arrays, views):
        np.testing.assert_array_equal(a, v)
        assert np.shares_memory(v, theta)
    views[1][0] = 42.0
    assert theta[12] == 42.0


def test_stack_round_trip_and_checks():
    rng = np.random.default_rng(0)
    stack = [(rng.standard_normal((5, 8)), rng.standard_normal(5)),
             (rng.standard_normal((3, 5)), rng.standard_normal(3))]
    theta, layout = stack_to_params(stack)
    back = params_to_stack(theta, layout)
    for (W, b), (W2, b2) in zip(stack, back):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)
    with pytest.raises(ParameterError, match="stack\\[1\\]"):
        stack_to_params([stack[0], (np.ones((3, 4)), np.ones(3))])
    with pytest.raises(ParameterError, match="theta must have"):
        unpack(theta[:-1], layout)


def test_sae_layout_order_is_ufldl():
    assert sae_layout(6, 2) == ((2, 6), (6, 2), (2,), (6,))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", None])
def test_init_params_rejects_bad_sizes(bad):
    with pytest.raises(ParameterError, match="n_hidden"):
        init_params(10, bad)
