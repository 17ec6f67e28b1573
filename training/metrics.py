"""The evaluation spec's metrics, each with the count behind it.

Deal level: ROC AUC, Brier score, log loss and expected calibration error over 15
equal-count bins. Period level: absolute percentage error of a revenue forecast (its median
over team-quarters) and its signed bias.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

ECE_BINS = 15
_CLIP = 1e-6


def ece(
    p: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS, weight: np.ndarray | None = None
) -> float:
    """Expected calibration error: |mean p - mean y| per equal-count bin, weighted by size
    (by total weight, with `weight`)."""
    if p.size == 0:
        return math.nan
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, p.size)):
        mass = float(w[chunk].sum())
        if mass > 0:
            gap = np.average(p[chunk], weights=w[chunk]) - np.average(y[chunk], weights=w[chunk])
            total += mass * abs(float(gap))
    return total / float(w.sum())


def reliability(
    p: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS, weight: np.ndarray | None = None
) -> list[dict[str, float]]:
    """Mean predicted and observed rate per equal-count bin (the reliability plot's points;
    weighted means with `weight`, the bins of `ece`)."""
    w = np.ones_like(p, dtype=np.float64) if weight is None else np.asarray(weight, np.float64)
    order = np.argsort(p, kind="stable")
    return [
        {
            "predicted": float(np.average(p[c], weights=w[c])),
            "observed": float(np.average(y[c], weights=w[c])),
            "n": int(c.size),
        }
        for c in np.array_split(order, min(bins, max(p.size, 1)))
        if c.size and w[c].sum() > 0
    ]


def deal_metrics(
    p: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, float | int | None]:
    """AUC, Brier, log loss and ECE of probabilities `p` for outcomes `y` (NaN y ignored).

    `weight`: each snapshot's censoring weight (features.labels), so that outcomes still
    unknown at the end of the data are stood in for by those known; 0 drops a snapshot.
    """
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    if weight is not None:
        known &= np.asarray(weight) > 0
    p, y = np.asarray(p, dtype=np.float64)[known], y[known]
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=np.float64)[known]
    if y.size == 0:
        return {"auc": None, "brier": None, "log_loss": None, "ece": None, "n": 0}
    clipped = np.clip(p, _CLIP, 1 - _CLIP)
    both_classes = 0 < y.sum() < y.size
    loss = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    return {
        "auc": float(roc_auc_score(y, p, sample_weight=w)) if both_classes else None,
        "brier": float(np.average((p - y) ** 2, weights=w)),
        "log_loss": float(np.average(loss, weights=w)),
        "ece": float(ece(p, y, weight=w)),
        "n": int(y.size),
    }


def period_metrics(forecast: np.ndarray, actual: np.ndarray) -> dict[str, float | int | None]:
    """Median absolute percentage error and median signed error over team-quarters.

    Team-quarters with no actual revenue have no percentage error and are left out (counted
    in `n_zero_actual`).
    """
    forecast = np.asarray(forecast, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    positive = actual > 0
    relative = (forecast[positive] - actual[positive]) / actual[positive]
    if relative.size == 0:
        return {"median_ape": None, "bias": None, "n": 0, "n_zero_actual": int((~positive).sum())}
    return {
        "median_ape": float(np.median(np.abs(relative))),
        "bias": float(np.median(relative)),
        "n": int(relative.size),
        "n_zero_actual": int((~positive).sum()),
    }
