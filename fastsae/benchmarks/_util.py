"""Timing, machine GEMM rate, allocator settings and table printing for the benchmarks."""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time

import numpy as np


#: Seconds to wait before timing an implementation: the thread pools of the one
#: timed before (OpenBLAS's threads spin for about 0.1 s after their last call,
#: OpenMP's similarly) go idle first instead of competing for the cores.
SETTLE_SECONDS = 0.3


def timeit(fn, *, repeat=7, warmup=1, min_time=0.0, settle=SETTLE_SECONDS):
    """Median and minimum wall time (seconds) of ``fn()`` over ``repeat`` runs after warm-up.

    Waits ``settle`` seconds first, so that another implementation's spinning
    thread pool does not slow this one down.
    """
    if settle:
        time.sleep(settle)
    for _ in range(warmup):
        fn()
    times = []
    t_start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - t_start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 10 * repeat:
            break
    return float(np.median(times)), float(np.min(times))


#: Seconds each block of :func:`time_side_by_side` runs at least: the first calls after
#: an idle spell wake sleeping threads and run slower (at the UFLDL shape, float32, the
#: kernels' median over 5 calls after 0.3 s idle was 3.0 ms, over 40 calls 2.25 ms),
#: while an optimizer calls its objective back to back.
MIN_BLOCK_SECONDS = 0.1


def time_side_by_side(impls, *, rounds=3, per_block=5, min_block=MIN_BLOCK_SECONDS):
    """Median and min seconds per implementation, timed in alternating blocks.

    Each round times every implementation once, in turn, so that a slow spell of
    a shared machine falls on all of them alike rather than on whichever was
    timed then: the ratios between them hold better than their absolute times.
    A block times ``per_block`` calls, and more until it has run ``min_block``
    seconds (at most 50 x ``per_block`` calls), so that short calls are timed in
    their steady state.
    """
    for fn in impls.values():
        fn()                                        # compile / warm up
    times = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            time.sleep(SETTLE_SECONDS)              # the previous block's pools go idle
            fn()                                    # first call of a block: pools wake up
            block = []
            start = time.perf_counter()
            while len(block) < per_block or (time.perf_counter() - start < min_block
                                             and len(block) < 50 * per_block):
                t = time.perf_counter()
                fn()
                block.append(time.perf_counter() - t)
            times[name] += block
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in times.items()}


def gemm_rate(dtype, n=2048, repeat=5):
    """GFLOP/s of NumPy's BLAS on an n x n x n product (all its threads)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty((n, n), dtype)
    med, best = timeit(lambda: np.matmul(A, B, out=C), repeat=repeat)
    return 2.0 * n ** 3 / med / 1e9


def keep_freed_memory():
    """Stop glibc from returning freed temporaries to the OS after each call.

    With glibc's default thresholds, a NumPy function that allocates a few MB
    of temporaries per call page-faults them in again on every call. This
    raises the mmap and trim thresholds (``mallopt``); it is a property of the
    process, so the benchmark reports the NumPy reference both ways.
    Returns True if it could be applied.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 31)
    return bool(ok)


def machine_summary():
    import numba
    import scipy
    from threadpoolctl import threadpool_info
    blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} thr, "
                     f"{os.path.basename(os.path.dirname(i.get('filepath', '')))})"
                     for i in threadpool_info() if i.get("user_api") == "blas")
    cpu, isa = cpu_model_and_isa()
    return (f"{cpu}, {os.cpu_count()} cores, {isa} | numpy {np.__version__}, scipy {scipy.__version__}, "
            f"numba {numba.__version__} ({numba.get_num_threads()} threads) | BLAS: {blas} | "
            f"kernels' float GEMMs: {_kernel_blas()}")


#: The name of the row that times a kernel on SciPy's BLAS where the kernels use oneMKL.
SCIPY_BLAS_ROW = "numba on SciPy's BLAS (FASTSAE_BLAS=scipy)"


def with_scipy_blas_row(impls, name="numba"):
    """Where the float kernels call oneMKL, add a row timing ``impls[name]`` on SciPy's
    BLAS instead (FASTSAE_BLAS=scipy for the call): the gain of the BLAS in the same run."""
    from ..kernels import _blas
    from ..exceptions import BackendUnavailableError, ParameterError
    try:
        if _blas.float_blas() != "mkl":
            return impls
    except (BackendUnavailableError, ParameterError):
        return impls
    fn = impls[name]

    def on_scipy():
        saved = os.environ.get(_blas.ENV)
        os.environ[_blas.ENV] = "scipy"
        try:
            return fn()
        finally:
            if saved is None:
                del os.environ[_blas.ENV]
            else:
                os.environ[_blas.ENV] = saved
    impls[SCIPY_BLAS_ROW] = on_scipy
    return impls


def _kernel_blas():
    from ..exceptions import BackendUnavailableError, ParameterError
    from ..kernels import _blas
    try:
        return _blas.describe()
    except (BackendUnavailableError, ParameterError) as exc:            # a bad FASTSAE_BLAS: say so, the header still prints
        return f"unavailable ({exc})"


#: the instruction sets the benchmarks depend on, as /proc/cpuinfo names them
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_model_and_isa():
    """``(CPU model, "avx512f yes, avx512_bf16 no, ...")`` from /proc/cpuinfo where it exists."""
    cpu = platform.processor() or platform.machine()
    flags = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in (platform.processor(),
                                                             platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and flags is None:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if flags is None:
        return cpu, "ISA flags unknown"
    return cpu, ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ISA_FLAGS)


_recorders: list[list] = []


@contextlib.contextmanager
def record_tables():
    """While open, every :func:`print_table` also appends ``{"title", "columns", "rows"}``
    (each row a dict from column to cell, as printed) to the list this yields."""
    tables: list = []
    _recorders.append(tables)
    try:
        yield tables
    finally:
        _recorders.remove(tables)


def print_table(title, header, rows):
    for tables in _recorders:
        tables.append({"title": title, "columns": [str(h) for h in header],
                       "rows": [{str(h): str(c) for h, c in zip(header, r)} for r in rows]})
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_weights(theta, v, h, dt, torch):
    """W1, W2, b1, b2 of the float64 vector ``theta`` as PyTorch tensors of dtype ``dt``."""
    th = torch.from_numpy(theta)
    return (th[:h * v].view(h, v).to(dt), th[h * v:2 * h * v].view(v, h).to(dt),
            th[2 * h * v:2 * h * v + h].to(dt), th[2 * h * v + h:].to(dt))
