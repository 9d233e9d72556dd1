"""Several estimates at once -- one per domain or level -- as returned by :class:`RakeResult`."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from raking.results import Estimate

__all__ = ["EstimateTable"]


@dataclass(frozen=True)
class EstimateTable:
    """Estimates for several domains or levels, each an :class:`~raking.results.Estimate`.

    Attributes
    ----------
    name : str
        What was estimated (e.g. ``"mean of api00 by stype"``).
    labels : tuple
        One label per estimate (a level of ``by``, or of the column for proportions; tuples
        ``(domain, level)`` for proportions by domain).
    estimates : tuple of Estimate
    index_name : hashable
        Name of the labels (the ``by`` column, or the pair of columns).
    """

    name: str
    labels: tuple[Any, ...]
    estimates: tuple[Estimate, ...]
    index_name: Any

    def _index(self) -> pd.Index:
        if self.labels and isinstance(self.labels[0], tuple):
            return pd.MultiIndex.from_tuples(self.labels, names=list(self.index_name))
        return pd.Index(self.labels, name=self.index_name)

    @property
    def estimate(self) -> pd.Series:
        """The estimates, indexed by label."""
        return pd.Series([e.estimate for e in self.estimates], index=self._index())

    @property
    def se(self) -> pd.Series:
        """The standard errors, indexed by label."""
        return pd.Series([e.se for e in self.estimates], index=self._index())

    @property
    def ci(self) -> pd.DataFrame:
        """95% normal confidence intervals (columns ``lower``, ``upper``)."""
        return self.confint(0.95)

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Normal confidence intervals at ``level``."""
        bounds = [e.confint(level) for e in self.estimates]
        return pd.DataFrame(bounds, index=self._index(), columns=["lower", "upper"])

    def __getitem__(self, label: Any) -> Estimate:
        return self.estimates[self.labels.index(label)]

    def __len__(self) -> int:
        return len(self.estimates)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.labels)

    def to_frame(self) -> pd.DataFrame:
        """Estimate, SE, CI and n per label."""
        frame = pd.DataFrame({"estimate": self.estimate, "se": self.se})
        frame[["ci_low", "ci_high"]] = self.ci.to_numpy()
        frame["n"] = [e.n for e in self.estimates]
        return frame

    def summary(self) -> str:
        """The table, the SE method and the notes of every estimate (each note once).

        A note that holds for some labels only (an SE that could not be computed) names them.
        """
        first = self.estimates[0]
        lines = [self.name, self.to_frame().to_string(float_format=lambda x: f"{x:.6g}")]
        lines.append(f"SE method: {first.se_method}")
        notes = self._notes()
        lines += [f"  [{i}] {note}" for i, note in enumerate(notes, start=1)]
        return "\n".join(lines)

    def _notes(self) -> list[str]:
        """Each distinct note once, in order; one not common to all estimates names its labels."""
        where: dict[str, list[Any]] = {}
        for label, estimate in zip(self.labels, self.estimates, strict=True):
            for note in estimate.notes:
                where.setdefault(note, []).append(label)
        return [
            note if len(labels) == len(self.labels) else f"{_shown(labels)}: {note}"
            for note, labels in where.items()
        ]

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"


def _shown(labels: list[Any], most: int = 5) -> str:
    """The first ``most`` labels, and how many more."""
    text = ", ".join(repr(lv) for lv in labels[:most])
    return text if len(labels) <= most else f"{text} and {len(labels) - most} more"
