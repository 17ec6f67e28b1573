"""What a model leaves unexplained between groups of deals it can see: the part of an interval
that resampling cannot show.

Bootstrap members measure how much the answer moves when the deals are resampled. They do
not see the model's bias: a model of 45 won and 45 lost deals that has learned only the
stage weight is as stable under resampling as a full one (both gave 80% intervals 0.15
wide), yet deals of one type or lead source win far more often than deals of another, and
it cannot tell them apart. On the generator's truth its intervals covered 45% of deals, the
full model's 66%.

That bias shows out of time, on the later window the trees were stopped on: group the
window's deals by a feature the model reads (each categorical feature's values, each
numeric feature's quintiles) and compare the wins in each group with the model's expected
wins. Groups differ by chance alone (binomial noise, known from the probabilities); what
they differ by beyond that is heterogeneity the model has not resolved. Its variance in
log-odds is the DerSimonian-Laird random-effects estimate (DerSimonian and Laird 1986,
"Meta-analysis in clinical trials"), per feature; the largest over the features is the
spread added to every interval. The largest, not the sum: the features overlap (the stage,
its order and its probability are one grouping seen three ways), and a sum of many
truncated-at-zero estimates grows with their number even where nothing is missed.

A deal counts once in a group (its weekly snapshots share one outcome): each snapshot's
weight is its share of its deal's total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

QUANTILE_GROUPS = 5
# A grouping with fewer deals than this in its smallest half is not read.
_LEAST_DEALS = 20


@dataclass(frozen=True)
class Heterogeneity:
    """The unexplained spread in log-odds (`sd`) and the feature that shows it most."""

    sd: float
    feature: str | None
    by_feature: dict[str, float]


def unexplained_heterogeneity(
    p: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray,
    deals: np.ndarray,
    matrix: np.ndarray,
    names: list[str],
    categorical: set[str],
) -> Heterogeneity:
    """Out-of-time probabilities `p` of the rows of `matrix`, their outcomes and weights, and
    the deal of each row: the DerSimonian-Laird between-group spread per feature."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    outcome = np.asarray(outcome, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    codes, _ = pd.factorize(deals)
    total = np.bincount(codes, weights=weight)
    share = np.divide(weight, total[codes], out=np.zeros_like(weight), where=total[codes] > 0)
    by_feature: dict[str, float] = {}
    for j, name in enumerate(names):
        column = matrix[:, j]
        groups = _groups(column, categorical=name in categorical)
        if groups is None:
            continue
        by_feature[name] = _between_group_sd(groups, p, outcome, share)
    if not by_feature:
        return Heterogeneity(0.0, None, {})
    feature = max(by_feature, key=lambda k: by_feature[k])
    return Heterogeneity(by_feature[feature], feature, by_feature)


def _groups(column: np.ndarray, *, categorical: bool) -> np.ndarray | None:
    """A group code per row (missing values their own group); None if one group only."""
    missing = np.isnan(column)
    if categorical:
        codes = np.where(missing, -1, np.nan_to_num(column, nan=-1)).astype(np.int64)
    else:
        present = column[~missing]
        if present.size == 0:
            return None
        edges = np.unique(np.quantile(present, np.linspace(0, 1, QUANTILE_GROUPS + 1)[1:-1]))
        codes = np.where(missing, -1, np.searchsorted(edges, column, side="right"))
    return codes if np.unique(codes).size > 1 else None


def _between_group_sd(
    groups: np.ndarray, p: np.ndarray, outcome: np.ndarray, share: np.ndarray
) -> float:
    """DerSimonian-Laird tau of the groups' log-odds residuals (observed - expected wins over
    their binomial variance, each deal counted once)."""
    codes, _ = pd.factorize(groups)
    observed = np.bincount(codes, weights=share * outcome)
    expected = np.bincount(codes, weights=share * p)
    variance = np.bincount(codes, weights=share * p * (1 - p))
    count = np.bincount(codes, weights=share)
    keep = (variance > 0) & (count >= _LEAST_DEALS / 2)
    if keep.sum() < 2 or count[keep].sum() < _LEAST_DEALS:
        return 0.0
    v = variance[keep]
    theta = (observed[keep] - expected[keep]) / v  # log-odds residual, variance 1 / v
    mean = np.sum(v * theta) / v.sum()
    q = float(np.sum(v * (theta - mean) ** 2))
    denominator = v.sum() - np.sum(v**2) / v.sum()
    tau2 = max(0.0, (q - (keep.sum() - 1)) / denominator) if denominator > 0 else 0.0
    return float(np.sqrt(tau2))
