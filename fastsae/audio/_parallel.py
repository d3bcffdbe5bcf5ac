"""Run one function over many files: serially or in worker processes, in chunks.

Bad files raise :class:`fastsae.ParameterError` inside the function; the
runner collects those per item so that ``on_error="skip"`` can drop them with
one warning that names and counts them. Any other exception is a bug and is
raised as it is.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..core.checks import check_choice, check_int
from ..exceptions import ParameterError

ON_ERROR = ("fail", "skip")

#: Chunks per worker: enough for a smooth progress bar and load balance,
#: few enough that the per-task overhead (pickling, IPC) stays small.
CHUNKS_PER_WORKER = 8


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_n_jobs(n_jobs) -> int:
    """None or -1: every available core; -k: all but k-1; k > 0: k processes."""
    cores = available_cores()
    if n_jobs is None:
        return cores
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ParameterError(
            "n_jobs must be a positive number of processes, -1 for all cores, or None; got 0")
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def _mp_context():
    import multiprocessing as mp

    # On Linux, fork: the workers inherit the parent's imported librosa/scipy
    # (importing them afresh costs seconds per worker on a small machine).
    # Elsewhere, the platform's default (spawn on macOS and Windows).
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context()


def _init_worker():
    # One BLAS thread per worker process: the processes already use every core.
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl missing or failing
        pass


def _run_chunk(func, chunk):
    out = []
    for item in chunk:
        try:
            out.append((True, func(item)))
        except ParameterError as exc:
            out.append((False, str(exc)))
    return out


def _progress_bar(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="file", disable=not enabled, leave=False)


def map_files(func, items, *, n_jobs=None, progress=False, desc="", on_error="fail",
              n_total=None):
    """``[func(item) for item in items]``, in parallel, with per-item error handling.

    Parameters
    ----------
    func : picklable callable ``item -> result``
        Raises :class:`ParameterError` for a bad item.
    items : sequence
    n_jobs : int or None
        See :func:`resolve_n_jobs`; 1 runs in this process.
    progress : bool
        Show a tqdm progress bar.
    on_error : {"fail", "skip"}
    n_total : int, optional
        The number of files to report in the skip warning, when ``items`` are
        only those left of a larger set.

    Returns
    -------
    results : list
        One per item, in order; with ``on_error="skip"`` only the items that
        succeeded.
    kept : list of int
        Positions in ``items`` of ``results``.
    """
    check_choice(on_error, "on_error", ON_ERROR)
    if not isinstance(progress, (bool, int)):
        raise ParameterError(f"progress must be True or False; got {progress!r}")
    items = list(items)
    n = len(items)
    workers = min(resolve_n_jobs(n_jobs), max(n, 1))
    outcomes = [None] * n

    def record(start, chunk_out):
        for i, res in enumerate(chunk_out):
            outcomes[start + i] = res
            if on_error == "fail" and not res[0]:
                raise ParameterError(res[1])

    with _progress_bar(n, desc, bool(progress)) as bar:
        if workers <= 1 or n <= 1:
            for i, item in enumerate(items):
                record(i, _run_chunk(func, [item]))
                bar.update(1)
        else:
            size = max(1, math.ceil(n / (workers * CHUNKS_PER_WORKER)))
            starts = range(0, n, size)
            with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                     initializer=_init_worker) as pool:
                pending = {pool.submit(_run_chunk, func, items[s:s + size]): s for s in starts}
                try:
                    while pending:
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            start = pending.pop(fut)
                            chunk_out = fut.result()
                            record(start, chunk_out)
                            bar.update(len(chunk_out))
                except BaseException:
                    for fut in pending:
                        fut.cancel()
                    raise

    kept = [i for i, res in enumerate(outcomes) if res[0]]
    failed = [res[1] for res in outcomes if not res[0]]
    if failed:
        shown = "; ".join(failed[:5]) + ("; ..." if len(failed) > 5 else "")
        total = n if n_total is None else n_total
        warnings.warn(f"skipped {len(failed)} of {total} file(s) that could not be read: "
                      f"{shown}", UserWarning, stacklevel=3)
    return [outcomes[i][1] for i in kept], kept
