"""Why a deal scores what it scores, and what moved the score lately.

Attributions are LightGBM's own TreeSHAP (`pred_contrib`) on the main `won` booster: exact
path-dependent Shapley values in log-odds. The trees are boosted from the stage weight's
log-odds, and that offset's deviation from the overall rate is attributed to the stage, so
base value + sum of attributions equals the model's margin (`models.win._Target.margin`) for
every deal; the tests check it to 1e-6 and the trees' part against `shap.TreeExplainer`.
(SHAP's own tree algorithm does not handle LightGBM's
categorical splits correctly; for LightGBM boosters `shap.TreeExplainer` itself delegates to
`pred_contrib`, which is why we call it directly and build no explainer per request.) They
are explanations of the margin; the calibrated probability is a monotone map of it.

Attributions are grouped into the manager's factors (models.factors) by plain summation, so
a factor's total is exactly the sum of its features' attributions, and each factor gets one
sentence with the values behind it.

The trend compares the deal now with the same deal 7 and 30 days earlier, both computed by
the same feature code (`trend_queries` + `features.snapshots.feature_columns`). Which factors
moved the score is the exact Shapley decomposition of the margin change over factors, the
"players" being the factors whose features changed: each subset of them is switched to its
current values on the earlier deal and re-scored (at most 2^6 rows, all windows and deals in
one prediction). It answers "what changed between then and now" directly and its factor
moves add up to the margin change. A deal younger than the window (or not open then) has no
trend for that window, and the output says why.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from features.catalog import FeatureSpec
from features.deals import DAY_NS, DealTables
from models.encoding import Columns
from models.factors import COMPANIONS, describe, factor_layout
from models.win import WinModel

TREND_WINDOWS_DAYS: tuple[int, ...] = (7, 30)
# A factor whose attributions net to less than this (log-odds) reads as "little effect".
NEUTRAL_LOGODDS = 0.05
# Below this many rows a prediction runs on one thread: waking OpenMP threads costs more than
# a handful of rows (measured: 8 ms instead of 0.03 ms for one row on a busy 2-core host).
# TreeSHAP costs about a millisecond per row, so it goes parallel from two rows on.
SINGLE_THREAD_ROWS = {"raw": 256, "contrib": 2}

Direction = Literal["raises", "lowers", "neutral"]
_WINDOW_SUFFIX = re.compile(r"_\d+d$")


def prediction_threads(model: WinModel, rows: int, *, work: Literal["raw", "contrib"]) -> int:
    """Threads for one LightGBM prediction of `rows` rows."""
    return 1 if rows < SINGLE_THREAD_ROWS[work] else model.config.threads


def calibrated_won(model: WinModel, margin: np.ndarray, *, stage: np.ndarray) -> np.ndarray:
    """The calibrated `won` probability from the main booster's raw margin: exactly what
    `WinModel.predict(...).won` returns, without scoring the interval members. (`stage` is
    no longer read: the stage enters through the margin's offset.)"""
    return model.won_.calibrate(expit(margin))


def calibrated_in_period(
    model: WinModel, margin: np.ndarray, *, stage: np.ndarray, won: np.ndarray
) -> np.ndarray:
    """The calibrated in-period probability from its booster's raw margin, capped by the won
    probability: exactly `WinModel.predict(...).in_period`. (`stage` is no longer read:
    the stage enters through the margin's offset.)"""
    return np.minimum(model.in_period_.calibrate(expit(margin)), won)


@dataclass(frozen=True)
class Attributions:
    """Per-deal TreeSHAP values (log-odds), features in the model's matrix order."""

    features: tuple[str, ...]
    values: np.ndarray  # (deals, features)
    base: np.ndarray  # (deals,), the same expected value for every deal

    @property
    def margin(self) -> np.ndarray:
        """Base + sum of attributions: the raw margin the attributions explain."""
        return self.base + self.values.sum(axis=1)


def attribute(model: WinModel, columns: Columns) -> Attributions:
    """TreeSHAP attributions of the `won` model's raw margin for each deal."""
    return attribute_matrix(model, model.encoder_.transform(columns))


def attribute_matrix(model: WinModel, matrix: np.ndarray) -> Attributions:
    """As `attribute`, on an encoded matrix (one LightGBM call)."""
    contributions = model.won_.contributions(
        matrix, threads=prediction_threads(model, len(matrix), work="contrib")
    )
    return Attributions(
        features=tuple(model.encoder_.names),
        values=contributions[:, :-1],
        base=contributions[:, -1],
    )


@dataclass(frozen=True)
class Driver:
    """One feature's pull on the odds, with its value and a sentence."""

    factor: str
    feature: str
    value: float | str | None
    contribution: float  # log-odds
    sentence: str


@dataclass(frozen=True)
class FactorEffect:
    """A manager's factor: its net pull (sum of its features' attributions) and why."""

    factor: str
    contribution: float  # log-odds
    direction: Direction
    drivers: tuple[Driver, ...]  # its strongest features, by |contribution|
    sentence: str


@dataclass(frozen=True)
class FactorMove:
    factor: str
    change: float  # log-odds


@dataclass(frozen=True)
class TrendWindow:
    """The win probability now against `days` days ago, and which factors moved it.

    When the deal is younger than the window, or was not open then, every number is None
    and `sentence` says why."""

    days: int
    probability_then: float | None
    change: float | None  # probability now - then
    moves: tuple[FactorMove, ...]  # by |change|; they add up to the margin change
    sentence: str

    @property
    def available(self) -> bool:
        return self.change is not None


@dataclass(frozen=True)
class DealExplanation:
    base_value: float
    margin: float  # base_value + sum of all attributions
    probability: float  # calibrated won probability
    factors: tuple[FactorEffect, ...]  # every factor, by |contribution|
    drivers: tuple[Driver, ...]  # top features across factors, by |contribution|
    trend: tuple[TrendWindow, ...]  # one per window; empty when no history was given


@dataclass(frozen=True)
class TrendQueries:
    """Feature queries for deals now and at each trend window, stacked for ONE
    `feature_columns` call: the first `n` rows are the deals now, in the given order.

    `past_row[w][i]` is the stacked row of deal i `w` days ago, -1 when there is none, and
    `absent[w][i]` then says why."""

    deals: np.ndarray
    as_of: np.ndarray
    n: int
    windows: tuple[int, ...]
    past_row: Mapping[int, np.ndarray]
    absent: Mapping[int, tuple[str | None, ...]]

    def now_columns(self, columns: Columns) -> dict[str, np.ndarray]:
        """The deals' current columns out of the stacked ones."""
        names = columns.columns if isinstance(columns, pd.DataFrame) else columns.keys()
        return {str(name): np.asarray(columns[str(name)])[: self.n] for name in names}


def trend_queries(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    windows: tuple[int, ...] = TREND_WINDOWS_DAYS,
) -> TrendQueries:
    """The (deal, as-of) queries of the deals now and `windows` days earlier, where the deal
    existed and was open then."""
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    n = deals.size
    history = tables.history
    out_deals, out_as_of = [deals], [as_of]
    past_row: dict[int, np.ndarray] = {}
    absent: dict[int, tuple[str | None, ...]] = {}
    next_row = n
    age_days = (as_of - tables.created[deals]) / DAY_NS
    for days in windows:
        then = as_of - days * DAY_NS
        row = history.index.count_until(deals, then) - 1
        recorded = row >= history.index.starts[deals]
        was_open = recorded & history.is_open[np.maximum(row, 0)]
        created = tables.created[deals] <= then
        ok = created & was_open
        rows = np.full(n, -1, dtype=np.int64)
        rows[ok] = next_row + np.arange(int(ok.sum()))
        next_row += int(ok.sum())
        past_row[days] = rows
        reasons: list[str | None] = []
        for i in range(n):
            if ok[i]:
                reasons.append(None)
            elif not created[i]:
                reasons.append(f"No {days}-day trend: the deal is {_day_count(age_days[i])} old.")
            elif not recorded[i]:
                reasons.append(f"No {days}-day trend: the CRM has no record of it {days} days ago.")
            else:
                reasons.append(f"No {days}-day trend: the deal was not open {days} days ago.")
        absent[days] = tuple(reasons)
        out_deals.append(deals[ok])
        out_as_of.append(then[ok])
    return TrendQueries(
        deals=np.concatenate(out_deals),
        as_of=np.concatenate(out_as_of),
        n=n,
        windows=tuple(windows),
        past_row=past_row,
        absent=absent,
    )


def explain_deals(
    model: WinModel,
    columns: Columns,
    *,
    trend: TrendQueries | None = None,
    top_k: int = 5,
    matrix: np.ndarray | None = None,
) -> list[DealExplanation]:
    """Attributions grouped into factors, top drivers and (given `trend`) the 7- and 30-day
    trend of each deal.

    Without `trend`, `columns` are the deals now. With it, `columns` are the stacked rows of
    `trend.deals` / `trend.as_of` and the first `trend.n` are the deals now. One TreeSHAP call
    for the deals now and one raw prediction for all trend windows. `matrix`, when given, is
    the encoding of `columns`."""
    catalog = _catalog_in_matrix_order(model)
    if matrix is None:
        matrix = model.encoder_.transform(columns)
    n = trend.n if trend is not None else len(matrix)
    attributions = attribute_matrix(model, matrix[:n])
    stage = np.asarray(columns["stage"], dtype=object)
    margin = attributions.margin
    probability = calibrated_won(model, margin, stage=stage[:n])
    membership, factor_names = factor_layout(catalog)
    totals = attributions.values @ membership
    reader = _Reader(
        catalog=catalog,
        matrix=matrix,
        categorical={
            j: np.asarray(columns[spec.name], dtype=object)
            for j, spec in enumerate(catalog)
            if spec.kind == "categorical"
        },
        factor_of=tuple(int(g) for g in np.argmax(membership, axis=1)),
        factor_names=factor_names,
    )
    trends = (
        _trends(model, matrix, stage, trend, membership, factor_names)
        if trend is not None
        else [() for _ in range(n)]
    )
    return [
        DealExplanation(
            base_value=float(attributions.base[i]),
            margin=float(margin[i]),
            probability=float(probability[i]),
            factors=reader.factors(i, attributions.values[i], totals[i]),
            drivers=reader.drivers(i, attributions.values[i], top_k),
            trend=trends[i],
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class _Reader:
    """Turns one deal's attributions into drivers and factor sentences."""

    catalog: tuple[FeatureSpec, ...]
    matrix: np.ndarray
    categorical: dict[int, np.ndarray]
    factor_of: tuple[int, ...]
    factor_names: tuple[str, ...]
    # A feature's phrase, by (deal, feature): the factors and the top drivers quote the
    # same features, and a phrase costs more than the lookup.
    _phrases: dict[tuple[int, int], str] = field(default_factory=dict)

    def value(self, i: int, j: int) -> float | str | None:
        if j in self.categorical:
            raw = self.categorical[j][i]
            return None if pd.isna(raw) else str(raw)
        number = float(self.matrix[i, j])
        return None if math.isnan(number) else number

    def phrase(self, i: int, j: int) -> str:
        """`describe` of feature j, with the companion feature it quotes (models.factors)."""
        known = self._phrases.get((i, j))
        if known is not None:
            return known
        pair = COMPANIONS.get(self.catalog[j].name)
        other = self.column_of.get(pair[0]) if pair is not None else None
        companion = self.value(i, other) if other is not None else None
        phrase = self._phrases[(i, j)] = describe(self.catalog[j], self.value(i, j), companion)
        return phrase

    @functools.cached_property
    def column_of(self) -> dict[str, int]:
        return {spec.name: j for j, spec in enumerate(self.catalog)}

    def driver(self, i: int, j: int, contribution: float) -> Driver:
        value = self.value(i, j)
        phrase = self.phrase(i, j)
        return Driver(
            factor=self.factor_names[self.factor_of[j]],
            feature=self.catalog[j].name,
            value=value,
            contribution=contribution,
            sentence=f"{_capital(phrase)}; this {_direction(contribution, 0.0)} the odds.",
        )

    def drivers(self, i: int, row: np.ndarray, top_k: int) -> tuple[Driver, ...]:
        order = np.argsort(-np.abs(row), kind="stable")[:top_k]
        return tuple(self.driver(i, int(j), float(row[j])) for j in order)

    def factors(self, i: int, row: np.ndarray, totals: np.ndarray) -> tuple[FactorEffect, ...]:
        by_factor: list[list[int]] = [[] for _ in self.factor_names]
        for j in np.argsort(-np.abs(row), kind="stable").tolist():
            by_factor[self.factor_of[j]].append(j)
        values: list[float] = row.tolist()
        effects = []
        for g in np.argsort(-np.abs(totals), kind="stable").tolist():
            members = by_factor[g]
            total = float(totals[g])
            direction = _direction(total, NEUTRAL_LOGODDS)
            agreeing = _distinct(
                [j for j in members if _sign(values[j]) == _sign(total)], self.catalog
            )[:2]
            effects.append(
                FactorEffect(
                    factor=self.factor_names[g],
                    contribution=total,
                    direction=direction,
                    drivers=tuple(self.driver(i, j, values[j]) for j in members[:3]),
                    sentence=_factor_sentence(
                        self.factor_names[g],
                        direction,
                        [self.phrase(i, j) for j in agreeing],
                    ),
                )
            )
        return tuple(effects)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@dataclass(frozen=True)
class _Pair:
    """A deal now and `days` earlier; its factor subsets are rows start..start + 2^g - 1."""

    deal: int
    days: int
    past: int  # stacked row of the earlier deal
    factors: np.ndarray  # the g factors whose features changed
    start: int

    @property
    def end(self) -> int:
        return self.start + (1 << self.factors.size)


def _trends(
    model: WinModel,
    matrix: np.ndarray,
    stage: np.ndarray,
    trend: TrendQueries,
    membership: np.ndarray,
    factor_names: tuple[str, ...],
) -> list[tuple[TrendWindow, ...]]:
    """Each deal's trend windows: one raw prediction for every factor subset of every
    (deal, window) pair. Subsets are in bitmask order: the first row is the deal as it was,
    the last the deal now."""
    pairs: list[_Pair] = []
    blocks: list[np.ndarray] = []
    start = 0
    for days in trend.windows:
        for deal in np.flatnonzero(trend.past_row[days] >= 0):
            past = int(trend.past_row[days][deal])
            now_row, then_row = matrix[deal], matrix[past]
            same = (now_row == then_row) | (np.isnan(now_row) & np.isnan(then_row))
            changed = np.flatnonzero(membership[~same].any(axis=0))
            masks, _ = _subsets(changed.size)
            switched = (masks.astype(np.float64) @ membership[:, changed].T) > 0
            blocks.append(np.where(switched, now_row, then_row))
            pairs.append(_Pair(int(deal), days, past, changed, start))
            start += len(masks)
    found: dict[tuple[int, int], TrendWindow] = {}
    if pairs:
        rows = np.concatenate(blocks)
        values = model.won_.margin(rows, threads=prediction_threads(model, len(rows), work="raw"))
        p_then = calibrated_won(
            model,
            values[[pair.start for pair in pairs]],
            stage=stage[[pair.past for pair in pairs]],
        )
        p_now = calibrated_won(
            model,
            values[[pair.end - 1 for pair in pairs]],
            stage=stage[[pair.deal for pair in pairs]],
        )
        for pair, then, now in zip(pairs, p_then, p_now, strict=True):
            _, weights = _subsets(pair.factors.size)
            shapley = weights @ values[pair.start : pair.end]
            # A factor whose features changed without moving the margin is not a move.
            moves = sorted(
                (
                    FactorMove(factor_names[g], float(v))
                    for g, v in zip(pair.factors, shapley, strict=True)
                    if abs(v) > 1e-12
                ),
                key=lambda move: -abs(move.change),
            )
            found[(pair.deal, pair.days)] = TrendWindow(
                days=pair.days,
                probability_then=float(then),
                change=float(now - then),
                moves=tuple(moves),
                sentence=_trend_sentence(pair.days, float(then), float(now), moves),
            )
    return [
        tuple(
            found.get((i, days))
            or TrendWindow(
                days=days,
                probability_then=None,
                change=None,
                moves=(),
                sentence=trend.absent[days][i] or "",
            )
            for days in trend.windows
        )
        for i in range(trend.n)
    ]


@functools.cache
def _subsets(players: int) -> tuple[np.ndarray, np.ndarray]:
    """(subset membership (2^p x p), Shapley weights (p x 2^p)) for p players: the Shapley
    value of player k is weights[k] @ v, v the game's value on each subset, subsets ordered
    by bitmask so the first is empty and the last is everyone."""
    count = 1 << players
    masks = ((np.arange(count)[:, None] >> np.arange(players)) & 1).astype(bool)
    sizes = masks.sum(axis=1)
    weights = np.zeros((players, count))
    for k in range(players):
        with_k = masks[:, k]
        # v(S + k) - v(S) for |S| = s is weighted s! (p - s - 1)! / p!.
        s_without = sizes - with_k
        w = np.array(
            [
                math.factorial(s) * math.factorial(players - s - 1) / math.factorial(players)
                for s in s_without
            ]
        )
        weights[k] = np.where(with_k, w, -w)
    masks.setflags(write=False)
    weights.setflags(write=False)
    return masks, weights


def _catalog_in_matrix_order(model: WinModel) -> tuple[FeatureSpec, ...]:
    """The plan's catalog, which is the matrix's column order for every fitted model."""
    catalog = model.plan.catalog
    if [spec.name for spec in catalog] != model.encoder_.names:
        raise ValueError("the model's encoder and its feature plan list different features")
    return catalog


def _distinct(features: list[int], catalog: tuple[FeatureSpec, ...]) -> list[int]:
    """Features with one of each activity kind: "no meetings in the last 30 days" already says
    what "no meetings in the last 90 days" would add to a sentence."""
    seen: set[str] = set()
    out = []
    for j in features:
        stem = _WINDOW_SUFFIX.sub("", catalog[j].name)
        if stem not in seen:
            seen.add(stem)
            out.append(j)
    return out


def _direction(value: float, neutral: float) -> Direction:
    if abs(value) < neutral or value == 0.0:
        return "neutral"
    return "raises" if value > 0 else "lowers"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _factor_sentence(factor: str, direction: Direction, phrases: list[str]) -> str:
    if direction == "neutral":
        return f"{_capital(factor)} has little net effect on the odds."
    pull = "up" if direction == "raises" else "down"
    return f"{_capital(factor)} is pulling the odds {pull}: {' and '.join(phrases)}."


def _trend_sentence(days: int, then: float, now: float, moves: list[FactorMove]) -> str:
    span = f"Over the last {days} days"
    if round(now * 100) == round(then * 100):
        return f"{span} the win probability held at {now:.0%}."
    verb = "rose" if now > then else "fell"
    sign = 1.0 if now > then else -1.0
    pushing = [m.factor for m in moves if m.change * sign >= NEUTRAL_LOGODDS][:2]
    against = [m.factor for m in moves if -m.change * sign >= NEUTRAL_LOGODDS][:1]
    text = f"{span} the win probability {verb} from {then:.0%} to {now:.0%}"
    if pushing:
        text += f", mostly through {' and '.join(pushing)}"
    if against:
        text += f"; {against[0]} pulled the other way"
    return text + "."


def _day_count(days: float) -> str:
    whole = max(math.floor(days), 0)
    return "1 day" if whole == 1 else f"{whole} days"
