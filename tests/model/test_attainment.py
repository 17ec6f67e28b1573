"""Attainment: exactness, Monte-Carlo error, coverage with a shared factor, new business, gaps.

Every reference here is computed independently of models.attainment: a textbook dynamic
programme for the Poisson-binomial, scipy quadrature over the shared factor, and synthetic
team-quarters generated from known centres.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize
from scipy.special import expit

from models.attainment import (
    GREEN_AT,
    RED_BELOW,
    AttainmentInputError,
    NewBusinessModel,
    TeamQuarter,
    fit_dependence,
    simulate_attainment,
)


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    """P(K = k) for k = 0..n: add one deal at a time."""
    pmf = np.zeros(p.size + 1)
    pmf[0] = 1.0
    for q in p:
        pmf[1:] = pmf[1:] * (1 - q) + pmf[:-1] * q
        pmf[0] *= 1 - q
    return pmf


def lower_quantile(values: np.ndarray, pmf: np.ndarray, q: float) -> float:
    return float(values[np.searchsorted(np.cumsum(pmf), q - 1e-12)])


def normal_expectation(f, dependence: float) -> float:
    """E[f(Z)], Z ~ N(0, 1), by adaptive quadrature split at the points where f moves."""
    density = lambda z: f(z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    cuts = [-12.0, -3.0, -1.0, 0.0, 1.0, 3.0, 12.0]
    return sum(
        integrate.quad(density, a, b, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
        for a, b in itertools.pairwise(cuts)
    )


def marginals(centres: np.ndarray, dependence: float) -> np.ndarray:
    """E[expit(c + dependence Z)] for each centre, on a fine grid (forward direction only)."""
    z = np.linspace(-14, 14, 28_001)
    weights = np.exp(-0.5 * z**2)
    weights /= weights.sum()
    return expit(centres[:, None] + dependence * z[None, :]) @ weights


# --------------------------------------------------------------------------- exactness


def test_exact_path_equals_the_poisson_binomial_when_deals_are_independent() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, 40)
    pmf = poisson_binomial(p)
    revenue = 5_000.0 + 2_500.0 * np.arange(41)
    for quota in (20_000.0, 50_000.0, 57_500.0, 80_000.0):
        result = simulate_attainment(
            quota=quota, won_to_date=5_000.0, probabilities=p, amounts=np.full(40, 2_500.0)
        )
        assert result.method == "exact"
        assert result.standard_error == 0.0
        assert result.p_attain == pytest.approx(pmf[revenue >= quota].sum(), abs=1e-12)
        assert result.p10 == lower_quantile(revenue, pmf, 0.1)
        assert result.p50 == lower_quantile(revenue, pmf, 0.5)
        assert result.p90 == lower_quantile(revenue, pmf, 0.9)
        assert result.expected_revenue == pytest.approx(5_000.0 + 2_500.0 * p.sum(), rel=1e-12)


def test_sure_and_empty_deals_do_not_break_exactness() -> None:
    p = np.array([1.0, 0.0, 0.3, 0.6, 0.5, 0.9])
    amounts = np.array([7_000.0, 9_000.0, 1_000.0, 1_000.0, 0.0, 1_000.0])
    pmf = poisson_binomial(np.array([0.3, 0.6, 0.9]))
    result = simulate_attainment(quota=9_000.0, won_to_date=0.0, probabilities=p, amounts=amounts)
    assert result.method == "exact"
    assert result.p_attain == pytest.approx(pmf[2:].sum(), abs=1e-12)


def test_exact_path_with_a_shared_factor_matches_quadrature() -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(0.05, 0.9, 12)
    dependence = 0.9

    def centre(q: float) -> float:
        mean = lambda c: normal_expectation(lambda z: expit(c + dependence * z), dependence)  # noqa: E731
        return optimize.brentq(lambda c: mean(c) - q, -30, 30, xtol=1e-13)

    centres = np.array([centre(q) for q in p])
    result = simulate_attainment(
        quota=6_000.0,
        won_to_date=0.0,
        probabilities=p,
        amounts=np.full(12, 1_000.0),
        dependence=dependence,
    )
    tail = normal_expectation(
        lambda z: poisson_binomial(expit(centres + dependence * z))[6:].sum(), dependence
    )
    assert result.method == "exact"
    assert result.p_attain == pytest.approx(tail, abs=1e-6)
    # The factor spreads the distribution but keeps every deal's probability.
    assert result.expected_revenue == pytest.approx(1_000.0 * p.sum(), rel=1e-12)


@pytest.mark.parametrize("dependence", [0.0, 0.8])
def test_monte_carlo_agrees_with_the_exact_distribution_within_its_error(
    dependence: float,
) -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 0.95, 300)
    equal = np.full(300, 1_000.0)
    # Amounts a hair apart force the Monte-Carlo path; no quota sits near a lattice point.
    nearly_equal = 1_000.0 * (1.0 + 1e-9 * np.arange(300))
    for quota in (140_500.0, 155_500.0, 170_500.0):
        exact = simulate_attainment(
            quota=quota,
            won_to_date=0.0,
            probabilities=p,
            amounts=equal,
            dependence=dependence,
        )
        monte_carlo = simulate_attainment(
            quota=quota,
            won_to_date=0.0,
            probabilities=p,
            amounts=nearly_equal,
            dependence=dependence,
        )
        assert exact.method == "exact"
        assert monte_carlo.method.startswith("monte-carlo (")
        assert 0 < monte_carlo.standard_error < 0.005
        assert abs(monte_carlo.p_attain - exact.p_attain) < 4 * monte_carlo.standard_error
        for name in ("p10", "p50", "p90"):
            assert abs(getattr(monte_carlo, name) - getattr(exact, name)) <= 1_000.0 + 1e-3
        if dependence == 0.0:
            pmf = poisson_binomial(p)
            assert exact.p_attain == pytest.approx(pmf[int(quota // 1000) + 1 :].sum(), abs=1e-9)


def test_monte_carlo_reports_draws_and_a_standard_error_under_half_a_point() -> None:
    rng = np.random.default_rng(8)
    p = rng.beta(0.8, 2.0, 2_000)
    amounts = rng.lognormal(10, 1, 2_000)
    quota = float(amounts @ p)  # P(attain) near 1/2: the largest variance
    result = simulate_attainment(quota=quota, won_to_date=0.0, probabilities=p, amounts=amounts)
    assert 0.3 < result.p_attain < 0.7
    assert result.standard_error < 0.005
    assert result.method == (
        f"monte-carlo ({result.draws} draws, standard error {100 * result.standard_error:.2f} pp)"
    )
    # The promised error holds in fact: independent seeds scatter by about one standard error.
    others = [
        simulate_attainment(
            quota=quota, won_to_date=0.0, probabilities=p, amounts=amounts, seed=seed
        ).p_attain
        for seed in range(1, 7)
    ]
    assert np.std([result.p_attain, *others], ddof=1) < 2 * 0.005


def test_same_inputs_and_seed_give_the_same_result() -> None:
    rng = np.random.default_rng(2)
    p, amounts = rng.random(500), rng.lognormal(9, 1, 500)
    inputs = {"quota": float(amounts @ p), "won_to_date": 1e5, "probabilities": p}
    first = simulate_attainment(**inputs, amounts=amounts, dependence=0.5, seed=4)
    again = simulate_attainment(**inputs, amounts=amounts, dependence=0.5, seed=4)
    other = simulate_attainment(**inputs, amounts=amounts, dependence=0.5, seed=5)
    assert first == again
    assert other.p_attain != first.p_attain


def test_fixed_draws_are_used_as_asked() -> None:
    rng = np.random.default_rng(2)
    result = simulate_attainment(
        quota=50_000.0,
        won_to_date=0.0,
        probabilities=rng.random(100),
        amounts=rng.lognormal(7, 1, 100),
        draws=1_000,
    )
    assert result.draws == 1_024  # rounded up to whole strata of two blocks of 32
    assert result.standard_error > 0


# --------------------------------------------------------------------------- coverage


def synthetic_team_quarters(
    count: int, *, dependence: float, rng: np.random.Generator
) -> list[TeamQuarter]:
    """Team-quarters whose outcomes share a factor of known scale, from known centres."""
    quarters = []
    for _ in range(count):
        n = int(rng.integers(30, 90))
        centres = rng.normal(-1.2, 1.3, n)
        p = marginals(centres, dependence)
        amounts = np.round(rng.lognormal(10, 0.8, n), -2)
        won = float(rng.uniform(0, 2e5))
        z = rng.standard_normal()
        outcome = rng.random(n) < expit(centres + dependence * z)
        quarters.append(TeamQuarter(p, amounts, won, won + float(amounts[outcome].sum())))
    return quarters


def coverage(quarters: list[TeamQuarter], dependence: float) -> float:
    inside = 0
    for quarter in quarters:
        result = simulate_attainment(
            quota=1e6,
            won_to_date=quarter.won_to_date,
            probabilities=quarter.probabilities,
            amounts=quarter.amounts,
            dependence=dependence,
            draws=4_096,
        )
        inside += result.p10 <= quarter.actual_revenue <= result.p90
    return inside / len(quarters)


def test_shared_factor_keeps_nominal_coverage_where_independence_under_covers() -> None:
    rng = np.random.default_rng(2024)
    training = synthetic_team_quarters(200, dependence=0.8, rng=rng)
    held_out = synthetic_team_quarters(300, dependence=0.8, rng=rng)

    fitted = fit_dependence(training, level=0.8)
    assert 0.4 <= fitted <= 1.3

    independent = coverage(held_out, 0.0)
    shared = coverage(held_out, fitted)
    assert independent < 0.65, f"independent P10-P90 covers {independent:.0%}"
    assert 0.72 <= shared <= 0.88, f"fitted {fitted}: P10-P90 covers {shared:.0%}"


def test_fit_dependence_prefers_no_factor_when_deals_are_independent() -> None:
    rng = np.random.default_rng(7)
    quarters = synthetic_team_quarters(200, dependence=0.0, rng=rng)
    assert fit_dependence(quarters, level=0.8) <= 0.3


# --------------------------------------------------------------------------- new business


QUARTER_ENDS = [pd.Timestamp(f"2025-{m:02d}-01", tz="UTC") for m in (4, 7, 10)] + [
    pd.Timestamp("2026-01-01", tz="UTC")
]


def deal(team: str, created: pd.Timestamp, closed: pd.Timestamp, won: bool, amount: float) -> dict:
    return {"team": team, "created_at": created, "close_time": closed, "won": won, "amount": amount}


def history() -> pd.DataFrame:
    """Team A, 2025-Q1 to Q4: per quarter, new business created 80 and 20 days before the end,
    a win that slips into the next quarter and a loss. Team B from 2025-Q4: one at 30 days."""
    day = pd.Timedelta(days=1)
    rows = []
    for end in QUARTER_ENDS:
        rows += [
            deal("A", end - 80 * day, end - 70 * day, True, 10_000.0),
            deal("A", end - 20 * day, end - 15 * day, True, 4_000.0),
            deal("A", end - 10 * day, end + 5 * day, True, 99_000.0),
            deal("A", end - 50 * day, end - 40 * day, False, 50_000.0),
        ]
    end = QUARTER_ENDS[-1]
    rows.append(deal("B", end - 30 * day, end - 2 * day, True, 6_000.0))
    return pd.DataFrame(rows)


AS_OF = pd.Timestamp("2026-01-03", tz="UTC")


def test_new_business_rates_by_hand() -> None:
    model = NewBusinessModel.fit(history(), as_of=AS_OF)
    # The slipped Q4 win closes after its quarter; at d >= 80 team A has 2 per quarter.
    assert model.quarters == {"A": 4, "B": 1}
    everyone = (4 * 2 + 1) / 5
    assert model.rate("", 91) == pytest.approx(everyone)
    assert model.rate("unseen team", 91) == pytest.approx(everyone)
    assert model.rate("A", 91) == pytest.approx((8 + 2 * everyone) / (4 + 2))
    assert model.rate("B", 91) == pytest.approx((1 + 2 * everyone) / (1 + 2))
    # With 21 days left only A's 20-day deals remain (B's was created with 30 days left).
    assert model.rate("", 21) == pytest.approx(4 / 5)
    assert model.rate("A", 0) == 0.0


def test_new_business_shrinks_as_the_quarter_runs_out() -> None:
    model = NewBusinessModel.fit(history(), as_of=AS_OF)
    days = np.arange(0, 93)
    for team in ("A", "B", "unseen"):
        rates = np.array([model.rate(team, d) for d in days])
        expected = np.array([model.expected(team, d) for d in days])
        assert rates[0] == 0.0 and expected[0] == 0.0
        assert np.all(np.diff(rates) >= -1e-12)
        assert rates[-1] > rates[28] > 0


def test_new_business_amounts_per_team_with_a_fallback() -> None:
    few = NewBusinessModel.fit(history(), as_of=AS_OF)
    # Eight A deals are fewer than min_amounts: all teams' amounts are used.
    assert sorted(few.amounts("A", 91)) == sorted([4_000.0] * 4 + [6_000.0] + [10_000.0] * 4)
    own = NewBusinessModel.fit(history(), as_of=AS_OF, min_amounts=1)
    assert sorted(own.amounts("A", 91)) == [4_000.0] * 4 + [10_000.0] * 4
    assert sorted(own.amounts("A", 25)) == [4_000.0] * 4
    assert own.expected("A", 25) == pytest.approx(own.rate("A", 25) * 4_000.0)
    assert sorted(own.amounts("nobody", 25)) == [4_000.0] * 4


def test_new_business_never_sees_rows_closed_after_as_of() -> None:
    base = history()
    model = NewBusinessModel.fit(base, as_of=AS_OF)
    future = base.copy()
    later = future["close_time"] >= AS_OF
    assert later.any()
    future.loc[later, "amount"] = 1e9
    future.loc[later, "won"] = ~future.loc[later, "won"]
    day = pd.Timedelta(days=1)
    extra = pd.DataFrame(
        [
            deal("C", QUARTER_ENDS[0] - 60 * day, AS_OF + day, True, 5e5),  # a new team
            deal("A", QUARTER_ENDS[2] - 30 * day, AS_OF, True, 5e5),  # closes exactly at as_of
            deal("A", AS_OF + day, AS_OF + 2 * day, True, 5e5),
        ]
    )
    perturbed = NewBusinessModel.fit(pd.concat([future, extra]), as_of=AS_OF)
    assert perturbed.quarters == model.quarters
    np.testing.assert_array_equal(perturbed.global_rate, model.global_rate)
    for team in model.rates:
        np.testing.assert_array_equal(perturbed.rates[team], model.rates[team])
        np.testing.assert_array_equal(perturbed.deal_amounts[team], model.deal_amounts[team])


def test_only_complete_quarters_count() -> None:
    # Mid-quarter, the current quarter's partial counts would drag every rate down.
    mid = NewBusinessModel.fit(history(), as_of=QUARTER_ENDS[-1] - pd.Timedelta(days=5))
    assert mid.quarters == {"A": 3}
    assert mid.rate("A", 91) == pytest.approx(2.0)


def test_new_business_adds_its_expected_revenue_to_the_forecast() -> None:
    model = NewBusinessModel.fit(history(), as_of=AS_OF)
    p, amounts = np.array([0.5, 0.5]), np.array([10_000.0, 10_000.0])
    without = simulate_attainment(quota=12_000.0, won_to_date=0.0, probabilities=p, amounts=amounts)
    with_new = simulate_attainment(
        quota=12_000.0,
        won_to_date=0.0,
        probabilities=p,
        amounts=amounts,
        new_business=(model, "A", 60.0),
    )
    assert without.method == "exact" and with_new.method.startswith("monte-carlo")
    assert with_new.expected_revenue == pytest.approx(10_000.0 + model.expected("A", 60.0))
    assert with_new.p_attain > without.p_attain
    # The sampler's mean agrees with the model's expectation.
    draws = model.sample("A", 60.0, size=200_000, rng=np.random.default_rng(0))
    assert draws.mean() == pytest.approx(model.expected("A", 60.0), rel=0.02)


# --------------------------------------------------------------------------- gap and status


@pytest.mark.parametrize(
    ("probability", "status"),
    [
        (GREEN_AT, "green"),
        (GREEN_AT - 0.01, "yellow"),
        (RED_BELOW, "yellow"),
        (RED_BELOW - 0.01, "red"),
    ],
)
def test_status_thresholds(probability: float, status: str) -> None:
    # One deal worth the whole quota: P(attain) is its probability, exactly.
    result = simulate_attainment(
        quota=100.0,
        won_to_date=0.0,
        probabilities=np.array([probability]),
        amounts=np.array([100.0]),
    )
    assert result.p_attain == pytest.approx(probability, abs=1e-12)
    assert result.status == status
    assert f"{100 * probability:.0f}% chance" in result.status_reason


def test_quota_already_met_is_green_with_capped_coverage() -> None:
    result = simulate_attainment(
        quota=100.0, won_to_date=150.0, probabilities=np.array([0.5]), amounts=np.array([40.0])
    )
    assert result.p_attain == 1.0 and result.status == "green"
    assert result.remaining_quota == 0.0
    assert result.coverage == 100.0
    assert result.pipeline_needed == 0.0 and result.deals_needed == 0.0
    assert "Quota reached" in result.status_reason


def test_gap_analysis() -> None:
    p = np.array([0.2, 0.5, 0.8])
    amounts = np.array([10_000.0, 20_000.0, 30_000.0])
    given = simulate_attainment(
        quota=100_000.0,
        won_to_date=40_000.0,
        probabilities=p,
        amounts=amounts,
        win_rate=0.25,
        average_deal_size=15_000.0,
    )
    assert given.remaining_quota == 60_000.0
    assert given.open_pipeline == 60_000.0
    assert given.coverage == pytest.approx(1.0)
    assert given.pipeline_needed == pytest.approx(240_000.0)
    assert given.deals_needed == pytest.approx(16.0)
    assert given.status == "red"
    assert "240,000 of pipeline, 180,000 more than is open" in given.status_reason
    default = simulate_attainment(
        quota=100_000.0, won_to_date=40_000.0, probabilities=p, amounts=amounts
    )
    rate = (amounts @ p) / amounts.sum()  # share of open pipeline value expected to be won
    assert default.pipeline_needed == pytest.approx(60_000.0 / rate)
    assert default.deals_needed == pytest.approx(60_000.0 / (20_000.0 * rate))


def test_interval_brackets_the_point_and_the_result_is_plain_finite_json() -> None:
    rng = np.random.default_rng(9)
    p = rng.uniform(0.1, 0.9, 400)
    amounts = rng.lognormal(9, 1, 400)
    quota = float(amounts @ p)
    result = simulate_attainment(
        quota=quota,
        won_to_date=0.0,
        probabilities=p,
        amounts=amounts,
        probability_low=np.clip(p - 0.1, 0, 1),
        probability_high=np.clip(p + 0.1, 0, 1),
        dependence=0.5,
    )
    assert result.p_attain_low < result.p_attain < result.p_attain_high
    assert result.p10 <= result.p50 <= result.p90
    values = result.to_dict()
    json.dumps(values)
    numbers = [v for v in values.values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in numbers)
    # The factor spreads revenue but leaves its expectation where the probabilities put it.
    assert result.expected_revenue == pytest.approx(quota, rel=1e-12)


def test_an_empty_pipeline_still_gets_a_forecast_and_a_gap() -> None:
    empty = np.array([])
    bare = simulate_attainment(quota=10.0, won_to_date=4.0, probabilities=empty, amounts=empty)
    assert bare.p_attain == 0.0 and bare.p90 == 4.0 and bare.status == "red"
    # Nothing to learn a win rate from: at least the remaining quota (one deal) is needed.
    assert bare.pipeline_needed == 6.0 and bare.deals_needed == 1.0
    assert "at least 6 of new pipeline" in bare.status_reason
    given = simulate_attainment(
        quota=10.0,
        won_to_date=4.0,
        probabilities=empty,
        amounts=empty,
        win_rate=0.5,
        average_deal_size=3.0,
    )
    assert given.pipeline_needed == 12.0 and given.deals_needed == pytest.approx(4.0)
    model = NewBusinessModel.fit(history(), as_of=AS_OF)
    with_new = simulate_attainment(
        quota=1e5,
        won_to_date=0.0,
        probabilities=empty,
        amounts=empty,
        new_business=(model, "A", 91.0),
    )
    assert with_new.pipeline_needed == 1e5
    assert with_new.deals_needed == pytest.approx(1e5 / model.amounts("A", 91.0).mean())


# --------------------------------------------------------------------------- validation


GOOD = {
    "quota": 100.0,
    "won_to_date": 10.0,
    "probabilities": np.array([0.5, 0.2]),
    "amounts": np.array([50.0, 60.0]),
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quota": 0.0}, "quota"),
        ({"quota": -5.0}, "quota"),
        ({"quota": float("nan")}, "quota"),
        ({"won_to_date": -1.0}, "won_to_date"),
        ({"won_to_date": float("inf")}, "won_to_date"),
        ({"probabilities": np.array([0.5, 1.2])}, "probabilities"),
        ({"probabilities": np.array([0.5, -0.1])}, "probabilities"),
        ({"probabilities": np.array([0.5, np.nan])}, "probabilities"),
        ({"amounts": np.array([50.0, -60.0])}, "amounts"),
        ({"amounts": np.array([50.0, np.nan])}, "amounts"),
        ({"amounts": np.array([50.0])}, "amounts"),
        ({"probability_low": np.array([0.6, 0.1])}, "probability_low"),
        ({"probability_low": np.array([0.1])}, "probability_low"),
        ({"probability_high": np.array([0.4, 0.3])}, "probability_high"),
        ({"dependence": -0.1}, "dependence"),
        ({"dependence": 50.0}, "dependence"),
        ({"win_rate": 0.0}, "win_rate"),
        ({"win_rate": 1.5}, "win_rate"),
        ({"average_deal_size": -3.0}, "average_deal_size"),
        ({"draws": 0}, "draws"),
        ({"seed": -1}, "seed"),
        ({"new_business": ("model", "A", 10.0)}, "new_business"),
    ],
)
def test_invalid_inputs_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(AttainmentInputError) as error:
        simulate_attainment(**{**GOOD, **change})
    assert error.value.field == field
    assert isinstance(error.value, ValueError)
    assert str(error.value).startswith(f"{field}: ")


def test_new_business_inputs_are_checked() -> None:
    frame = history()
    with pytest.raises(AttainmentInputError, match="missing columns"):
        NewBusinessModel.fit(frame.drop(columns=["won"]), as_of=AS_OF)
    with pytest.raises(AttainmentInputError, match="timezone-aware"):
        NewBusinessModel.fit(frame, as_of=pd.Timestamp("2026-01-10"))
    naive = frame.assign(created_at=frame["created_at"].dt.tz_localize(None))
    with pytest.raises(AttainmentInputError, match="created_at"):
        NewBusinessModel.fit(naive, as_of=AS_OF)
    with pytest.raises(AttainmentInputError, match="amount"):
        NewBusinessModel.fit(frame.assign(amount=-1.0), as_of=AS_OF)
    model = NewBusinessModel.fit(frame, as_of=AS_OF)
    with pytest.raises(AttainmentInputError, match="days_left"):
        model.expected("A", -1.0)
    with pytest.raises(AttainmentInputError) as error:
        fit_dependence([], level=0.8)
    assert error.value.field == "team_quarters"
