"""The promotion gate's rules on hand-made metrics."""

from __future__ import annotations

from typing import Any

from training.gate import compare_scores, decide


def metrics(model: float, best_baseline: float) -> dict[str, Any]:
    def block(value: float) -> dict[str, Any]:
        return {"overall": {"brier": value, "log_loss": value * 3}}

    baselines = {
        name: block(best_baseline + i * 0.01)
        for i, name in enumerate(("stage_weight_crm", "stage_weight_empirical", "commit"))
    }
    return {b: {"model": block(model), **baselines} for b in ("deal", "deal_in_period")}


def test_must_beat_every_baseline() -> None:
    assert decide(metrics(0.06, 0.10), champion_version=None, champion_comparison=None).passed
    failed = decide(metrics(0.11, 0.10), champion_version=None, champion_comparison=None)
    assert not failed.passed
    assert any("stage_weight_crm" in reason for reason in failed.reasons)


def test_a_refusal_says_whether_there_is_a_champion_to_keep() -> None:
    alone = decide(metrics(0.11, 0.10), champion_version=None, champion_comparison=None)
    assert alone.summary.startswith("do not promote: ")
    kept = decide(metrics(0.11, 0.10), champion_version="3", champion_comparison=None)
    assert kept.summary.startswith("keep the current champion: ")
    passed = decide(metrics(0.06, 0.10), champion_version=None, champion_comparison=None)
    assert passed.summary.startswith("promote: ")


def test_champion_tolerance() -> None:
    mine = {
        "deal": {"brier": 0.0605, "log_loss": 0.2},
        "deal_in_period": {"brier": 0.04, "log_loss": 0.13},
    }
    theirs = {
        "deal": {"brier": 0.0600, "log_loss": 0.2},
        "deal_in_period": {"brier": 0.04, "log_loss": 0.13},
    }
    assert compare_scores(mine, theirs, tolerance=0.01)[0]  # 0.8% worse: inside 1%
    assert not compare_scores(mine, theirs, tolerance=0.005)[0]
    decision = decide(
        metrics(0.06, 0.10),
        champion_version="3",
        champion_comparison=(mine, theirs, "same data"),
        tolerance=0.005,
    )
    assert not decision.passed and decision.champion_version == "3"


def with_revenue(base: dict[str, Any], apes: dict[str, float | None], n: int) -> dict[str, Any]:
    """`base` with week-8 median APEs of the team-quarter revenue forecasts."""

    def week(value: float | None) -> dict[str, Any]:
        return {"by_week": {"8": {"median_ape": value, "bias": 0.0, "n": n if value else 0}}}

    return {**base, "period": {name: week(value) for name, value in apes.items()}}


# The figures of the model issue 13 saw promoted: it lost on week-8 revenue.
LOSING_REVENUE = {
    "model": 0.986,
    "stage_weight_crm": 1.30,
    "stage_weight_empirical": 0.91,
    "commit": 0.95,
}


def test_a_model_losing_on_week8_revenue_is_refused() -> None:
    decision = decide(
        with_revenue(metrics(0.06, 0.10), LOSING_REVENUE, 12),
        champion_version=None,
        champion_comparison=None,
    )
    assert not decision.passed
    assert any(
        "week-8 revenue" in r and "stage_weight_empirical 0.910" in r for r in decision.reasons
    )
    record = decision.to_dict()
    # Every test it ran, with its figures: 2 targets x 3 baselines x 2 scores, then revenue.
    tests = record["tests"]
    assert [t["rule"] for t in tests] == ["baselines"] * 12 + ["revenue"] * 3
    assert all(t["passed"] for t in tests[:12])
    revenue = {t["against"]: t for t in tests[12:]}
    assert revenue["stage_weight_empirical"]["passed"] is False
    assert revenue["stage_weight_crm"]["passed"] is True
    assert revenue["commit"]["model"] == 0.986 and revenue["commit"]["value"] == 0.95
    assert {t["n"] for t in tests[12:]} == {12}
    assert set(record["rules"]) == {"baselines", "revenue"} and record["not_measured"] == []
    tied = dict(LOSING_REVENUE, model=0.91)  # no worse than the best baseline: passes
    assert decide(
        with_revenue(metrics(0.06, 0.10), tied, 12), champion_version=None, champion_comparison=None
    ).passed


def test_a_deal_level_failure_is_one_test_among_all() -> None:
    decision = decide(
        with_revenue(metrics(0.105, 0.10), dict(LOSING_REVENUE, model=0.5), 12),
        champion_version=None,
        champion_comparison=None,
    )
    assert not decision.passed
    failed = [(t.metric, t.against) for t in decision.tests if t.passed is False]
    # 0.105 beats the empirical stage weight (0.11) and commit (0.12), not the CRM's 0.10.
    assert set(failed) == {
        (f"{block}.{score}", "stage_weight_crm")
        for block in ("deal", "deal_in_period")
        for score in ("brier", "log_loss")
    }
    assert all(t.passed for t in decision.tests if t.rule == "revenue")


def test_too_few_team_quarters_decide_on_the_deal_rules_and_say_so() -> None:
    decision = decide(
        with_revenue(metrics(0.06, 0.10), LOSING_REVENUE, 2),
        champion_version=None,
        champion_comparison=None,
    )
    assert decision.passed
    assert decision.not_measured and "2 team-quarter" in decision.not_measured[0]
    revenue = [t for t in decision.tests if t.rule == "revenue"]
    assert len(revenue) == 3 and all(t.passed is None and t.n == 2 for t in revenue)
    assert decision.to_dict()["not_measured"] == decision.not_measured
    # No period block at all (nothing ended): the same.
    bare = decide(metrics(0.06, 0.10), champion_version=None, champion_comparison=None)
    assert bare.passed and bare.not_measured


def test_a_baseline_champion_is_judged_by_the_baseline_rules() -> None:
    decision = decide(
        with_revenue(metrics(0.06, 0.10), dict(LOSING_REVENUE, model=0.5), 12),
        champion_version="2",
        champion_comparison=None,
        champion_is_baseline=True,
    )
    assert decision.passed and decision.champion_version == "2"
    assert any("baseline forecaster" in r for r in decision.reasons)
    assert not decide(
        with_revenue(metrics(0.06, 0.10), LOSING_REVENUE, 12),
        champion_version="2",
        champion_comparison=None,
        champion_is_baseline=True,
    ).passed


def test_the_champion_comparison_is_listed_with_its_figures() -> None:
    mine = {
        "deal": {"brier": 0.07, "log_loss": 0.2},
        "deal_in_period": {"brier": 0.04, "log_loss": 0.1},
    }
    theirs = {
        "deal": {"brier": 0.06, "log_loss": 0.2},
        "deal_in_period": {"brier": 0.04, "log_loss": 0.1},
    }
    decision = decide(
        with_revenue(metrics(0.06, 0.10), dict(LOSING_REVENUE, model=0.5), 12),
        champion_version="3",
        champion_comparison=(mine, theirs, "same data"),
    )
    assert not decision.passed
    champion = [t for t in decision.to_dict()["tests"] if t["rule"] == "champion"]
    assert len(champion) == 4
    assert champion[0] == {
        "rule": "champion",
        "metric": "deal.brier",
        "model": 0.07,
        "against": "champion",
        "value": 0.06,
        "passed": False,
        "n": None,
    }
