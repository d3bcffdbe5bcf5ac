"""Denormal numbers flushed to zero while a kernel runs (x86-64).

A float32 below 1.2e-38 (a denormal) costs a microcode assist of a hundred
cycles or more in every multiply or add that reads or produces it, and the
kernels meet them when training drives units into saturation: a sigmoid of
-90 is 8e-40. Two in a thousand activations of the convolutional network's
first layer were denormal at the end of its fine-tuning on FSDD, and each
cost+grad took 2.7 times as long as at its start. Their values are far below
anything the cost or gradient can resolve.

:func:`flush_denormals` sets the FTZ (flush to zero) and DAZ (denormals are
zero) bits of the calling thread's MXCSR register, and :func:`restore` puts
back what was there: :mod:`fastsae.kernels._parallel` runs every thread
share of a kernel between the two, so the setting never leaks into the
caller's own NumPy code. This is what TensorFlow does around its CPU kernels
and PyTorch's ``torch.set_flush_denormal`` does for a whole process. On other
processors both are no-ops.
"""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..core.config import CACHE

#: MXCSR's FTZ (bit 15) and DAZ (bit 6).
FTZ_DAZ = 0x8040
X86 = platform.machine().lower() in ("x86_64", "amd64", "x64")

_I32 = ir.IntType(32)


def _csr(builder, name, slot):
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [slot.type]), name)
    builder.call(fn, [slot])


@intrinsic
def _get_mxcsr(typingctx):
    def codegen(context, builder, sig, args):
        slot = cgutils.alloca_once(builder, _I32)
        _csr(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)
    return types.uint32(), codegen


@intrinsic
def _set_mxcsr(typingctx, value):
    def codegen(context, builder, sig, args):
        slot = cgutils.alloca_once(builder, _I32)
        builder.store(context.cast(builder, args[0], sig.args[0], types.uint32), slot)
        _csr(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()
    return types.void(value), codegen


@njit(cache=CACHE, nogil=True)
def _flush_x86():
    old = _get_mxcsr()
    _set_mxcsr(old | FTZ_DAZ)
    return old


@njit(cache=CACHE, nogil=True)
def _restore_x86(old):
    _set_mxcsr(old)


@njit(cache=CACHE, nogil=True)
def _mxcsr_x86():
    return _get_mxcsr()


def flush_denormals() -> int:
    """Set FTZ and DAZ on this thread; returns the state for :func:`restore` (-1 where
    there is nothing to set)."""
    return int(_flush_x86()) if X86 else -1


def restore(state: int) -> None:
    """Undo :func:`flush_denormals` with the state it returned."""
    if state >= 0:
        _restore_x86(state)


def flushing() -> bool:
    """Whether this thread flushes denormals now (False where it cannot)."""
    return X86 and (int(_mxcsr_x86()) & FTZ_DAZ) == FTZ_DAZ
