"""When to use threads, and how the kernels' thread shares are run.

Every driver kernel is written as a loop over thread shares,
``for t in range(t0, t1)``, where share ``t`` of ``n_threads`` is a
contiguous block of rows or images with its own buffers (``buf[t]``), and
the driver takes ``t0, t1`` as its last two arguments. It is compiled once,
serially (no ``parallel=True``): Numba's parallel lowering roughly doubles a
kernel's compile time, and a kernel that had to run both on the thread team
and serially was compiled twice. The kernels release the GIL (``nogil``), so
plain Python threads run the shares side by side: the calling thread takes
share 0 and a small pool takes the others, each calling the same compiled
driver with its own ``(t, t + 1)``.

Waking a thread costs tens of microseconds on an idle machine and
milliseconds when the other cores are busy (the woken thread waits for a
core). A call with little work therefore runs in the calling thread alone
(:func:`threads_for`).
"""
from __future__ import annotations

import os
import threading
import types
from concurrent.futures import ThreadPoolExecutor, wait

import numba
from numba import njit

from ..core import config as _config
from . import _blas
from ..core.config import JIT_OPTIONS
from ._fpenv import flush_denormals, restore

#: Kernel modules being compiled ahead in another process (see
#: :mod:`fastsae.warmup`): module name -> a callable that waits for it.
AHEAD: dict = {}

#: Qualified names of the variants made so far (see :meth:`ParallelKernel.variant`).
_VARIANTS: dict = {}

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = -1


def _workers(n: int) -> ThreadPoolExecutor:
    """A pool of at least ``n`` threads, made again after a fork (a forked child has none
    of its parent's threads). A pool is never shut down: a caller may still be submitting
    to the one it got while another makes a larger one."""
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_size < n or _pool_pid != os.getpid():
            size = max(n, int(numba.config.NUMBA_NUM_THREADS) - 1)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fastsae-kernel")
            _pool_size, _pool_pid = size, os.getpid()
        return _pool


def _name_of(obj):
    """``module.qualname`` of a function or jitted function (else its repr)."""
    fn = getattr(obj, "py_func", obj)
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"


def _rebound(fn, suffix, names):
    """A copy of the Python function ``fn`` named ``name_suffix``, with some of its
    module's global names bound to other objects."""
    qualname = f"{fn.__module__}.{fn.__qualname__}_{suffix}"
    # Numba's disk cache keys a function by its qualified name and argument types,
    # not by the globals bound here: two variants under one name would load each
    # other's code.
    binding = sorted((k, _name_of(v)) for k, v in names.items())
    if _VARIANTS.setdefault(qualname, binding) != binding:
        raise ValueError(f"a kernel variant named {qualname} exists already, with other "
                         f"bindings ({_VARIANTS[qualname]})")
    copy = types.FunctionType(fn.__code__, {**fn.__globals__, **names},
                              f"{fn.__name__}_{suffix}", fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{fn.__qualname__}_{suffix}"
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


def jit_variant(dispatcher, suffix: str, **names):
    """A helper jitted function (``@njit(**JIT_OPTIONS)``, or ``SHARE_OPTIONS``: the
    copy is inlined where the helper is) compiled again with some of its module's global
    names bound to other objects, as :meth:`ParallelKernel.variant` does for drivers (a
    driver's variant binds the helper's variant in turn)."""
    options = dict(JIT_OPTIONS, inline=dispatcher.targetoptions.get("inline", "never"))
    return njit(**options)(_rebound(dispatcher.py_func, suffix, names))


class ParallelKernel:
    """A driver compiled once; ``kernel(n_threads)(*args)`` runs its shares
    ``0 .. n_threads - 1`` on that many threads (the caller's among them)."""

    def __init__(self, fn):
        self.py_func = fn
        self.kernel = njit(**JIT_OPTIONS)(fn)
        self.module = fn.__module__
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def variant(self, suffix: str, **names) -> ParallelKernel:
        """The same driver with some of its module's global names bound to other
        objects (for instance another jitted function), compiled on its own.

        A run then compiles only the variants it calls, where a branch on an
        argument would compile every branch's callees. The copy has its own
        qualified name (``name_suffix``), which keys Numba's disk cache.
        """
        return ParallelKernel(_rebound(self.py_func, suffix, names))

    def __call__(self, n_threads: int):
        if AHEAD:
            waiter = AHEAD.get(self.module)
            if waiter is not None:
                waiter()                   # compiling elsewhere: wait, then load it from the cache
        n_threads = int(n_threads)
        kernel = self.kernel
        if n_threads <= 1:
            return lambda *args: _flushed(kernel, args, 0)
        return lambda *args: _run_shares(kernel, n_threads, args)


def _flushed(kernel, args, t):
    """Share ``t`` with denormals flushed to zero on this thread (:mod:`._fpenv`), the
    thread's own setting restored after."""
    state = flush_denormals()
    try:
        return kernel(*args, t, t + 1)
    finally:
        restore(state)


def _run_shares(kernel, n_threads, args):
    futures = []
    first = 1
    interrupted = False
    try:
        if not getattr(kernel, "overloads", True):
            # the first call compiles (or loads) the driver: in this thread, so that
            # a Ctrl-C or a compile error is this thread's, not a pool thread's
            _flushed(kernel, args, 0)
            first = 0
        pool = _workers(n_threads - 1)
        for t in range(1, n_threads):
            futures.append(pool.submit(_share, kernel, args, t))
        if first:
            _flushed(kernel, args, 0)
    finally:
        # Never return (or unwind into code that frees the buffers) while a
        # share is still writing: a Ctrl-C during the wait waits on, then
        # is raised.
        while True:
            try:
                wait(futures)
                break
            except KeyboardInterrupt:
                interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    for f in futures:
        f.result()                     # re-raise a share's error, if any


_pool_thread = threading.local()


def _share(kernel, args, t):
    """Share ``t`` on a pool thread; oneMKL, where it is the kernels' BLAS, is held to one
    thread there (a per-thread setting; the pool's threads run nothing else)."""
    if not getattr(_pool_thread, "blas_pinned", False):
        _pool_thread.blas_pinned = _blas.mkl_thread_local(1) is not None
    _flushed(kernel, args, t)


def parallel_kernel(fn):
    """Decorator: compile ``fn`` (``for t in range(t0, t1)`` over thread shares,
    ``t0, t1`` its last arguments) for :class:`ParallelKernel`."""
    return ParallelKernel(fn)


def threads_for(flops, n_items):
    """Threads worth waking for ``flops`` of work split over ``n_items`` rows or images."""
    n = numba.get_num_threads()
    return int(max(1, min(n, n_items, flops // max(_config.PARALLEL_MIN_FLOPS, 1))))


_local = threading.local()


def workspace(kind: str, key, build):
    """The buffers of kernel ``kind`` for ``key``, built by ``build(key)`` when ``key`` changes.

    ``key`` holds what the buffers' shapes depend on (sizes, dtype, threads).
    The bfloat16 variants use their own ``kind`` (``"sae bfloat16"``), so that
    a precision schedule's float32 checks do not free the bfloat16 buffers.
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
