"""Scoring deals and pipelines with a bundle: the one path the service and the pyfunc use.

A request's deals become the same `DealTables` an export gives (features.payload), their
features come from the same `feature_columns` the training snapshots came from, at each
deal's `as_of` (default: now), and the outcome reference is the training data in the bundle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.deals import DealTables
from features.fiscal import quarter_bounds
from features.loading import CrmExport
from features.payload import PayloadInvalid, deal_tables_from_payloads
from features.snapshots import feature_columns, manual_probability_at, open_deal_queries
from features.timestamps import TimeLike, to_ns
from models.actions import EFFECTS_DISCLAIMER, Action, rank_actions
from models.attainment import AttainmentResult
from models.baseline_model import BASELINE_WARNING, BaselineWinModel
from models.baselines import MANUAL_WEIGHT
from models.bundle import DealcastBundle
from models.explain import (
    DealExplanation,
    Driver,
    FactorEffect,
    TrendWindow,
    explain_deals,
    trend_queries,
)
from models.risk import RiskFlag, RiskFlags, risk_level
from models.team_quarter import (
    ActivityRates,
    Pipeline,
    QuarterFigures,
    bundle_forecast,
    team_of_rep,
)
from models.win import Link, WinPrediction

# Letter grades of the calibrated win probability, for list views in the CRM.
GRADES: tuple[tuple[float, str], ...] = (
    (0.7, "A"),
    (0.5, "B"),
    (0.3, "C"),
    (0.15, "D"),
    (0.0, "E"),
)
BASELINE_NAMES = ("stage_weight_crm", "stage_weight_empirical", "commit")
# A score's two probabilities with their intervals, by the column names every output uses.
PROBABILITY_COLUMNS = (
    "win_probability",
    "win_probability_low",
    "win_probability_high",
    "win_in_period_probability",
    "win_in_period_probability_low",
    "win_in_period_probability_high",
)


def grade(probability: float) -> str:
    return next(letter for floor, letter in GRADES if probability >= floor)


def grades(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    return np.select([p >= floor for floor, _ in GRADES], [letter for _, letter in GRADES], "E")


@dataclass
class DealScore:
    opportunity_id: str
    as_of: str
    win_probability: float
    win_probability_interval: tuple[float, float]
    win_in_period_probability: float
    win_in_period_interval: tuple[float, float]
    # (horizon, its length in days, P(won within it)), shortest first.
    horizons: tuple[tuple[str, float, float], ...]
    baselines: dict[str, float]  # won probability by stage weight (CRM, empirical), commit
    baselines_in_period: dict[str, float]
    grade: str
    risk_level: str
    risk_flags: tuple[RiskFlag, ...]
    mode: str
    warnings: list[str] = field(default_factory=list)
    drivers: tuple[Driver, ...] = ()
    factors: tuple[FactorEffect, ...] = ()
    trend: tuple[TrendWindow, ...] = ()
    actions: tuple[Action, ...] = ()
    actions_disclaimer: str = EFFECTS_DISCLAIMER
    # With explanations: the margin's base value, the margin (base + every contribution) and
    # the link from the margin to win_probability.
    base_value: float | None = None
    margin: float | None = None
    link: Link | None = None
    amount: float = 0.0
    # Share of the amount each baseline counts in this quarter's forecast.
    period_weights: dict[str, float] = field(default_factory=dict)
    # The deal's close date at as_of is before the end of as_of's quarter (overdue included):
    # it counts in the pipeline coverage (models.team_quarter).
    closes_in_period: bool = True
    # The features it was scored from, by name (read when needed: the prediction log).
    features: Mapping[str, object] = field(default_factory=dict)

    def probabilities(self) -> dict[str, float]:
        """Both probabilities with their intervals, by the column names of the batch output
        (score_export), the pyfunc's and the prediction log's."""
        values = (
            self.win_probability,
            *self.win_probability_interval,
            self.win_in_period_probability,
            *self.win_in_period_interval,
        )
        return dict(zip(PROBABILITY_COLUMNS, values, strict=True))


@dataclass
class PipelineForecast:
    """A rep's or team's quarter (`figures`, models.team_quarter) with the scores it came
    from, the baselines' period forecasts and the at-risk deals."""

    figures: QuarterFigures
    baselines: dict[str, float]
    deals: list[DealScore]
    at_risk: list[DealScore]

    @property
    def attainment(self) -> AttainmentResult:
        """Against the quota; without one, against a nominal quota (read the quantiles)."""
        return self.figures.result

    @property
    def model_forecast(self) -> float:
        return self.figures.expected_revenue


