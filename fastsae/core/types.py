"""Type aliases used in the annotations of the public API."""
from __future__ import annotations

import os
from typing import Callable, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

#: a seed: None, an int, or a NumPy Generator
RandomState = Union[int, np.random.Generator, None]
#: a file or folder name
PathLike = Union[str, os.PathLike[str]]
#: called after every L-BFGS iteration with ``(iteration, theta, cost)``
Callback = Callable[[int, np.ndarray, float], object]
#: an objective: parameters -> (cost, gradient)
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]

__all__ = ["ArrayLike", "DTypeLike", "RandomState", "PathLike", "Callback", "Objective"]
