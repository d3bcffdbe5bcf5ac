"""When to use threads, and kernels compiled both parallel and serial.

Waking Numba's thread team costs tens of microseconds on an idle machine and
milliseconds when the other cores are busy (the woken thread waits for a
core). A call with little work therefore runs serially: each driver is
compiled twice from the same source, once with ``parallel=True`` (its
``prange`` over thread shares spread over the team) and once without (the
same loop, in the calling thread).
"""
from __future__ import annotations

import threading
import types

import numba
from numba import njit

from ..core import config as _config
from ..core.config import JIT_OPTIONS


class ParallelKernel:
    """A driver compiled parallel and serial; call ``kernel(n_threads)(*args)``."""

    def __init__(self, fn):
        self.parallel = njit(parallel=True, **JIT_OPTIONS)(fn)
        # A distinct function object with its own name: Numba's on-disk cache
        # is keyed by the function's qualified name and signature, not by the
        # parallel flag, so one name would make both load one compilation.
        serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                    fn.__defaults__, fn.__closure__)
        serial.__qualname__ = fn.__qualname__ + "_serial"
        serial.__module__ = fn.__module__
        self.serial = njit(**JIT_OPTIONS)(serial)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __call__(self, n_threads):
        return self.parallel if n_threads > 1 else self.serial


def parallel_kernel(fn):
    """Decorator: compile ``fn`` (whose work loop is ``prange``) both ways."""
    return ParallelKernel(fn)


def threads_for(flops, n_items):
    """Threads worth waking for ``flops`` of work split over ``n_items`` rows or images."""
    n = numba.get_num_threads()
    return int(max(1, min(n, n_items, flops // max(_config.PARALLEL_MIN_FLOPS, 1))))


_local = threading.local()


def workspace(kind: str, key, build):
    """The buffers of kernel ``kind`` for ``key``, built by ``build(key)`` when ``key`` changes.

    ``key`` holds what the buffers' shapes depend on (sizes, dtype, threads).
    They are kept per calling thread between calls (no page faults, no
    allocation in the optimizer's inner loop) until :func:`clear_workspace`.
    """
    store = _local.__dict__
    held = store.get(kind)
    if held is None or held[0] != key:
        store.pop(kind, None)              # free the old buffers before building new ones
        held = store[kind] = (key, build(key))
    return held[1]


def clear_workspace():
    """Free every kernel's buffers kept in the calling thread (the estimators do it after ``fit``)."""
    _local.__dict__.clear()
