"""Layer 3: training on a Dask cluster, below the estimators.

- :mod:`~fastsae._dask.client`: Dask imported lazily, the default client;
- :mod:`~fastsae._dask.arrays`: dask arrays of rows (checked, persisted,
  scattered, mapped chunk by chunk) and their labels;
- :mod:`~fastsae._dask.objective`: the objectives of the autoencoder, the
  softmax and the stacked network as sums over shards, one round trip per
  evaluation.

The public face is :mod:`fastsae.distributed`, which adds what needs the
audio front end and the preprocessing (windows computed on the workers).
"""
from .arrays import (check_dask_array, concatenate_rows, encode_known_labels, encode_labels,
                     fraction_equal, map_rows, persist_rows, scatter_rows)
from .client import is_dask_collection
from .objective import sae_objective, softmax_objective, stacked_objective, stats_function

__all__ = ["check_dask_array", "concatenate_rows", "encode_known_labels", "encode_labels",
           "fraction_equal", "map_rows", "persist_rows", "scatter_rows", "is_dask_collection",
           "sae_objective", "softmax_objective", "stacked_objective", "stats_function"]
