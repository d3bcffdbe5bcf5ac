"""Exceptions and warnings raised by fastsae."""


class ParameterError(ValueError):
    """An argument has the wrong shape, type, range or value.

    The message names the argument, states the constraint and shows the value
    that was received.
    """


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (a missing package or device)."""


class ConvergenceWarning(UserWarning):
    """An optimizer stopped before meeting its convergence criterion."""


__all__ = ["ParameterError", "BackendUnavailableError", "ConvergenceWarning"]


class NumericalError(FloatingPointError):
    """A computation produced NaN or infinity (for example a diverging optimizer)."""


__all__.append("NumericalError")


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``."""


__all__.append("NotFittedError")
