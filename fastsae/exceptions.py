"""Exceptions and warnings raised by fastsae."""
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


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


class NotFittedError(_SklearnNotFittedError):
    """An estimator was used before ``fit`` (scikit-learn's ``NotFittedError``)."""


__all__ = ["ParameterError", "ParameterTypeError", "BackendUnavailableError",
           "ConvergenceWarning", "NumericalError", "NotFittedError"]
