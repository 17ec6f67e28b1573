"""Next actions: only actionable levers, effects that re-scoring reproduces exactly, ranked
by expected value, and the disclaimer that they are associations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.actions import (
    EFFECTS_DISCLAIMER,
    LEVERS,
    FeatureValues,
    Lever,
    LeverContext,
    rank_actions,
)
from models.factors import ACTIONABLE_FACTORS, NonActionableLever
from tests.model.conftest import Trained


@pytest.fixture(scope="module")
def deals(trained: Trained) -> pd.DataFrame:
    return trained.test_frame.sample(300, random_state=11).reset_index(drop=True)


def _no_change(values: FeatureValues, context: LeverContext) -> dict[str, np.ndarray]:
    return {}


def _everyone(values: FeatureValues, context: LeverContext) -> np.ndarray:
    return np.ones(len(values["amount"]), dtype=bool)


@pytest.mark.parametrize(
    "feature",
    [
        "account_industry",
        "account_region",
        "account_segment",
        "type",
        "lead_source",
        "owner_win_rate",
        "account_won_deals",
        "stage_order",
        "forecast_category",
        "days_left_in_quarter",
        "amount",
        "no_such_feature",
    ],
)
def test_a_lever_on_a_non_actionable_feature_cannot_be_constructed(feature: str) -> None:
    with pytest.raises(NonActionableLever, match=feature):
        Lever(
            key="bad",
            text="Change what cannot be changed.",
            condition="always",
            touches=("days_since_last_activity", feature),
            applies=_everyone,
            change=_no_change,
        )


def test_no_action_names_a_non_actionable_lever(trained: Trained, deals: pd.DataFrame) -> None:
    factor = {spec.name: spec.factor for spec in trained.plan.catalog}
    windows = trained.plan.config.activity_windows_days
    for lever in LEVERS:
        assert {factor[name] for name in lever.features(windows)} <= ACTIONABLE_FACTORS
    keys = {lever.key for lever in LEVERS}
    proposed = [a for deal in rank_actions(trained.model, deals) for a in deal.actions]
    assert len({a.lever for a in proposed}) >= 4  # the catalogue is exercised
    for action in proposed:
        assert action.lever in keys
        assert {factor[name] for name in action.changes} <= ACTIONABLE_FACTORS


def test_a_lever_changing_an_undeclared_feature_is_refused(
    trained: Trained, deals: pd.DataFrame
) -> None:
    def sneaky(values: FeatureValues, context: LeverContext) -> dict[str, np.ndarray]:
        return {
            "days_since_last_activity": np.zeros(len(values["amount"])),
            "owner_win_rate": np.ones(len(values["amount"])),
        }

    lever = Lever(
        key="sneaky",
        text="Log a call (and quietly become the best rep).",
        condition="always",
        touches=("days_since_last_activity",),
        applies=_everyone,
        change=sneaky,
    )
    with pytest.raises(NonActionableLever, match="owner_win_rate"):
        rank_actions(trained.model, deals.head(5), levers=(lever,))


def test_an_applied_action_changes_the_score_by_the_amount_reported(
    trained: Trained, deals: pd.DataFrame
) -> None:
    model = trained.model
    results = rank_actions(model, deals)
    before = model.predict(deals)
    rows, reported = [], []
    for i, deal in enumerate(results):
        assert deal.probability == pytest.approx(before.won[i], abs=1e-12)
        assert deal.in_period == pytest.approx(before.in_period[i], abs=1e-12)
        for action in deal.actions:
            changed = deals.iloc[[i]].copy()
            for name, value in action.changes.items():
                changed[name] = value
            rows.append(changed)
            reported.append((i, action))
    assert len(reported) > 300
    after = model.predict(pd.concat(rows, ignore_index=True))
    for k, (i, action) in enumerate(reported):
        assert after.won[k] - before.won[i] == pytest.approx(action.delta_probability, abs=1e-9)
        assert after.in_period[k] - before.in_period[i] == pytest.approx(
            action.delta_in_period, abs=1e-9
        )


def test_actions_are_positive_and_ranked_by_expected_value(
    trained: Trained, deals: pd.DataFrame
) -> None:
    results = rank_actions(trained.model, deals)
    amount = deals["amount"].to_numpy()
    for i, deal in enumerate(results):
        values = [a.expected_value for a in deal.actions]
        assert values == sorted(values, reverse=True)
        for action in deal.actions:
            assert action.delta_probability > 0
            assert action.expected_value == pytest.approx(action.delta_probability * amount[i])
            assert action.text
        assert len({a.lever for a in deal.actions}) == len(deal.actions)
    top = rank_actions(trained.model, deals, top_k=1)
    assert [d.actions for d in top] == [d.actions[:1] for d in results]


def test_every_answer_says_effects_are_associations(trained: Trained, deals: pd.DataFrame) -> None:
    assert "associations" in EFFECTS_DISCLAIMER and "not guarantees" in EFFECTS_DISCLAIMER
    assert all(d.disclaimer == EFFECTS_DISCLAIMER for d in rank_actions(trained.model, deals))


def test_levers_apply_only_where_they_make_sense(trained: Trained) -> None:
    plan = trained.plan
    context = LeverContext(
        windows=plan.config.activity_windows_days, open_stages=len(plan.stages.open_stages)
    )
    by_key = {lever.key: lever for lever in LEVERS}
    deal = {
        "days_since_decision_maker_contact": np.array([5.0, 45.0, np.nan]),
        "days_since_last_activity": np.array([2.0, 20.0, np.nan]),
        "close_date_past": np.array([0.0, 1.0, 0.0]),
        "days_to_close": np.array([60.0, -3.0, 5.0]),
        "stage_order": np.array([7.0, 3.0, 1.0]),
    }
    assert by_key["meet_decision_maker"].applies(deal, context).tolist() == [False, True, True]
    assert by_key["re_engage"].applies(deal, context).tolist() == [False, True, True]
    # Past; and 5 days away with six open stages to go is not a real date.
    assert by_key["reset_close_date"].applies(deal, context).tolist() == [False, True, True]


def test_resetting_the_close_date_counts_as_a_push(trained: Trained) -> None:
    plan = trained.plan
    context = LeverContext(
        windows=plan.config.activity_windows_days, open_stages=len(plan.stages.open_stages)
    )
    reset = {lever.key: lever for lever in LEVERS}["reset_close_date"]
    deal = {
        "close_date_pushes": np.array([1.0]),
        "close_date_days_pushed": np.array([10.0]),
        "days_to_close": np.array([-3.0]),
        "close_date_past": np.array([1.0]),
        "close_date_in_quarter": np.array([1.0]),
        "days_left_in_quarter": np.array([20.0]),
        "stage_order": np.array([6.0]),  # one open stage to go: 28 days out
    }
    new = reset.change(deal, context)
    assert new["days_to_close"].tolist() == [28.0]
    assert new["close_date_pushes"].tolist() == [2.0]
    assert new["close_date_days_pushed"].tolist() == [41.0]
    assert new["close_date_past"].tolist() == [0.0]
    assert new["close_date_in_quarter"].tolist() == [0.0]
