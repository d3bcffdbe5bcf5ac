"""Layer 0: what every other layer may use, and which imports none of them.

- :mod:`~fastsae.core.config`: build settings of the Numba kernels (fast-math
  flags, caching, block sizes, the serial/parallel threshold);
- :mod:`~fastsae.core.threads`: thread-pool control (one pool busy at a time);
- :mod:`~fastsae.core.checks`: checks of single values (numbers, options,
  dtypes, arrays, seeds), each raising :class:`fastsae.ParameterError`;
- :mod:`~fastsae.core.layouts`: parameter layouts, packing, pooling regions;
- :mod:`~fastsae.core.args`: the kernels' argument checks, one per kernel
  signature, called first by every backend's implementation;
- :mod:`~fastsae.core.numerics`: host-side numerics the compiled backends share.
"""
