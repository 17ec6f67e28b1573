"""Calibration of scores on a window later than the training window.

Isotonic regression where the calibration window is large enough to estimate a free-form
monotone map without overfitting, else Platt's sigmoid (two parameters). Both are
monotone, so a calibrated probability keeps the model's ranking of deals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

Method = Literal["isotonic", "sigmoid", "identity"]

# Isotonic needs many examples of each class; below these, it memorises noise.
ISOTONIC_MIN_ROWS = 2_000
ISOTONIC_MIN_PER_CLASS = 200
_EPS = 1e-6
# No calibrated probability is certain: an empty isotonic bin must not say 0 or 1, which
# would make one surprise cost a log loss of 14.
FLOOR = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A monotone map from raw probability to calibrated probability.

    `fit` chooses the method from the calibration window's size; `method` says which it
    chose, and "identity" means no window was available (the model says so).
    """

    method: Method = "identity"

    def fit(self, raw: np.ndarray, outcome: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, dtype=np.float64)
        outcome = np.asarray(outcome, dtype=np.float64)
        positives = int(outcome.sum())
        negatives = int(outcome.size - positives)
        if min(positives, negatives) < 10:
            self.method = "identity"
            return self
        if (
            outcome.size >= ISOTONIC_MIN_ROWS
            and min(positives, negatives) >= ISOTONIC_MIN_PER_CLASS
        ):
            self.method = "isotonic"
            self.isotonic_ = IsotonicRegression(y_min=FLOOR, y_max=1 - FLOOR, out_of_bounds="clip")
            self.isotonic_.fit(raw, outcome)
        else:
            self.method = "sigmoid"
            self.sigmoid_ = LogisticRegression(C=1e6)
            self.sigmoid_.fit(_logit(raw).reshape(-1, 1), outcome)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            # The fitted step function itself: sklearn's predict adds input checks that cost
            # more than the interpolation for one deal.
            return np.interp(raw, self.isotonic_.X_thresholds_, self.isotonic_.y_thresholds_)
        if self.method == "sigmoid":
            coef = float(self.sigmoid_.coef_[0, 0])
            intercept = float(self.sigmoid_.intercept_[0])
            return 1.0 / (1.0 + np.exp(-(coef * _logit(raw) + intercept)))
        return raw
