"""Exceptions and warnings raised by ``raking``.

Every error is a subclass of :class:`ValueError` (or :class:`TypeError`) so that callers who catch
the builtin classes keep working; the subclasses carry the details as attributes.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "EmptyCategoryError",
    "NegativeWeightWarning",
    "SparseLevelWarning",
]


class ConvergenceWarning(UserWarning):
    """Balancing stopped at ``max_steps`` before the marginal error reached ``tol``.

    Survey raking (:func:`raking.rake`) also raises it when the error stops decreasing (a stall:
    margins that the data's zeros or the weight bounds make unreachable together).
    """


class NegativeWeightWarning(UserWarning):
    """Linear (GREG) calibration gave some rows a negative weight (``g = 1 + x'lambda < 0``).

    Allowed by the chi-square distance and harmless for totals, but such weights cannot be
    read as numbers of population units; bounds (``bounds=(lo, hi)``, ``lo >= 0``) or
    ``method="raking"`` / ``"logit"`` keep every weight positive.
    """


class SparseLevelWarning(UserWarning):
    """A raking level has fewer sample rows than is safe (its weights become large and unstable)."""


class EmptyCategoryError(ValueError):
    """A category has no mass in the table while its target is positive (missing mass).

    Raking can only rescale mass that exists: an empty row or column with a positive target makes
    the constraints infeasible (``theory.md`` §1.2, the bad event of the estimator).

    Attributes
    ----------
    axis : int
        Index of the balanced axis (0 = first target) with the empty categories.
    categories : tuple of int
        The empty categories on that axis (first few batch entries only).
    batch_index : tuple of int or None
        Flat batch index of the first table with the problem, ``None`` without batch axes.
    """

    def __init__(
        self, message: str, *, axis: int, categories: tuple[int, ...], batch_index: int | None
    ) -> None:
        super().__init__(message)
        self.axis = axis
        self.categories = categories
        self.batch_index = batch_index
