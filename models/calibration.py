"""Calibration of scores on a window later than the training window.

Platt's sigmoid on the margin (two parameters): smooth and strictly monotone, so a calibrated
probability keeps the model's ranking of deals, distinct deals keep distinct probabilities,
and a change in the margin always moves the probability. (An isotonic map estimated on the
same window left 54 distinct values over 1,706 open deals, a third of them at its floor: its
steps made trends read "held" while drivers moved.) Weighted by the labels' censoring
weights, like the fit itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.linear_model import LogisticRegression

Method = Literal["sigmoid", "identity"]

_EPS = 1e-6
# No calibrated probability is certain: one surprise must not cost a log loss of 14.
FLOOR = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A monotone map from raw probability to calibrated probability.

    "identity" means the window had fewer than 10 of either class (the model says so).
    """

    method: Method = "identity"

    def fit(
        self, raw: np.ndarray, outcome: np.ndarray, *, weight: np.ndarray | None = None
    ) -> Calibrator:
        raw = np.asarray(raw, dtype=np.float64)
        outcome = np.asarray(outcome, dtype=np.float64)
        positives = int(np.sum(outcome == 1))
        if min(positives, outcome.size - positives) < 10:
            self.method = "identity"
            return self
        self.method = "sigmoid"
        model = LogisticRegression(C=1e6)
        model.fit(_logit(raw).reshape(-1, 1), outcome, sample_weight=weight)
        self.coef_ = float(model.coef_[0, 0])
        self.intercept_ = float(model.intercept_[0])
        return self

    def to_data(self) -> dict[str, Any]:
        """As a model bundle stores it (features.artifacts)."""
        if self.method == "sigmoid":
            return {"method": self.method, "coef": self.coef_, "intercept": self.intercept_}
        return {"method": self.method}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Calibrator:
        calibrator = cls(method=data["method"])
        if calibrator.method == "sigmoid":
            calibrator.coef_ = float(data["coef"])
            calibrator.intercept_ = float(data["intercept"])
        elif calibrator.method != "identity":
            raise ValueError(
                f"calibrator method {calibrator.method!r}: expected sigmoid or identity"
            )
        return calibrator

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-(self.coef_ * _logit(raw) + self.intercept_)))
            return np.clip(p, FLOOR, 1 - FLOOR)
        return raw
