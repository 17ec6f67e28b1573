"""How far the deals being scored have moved from the deals a model was trained on.

Training stores a `DriftReference` in the bundle: for each numeric feature the bin edges of
its training-window distribution (deciles) and the share of snapshots in each bin, with the
share missing as a bin of its own; for each categorical feature the share of each category
(missing and every category training never saw share one "other" bin). `dealcast monitor`
compares the features of recent logged predictions with it by the population stability
index,

    PSI = sum over bins of (actual - expected) x ln(actual / expected),

with each share floored at `FLOOR` so that an empty bin is a large, finite term. The usual
reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.

Plain data only (lists of floats and strings), so the reference travels in any bundle format
through `to_dict` / `from_dict`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
FLOOR = 1e-4
MODERATE = 0.1
MAJOR = 0.25
MISSING = "(missing)"
OTHER = "(other)"


def stability(psi: float) -> str:
    """The usual reading of a PSI."""
    if psi >= MAJOR:
        return "major"
    return "moderate" if psi >= MODERATE else "stable"


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class NumericReference:
    """Inner bin edges (ascending, distinct) and the shares of the len(edges) + 1 bins, then
    the share missing."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]
    missing: float

    @classmethod
    def fit(cls, values: np.ndarray) -> NumericReference:
        x = np.asarray(values, dtype=np.float64)
        known = x[np.isfinite(x)]
        edges = (
            np.unique(np.quantile(known, np.linspace(0, 1, BINS + 1)[1:-1]))
            if known.size
            else np.array([])
        )
        reference = cls(tuple(float(e) for e in edges), (), 0.0)
        shares = reference.distribution(x)
        return cls(reference.edges, tuple(shares[:-1]), shares[-1])

    def distribution(self, values: np.ndarray) -> list[float]:
        """Shares of `values` in the bins, then the share missing (all 0 when empty)."""
        x = np.asarray(values, dtype=np.float64)
        if x.size == 0:
            return [0.0] * (len(self.edges) + 2)
        known = np.isfinite(x)
        # Right-closed bins: a value equal to an edge (a decile that is a common value) falls
        # below it, as np.quantile put it.
        counts = np.bincount(
            np.searchsorted(np.array(self.edges), x[known], side="left"),
            minlength=len(self.edges) + 1,
        )
        return [float(c) / x.size for c in counts] + [float((~known).sum()) / x.size]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "shares": list(self.shares), "missing": self.missing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericReference:
        return cls(
            tuple(float(e) for e in data["edges"]),
            tuple(float(s) for s in data["shares"]),
            float(data["missing"]),
        )


