"""Exception types raised by nplearn.

Every problem with what the user supplied (arrays, files, options) raises
:class:`InputError`, a :class:`ValueError` subclass whose message names the
offending object. The command-line tool turns it into a one-line message and
exit code 2.
"""

from __future__ import annotations


class NplearnError(Exception):
    """Base class of all nplearn exceptions."""


class InputError(NplearnError, ValueError):
    """Invalid user input: bad array, unreadable file, inconsistent option."""


class NotFittedError(InputError, AttributeError):
    """A fitted model was asked for predictions before ``fit``.

    Like scikit-learn's exception of the same name it is both a ``ValueError`` and an
    ``AttributeError``; scikit-learn's ``check_is_fitted`` recognises nplearn's
    learners through their ``__sklearn_is_fitted__`` method."""


class MissingDependencyError(NplearnError, ImportError):
    """An optional dependency is needed for the requested feature."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional package '{package}': "
            f"install it with `pip install nplearn[{extra}]`"
        )
        self.package = package
        self.extra = extra
