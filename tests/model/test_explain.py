"""Explanations reconcile: attributions add up to the model's margin, factors add up to the
attributions, sentences carry the deal's values, and trends are measured, never invented."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.deals import DealTables
from features.reference import OutcomeReference
from features.snapshots import feature_columns
from features.timestamps import to_ns
from models.explain import (
    TrendQueries,
    attribute,
    calibrated_won,
    explain_deals,
    trend_queries,
)
from models.factors import MANAGER_FACTORS, describe
from models.win import raw_margin
from tests.model.conftest import Trained


@pytest.fixture(scope="module")
def deals(trained: Trained) -> pd.DataFrame:
    """A spread of open deals of the test quarter: every stage, young and old."""
    return trained.test_frame.sample(400, random_state=3).reset_index(drop=True)


def test_attributions_reconcile_with_the_margin_and_the_served_probability(
    trained: Trained, deals: pd.DataFrame
) -> None:
    model = trained.model
    attributions = attribute(model, deals)
    matrix = model.encoder_.transform(deals)
    # The margin is the stage weight's log-odds the trees were boosted from plus the trees.
    stage_rate = model.won_.stage_rates.predict_proba(deals)
    trees = raw_margin(model.won_.booster, matrix, threads=1)
    margin = np.log(stage_rate / (1 - stage_rate)) + trees
    np.testing.assert_allclose(attributions.margin, margin, rtol=0, atol=1e-6)
    served = model.predict(deals).won
    np.testing.assert_allclose(
        calibrated_won(model, attributions.margin, stage=deals["stage"].to_numpy()),
        served,
        atol=1e-12,
    )
    assert attributions.values.shape == (len(deals), len(model.encoder_.names))
    assert attributions.features == tuple(model.encoder_.names)
    assert np.ptp(attributions.base) == 0.0  # one expected value for every deal


def _path_weights(
    node: dict[str, Any], x: np.ndarray, masks: np.ndarray, where: dict[int, int]
) -> list[tuple[float, np.ndarray]]:
    """(leaf value, weight of reaching the leaf under each subset of features known)."""
    if "leaf_value" in node:
        return [(float(node["leaf_value"]), np.ones(len(masks)))]
    feature = node["split_feature"]
    left, right = node["left_child"], node["right_child"]
    count = node["internal_count"]
    goes_left = _goes_left(node, x[feature])
    known = masks[:, where[feature]]
    out = []
    for child, follows in ((left, goes_left), (right, not goes_left)):
        child_count = child.get("internal_count", child.get("leaf_count"))
        weight = np.where(known, float(follows), child_count / count)
        out += [(value, weight * w) for value, w in _path_weights(child, x, masks, where)]
    return out


def _goes_left(node: dict[str, Any], value: float) -> bool:
    """LightGBM's decision rule, from its model dump (numerical and categorical splits)."""
    if node["decision_type"] == "==":
        if math.isnan(value) or value < 0:
            return False
        return str(int(value)) in str(node["threshold"]).split("||")
    missing = node["missing_type"]
    if math.isnan(value):
        if missing == "NaN":
            return bool(node["default_left"])
        value = 0.0
    if missing == "Zero" and value == 0.0:
        return bool(node["default_left"])
    return value <= node["threshold"]


def _features_of(node: dict[str, Any]) -> set[int]:
    if "leaf_value" in node:
        return set()
    return (
        {node["split_feature"]}
        | _features_of(node["left_child"])
        | (_features_of(node["right_child"]))
    )


def _has_categorical(node: dict[str, Any]) -> bool:
    if "leaf_value" in node:
        return False
    return node["decision_type"] == "==" or any(
        _has_categorical(node[c]) for c in ("left_child", "right_child")
    )


