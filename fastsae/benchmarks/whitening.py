"""PCA whitening of 50,000 x 512 float32 rows: fastsae vs scikit-learn.

Run as a script to print both times and their ratio::

    python -m fastsae.benchmarks.whitening [--rows 50000] [--features 512] [--repeat 9]

or with pytest-benchmark (not collected by the default ``pytest`` run, which
only looks in tests/)::

    python -m pytest bench/bench_whitening.py --benchmark-only

Both sides do ``fit(X)`` then ``transform(X)`` keeping every component
(scikit-learn: ``PCA(whiten=True)`` with its default solver, which picks
``covariance_eigh`` for this shape; fastsae: ``PCAWhitening()``). The best of
``repeat`` interleaved runs is compared, after a warm-up run of each. It also
prints how well each whitens (``max |cov(Y) - I|``): on float32 rows with a
large mean, scikit-learn's ``covariance_eigh`` forms ``X.T @ X - m μ μ.T`` in
float32, which cancels catastrophically.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def make_data(rows=50_000, features=512, seed=0):
    """Correlated float32 rows with a decaying spectrum and a non-zero mean
    (like log-spectrogram windows)."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((features, features)))
    scales = 5.0 * np.exp(-np.arange(features) / 128.0)       # variance ratio e**-8
    mix = (scales[:, None] * rotation.T).astype(np.float32)
    X = rng.standard_normal((rows, features), dtype=np.float32) @ mix
    X += rng.normal(-40.0, 5.0, features).astype(np.float32)
    return X


def fastsae_whiten(X):
    from fastsae.preprocess import PCAWhitening

    return PCAWhitening().fit(X).transform(X)


def sklearn_whiten(X):
    from sklearn.decomposition import PCA

    return PCA(whiten=True).fit(X).transform(X)


def whitening_error(Y):
    C = np.cov(Y.astype(np.float64).T, bias=True)
    return float(np.abs(C - np.eye(len(C))).max())


def paired_times(funcs, X, repeat):
    """Times of each function over ``repeat`` interleaved rounds (so that all see
    the same machine load), after one warm-up call of each."""
    for func in funcs:
        func(X)  # warm-up: imports, first touch of memory, BLAS threads
    times = np.empty((repeat, len(funcs)))
    for r in range(repeat):
        for i, func in enumerate(funcs):
            t0 = time.perf_counter()
            func(X)
            times[r, i] = time.perf_counter() - t0
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--no-full", dest="full", action="store_false",
                        help="skip the (slow) svd_solver='full' comparison")
    args = parser.parse_args(argv)
    import sklearn
    from sklearn.decomposition import PCA

    X = make_data(args.rows, args.features)
    times = paired_times([fastsae_whiten, sklearn_whiten], X, args.repeat)
    ours, theirs = times.min(axis=0)
    paired = np.median(times[:, 0] / times[:, 1])
    sk = PCA(whiten=True).fit(X)
    solver = sk._fit_svd_solver
    ours_Y, sk_Y = fastsae_whiten(X), sk.transform(X)
    print(f"X: {X.shape} {X.dtype}; {args.repeat} interleaved rounds; scikit-learn "
          f"{sklearn.__version__} (its default solver picked {solver!r})")
    print(f"fastsae PCAWhitening()    fit+transform: best {ours * 1e3:8.1f} ms")
    print(f"sklearn PCA(whiten=True)  fit+transform: best {theirs * 1e3:8.1f} ms")
    print(f"ratio fastsae / sklearn: {ours / theirs:.3f} (best times), "
          f"{paired:.3f} (median of rounds); < 1: fastsae is faster")
    print(f"whitening error max|cov(Y) - I|: fastsae {whitening_error(ours_Y):.2e}, "
          f"sklearn {whitening_error(sk_Y):.2e}")
    if args.full:
        full = lambda X: PCA(whiten=True, svd_solver="full").fit(X).transform(X)  # noqa: E731
        t_full = paired_times([full], X, 2)[:, 0].min()
        print(f"sklearn PCA(whiten=True, svd_solver='full'): best {t_full * 1e3:8.1f} ms, "
              f"error {whitening_error(full(X)):.2e}; ratio fastsae / it: {ours / t_full:.3f}")
    return ours / theirs


if __name__ == "__main__":
    main()
