"""Memory guards: work that would not fit in memory is refused before it allocates.

Every estimator's ``fit``, the spectra of long signals and the decoding of
audio files estimate from the shapes how much memory they need and call
:func:`check_memory`, which raises :class:`fastsae.ParameterError` (saying
what needs how much, against what is available) instead of failing half-way
through an allocation or swapping the machine to a halt.

The limit is the memory the operating system says is available now
(``MemAvailable`` on Linux, the physical memory elsewhere).
``FASTSAE_MEMORY_LIMIT`` overrides it: a size such as ``64G``, ``500M`` or a
number of bytes, or ``off`` to switch the guard off.
"""
from __future__ import annotations

import os
import re

from ..exceptions import ParameterError

ENV = "FASTSAE_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def format_bytes(n) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def available_memory():
    """Bytes of memory available to this process now (None if the system does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit():
    """The guard's limit in bytes, or None when it is off (see the module notes)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return available_memory()
    if value.lower() in ("off", "none", "0"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", value, flags=re.I)
    if m is None:
        raise ParameterError(f"{ENV} must be a size such as 64G or 500M, a number of bytes, "
                             f"or 'off'; got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def check_memory(nbytes, what, *, hint=""):
    """Raise ParameterError when ``what`` would need more than :func:`memory_limit`.

    Parameters
    ----------
    nbytes : int
        The estimate (a lower bound is fine: the peak, not every temporary).
    what : str
        What needs it, in words that name the arguments (``"SparseAutoencoder.fit
        with n_hidden=1000000 on 16 features"``).
    hint : str
        What to change.
    """
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        hint = f"{hint}; " if hint else ""
        raise ParameterError(
            f"{what} would need about {format_bytes(nbytes)} of memory, more than the "
            f"{format_bytes(limit)} available; {hint}set {ENV}=off (or a size) to try anyway")


def lbfgs_bytes(n_params, history=100, pair_bytes=8):
    """Memory of fastsae's L-BFGS on ``n_params`` float64 parameters: the correction
    pairs (``pair_bytes`` a value: 8 for float64 pairs, 4 for float32) and a few
    float64 vectors (best point, trial point, gradients, direction)."""
    return int(n_params) * (2 * history * int(pair_bytes) + 64)


__all__ = ["check_memory", "memory_limit", "available_memory", "lbfgs_bytes", "format_bytes",
           "ENV"]
