"""Next actions: each lever adds the row it stands for at as_of and its effect is what scoring
the deal with that row gives through the public path; only actionable levers, ranked by
expected value, with the disclaimer that they are associations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.actions
from features.deals import DealTables
from features.payload import deals_as_payloads
from features.reference import OutcomeReference
from features.timestamps import to_ns
from models.actions import (
    CLOSE_DATE_FEATURES,
    EFFECTS_DISCLAIMER,
    LEVERS,
    AddedRows,
    DealsNow,
    FeatureValues,
    Lever,
    LeverContext,
    apply_levers,
    log_activity,
    rank_actions,
)
from models.attainment import NewBusinessModel
from models.baselines import baselines_for
from models.bundle import DealcastBundle
from models.factors import ACTIONABLE_FACTORS, NonActionableLever
from models.scoring import Scorer
from tests.model.conftest import Trained

# The row each activity lever stands for: (type, contact_role).
ACTIVITY_OF = {
    "meet_decision_maker": ("meeting", "decision_maker"),
    "re_engage": ("call", None),
    "hold_meeting": ("meeting", None),
    "book_demo": ("demo", None),
    "send_proposal": ("proposal", None),
}
POOL = 160  # open deals of the test window, as a CRM would send them


@pytest.fixture(scope="module")
def tables(trained: Trained) -> DealTables:
    return DealTables.from_export(trained.export, trained.plan.attributes)


@pytest.fixture(scope="module")
def reference(tables: DealTables) -> OutcomeReference:
    return OutcomeReference(tables)  # the reference the snapshots were built with


@pytest.fixture(scope="module")
def deals(trained: Trained) -> pd.DataFrame:
    return trained.test_frame.sample(300, random_state=11).reset_index(drop=True)


@pytest.fixture(scope="module")
def queries(tables: DealTables, deals: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    codes = pd.Index(tables.opportunity_id).get_indexer(deals["opportunity_id"])
    return codes, to_ns(deals["as_of"])


def _rank(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    queries: tuple[np.ndarray, np.ndarray],
    **options: Any,
) -> list[models.actions.DealActions]:
    codes, as_of = queries
    return rank_actions(
        trained.model, tables, deals=codes, as_of=as_of, reference=reference, **options
    )


@pytest.fixture(scope="module")
def scorer(trained: Trained, reference: OutcomeReference) -> Scorer:
    """The service's scoring path over the trained model (scoring deals reads no attainment
    parameters or team history)."""
    bundle = DealcastBundle(
        plan=trained.plan,
        model=trained.model,
        baselines=baselines_for(trained.training, ("won", "won_in_period")),
        reference=reference,
        new_business=cast(NewBusinessModel, None),
        dependence=0.5,
        team_history=pd.DataFrame(),
    )
    return Scorer(bundle)


@pytest.fixture(scope="module")
def pool(trained: Trained) -> list[tuple[dict[str, Any], str]]:
    """(payload, as_of) of open deals: their rows up to as_of, as a CRM sends them then."""
    frame = trained.test_frame.drop_duplicates("opportunity_id").sample(POOL, random_state=3)
    export = trained.export
    contract = {
        "opportunities": export.opportunities,
        "opportunity_history": export.history,
        "activities": export.activities,
        "accounts": export.accounts,
        "owners": export.owners,
    }
    out = []
    for deal, as_of in zip(
        deals_as_payloads(contract, list(frame["opportunity_id"])), frame["as_of"], strict=True
    ):
        for table, stamp in (("history", "changed_at"), ("activities", "occurred_at")):
            deal[table] = [row for row in deal[table] if pd.Timestamp(row[stamp]) <= as_of]
        out.append((deal, as_of.isoformat()))
    return out


def _last_state(deal: Mapping[str, Any]) -> Mapping[str, Any]:
    return max(deal["history"], key=lambda row: pd.Timestamp(row["changed_at"]))


def _check_row(action: models.actions.Action, deal: Mapping[str, Any], as_of: str) -> None:
    """The row is the one the lever stands for, stamped at as_of (not after)."""
    if action.lever in ACTIVITY_OF:
        assert action.table == "activities"
        assert pd.Timestamp(action.row["occurred_at"]) == pd.Timestamp(as_of)
        assert (action.row["type"], action.row["contact_role"]) == ACTIVITY_OF[action.lever]
        return
    assert action.lever == "reset_close_date" and action.table == "history"
    assert pd.Timestamp(action.row["changed_at"]) == pd.Timestamp(as_of)
    state = _last_state(deal)
    for name in ("stage", "amount", "forecast_category"):
        assert action.row[name] == state[name]
    assert pd.Timestamp(str(action.row["close_date"])) > pd.Timestamp(state["close_date"])


def _check_against_rescoring(scorer: Scorer, batch: list[tuple[dict[str, Any], str]]) -> set[str]:
    """Every proposed action's change in probability equals scoring the deal with the action's
    row added to its payload, through `Scorer.score`; the levers checked."""
    payloads = [deal for deal, _ in batch]
    times = [as_of for _, as_of in batch]
    scores = scorer.score(payloads, as_of=times, explain=True, trend=False, top_k=len(LEVERS))
    changed, changed_times, reported = [], [], []
    for i, score in enumerate(scores):
        for action in score.actions:
            _check_row(action, payloads[i], times[i])
            deal = dict(payloads[i])
            deal[action.table] = [*deal[action.table], dict(action.row)]
            changed.append(deal)
            changed_times.append(times[i])
            reported.append((i, action))
    if not changed:
        return set()
    after = scorer.score(changed, as_of=changed_times, explain=False)
    for k, (i, action) in enumerate(reported):
        assert after[k].win_probability - scores[i].win_probability == pytest.approx(
            action.delta_probability, abs=1e-9
        )
        assert after[k].win_in_period_probability - scores[
            i
        ].win_in_period_probability == pytest.approx(action.delta_in_period, abs=1e-9)
    return {action.lever for _, action in reported}


def test_every_lever_s_effect_is_rescoring_the_deal_with_its_row(
    scorer: Scorer, pool: list[tuple[dict[str, Any], str]]
) -> None:
    assert _check_against_rescoring(scorer, pool) == {lever.key for lever in LEVERS}


@settings(max_examples=25, deadline=None)
@given(picks=st.lists(st.integers(0, POOL - 1), min_size=1, max_size=8, unique=True))
def test_reported_effects_equal_rescoring_in_any_batch(
    scorer: Scorer, pool: list[tuple[dict[str, Any], str]], picks: list[int]
) -> None:
    _check_against_rescoring(scorer, [pool[i] for i in picks])


def _everyone(values: FeatureValues, context: LeverContext) -> np.ndarray:
    return np.ones(len(values["amount"]), dtype=bool)


def _same_state(now: DealsNow, context: LeverContext) -> AddedRows:
    return AddedRows("history", dict(now.state))


_CALL_TOUCHES, _CALL_ADDS = log_activity("call")


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
            adds=_CALL_ADDS,
        )


def test_no_action_names_a_non_actionable_lever(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    queries: tuple[np.ndarray, np.ndarray],
) -> None:
    factor = {spec.name: spec.factor for spec in trained.plan.catalog}
    windows = trained.plan.config.activity_windows_days
    declared = {lever.key: set(lever.features(windows)) for lever in LEVERS}
    for lever in LEVERS:
        assert {factor[name] for name in lever.features(windows)} <= ACTIONABLE_FACTORS
    proposed = [a for deal in _rank(trained, tables, reference, queries) for a in deal.actions]
    assert len({a.lever for a in proposed}) >= 4  # the catalogue is exercised
    for action in proposed:
        assert action.changes and set(action.changes) <= declared[action.lever]
        assert {factor[name] for name in action.changes} <= ACTIONABLE_FACTORS


def test_a_lever_whose_row_changes_an_undeclared_feature_is_refused(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    queries: tuple[np.ndarray, np.ndarray],
) -> None:
    last_open = trained.plan.stages.open_stages[-1]

    def advance(now: DealsNow, context: LeverContext) -> AddedRows:
        stage = np.full(now.as_of.size, last_open, dtype=object)
        return AddedRows("history", {**now.state, "stage": stage})

    lever = Lever(
        key="sneaky",
        text="Fix the close date (and quietly move the deal to the last stage).",
        condition="always",
        touches=CLOSE_DATE_FEATURES,
        applies=_everyone,
        adds=advance,
    )
    with pytest.raises(NonActionableLever, match="stage_order"):
        _rank(trained, tables, reference, queries, levers=(lever,))


def test_a_lever_whose_row_changes_no_feature_is_not_proposed(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    queries: tuple[np.ndarray, np.ndarray],
) -> None:
    confirm = Lever(
        key="confirm_close_date",
        text="Confirm the close date in the CRM.",
        condition="always",
        touches=CLOSE_DATE_FEATURES,
        applies=_everyone,
        adds=_same_state,  # a real history row, but the state it records is the same
    )
    codes, as_of = queries
    variants = apply_levers(
        tables, deals=codes, as_of=as_of, plan=trained.plan, reference=reference, levers=(confirm,)
    )
    assert variants.query.size == codes.size and not variants.changed.any()
    results = _rank(trained, tables, reference, queries, levers=(confirm, *LEVERS))
    proposed = {a.lever for deal in results for a in deal.actions}
    assert "confirm_close_date" not in proposed and proposed


def test_all_levers_of_all_deals_are_scored_in_one_pass(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    queries: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes, as_of = queries
    columns = models.actions.feature_columns(
        tables, codes, as_of, plan=trained.plan, reference=reference
    )
    passes: list[int] = []
    real = models.actions.feature_columns

    def counted(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        passes.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(models.actions, "feature_columns", counted)
    results = _rank(trained, tables, reference, queries, columns=columns)
    assert len(passes) == 1 and passes[0] > codes.size  # every variant of every deal at once
    assert sum(len(d.actions) for d in results) > codes.size


def test_actions_are_positive_and_ranked_by_expected_value(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    deals: pd.DataFrame,
    queries: tuple[np.ndarray, np.ndarray],
) -> None:
    results = _rank(trained, tables, reference, queries)
    before = trained.model.predict(deals)
    amount = deals["amount"].to_numpy()
    for i, deal in enumerate(results):
        assert deal.probability == pytest.approx(before.won[i], abs=1e-12)
        assert deal.in_period == pytest.approx(before.in_period[i], abs=1e-12)
        values = [a.expected_value for a in deal.actions]
        assert values == sorted(values, reverse=True)
        for action in deal.actions:
            assert action.delta_probability > 0
            assert action.expected_value == pytest.approx(action.delta_probability * amount[i])
            assert action.text
        assert len({a.lever for a in deal.actions}) == len(deal.actions)
    top = _rank(trained, tables, reference, queries, top_k=1)
    assert [d.actions for d in top] == [d.actions[:1] for d in results]


def test_every_answer_says_effects_are_associations(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    queries: tuple[np.ndarray, np.ndarray],
) -> None:
    assert "associations" in EFFECTS_DISCLAIMER and "not guarantees" in EFFECTS_DISCLAIMER
    results = _rank(trained, tables, reference, queries)
    assert all(d.disclaimer == EFFECTS_DISCLAIMER for d in results)


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


def test_resetting_the_close_date_counts_as_a_push(
    trained: Trained,
    tables: DealTables,
    reference: OutcomeReference,
    deals: pd.DataFrame,
    queries: tuple[np.ndarray, np.ndarray],
) -> None:
    reset = {lever.key: lever for lever in LEVERS}["reset_close_date"]
    codes, as_of = queries
    variants = apply_levers(
        tables, deals=codes, as_of=as_of, plan=trained.plan, reference=reference, levers=(reset,)
    )
    assert variants.query.size >= 20
    before = deals.iloc[variants.query].reset_index(drop=True)
    after = variants.columns
    remaining = np.maximum(len(trained.plan.stages.open_stages) - before["stage_order"], 0)
    target = 14.0 * (remaining + 1)
    pushed = after["days_to_close"] - before["days_to_close"]
    assert np.allclose(pushed, np.round(pushed))  # whole days
    assert np.all(after["days_to_close"] >= target - 1e-9)
    assert np.all(after["days_to_close"] < target + 1)
    assert np.array_equal(after["close_date_pushes"], before["close_date_pushes"] + 1)
    assert np.allclose(after["close_date_days_pushed"], before["close_date_days_pushed"] + pushed)
    assert not after["close_date_past"].any()
    in_quarter = after["days_to_close"] < after["days_left_in_quarter"]
    assert np.array_equal(after["close_date_in_quarter"] == 1.0, in_quarter)
    changed = {variants.names[j] for j in np.flatnonzero(variants.changed.any(axis=0))}
    assert {"close_date_pushes", "close_date_days_pushed", "days_to_close"} <= changed
    assert changed <= set(CLOSE_DATE_FEATURES)