def test_treeshap_equals_brute_force_shapley_values_on_single_trees(
    trained: Trained, deals: pd.DataFrame
) -> None:
    """An independent oracle: Shapley values by enumerating every subset of a tree's
    features, with TreeSHAP's (path-dependent) value of a subset. SHAP's own tree algorithm
    cannot serve here: it mis-handles LightGBM's categorical splits, which these trees use."""
    model = trained.model
    booster = model.won_.booster
    trees = booster.dump_model()["tree_info"]
    # The trees with the fewest distinct features keep the enumeration (2^features) small.
    by_size = sorted(
        range(len(trees)), key=lambda t: (len(_features_of(trees[t]["tree_structure"])), t)
    )
    categorical = [t for t in by_size if _has_categorical(trees[t]["tree_structure"])][:3]
    chosen = categorical + [t for t in by_size if t not in categorical][:3]
    assert categorical
    assert max(len(_features_of(trees[t]["tree_structure"])) for t in chosen) <= 18
    matrix = model.encoder_.transform(deals.head(6))
    for t in chosen:
        root = trees[t]["tree_structure"]
        features = sorted(_features_of(root))
        where = {f: k for k, f in enumerate(features)}
        d = len(features)
        masks = ((np.arange(1 << d)[:, None] >> np.arange(d)) & 1).astype(bool)
        contributions = np.asarray(
            booster.predict(matrix, pred_contrib=True, start_iteration=t, num_iteration=1)
        )
        for row, x in enumerate(matrix):
            leaves = _path_weights(root, x, masks, where)
            v = np.sum([value * weight for value, weight in leaves], axis=0)
            assert v[-1] == pytest.approx(
                np.asarray(
                    booster.predict(x[None], raw_score=True, start_iteration=t, num_iteration=1)
                )[0],
                abs=1e-9,
            )
            expected = np.zeros(matrix.shape[1])
            sizes = masks.sum(axis=1)
            for k, feature in enumerate(features):
                without = np.flatnonzero(~masks[:, k])  # subsets S without the feature
                weight = np.array(
                    [
                        math.factorial(a) * math.factorial(d - a - 1) / math.factorial(d)
                        for a in sizes[without]
                    ]
                )
                expected[feature] = np.sum(weight * (v[without + (1 << k)] - v[without]))
            np.testing.assert_allclose(contributions[row, :-1], expected, rtol=0, atol=1e-9)
            assert contributions[row, -1] == pytest.approx(v[0], abs=1e-9)


def test_factor_totals_add_up_to_the_attributions(trained: Trained, deals: pd.DataFrame) -> None:
    explanations = explain_deals(trained.model, deals, top_k=7)
    prediction = trained.model.predict(deals)
    for explanation, won in zip(explanations, prediction.won, strict=True):
        assert sorted(f.factor for f in explanation.factors) == sorted(MANAGER_FACTORS)
        total = sum(f.contribution for f in explanation.factors)
        assert explanation.base_value + total == pytest.approx(explanation.margin, abs=1e-9)
        assert explanation.probability == pytest.approx(won, abs=1e-9)
        sizes = [abs(d.contribution) for d in explanation.drivers]
        assert sizes == sorted(sizes, reverse=True) and len(sizes) == 7
        assert [abs(f.contribution) for f in explanation.factors] == sorted(
            (abs(f.contribution) for f in explanation.factors), reverse=True
        )


def test_sentences_say_the_direction_and_the_deals_values(
    trained: Trained, deals: pd.DataFrame
) -> None:
    catalog = {spec.name: spec for spec in trained.plan.catalog}
    quiet = deals.head(20).assign(
        days_since_last_activity=34.2,
        decision_maker_contacts=0.0,
        days_since_decision_maker_contact=np.nan,
    )
    everything = len(trained.model.encoder_.names)
    for explanation in explain_deals(trained.model, quiet, top_k=everything):
        by_feature = {d.feature: d for d in explanation.drivers}
        silence = by_feature["days_since_last_activity"]
        assert silence.value == pytest.approx(34.2)
        assert silence.sentence.startswith("No activity logged for 34 days; this")
        assert (
            "no decision-maker contact yet"
            in by_feature["days_since_decision_maker_contact"].sentence.lower()
        )
        for factor in explanation.factors:
            assert factor.sentence and factor.sentence.endswith(".")
            assert factor.sentence.lower().startswith(factor.factor)
            if factor.direction == "neutral":
                assert "little net effect" in factor.sentence
                continue
            pull = "up" if factor.contribution > 0 else "down"
            assert f"pulling the odds {pull}:" in factor.sentence
            # The strongest feature pulling the same way is named with its value.
            same_way = [
                d
                for d in explanation.drivers
                if d.factor == factor.factor
                and np.sign(d.contribution) == np.sign(factor.contribution)
            ]
            strongest = max(same_way, key=lambda d: abs(d.contribution))
            assert describe(catalog[strongest.feature], strongest.value) in factor.sentence
        for driver in explanation.drivers:
            verb = "raises" if driver.contribution > 0 else "lowers"
            if driver.contribution != 0:
                assert driver.sentence.endswith(f"this {verb} the odds.")
            if (
                isinstance(driver.value, float)
                and driver.value >= 1
                and driver.feature
                in (
                    "days_in_stage",
                    "deal_age_days",
                    "activities_total",
                    "days_since_last_activity",
                )
            ):
                assert f"{round(driver.value):,}" in driver.sentence


