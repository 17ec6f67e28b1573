"""A baseline's group rates read the same for a request's few deals as for a batch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.baselines import CommitBaseline, StageWeightCRM, StageWeightEmpirical


def test_few_rows_get_the_rates_a_batch_gets() -> None:
    rng = np.random.default_rng(0)
    stages = np.array(["Prospecting", "Proposal", "Negotiation", None], dtype=object)
    categories = np.array(["Pipeline", "Commit", None], dtype=object)
    n = 400
    frame = {
        "stage": stages[rng.integers(0, 4, n)],
        "forecast_category": categories[rng.integers(0, 3, n)],
        "stage_probability": np.where(rng.random(n) < 0.2, np.nan, rng.integers(5, 90, n)),
        "close_date_in_quarter": (rng.random(n) < 0.5).astype(np.float64),
    }
    outcome = (rng.random(n) < 0.3).astype(np.float64)
    # Requests: known groups, a missing value (None and NaN), a group training never saw.
    request = {
        "stage": np.array(["Proposal", None, np.nan, "Closed Won?", "Prospecting"], dtype=object),
        "forecast_category": np.array(
            ["Commit", None, "Omitted", np.nan, "Pipeline"], dtype=object
        ),
        "stage_probability": np.array([np.nan, 40.0, np.nan, np.nan, 10.0]),
        "close_date_in_quarter": np.array([1.0, 0.0, 1.0, 1.0, 0.0]),
    }
    batch = {name: np.tile(values, 20) for name, values in request.items()}
    for baseline in (StageWeightCRM("won_in_period"), StageWeightEmpirical(), CommitBaseline()):
        baseline.fit(frame, outcome)
        few = baseline.predict_proba(request)
        many = baseline.predict_proba(batch)
        np.testing.assert_array_equal(np.tile(few, 20), many)
        assert np.all((few >= 0) & (few <= 1))
    empirical = StageWeightEmpirical().fit(frame, outcome)
    missing_rate = empirical.predict_proba({"stage": np.array([None], dtype=object)})[0]
    assert missing_rate == empirical.predict_proba({"stage": np.array([np.nan], dtype=object)})[0]
    unseen = empirical.predict_proba({"stage": np.array(["Closed Won?"], dtype=object)})[0]
    assert unseen == empirical.rates_.overall_
    assert pd.notna(missing_rate)
