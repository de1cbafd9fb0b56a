"""What the learners share: the scikit-learn estimator protocol."""

from __future__ import annotations

from typing import Any

from ..errors import InputError, NotFittedError


class EstimatorProtocol:
    """``get_params``/``set_params``, tags, ``repr`` and the fitted check of a binary
    classifier whose constructor arguments are listed in ``_PARAM_NAMES`` and whose
    ``fit`` sets the attribute ``_FITTED_ATTR``."""

    _PARAM_NAMES: tuple[str, ...] = ()
    _FITTED_ATTR: str = ""

    #: scikit-learn < 1.6 reads the estimator type from this attribute
    _estimator_type = "classifier"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Estimator parameters (scikit-learn protocol)."""
        return {k: getattr(self, k) for k in self._PARAM_NAMES}

    def set_params(self, **params: Any) -> Any:
        """Set estimator parameters (scikit-learn protocol)."""
        for k, v in params.items():
            if k not in self._PARAM_NAMES:
                raise InputError(f"unknown parameter {k!r} for {type(self).__name__}")
            setattr(self, k, v)
        return self

    def __sklearn_tags__(self) -> Any:
        """Estimator tags for scikit-learn >= 1.6 (a binary classifier)."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_class=False))

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not (v is defaults[k] or (isinstance(v, (int, float, str))
                                               and type(v) is type(defaults[k])
                                               and v == defaults[k]))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` has run (scikit-learn's ``check_is_fitted`` protocol)."""
        return hasattr(self, self._FITTED_ATTR)

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit first")