@pytest.fixture(scope="module")
def stacked(trained: Trained) -> tuple[TrendQueries, dict[str, np.ndarray], pd.DataFrame]:
    """Deals of the test quarter (young and old) now, 7 and 30 days earlier, computed by the
    same feature code in one call."""
    frame = trained.test_frame
    young = frame[frame["deal_age_days"] < 7].head(15)
    middle = frame[(frame["deal_age_days"] >= 8) & (frame["deal_age_days"] < 29)].head(15)
    old = frame[frame["deal_age_days"] > 60].sample(60, random_state=5)
    chosen = pd.concat([young, middle, old]).reset_index(drop=True)
    tables = DealTables.from_export(trained.export, trained.plan.attributes)
    codes = pd.Index(tables.opportunity_id).get_indexer(chosen["opportunity_id"])
    queries = trend_queries(tables, codes, to_ns(chosen["as_of"]))
    columns = feature_columns(
        tables,
        queries.deals,
        queries.as_of,
        plan=trained.plan,
        reference=OutcomeReference(tables),
    )
    return queries, columns, chosen


def test_trend_is_absent_for_deals_younger_than_the_window(
    trained: Trained, stacked: tuple[TrendQueries, dict[str, np.ndarray], pd.DataFrame]
) -> None:
    queries, columns, chosen = stacked
    explanations = explain_deals(trained.model, columns, trend=queries)
    age = chosen["deal_age_days"].to_numpy()
    for explanation, days_old in zip(explanations, age, strict=True):
        by_window = {w.days: w for w in explanation.trend}
        assert set(by_window) == {7, 30}
        for days, window in by_window.items():
            if days_old < days:
                assert not window.available
                assert window.change is None and window.probability_then is None
                assert window.sentence == (
                    f"No {days}-day trend: the deal is {math.floor(days_old)} "
                    f"day{'s' if math.floor(days_old) != 1 else ''} old."
                )
    assert sum(not w.available for e in explanations for w in e.trend) >= 15 * 2 + 15
    assert sum(w.available for e in explanations for w in e.trend) >= 60


def test_trend_change_matches_the_probabilities_and_its_factor_moves(
    trained: Trained, stacked: tuple[TrendQueries, dict[str, np.ndarray], pd.DataFrame]
) -> None:
    queries, columns, _ = stacked
    model = trained.model
    explanations = explain_deals(model, columns, trend=queries)
    now = queries.now_columns(columns)
    p_now = model.predict(now).won
    margin_now = model.won_.margin(model.encoder_.transform(now), threads=1)
    margins = model.won_.margin(model.encoder_.transform(columns), threads=1)
    p_all = model.predict(columns).won
    moved = 0
    for i, explanation in enumerate(explanations):
        for window in explanation.trend:
            if not window.available:
                continue
            past = queries.past_row[window.days][i]
            assert window.probability_then == pytest.approx(p_all[past], abs=1e-12)
            assert window.change == pytest.approx(p_now[i] - p_all[past], abs=1e-12)
            total = sum(move.change for move in window.moves)
            assert total == pytest.approx(margin_now[i] - margins[past], abs=1e-9)
            if window.change is not None and window.change != 0:
                moved += 1
                assert np.sign(total) == np.sign(window.change)
                verb = "rose" if window.change > 0 else "fell"
                if round(p_now[i] * 100) != round(p_all[past] * 100):
                    assert verb in window.sentence
            assert [abs(m.change) for m in window.moves] == sorted(
                (abs(m.change) for m in window.moves), reverse=True
            )
    assert moved >= 20