def _as_of_values(as_of: Sequence[TimeLike | None] | TimeLike | None, n: int) -> np.ndarray:
    now = pd.Timestamp.now(tz="UTC")
    if as_of is None or isinstance(as_of, str | pd.Timestamp) or not isinstance(as_of, Sequence):
        values: list[Any] = [as_of] * n
    else:
        values = list(as_of)
    return to_ns([now if v is None else v for v in values])


class FeatureRow(Mapping[str, object]):
    """One scored deal's features, read from the request's feature columns when asked for
    (building a dict per deal would cost every request, logged or not)."""

    def __init__(self, columns: Mapping[str, np.ndarray], row: int) -> None:
        self._columns = columns
        self._row = row

    def __getitem__(self, name: str) -> object:
        return self._columns[name][self._row]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


class Scorer:
    """Scores with one bundle; cheap to call, expensive parts are built once in the bundle."""

    def __init__(self, bundle: DealcastBundle, *, version: str | None = None) -> None:
        self.bundle = bundle
        self.version = version

    @property
    def model_name(self) -> str:
        return str(self.bundle.metadata.get("name", "dealcast"))

    @staticmethod
    def _check(tables: DealTables, as_of: np.ndarray) -> None:
        """Rules only a deal and its as-of time can break: nothing stamped after as_of, and
        the deal open at as_of."""
        problems: dict[str, str] = {}
        history, activities = tables.history, tables.activities
        for table, stamp, deal, time in (
            ("history", "changed_at", history.deal, history.time),
            ("activities", "occurred_at", activities.deal, activities.time),
        ):
            late = time > as_of[deal]
            for i in np.unique(deal[late]):
                first = pd.Timestamp(int(time[late & (deal == i)].min()), tz="UTC")
                problems[f"deals[{i}].{table}"] = (
                    f"{int(np.sum(late & (deal == i)))} row(s) with {stamp} after as_of "
                    f"{pd.Timestamp(int(as_of[i]), tz='UTC').isoformat()}, the first at "
                    f"{first.isoformat()}"
                )
        for i in np.flatnonzero(tables.created > as_of):
            problems[f"deals[{i}].created_at"] = "the deal was created after as_of"
        last = history.index.ends - 1
        for i in np.flatnonzero(~history.is_open[last]):
            stage = tables.stages.all_stages[history.stage[last[i]]]
            problems.setdefault(
                f"deals[{i}].history",
                f"the deal is closed ({stage}) at as_of; only open deals are scored",
            )
        if problems:
            raise PayloadInvalid(problems)

    def score(
        self,
        deals: Sequence[Mapping[str, Any]],
        *,
        as_of: Sequence[TimeLike | None] | TimeLike | None = None,
        explain: bool = True,
        trend: bool = True,
        top_k: int = 5,
    ) -> list[DealScore]:
        """Scores of open deals at their as-of times (default now).

        `explain`: drivers, factors and ranked actions; `trend` (with explain): the 7- and
        30-day trend, which re-scores each deal as it stood then.
        """
        bundle = self.bundle
        plan, model = bundle.plan, bundle.model
        times = _as_of_values(as_of, len(deals))
        tables = deal_tables_from_payloads(deals, plan)
        self._check(tables, times)
        index = np.arange(len(deals))
        queries = trend_queries(tables, index, times) if explain and trend else None
        q_deals, q_times = (queries.deals, queries.as_of) if queries else (index, times)
        columns = feature_columns(tables, q_deals, q_times, plan=plan, reference=bundle.reference)
        now = {name: values[: len(deals)] for name, values in columns.items()}
        matrix = model.encoder_.transform(columns)  # once, for scores, SHAP and actions
        prediction = model.predict(now, matrix=matrix[: len(deals)], as_of=times)
        # The manager's typed probability rides beside the features (not one of them): the
        # manual_weight baseline reads it, and a deal shows that baseline only when it has one.
        frame = {**now, "manual_probability": manual_probability_at(tables, index, times)}
        typed = np.isfinite(frame["manual_probability"])
        names = [*BASELINE_NAMES, *(n for n in (MANUAL_WEIGHT,) if n in bundle.baselines["won"])]
        baselines = {
            target: {name: bundle.baselines[target][name].predict_proba(frame) for name in names}
            for target in ("won", "won_in_period")
        }
        weights = {
            name: bundle.baselines["won_in_period"][name].period_weights(frame) for name in names
        }
        explanations: list[DealExplanation | None] = [None] * len(deals)
        change_7d = None
        actions = None
        if explain:
            if isinstance(model, BaselineWinModel):
                # The baseline explains itself: the stage and its rate, no invented drivers
                # and no actions (nothing but the stage moves its answer).
                explanations = list(
                    model.explain(
                        columns,
                        n=len(deals),
                        past_row=dict(queries.past_row) if queries else None,
                        absent=dict(queries.absent) if queries else None,
                    )
                )
            else:
                explanations = list(
                    explain_deals(model, columns, trend=queries, top_k=top_k, matrix=matrix)
                )
                actions = rank_actions(
                    model,
                    tables,
                    deals=index,
                    as_of=times,
                    reference=bundle.reference,
                    columns=now,
                    matrix=matrix[: len(deals)],
                    top_k=top_k,
                )
            change_7d = np.array([_change(e, 7) for e in explanations if e is not None])
        # A bundle pickled before flags were fitted raises every flag.
        risk = getattr(bundle, "risk", None) or RiskFlags()
        flags = risk.flags(now, prediction.won, change_7d=change_7d)
        unseen = prediction.unseen
        _, quarter_end = quarter_bounds(times, start_month=plan.config.fiscal_year_start_month)
        # _check leaves no row after as_of: a deal's last row is its state then.
        closes = tables.history.close_ns[tables.history.index.ends - 1] < quarter_end
        scores = []
        for i, deal in enumerate(deals):
            warnings = []
            if prediction.mode == "baseline":
                warnings.append(BASELINE_WARNING)
            if prediction.mode == "small-data":
                warnings.append(
                    "small-data mode: few resolved deals to learn from; probabilities lean on "
                    "the empirical stage weights and intervals are wide"
                )
            for name, mask in unseen.items():
                if mask[i]:
                    warnings.append(
                        f"{name} {now[name][i]!r} was never seen in training: the "
                        "interval is widened"
                    )
            if now["owner_closed_deals"][i] < 5:
                warnings.append("the owner has fewer than 5 closed deals in the training data")
            explanation = explanations[i]
            scores.append(
                DealScore(
                    opportunity_id=str(deal["opportunity_id"]),
                    as_of=pd.Timestamp(int(times[i]), tz="UTC").isoformat(),
                    win_probability=float(prediction.won[i]),
                    win_probability_interval=(
                        float(prediction.won_low[i]),
                        float(prediction.won_high[i]),
                    ),
                    win_in_period_probability=float(prediction.in_period[i]),
                    win_in_period_interval=(
                        float(prediction.in_period_low[i]),
                        float(prediction.in_period_high[i]),
                    ),
                    horizons=_horizons_of(prediction, i),
                    baselines={
                        k: float(v[i])
                        for k, v in baselines["won"].items()
                        if k != MANUAL_WEIGHT or typed[i]
                    },
                    baselines_in_period={
                        k: float(v[i])
                        for k, v in baselines["won_in_period"].items()
                        if k != MANUAL_WEIGHT or typed[i]
                    },
                    grade=grade(float(prediction.won[i])),
                    risk_level=risk_level(flags[i]),
                    risk_flags=flags[i],
                    mode=prediction.mode,
                    warnings=warnings,
                    drivers=explanation.drivers if explanation else (),
                    factors=explanation.factors if explanation else (),
                    trend=explanation.trend if explanation else (),
                    actions=actions[i].actions if actions else (),
                    base_value=explanation.base_value if explanation else None,
                    margin=explanation.margin if explanation else None,
                    link=model.won_link() if explanation else None,
                    amount=float(now["amount"][i]),
                    period_weights={k: float(v[i]) for k, v in weights.items()},
                    closes_in_period=bool(closes[i]),
                    features=FeatureRow(now, i),
                )
            )
        return scores

    def forecast_pipeline(
        self,
        *,
        quota: float,
        won_to_date: float,
        deals: Sequence[Mapping[str, Any]],
        team: str | None,
        period_end: pd.Timestamp,
        owner_id: str | None = None,
        as_of: TimeLike | None = None,
        explain: bool = True,
        seed: int = 0,
    ) -> PipelineForecast:
        """P(reaching quota) and the revenue distribution for an open pipeline: the team's
        (`team`), or a rep's (`owner_id`, whose team is the one its deals' owner rows name,
        else the one the model's reference knows)."""
        scores = self.score(deals, as_of=as_of, explain=explain) if deals else []
        when = pd.Timestamp(int(_as_of_values(as_of, 1)[0]), tz="UTC")
        if owner_id is not None:
            named = next(
                (
                    str(owner["team"])
                    for deal in deals
                    if isinstance(owner := deal.get("owner"), Mapping) and owner.get("team")
                ),
                team,
            )
            team = team_of_rep(self.bundle.reference, owner_id, named)
        return self.forecast_scores(
            scores,
            quota=quota,
            won_to_date=won_to_date,
            team=team or "",
            owner_id=owner_id,
            when=when,
            period_end=period_end,
            seed=seed,
        )

    def forecast_scores(
        self,
        scores: Sequence[DealScore],
        *,
        quota: float | None,
        won_to_date: float,
        team: str,
        owner_id: str | None,
        when: pd.Timestamp,
        period_end: pd.Timestamp,
        process_rates: ActivityRates | None = None,
        seed: int = 0,
    ) -> PipelineForecast:
        """The quarter of scored open deals (models.team_quarter.bundle_forecast), with the
        baselines' forecasts beside it and the flagged deals, by the revenue the forecast
        counts on from them."""
        figures = bundle_forecast(
            self.bundle,
            Pipeline.of_scores(scores),
            quota=quota,
            won_to_date=won_to_date,
            team=team,
            owner_id=owner_id,
            when=when,
            period_end=period_end,
            process_rates=process_rates,
            seed=seed,
        )
        # An amount not known yet counts for nothing, in the model's forecast and the baselines'.
        amounts = np.nan_to_num(np.array([s.amount for s in scores], dtype=np.float64), nan=0.0)
        # manual_weight when some deal carries a typed probability (the others count at their
        # CRM stage weight, as in the backtest: models.baselines.ManualWeight).
        typed = [MANUAL_WEIGHT] if any(MANUAL_WEIGHT in s.baselines for s in scores) else []
        baselines = {
            name: won_to_date
            + float(np.dot([s.period_weights[name] for s in scores], amounts) if scores else 0.0)
            for name in (*BASELINE_NAMES, *typed)
        }
        at_risk = sorted(
            (s for s in scores if s.risk_level != "low"),
            key=lambda s: -(s.amount * s.win_in_period_probability),
        )
        return PipelineForecast(
            figures=figures, baselines=baselines, deals=list(scores), at_risk=at_risk
        )


