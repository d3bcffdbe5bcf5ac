"""Estimator base: scikit-learn's conventions without depending on scikit-learn."""
from __future__ import annotations

import inspect

from .exceptions import ParameterError


class BaseEstimator:
    """``get_params``/``set_params``/``repr`` from the ``__init__`` signature.

    ``__init__`` only stores its arguments; validation happens in ``fit``.
    Fitted attributes end in ``_``.
    """

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ParameterError(
                    f"{type(self).__name__} has no parameter {key!r}; valid: {', '.join(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name, p in sig.parameters.items():
            if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            value = getattr(self, name)
            if p.default is inspect.Parameter.empty or value is not p.default and value != p.default:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _check_fitted(self, attr):
        if not hasattr(self, attr):
            from .exceptions import NotFittedError
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit first")