@dataclass(frozen=True)
class CategoricalReference:
    """Share of each category seen in training, then of missing and of the others."""

    categories: tuple[str, ...]
    shares: tuple[float, ...]
    missing: float
    other: float = 0.0

    @classmethod
    def fit(cls, values: Sequence[object] | np.ndarray) -> CategoricalReference:
        text = _as_text(values)
        known = text.dropna()
        counts = known.value_counts(sort=False).sort_index()
        n = max(len(text), 1)
        return cls(
            tuple(str(c) for c in counts.index),
            tuple(float(c) / n for c in counts.to_numpy()),
            float(text.isna().sum()) / n,
        )

    def distribution(self, values: Sequence[object] | np.ndarray) -> list[float]:
        """Shares of the training categories, then missing, then any other category."""
        text = _as_text(values)
        if len(text) == 0:
            return [0.0] * (len(self.categories) + 2)
        counts = text.value_counts()
        shares = [float(counts.get(c, 0)) / len(text) for c in self.categories]
        missing = float(text.isna().sum()) / len(text)
        return [*shares, missing, max(1.0 - sum(shares) - missing, 0.0)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "shares": list(self.shares),
            "missing": self.missing,
            "other": self.other,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalReference:
        return cls(
            tuple(str(c) for c in data["categories"]),
            tuple(float(s) for s in data["shares"]),
            float(data["missing"]),
            float(data.get("other", 0.0)),
        )


def _as_text(values: Sequence[object] | np.ndarray) -> pd.Series:
    series = pd.Series(np.asarray(values, dtype=object))
    return series.where(series.notna(), None).map(lambda v: None if v is None else str(v))


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str  # "numeric" or "categorical"
    psi: float
    n: int
    bins: tuple[str, ...]  # the bins' labels
    expected: tuple[float, ...]  # training shares per bin
    actual: tuple[float, ...]  # recent shares per bin

    @property
    def stability(self) -> str:
        return stability(self.psi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "kind": self.kind,
            "psi": self.psi,
            "stability": self.stability,
            "n": self.n,
            "bins": list(self.bins),
            "expected": list(self.expected),
            "actual": list(self.actual),
        }


@dataclass(frozen=True)
class DriftReference:
    """The training window's distribution of every feature, and the window itself."""

    numeric: dict[str, NumericReference] = field(default_factory=dict)
    categorical: dict[str, CategoricalReference] = field(default_factory=dict)
    n_snapshots: int = 0
    window: tuple[str, str] | None = None  # first and last as-of of the training snapshots

    @classmethod
    def fit(
        cls,
        snapshots: pd.DataFrame,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
    ) -> DriftReference:
        """From the training snapshots' feature columns (every name must be a column)."""
        window = None
        if "as_of" in snapshots.columns and len(snapshots):
            as_of = pd.to_datetime(snapshots["as_of"], utc=True)
            window = (as_of.min().isoformat(), as_of.max().isoformat())
        return cls(
            numeric={n: NumericReference.fit(snapshots[n].to_numpy()) for n in numeric},
            categorical={
                n: CategoricalReference.fit(snapshots[n].to_numpy(dtype=object))
                for n in categorical
            },
            n_snapshots=len(snapshots),
            window=window,
        )

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def compare(self, recent: Mapping[str, np.ndarray | Sequence[object]]) -> list[FeatureDrift]:
        """Each reference feature of `recent` (columns by feature name), worst first; a
        feature `recent` lacks is left out (the caller names it)."""
        out = []
        for name, ref in self.numeric.items():
            if name in recent:
                column = pd.Series(np.asarray(recent[name], dtype=object))
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
                labels = _interval_labels(ref.edges)
                out.append(_drift(name, "numeric", labels, [*ref.shares, ref.missing], ref, values))
        for name, cat in self.categorical.items():
            if name in recent:
                labels = (*cat.categories, MISSING, OTHER)
                out.append(
                    _drift(
                        name,
                        "categorical",
                        labels,
                        [*cat.shares, cat.missing, cat.other],
                        cat,
                        np.asarray(recent[name], dtype=object),
                    )
                )
        return sorted(out, key=lambda d: -d.psi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": {n: r.to_dict() for n, r in self.numeric.items()},
            "categorical": {n: r.to_dict() for n, r in self.categorical.items()},
            "n_snapshots": self.n_snapshots,
            "window": list(self.window) if self.window else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        window = data.get("window")
        return cls(
            numeric={n: NumericReference.from_dict(r) for n, r in data["numeric"].items()},
            categorical={
                n: CategoricalReference.from_dict(r) for n, r in data["categorical"].items()
            },
            n_snapshots=int(data.get("n_snapshots", 0)),
            window=(str(window[0]), str(window[1])) if window else None,
        )


def _drift(
    name: str,
    kind: str,
    labels: Sequence[str],
    expected: Sequence[float],
    reference: NumericReference | CategoricalReference,
    values: np.ndarray,
) -> FeatureDrift:
    actual = reference.distribution(values)
    return FeatureDrift(
        name=name,
        kind=kind,
        psi=psi(np.array(expected), np.array(actual)) if len(values) else math.nan,
        n=len(values),
        bins=tuple(labels),
        expected=tuple(float(e) for e in expected),
        actual=tuple(actual),
    )


def _interval_labels(edges: Sequence[float]) -> tuple[str, ...]:
    if not edges:
        return ("all", MISSING)
    bounds = [f"{e:.4g}" for e in edges]
    inner = [f"({a}, {b}]" for a, b in itertools.pairwise(bounds)]
    return (f"<= {bounds[0]}", *inner, f"> {bounds[-1]}", MISSING)
