"""The rolling-origin backtest of ../shared/spec/evaluation.md.

For each of the last K completed fiscal quarters Q: train at cut-off = Q's start (labels as
known then, features from rows stamped before each snapshot), then score every snapshot
taken during Q. The model and every baseline are scored on exactly the same snapshots and
judged against outcomes known at the end of the data.

Period forecasts are judged per team-quarter at weeks 1, 4, 8 and 12 of the quarter:
closed-won revenue so far plus each forecaster's view of the open pipeline (plus expected
new business, for the model) against the quarter's actual closed-won revenue. The shared
factor of the attainment distribution is fitted leave-one-quarter-out, so no quarter's
interval coverage is judged with a scale fitted on that quarter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from features.fiscal import completed_quarters, quarter_bounds
from features.labels import CensoringEffect, censoring_effect
from features.timestamps import to_ns
from models.attainment import NewBusinessModel, TeamQuarter, fit_dependence, simulate_attainment
from models.baselines import BASELINE_NAMES, Target, fit_baselines
from models.win import WinModel, WinModelConfig
from training.dataset import PreparedData
from training.metrics import deal_metrics, period_metrics

logger = logging.getLogger(__name__)

FORECASTERS = ("model", *BASELINE_NAMES)
WEEKS = (1, 4, 8, 12)
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class BacktestConfig:
    quarters: int = 4
    weeks: tuple[int, ...] = WEEKS
    model: WinModelConfig = field(default_factory=WinModelConfig)
    interval_level: float = 0.8
    attainment_draws: int = 2048


@dataclass
class BacktestResult:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # every test snapshot with labels and each forecaster's p
    periods: pd.DataFrame  # every team-quarter x week with forecasts, actuals, attainment
    dependence: float  # shared-factor scale fitted on all test quarters
    censoring: dict[str, CensoringEffect]


def quota_by_team(data: PreparedData, period: str) -> pd.Series:
    """Each team's quota for a period: its own row, else the sum of its reps' rows."""
    quotas = data.export.quotas
    if quotas.empty or "period" not in quotas.columns:
        return pd.Series(dtype=np.float64)
    rows = quotas[quotas["period"] == period]
    out = pd.Series(dtype=np.float64)
    if "owner_id" in rows.columns:
        teams = data.export.owners.drop_duplicates("owner_id").set_index("owner_id")["team"]
        reps = rows.dropna(subset=["owner_id"])
        out = reps.groupby(reps["owner_id"].map(teams).astype(str))["quota"].sum()
    if "team" in rows.columns:
        own = rows.dropna(subset=["team"]).groupby("team")["quota"].sum()
        out = own.combine_first(out)
    return out.astype(np.float64)


def _closed_deals(data: PreparedData) -> pd.DataFrame:
    deals = data.deals
    return deals[deals["close_time"].notna()][["team", "created_at", "close_time", "won", "amount"]]


def _won_between(data: PreparedData, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    deals = data.deals
    won = deals["won"] & (deals["close_time"] >= start) & (deals["close_time"] < end)
    return deals[won].groupby("team")["amount"].sum()


def _score_quarter(
    data: PreparedData, label: str, start: pd.Timestamp, end: pd.Timestamp, config: BacktestConfig
) -> tuple[pd.DataFrame, CensoringEffect, dict[str, Any]]:
    training = data.training_at(start)
    seen = (data.snapshots["as_of"] <= start).to_numpy()
    effect = censoring_effect(training, data.truth["won"].to_numpy()[seen])
    model = WinModel(data.plan, config.model).fit(training)
    frame = training.frame
    targets: tuple[tuple[Target, np.ndarray], ...] = (
        ("won", training.use_won),
        ("won_in_period", training.use_won_in_period),
    )
    baselines = {
        target: fit_baselines(frame[use], frame[target].to_numpy()[use], target=target)
        for target, use in targets
    }
    test = ((data.snapshots["as_of"] >= start) & (data.snapshots["as_of"] < end)).to_numpy()
    snaps = data.snapshots[test].reset_index(drop=True)
    truth = data.truth[test].reset_index(drop=True)
    prediction = model.predict(snaps)
    teams = data.deals.set_index("opportunity_id")["team"]
    _, quarter_end = quarter_bounds(
        to_ns(snaps["as_of"]), start_month=data.plan.config.fiscal_year_start_month
    )
    out = pd.DataFrame(
        {
            "quarter": label,
            "opportunity_id": snaps["opportunity_id"],
            "as_of": snaps["as_of"],
            "week": ((snaps["as_of"] - start) / pd.Timedelta(weeks=1)).astype(int) + 1,
            "stage": snaps["stage"],
            "forecast_category": snaps["forecast_category"],
            "team": snaps["opportunity_id"].map(teams).to_numpy(),
            "amount": snaps["amount"],
            "days_left": (quarter_end - to_ns(snaps["as_of"])) / 86_400e9,
            "won": truth["won"],
            "won_in_period": truth["won_in_period"],
            "p_model": prediction.won,
            "p_model_low": prediction.won_low,
            "p_model_high": prediction.won_high,
            "pin_model": prediction.in_period,
            "pin_model_low": prediction.in_period_low,
            "pin_model_high": prediction.in_period_high,
        }
    )
    for name in BASELINE_NAMES:
        out[f"p_{name}"] = baselines["won"][name].predict_proba(snaps)
        out[f"pin_{name}"] = baselines["won_in_period"][name].predict_proba(snaps)
        out[f"weight_{name}"] = baselines["won_in_period"][name].period_weights(snaps)
    return out, effect, model.training_summary_


@dataclass
class _PeriodCase:
    quarter: int  # fold index
    team: str
    week: int
    deals: pd.DataFrame
    won_to_date: float
    actual: float
    quota: float
    days_left: float
    new_business: NewBusinessModel

    def team_quarter(self) -> TeamQuarter:
        return TeamQuarter(
            probabilities=self.deals["pin_model"].to_numpy(),
            amounts=self.deals["amount"].to_numpy(),
            won_to_date=self.won_to_date,
            actual_revenue=self.actual,
            new_business=(self.new_business, self.team, self.days_left),
            probability_low=self.deals["pin_model_low"].to_numpy(),
            probability_high=self.deals["pin_model_high"].to_numpy(),
        )


def _period_cases(
    data: PreparedData,
    fold: int,
    label: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    predictions: pd.DataFrame,
    weeks: tuple[int, ...],
) -> list[_PeriodCase]:
    new_business = NewBusinessModel.fit(
        _closed_deals(data),
        as_of=start,
        fiscal_year_start_month=data.plan.config.fiscal_year_start_month,
    )
    actual = _won_between(data, start, end)
    quotas = quota_by_team(data, label)
    cases = []
    for week in weeks:
        at = start + pd.Timedelta(weeks=week - 1)
        if at >= end:
            continue
        so_far = _won_between(data, start, at)
        open_now = predictions[predictions["as_of"] == at]
        for team in sorted(set(data.deals["team"])):
            cases.append(
                _PeriodCase(
                    quarter=fold,
                    team=team,
                    week=week,
                    deals=open_now[open_now["team"] == team],
                    won_to_date=float(so_far.get(team, 0.0)),
                    actual=float(actual.get(team, 0.0)),
                    quota=float(quotas.get(team, np.nan)),
                    days_left=(end - at) / DAY,
                    new_business=new_business,
                )
            )
    return cases


def _evaluate_periods(
    cases: list[_PeriodCase], config: BacktestConfig
) -> tuple[pd.DataFrame, float]:
    """Forecasts, actuals and attainment per case; the dependence scale for all quarters."""
    folds = sorted({c.quarter for c in cases})
    scale_for: dict[int, float] = {}
    for fold in folds:
        others = [c.team_quarter() for c in cases if c.quarter != fold]
        scale_for[fold] = fit_dependence(others, draws=config.attainment_draws) if others else 0.0
    overall = fit_dependence([c.team_quarter() for c in cases], draws=config.attainment_draws)
    rows = []
    for case in tqdm(cases, desc="attainment", leave=False, disable=None):
        deals = case.deals
        amounts = deals["amount"].to_numpy()
        row: dict[str, Any] = {
            "quarter_index": case.quarter,
            "team": case.team,
            "week": case.week,
            "won_to_date": case.won_to_date,
            "actual": case.actual,
            "quota": case.quota,
            "open_deals": len(deals),
            "open_pipeline": float(amounts.sum()),
            "new_business": case.new_business.expected(case.team, case.days_left),
            "dependence": scale_for[case.quarter],
        }
        row["forecast_model"] = (
            case.won_to_date + float(deals["pin_model"].to_numpy() @ amounts) + row["new_business"]
        )
        for name in BASELINE_NAMES:
            row[f"forecast_{name}"] = case.won_to_date + float(
                deals[f"weight_{name}"].to_numpy() @ amounts
            )
        if np.isfinite(case.quota) and case.quota > 0:
            result = simulate_attainment(
                quota=case.quota,
                won_to_date=case.won_to_date,
                probabilities=deals["pin_model"].to_numpy(),
                amounts=amounts,
                probability_low=deals["pin_model_low"].to_numpy(),
                probability_high=deals["pin_model_high"].to_numpy(),
                new_business=(case.new_business, case.team, case.days_left),
                dependence=scale_for[case.quarter],
                seed=case.quarter * 1000 + case.week,
            )
            row.update(p_attain=result.p_attain, p10=result.p10, p90=result.p90)
        else:
            row.update(p_attain=np.nan, p10=np.nan, p90=np.nan)
        rows.append(row)
    return pd.DataFrame(rows), overall


def _deal_block(
    predictions: pd.DataFrame, prefix: str, target: str, weeks: tuple[int, ...]
) -> dict[str, Any]:
    block: dict[str, Any] = {}
    y = predictions[target].to_numpy(dtype=np.float64)
    for name in FORECASTERS:
        p = predictions[f"{prefix}{name}"].to_numpy(dtype=np.float64)
        by_week = {
            str(w): deal_metrics(
                p[(predictions["week"] == w).to_numpy()], y[(predictions["week"] == w).to_numpy()]
            )
            for w in weeks
        }
        by_stage = {
            str(stage): deal_metrics(
                p[(predictions["stage"] == stage).to_numpy()],
                y[(predictions["stage"] == stage).to_numpy()],
            )
            for stage in sorted(predictions["stage"].dropna().unique())
        }
        block[name] = {"overall": deal_metrics(p, y), "by_week": by_week, "by_stage": by_stage}
    return block


def _period_block(periods: pd.DataFrame, weeks: tuple[int, ...]) -> dict[str, Any]:
    block: dict[str, Any] = {}
    with_quota = periods[np.isfinite(periods["quota"]) & (periods["quota"] > 0)]
    attained = (with_quota["actual"] >= with_quota["quota"]).to_numpy(dtype=np.float64)
    team_quarters = periods[["quarter_index", "team"]].drop_duplicates()
    for name in FORECASTERS:
        forecast = periods[f"forecast_{name}"]
        by_week = {
            str(w): period_metrics(
                forecast[periods["week"] == w].to_numpy(),
                periods.loc[periods["week"] == w, "actual"].to_numpy(),
            )
            for w in weeks
        }
        if name == "model":
            p_attain = with_quota["p_attain"].to_numpy()
            inside = (with_quota["p10"] <= with_quota["actual"]) & (
                with_quota["actual"] <= with_quota["p90"]
            )
            coverage: float | None = float(inside.mean()) if len(inside) else None
        else:
            # A point forecast says the quota will be reached, or not.
            p_attain = (with_quota[f"forecast_{name}"] >= with_quota["quota"]).to_numpy(float)
            coverage = None
        block[name] = {
            "by_week": by_week,
            "attainment_brier": float(np.mean((p_attain - attained) ** 2))
            if len(attained)
            else None,
            "coverage_80": coverage,
            "n_team_quarters": len(team_quarters),
            "n_forecasts": len(with_quota),
        }
    return block


def run_backtest(
    data: PreparedData,
    *,
    config: BacktestConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    config = config or BacktestConfig()
    quarters = completed_quarters(
        data.data_end, config.quarters, start_month=data.plan.config.fiscal_year_start_month
    )
    all_predictions, cases = [], []
    censoring: dict[str, CensoringEffect] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for fold, (label, start, end) in enumerate(
        tqdm(quarters, desc="backtest quarters", disable=None)
    ):
        if progress:
            progress(label)
        predictions, effect, summary = _score_quarter(data, label, start, end, config)
        censoring[label], summaries[label] = effect, summary
        all_predictions.append(predictions)
        cases += _period_cases(data, fold, label, start, end, predictions, config.weeks)
    predictions = pd.concat(all_predictions, ignore_index=True)
    periods, dependence = _evaluate_periods(cases, config)
    periods.insert(0, "quarter", [quarters[i][0] for i in periods["quarter_index"]])
    metrics = {
        "data": {
            "fingerprint": data.export.fingerprint,
            "n_opportunities": data.export.n_opportunities,
            "test_quarters": [q[0] for q in quarters],
            "n_snapshots": len(predictions),
        },
        "deal": _deal_block(predictions, "p_", "won", config.weeks),
        "deal_in_period": _deal_block(predictions, "pin_", "won_in_period", config.weeks),
        "period": _period_block(periods, config.weeks),
        "attainment": {"dependence": dependence, "interval_level": config.interval_level},
        "censoring": {label: effect.to_dict() for label, effect in censoring.items()},
        "training": summaries,
    }
    return BacktestResult(metrics, predictions, periods, dependence, censoring)
