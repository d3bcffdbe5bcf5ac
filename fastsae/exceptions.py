"""Exceptions and warnings raised by fastsae."""
import threading
from typing import TYPE_CHECKING


class ParameterError(ValueError):
    """An argument has the wrong shape, type, range or value.

    The message names the argument, states the constraint and shows the value
    that was received.
    """


class ParameterTypeError(ParameterError, TypeError):
    """A :class:`ParameterError` about an argument's type (also a ``TypeError``)."""


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (a missing package or device)."""


class ConvergenceWarning(UserWarning):
    """An optimizer stopped before meeting its convergence criterion."""


class NumericalError(FloatingPointError):
    """A computation produced NaN or infinity (for example a diverging optimizer)."""


_lock = threading.Lock()


def _not_fitted_error():
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(SklearnNotFittedError):
        """An estimator was used before ``fit`` (scikit-learn's ``NotFittedError``)."""

    NotFittedError.__module__ = __name__
    NotFittedError.__qualname__ = "NotFittedError"     # pickle finds it by this name
    return NotFittedError


def __getattr__(name):
    # NotFittedError subclasses scikit-learn's, whose import takes seconds: it is made
    # on first use, so that the kernels (and a process that only compiles them) load
    # without scikit-learn.
    if name == "NotFittedError":
        with _lock:
            if "NotFittedError" not in globals():
                globals()["NotFittedError"] = _not_fitted_error()
        return globals()["NotFittedError"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"NotFittedError"})


if TYPE_CHECKING:                     # the class as type checkers see it
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

    class NotFittedError(_SklearnNotFittedError):
        """An estimator was used before ``fit`` (scikit-learn's ``NotFittedError``)."""


__all__ = ["ParameterError", "ParameterTypeError", "BackendUnavailableError",
           "ConvergenceWarning", "NumericalError", "NotFittedError"]
