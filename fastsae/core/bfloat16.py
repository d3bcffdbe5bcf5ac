"""The bfloat16 dtype: recognised without importing anything, provided by ml-dtypes.

NumPy has no bfloat16 of its own; the PyPI package ``ml-dtypes`` registers
one (``ml_dtypes.bfloat16``, a NumPy dtype named ``"bfloat16"``), and oneMKL
(PyPI ``mkl``) multiplies such matrices. Both come with the optional extra
``fastsae-audio[mkl]``. This module tells a bfloat16 dtype or name apart without
importing either package (so ``import fastsae`` stays light), and imports
``ml_dtypes`` only when a bfloat16 array is really wanted.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import BackendUnavailableError

#: The dtype's name, as NumPy spells it once ml_dtypes is imported.
BFLOAT16 = "bfloat16"

#: What to install for ``dtype="bfloat16"``.
MKL_EXTRA_HINT = 'pip install "fastsae-audio[mkl]" (or: pip install mkl ml-dtypes)'


def is_bfloat16(dtype) -> bool:
    """Whether ``dtype`` (a name, a scalar type or a NumPy dtype) is bfloat16; imports nothing."""
    if isinstance(dtype, str):
        return dtype == BFLOAT16
    if isinstance(dtype, np.dtype):
        return dtype.name == BFLOAT16
    return getattr(dtype, "__name__", None) == BFLOAT16 and isinstance(dtype, type)


def bfloat16_dtype() -> np.dtype:
    """ml-dtypes' bfloat16 as a NumPy dtype, or BackendUnavailableError naming the extra."""
    try:
        import ml_dtypes
    except ImportError:
        raise BackendUnavailableError(
            f"dtype='bfloat16' needs the packages mkl and ml-dtypes: {MKL_EXTRA_HINT}"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def bf16_rounded(a) -> np.ndarray:
    """``a`` rounded to float32, then to bfloat16, back as float32: a GEMM operand of the
    compiled bfloat16 kernels as the NumPy reference's bfloat16 twins write it."""
    f32 = np.float32
    return np.asarray(a, dtype=f32).astype(bfloat16_dtype()).astype(f32)


def bf16_two_parts(a) -> np.ndarray:
    """``a`` as the compiled bfloat16 kernels carry some weights: ``hi + lo`` (float32),
    ``hi`` the float32 value rounded to bfloat16 and ``lo`` the rest rounded (about 16
    significant bits; the sum is exact in float32). A product with it is two bfloat16
    GEMMs, one per part."""
    a = np.asarray(a, dtype=np.float32)
    hi = bf16_rounded(a)
    return hi + bf16_rounded(a - hi)