def _horizons_of(prediction: WinPrediction, i: int) -> tuple[tuple[str, float, float], ...]:
    rows = [
        (name, float(prediction.horizon_days[name][i]), float(p[i]))
        for name, p in prediction.horizons.items()
    ]
    return tuple(sorted(rows, key=lambda row: row[1]))


def _change(explanation: DealExplanation, days: int) -> float:
    for window in explanation.trend:
        if window.days == days and window.change is not None:
            return float(window.change)
    return math.nan


@dataclass(frozen=True)
class ExportScores:
    """A batch's scores (`frame`, score_export's columns) with what the prediction log keeps
    beside them: the features each deal was scored from, by name, and the in-period
    baselines, each aligned with the frame's rows."""

    frame: pd.DataFrame
    features: Mapping[str, np.ndarray]
    baselines_in_period: Mapping[str, np.ndarray]


def score_export(
    export: CrmExport, scorer: Scorer, *, as_of: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Scores of every deal open at `as_of` (default: the export's last change), with the
    baselines beside them: the batch form of `Scorer.score`, without explanations."""
    return score_open_deals(export, scorer, as_of=as_of).frame


def score_open_deals(
    export: CrmExport, scorer: Scorer, *, as_of: pd.Timestamp | None = None
) -> ExportScores:
    """`score_export`'s scores with their features and in-period baselines."""
    bundle = scorer.bundle
    plan = bundle.plan
    unknown = set(export.history["stage"].unique()) - set(plan.stages.all_stages)
    if unknown:
        raise PayloadInvalid(
            {
                "opportunity_history.stage": (
                    f"stages {sorted(unknown)} are not in the model's stage model "
                    f"({', '.join(plan.stages.all_stages)})"
                )
            }
        )
    when = pd.Timestamp(as_of) if as_of is not None else export.history["changed_at"].max()
    tables = DealTables.from_export(export, plan.attributes, stages=plan.stages)
    deals, times = open_deal_queries(tables, pd.DatetimeIndex([when]))
    columns = feature_columns(tables, deals, times, plan=plan, reference=bundle.reference)
    prediction = bundle.model.predict(columns, as_of=times)
    out = pd.DataFrame(
        {
            "opportunity_id": tables.opportunity_id[deals],
            "as_of": when.isoformat(),
            "stage": columns["stage"],
            "forecast_category": columns["forecast_category"],
            "amount": columns["amount"],
            "win_probability": prediction.won,
            "win_probability_low": prediction.won_low,
            "win_probability_high": prediction.won_high,
            "win_in_period_probability": prediction.in_period,
            "win_in_period_probability_low": prediction.in_period_low,
            "win_in_period_probability_high": prediction.in_period_high,
        }
    )
    for horizon, p in prediction.horizons.items():
        out[f"p_won_{horizon}"] = p
        out[f"days_{horizon}"] = prediction.horizon_days[horizon]
    for name in BASELINE_NAMES:
        out[name] = bundle.baselines["won"][name].predict_proba(columns)
    out["grade"] = grades(prediction.won)
    out["mode"] = prediction.mode
    in_period = {
        name: bundle.baselines["won_in_period"][name].predict_proba(columns)
        for name in BASELINE_NAMES
    }
    return ExportScores(frame=out, features=columns, baselines_in_period=in_period)
