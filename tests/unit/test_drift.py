"""The drift reference: population stability of features against their training window."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.drift import MAJOR, MODERATE, DriftReference, psi


def _snapshots(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> pd.DataFrame:
    amount = rng.lognormal(10 + shift, 1.0, n)
    amount[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "as_of": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "amount": amount,
            "activities_30d": rng.poisson(3, n).astype(float),
            "stage": rng.choice(["Discovery", "Proposal", "Negotiation"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def test_the_same_distribution_is_stable_and_a_shifted_one_is_not() -> None:
    rng = np.random.default_rng(0)
    reference = DriftReference.fit(
        _snapshots(rng, 20_000), numeric=["amount", "activities_30d"], categorical=["stage"]
    )
    same = reference.compare(_snapshots(rng, 5_000).to_dict("series"))
    assert max(d.psi for d in same) < MODERATE / 2
    shifted = _snapshots(rng, 5_000, shift=1.0)
    shifted["stage"] = rng.choice(["Discovery", "Proposal", "Won later"], 5_000)
    drift = {d.name: d for d in reference.compare(shifted.to_dict("series"))}
    assert drift["amount"].psi > MAJOR and drift["amount"].stability == "major"
    assert drift["stage"].psi > MAJOR  # an unseen category lands in the other bin
    assert drift["stage"].actual[-1] == pytest.approx((shifted["stage"] == "Won later").mean())
    assert drift["activities_30d"].psi < MODERATE / 2
    # Shares of a distribution sum to 1, the missing bin included.
    assert sum(drift["amount"].expected) == pytest.approx(1.0)
    assert sum(drift["amount"].actual) == pytest.approx(1.0)


def test_the_reference_is_plain_data_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    reference = DriftReference.fit(
        _snapshots(rng, 1_000), numeric=["amount", "activities_30d"], categorical=["stage"]
    )
    data = json.loads(json.dumps(reference.to_dict()))
    assert DriftReference.from_dict(data) == reference
    assert reference.window == ("2026-01-01T00:00:00+00:00", "2026-02-11T15:00:00+00:00")


def test_psi_of_an_empty_bin_is_large_but_finite() -> None:
    value = psi(np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5]))
    assert np.isfinite(value) and value > MAJOR


def test_an_all_missing_feature_has_one_bin_and_no_drift_against_itself() -> None:
    frame = pd.DataFrame({"x": [np.nan] * 10})
    reference = DriftReference.fit(frame, numeric=["x"], categorical=[])
    (drift,) = reference.compare({"x": np.full(4, np.nan)})
    assert drift.psi == pytest.approx(0.0) and drift.bins == ("all", "(missing)")
