"""Build-time settings shared by every Numba kernel.

``FASTMATH`` is the one place where LLVM's fast-math flags are chosen. It lets
LLVM contract multiply-adds into FMAs and drop signed-zero and exact-reciprocal
rules, which is enough for the elementwise loops to vectorise. It deliberately
leaves out ``nnan``/``ninf`` (a NaN that reaches a kernel must come out as NaN,
so that the optimizer can report it) and ``reassoc`` (it would undo the
Cody-Waite range reduction inside the exponential); reductions are written as
vector accumulators instead, which vectorise without it.
"""
import os

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

#: Cache compiled kernels on disk (``NUMBA_CACHE_DIR`` decides where).
CACHE = os.environ.get("FASTSAE_NO_CACHE", "") == ""

#: Options for every jitted kernel: NumPy's error model lets divisions
#: vectorise (Python's would check each divisor for zero).
JIT_OPTIONS = dict(nogil=True, cache=CACHE, fastmath=set(FASTMATH), error_model="numpy")

#: Options for a driver's per-share (or per-image) body, called from one place: Numba
#: inlines it into the driver, so its code is typed and compiled once, as part of the
#: driver (a separately jitted callee is optimised and compiled to machine code again
#: inside each caller: about 15 % of a driver's compile time).
SHARE_OPTIONS = dict(JIT_OPTIONS, inline="always")

#: Rows of X processed together by one thread in the fused autoencoder kernel.
SAE_CHUNK_BYTES = 256 * 1024

#: Below this many flops per thread a kernel runs in the calling thread only
#: (about 0.2 ms of work: more than waking threads costs).
PARALLEL_MIN_FLOPS = 10_000_000

#: The sparsity penalty reads the mean activation ρ̂ clipped to
#: ``[RHO_HAT_EPS, 1 - RHO_HAT_EPS]``: a unit whose activations all round to
#: exactly 0 or 1 (a pre-activation beyond about ±17 in float32, ±37 in float64)
#: keeps a finite KL term and gradient instead of an infinite one. Every
#: backend clips at this bound (the NumPy reference included).
RHO_HAT_EPS = 1e-9
