"""Compiling kernels ahead, in a second process, while a run's first stages work.

With an empty Numba cache most of a short run is compiling, one kernel after
another on one core. A run that knows which kernels its later stages need
(``fastsae demo``, ``fastsae classify``) can start :func:`compile_ahead`:
a child process compiles those kernels into the on-disk cache (each on a
few tiny inputs of the run's dtype, which gives the same signatures as the
real data) while this process goes on with its first stages on another core.
At its first call in this process, a kernel whose compilation is in flight
waits for the child, then loads from the cache. When the cache already has
an index for each of the kernels, or caching is off, nothing is started.

    >>> from fastsae.warmup import compile_ahead
    >>> with compile_ahead(["convae", "convnet"], dtype="float32"):   # doctest: +SKIP
    ...     ...   # the first stages; the conv net's kernels compile meanwhile

``python -m fastsae.warmup [--dtype D] AREA...`` is the child's entry point.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence

import numpy as np

from .core import config as _config
from .core.checks import check_choice, check_dtype
from .exceptions import ParameterError
from .kernels import _parallel


def _rehearse_convae(dt):
    from .kernels.convae import conv_ae_cost_grad
    from .core.layouts import conv_ae_layout, layout_size

    X = np.full((2, 1, 6, 5), 0.5, dt)
    theta = np.full(layout_size(conv_ae_layout(2, 1, (3, 2))), 0.01)
    conv_ae_cost_grad(theta, X, 2, (3, 2), sparsity=0.1, beta=3.0, weight_decay=1e-3,
                      decoder="linear")


def _rehearse_convnet(dt):
    from .core.layouts import conv_net_layout, conv_net_plan, layout_size
    from .kernels.convnet import conv_net_cost_grad

    layers = [dict(n_filters=2, patch_shape=(3, 2), n_pool_regions=(2, 2), pool="max")]
    X = np.full((2, 1, 6, 5), 0.5, dt)
    plan, n_features = conv_net_plan(layers, X.shape[1:])
    theta = np.full(layout_size(conv_net_layout(plan, n_features, 2)), 0.01)
    conv_net_cost_grad(theta, X, np.array([0, 1]), layers, 2, weight_decay=1e-3,
                       conv_weight_decay=0.0)


def _rehearse_stacked(dt):
    from .core.layouts import layout_size, stacked_layout
    from .kernels.stacked import stacked_cost_grad

    X = np.full((3, 4), 0.5, dt)
    theta = np.full(layout_size(stacked_layout((4, 3), 2)), 0.01)
    stacked_cost_grad(theta, X, np.array([0, 1, 0]), (4, 3), 2, weight_decay=1e-3)


#: What ``compile_ahead`` can compile: area -> (kernel module, rehearsal, the drivers
#: the rehearsal compiles)
AREAS = {
    "convae": ("fastsae.kernels.convae", _rehearse_convae, ("_conv_ae_pass",)),
    "convnet": ("fastsae.kernels.convnet", _rehearse_convnet, ("_conv_net_pass",)),
    "stacked": ("fastsae.kernels.stacked", _rehearse_stacked, ("_stacked_pass",)),
}
DTYPES = ("float32", "float64")


def _drivers(area):
    """The compiled drivers that ``area``'s rehearsal compiles."""
    module_name, _, names = AREAS[area]
    module = sys.modules.get(module_name) or __import__(module_name, fromlist=["_"])
    return [getattr(module, name) for name in names]


def _cached(area) -> bool:
    """Whether every driver of ``area`` has an index in Numba's disk cache (a cheap
    test: an index for another dtype counts too; then the kernel compiles here)."""
    try:
        return all(os.path.exists(k.kernel._cache._cache_file._index_path)
                   for k in _drivers(area))
    except AttributeError:           # a Numba without these internals: compile here
        return True


#: The longest a kernel's first call waits for the child (seconds); then the child is
#: stopped and the kernel compiles here.
WAIT_SECONDS = 600.0


def _lock_cache_saves() -> bool:
    """Make Numba's cache index updates exclusive across processes (an ``flock`` on a
    file beside each index), so that two processes saving new signatures of one
    function at once cannot lose an entry or point one at the other's code. Installed
    once per process; False where ``fcntl`` is missing (then nothing is compiled ahead)."""
    try:
        import fcntl
    except ImportError:                  # pragma: no cover - not POSIX
        return False
    from numba.core import caching

    cls = caching.IndexDataCacheFile
    if getattr(cls.save, "_fastsae_locked", False):
        return True
    original = cls.save

    def save(self, key, data):
        with open(self._index_path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return original(self, key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    save._fastsae_locked = True
    cls.save = save
    return True


class CompileAhead:
    """A child process compiling ``areas``; :meth:`close` ends it (a context manager)."""

    def __init__(self, areas: Sequence[str], dtype: str):
        self.areas = list(areas)
        self.modules = [AREAS[a][0] for a in self.areas]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fastsae.warmup", "--dtype", dtype, *self.areas],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for m in self.modules:
            _parallel.AHEAD[m] = self.wait

    def wait(self) -> int | None:
        """Wait for the child to end (at most :data:`WAIT_SECONDS`, then stop it); returns
        its exit status. Whatever it did not compile compiles here."""
        try:
            code = self._proc.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.close()
            code = self._proc.returncode
        finally:
            if self._proc.poll() is not None:
                self._release()
        return code

    def close(self) -> None:
        """Stop the child if it still runs (what it compiled stays cached)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:     # pragma: no cover - a stuck child
                self._proc.kill()
                self._proc.wait()
        self._release()

    def _release(self):
        for m in self.modules:
            if _parallel.AHEAD.get(m) == self.wait:
                _parallel.AHEAD.pop(m, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Nothing:
    areas: list[str] = []

    def wait(self):
        return None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def compile_ahead(areas: Sequence[str], *, dtype: str = "float32") -> CompileAhead | _Nothing:
    """Start compiling the kernels of ``areas`` (keys of :data:`AREAS`) in a child process.

    Returns a :class:`CompileAhead` (or, when every one is cached already or
    caching is off, an object that does nothing); use it as a context
    manager, or call ``close()`` at the end of the run.
    """
    if isinstance(areas, (str, bytes)) or not isinstance(areas, Iterable) \
            or not all(isinstance(a, str) for a in areas):
        raise ParameterError(f"areas must be a list of names from {sorted(AREAS)}; got {areas!r}")
    for a in areas:
        check_choice(a, "areas", tuple(AREAS))
    dtype = str(check_dtype(dtype))
    todo = [a for a in dict.fromkeys(areas)
            if AREAS[a][0] not in _parallel.AHEAD and not _cached(a)]
    if not _config.CACHE or not todo or not _lock_cache_saves():
        return _Nothing()
    try:
        return CompileAhead(todo, dtype)
    except OSError:                     # no interpreter to start (a frozen program...)
        return _Nothing()


def main(argv: Sequence[str] | None = None) -> int:
    """The child's entry point: compile ``AREA...`` for ``--dtype``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fastsae.warmup",
                                     description="compile fastsae's kernels into Numba's cache")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("areas", nargs="+", choices=sorted(AREAS))
    args = parser.parse_args(argv)
    _lock_cache_saves()
    for a in args.areas:
        AREAS[a][1](np.dtype(args.dtype))
    return 0


__all__ = ["AREAS", "CompileAhead", "compile_ahead"]


if __name__ == "__main__":
    sys.exit(main())
