"""The rolling-origin backtest of ../shared/spec/evaluation.md.

Folds are fiscal quarters or months (`backtest_folds`): for each fold, train at cut-off =
the fold's start (labels as known then, features from rows stamped before each snapshot),
then score every snapshot taken during the fold. By default quarters, when the data allows
4 of them with `minimum_deals` won and lost deals resolved before the first origin; else
months, as many as the data allows (at most 12, at least 2): a young org is judged on its
months rather than not at all. The model and every baseline are scored on exactly the same
snapshots and judged against outcomes known at the end of the data; by horizon, with the
censoring weights of features.labels, so that outcomes still unknown then are stood in for
by those known rather than dropped.

Period forecasts are judged per team-quarter at weeks 1, 4, 8 and 12 of the quarter, for
every quarter that ended by the end of the data: closed-won revenue so far plus each
forecaster's view of the open pipeline (plus expected new business, for the model) against
the quarter's actual closed-won revenue. The quota, won to date and the model's forecast
are the team-quarter's of models.team_quarter, the one assembly the API and the manager's
page show, so the interval coverage measured here is that of what a manager reads. A
week's forecast comes from the fold that holds it. The shared factor of the attainment
distribution is fitted leave-one-quarter-out, so no quarter's interval coverage is judged
with a scale fitted on that quarter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import expit
from tqdm import tqdm

from features.errors import DealcastDataError
from features.fiscal import completed_quarters, quarter_bounds, quarter_labels, week_of_quarter
from features.labels import (
    CensoringEffect,
    FollowUp,
    TrainingSet,
    censoring_effect,
    label_horizon,
    target_name,
)
from features.state import state_at
from features.timestamps import to_ns
from models.attainment import NewBusinessModel, TeamQuarter, fit_dependence
from models.baselines import (
    BASELINE_NAMES,
    MANUAL_FALLBACK,
    MANUAL_WEIGHT,
    baselines_for,
    closes_in_period,
    has_manual_probabilities,
    typed_probability,
)
from models.risk import FLAG_CODES, MIN_LIFT, change_over, fit_risk_flags, flag_lift, flag_masks
from models.team_quarter import NewBusiness, Pipeline, quarter_forecast, team_quota, won_in_quarter
from models.win import WinModel, WinModelConfig
from training.dataset import PreparedData
from training.metrics import deal_metrics, period_metrics

logger = logging.getLogger(__name__)

FORECASTERS = ("model", *BASELINE_NAMES)  # manual_weight joins them when the export has it
WEEKS = (1, 4, 8, 12)
DAY = pd.Timedelta(days=1)
Step = Literal["auto", "quarter", "month"]
DEFAULT_QUARTERS = 4
MAX_MONTHS = 12


class NoBacktestFolds(DealcastDataError):
    """The data is too young for the backtest asked for."""


@dataclass(frozen=True)
class BacktestConfig:
    """- `step`: fold length; "auto" takes quarters when 4 qualify, else months.
    - `folds`: how many folds (default: 4 quarters, or up to 12 months)."""

    step: Step = "auto"
    folds: int | None = None
    weeks: tuple[int, ...] = WEEKS
    model: WinModelConfig = field(default_factory=WinModelConfig)
    interval_level: float = 0.8
    attainment_draws: int = 2048


@dataclass(frozen=True)
class Fold:
    label: str  # "2026-Q1" or "2026-03"
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass
class BacktestResult:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # every test snapshot with labels and each forecaster's p
    periods: pd.DataFrame  # every team-quarter x week with forecasts, actuals, attainment
    dependence: float  # shared-factor scale fitted on all test quarters
    censoring: dict[str, CensoringEffect]
    step: str = "quarter"
    repairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # every repaired row
    forecasters: tuple[str, ...] = FORECASTERS  # with manual_weight when the export has it


def _completed_months(before: pd.Timestamp, count: int) -> list[Fold]:
    """The last `count` calendar months that ended by `before`, oldest first."""
    last = pd.Timestamp(before).tz_convert("UTC").tz_localize(None).to_period("M")
    out = []
    for k in range(count, 0, -1):
        month = last - k
        start = month.to_timestamp().tz_localize("UTC")
        out.append(Fold(str(month), start, (month + 1).to_timestamp().tz_localize("UTC")))
    return out


def _candidates(data: PreparedData, step: Literal["quarter", "month"], count: int) -> list[Fold]:
    if step == "quarter":
        quarters = completed_quarters(
            data.data_end, count, start_month=data.plan.config.fiscal_year_start_month
        )
        return [Fold(label, start, end) for label, start, end in quarters]
    return _completed_months(data.data_end, count)


def backtest_folds(
    data: PreparedData, *, step: Step = "auto", folds: int | None = None, minimum_deals: int = 40
) -> tuple[Literal["quarter", "month"], list[Fold]]:
    """The folds the data allows, oldest first: of the last `folds` completed quarters (or
    months), those whose start has `minimum_deals` won and lost deals resolved before it."""

    def qualifying(kind: Literal["quarter", "month"], count: int) -> list[Fold]:
        return [
            fold
            for fold in _candidates(data, kind, count)
            if fold.start > data.data_start
            and min(data.resolved_deals(fold.start)) >= minimum_deals
        ]

    if step == "quarter":
        return "quarter", qualifying("quarter", folds or DEFAULT_QUARTERS)
    if step == "auto":
        quarters = qualifying("quarter", folds or DEFAULT_QUARTERS)
        if len(quarters) == (folds or DEFAULT_QUARTERS):
            return "quarter", quarters
    return "month", qualifying("month", folds or MAX_MONTHS)


def _fold_error(data: PreparedData, step: str, found: int, minimum_deals: int) -> str:
    won, lost = data.resolved_deals(data.data_end)
    return (
        f"the data allows {found} backtest fold(s) by {step} (each needs {minimum_deals} won "
        f"and {minimum_deals} lost deals resolved before it starts; by the end of the data "
        f"{won} won and {lost} lost are resolved); a backtest needs at least 2"
    )


def quota_by_team(data: PreparedData, period: str) -> pd.Series:
    """Each team's quota for a period (models.team_quarter.team_quota; NaN: none)."""
    owners = data.export.owners.drop_duplicates("owner_id")
    reps = owners.groupby(owners["team"].astype(str))["owner_id"].agg(
        lambda ids: [str(i) for i in ids]
    )
    teams = sorted(set(data.deals["team"]) | set(reps.index))
    return pd.Series(
        {
            team: team_quota(
                data.export.quotas, team=team, owners=reps.get(team, []), period=period
            )
            for team in teams
        },
        dtype=np.float64,
    )


def _closed_deals(data: PreparedData) -> pd.DataFrame:
    deals = data.deals
    return deals[deals["close_time"].notna()][["team", "created_at", "close_time", "won", "amount"]]


def _won_between(data: PreparedData, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Each team's revenue won in [start, end) by the deals' final outcomes: the actual."""
    deals = data.deals
    won = deals["won"] & (deals["close_time"] >= start) & (deals["close_time"] < end)
    return deals[won].groupby("team")["amount"].sum(min_count=1).fillna(0.0)


def _won_to_date(data: PreparedData, start: pd.Timestamp, at: pd.Timestamp) -> pd.Series:
    """Each team's won to date at `at`, by the deals' states then (models.team_quarter).

    Only deals with a row in [start, at] can be won in the quarter, and for those the last
    row of that window is the state at `at`: the rows before `start` need not be read."""
    history = data.export.history
    won = won_in_quarter(
        state_at(history[history["changed_at"] >= start], at),
        won_stages=data.export.stages.won_stages,
        start=start,
        when=at,
    )
    teams = data.deals.set_index("opportunity_id")["team"]
    return won.groupby(teams.reindex(won.index).to_numpy()).sum()


def forecasters_of(data: PreparedData) -> tuple[str, ...]:
    """The forecasters judged on this data: manual_weight only when some snapshot carries a
    typed probability (the export has manual probabilities)."""
    if has_manual_probabilities(data.snapshots):
        return (*FORECASTERS, MANUAL_WEIGHT)
    return FORECASTERS


def _score_fold(
    data: PreparedData, fold: Fold, config: BacktestConfig, forecasters: tuple[str, ...]
) -> tuple[pd.DataFrame, CensoringEffect, dict[str, Any]]:
    training = data.training_at(fold.start)
    seen = (data.snapshots["as_of"] <= fold.start).to_numpy()
    effect = censoring_effect(training, data.truth["won"].to_numpy()[seen])
    # The backtest judges `won` by its probability and `won_in_period` also by its interval
    # (the attainment forecast's): only the latter's interval members are trained here.
    model = WinModel(data.plan, config.model).fit(training, intervals=("won_in_period",))
    baselines = baselines_for(training)
    test = (
        (data.snapshots["as_of"] >= fold.start) & (data.snapshots["as_of"] < fold.end)
    ).to_numpy()
    snaps = data.snapshots[test].reset_index(drop=True)
    truth = data.truth[test].reset_index(drop=True)
    as_of = to_ns(snaps["as_of"])
    prediction = model.predict(snaps, as_of=as_of)
    teams = data.deals.set_index("opportunity_id")["team"]
    start_month = data.plan.config.fiscal_year_start_month
    _, quarter_end = quarter_bounds(as_of, start_month=start_month)
    out = pd.DataFrame(
        {
            "fold": fold.label,
            "quarter": quarter_labels(as_of, start_month=start_month),
            "opportunity_id": snaps["opportunity_id"],
            "as_of": snaps["as_of"],
            "week": week_of_quarter(as_of, start_month=start_month),
            "stage": snaps["stage"],
            "forecast_category": snaps["forecast_category"],
            "team": snaps["opportunity_id"].map(teams).to_numpy(),
            "amount": snaps["amount"],
            "close_date_in_quarter": snaps["close_date_in_quarter"],
            "days_left": (quarter_end - as_of) / 86_400e9,
            "won": truth["won"],
            "won_in_period": truth["won_in_period"],
            "p_model": prediction.won,
            "pin_model": prediction.in_period,
            "pin_model_low": prediction.in_period_low,
            "pin_model_high": prediction.in_period_high,
        }
    )
    risk = _add_risk_flags(out, data, fold, model, training, snaps, prediction.won)
    out["manual_typed"] = np.isfinite(typed_probability(snaps))
    baseline_names = [name for name in forecasters if name != "model"]
    for name in baseline_names:
        out[f"p_{name}"] = baselines["won"][name].predict_proba(snaps)
        out[f"pin_{name}"] = baselines["won_in_period"][name].predict_proba(snaps)
        out[f"weight_{name}"] = baselines["won_in_period"][name].period_weights(snaps)
    # By horizon: labels as known at the end of the data, weighted for what is still unknown.
    codes = data.deal_codes[test]
    followup = FollowUp(data.data_end.value - as_of)
    ends = training.horizons.ends(as_of, ever_days=training.ever_days)
    for horizon, end in ends.items():
        label, took = label_horizon(data.tables, codes, as_of, end, known_at=data.data_end)
        out[f"y_{horizon}"] = label
        out[f"w_{horizon}"] = followup.weights(took)
        out[f"h_model_{horizon}"] = prediction.horizons[horizon]
        for name in baseline_names:
            out[f"h_{name}_{horizon}"] = baselines[target_name(horizon)][name].predict_proba(snaps)
    return out, effect, {**model.training_summary_, "risk_flags": risk}


def _add_risk_flags(
    out: pd.DataFrame,
    data: PreparedData,
    fold: Fold,
    model: WinModel,
    training: TrainingSet,
    snaps: pd.DataFrame,
    won: np.ndarray,
) -> dict[str, Any]:
    """Every risk flag of each test snapshot (`flag_<code>`), and `flagged`: whether it
    carries a flag the fold's model raises (fitted on its training snapshots, models.risk).
    The 7-day change compares with the fold model's probability of the same deal a week
    earlier, the week before the fold included. Returns the fitted flags' summary."""
    risk = fit_risk_flags(model, training)
    before = (
        (data.snapshots["as_of"] >= fold.start - 7 * DAY) & (data.snapshots["as_of"] < fold.start)
    ).to_numpy()
    earlier = data.snapshots[before]
    target = model.won_
    p_earlier = (
        target.calibrate(
            expit(target.margin(model.encoder_.transform(earlier), threads=model.config.threads))
        )
        if len(earlier)
        else np.empty(0)
    )
    ids = np.concatenate([earlier["opportunity_id"].to_numpy(), snaps["opportunity_id"].to_numpy()])
    times = np.concatenate([to_ns(earlier["as_of"]), to_ns(snaps["as_of"])])
    change = change_over(ids, times, np.concatenate([p_earlier, won]))[len(earlier) :]
    masks = flag_masks(snaps, won, change_7d=change, thresholds=risk.thresholds)
    for code, mask in masks.items():
        out[f"flag_{code}"] = mask
    out["flagged"] = np.logical_or.reduce(
        [masks[code] for code in risk.raised_] or [np.zeros(len(snaps), bool)]
    )
    return risk.summary()


def _risk_block(predictions: pd.DataFrame, folds: list[Fold]) -> dict[str, Any]:
    """Each risk flag's lift on the test snapshots whose outcome (`won`, as known at the end
    of the data) is known, per fold and pooled, and the share of test snapshots (open deals)
    carrying a flag their fold's model raises."""
    lost = 1.0 - predictions["won"].to_numpy(dtype=np.float64)

    def scope(rows: np.ndarray) -> dict[str, Any]:
        flags = {
            code: flag_lift(predictions[f"flag_{code}"].to_numpy(dtype=bool)[rows], lost[rows])
            for code in FLAG_CODES
        }
        flagged = predictions["flagged"].to_numpy(dtype=bool)[rows]
        return {
            "share_flagged": float(flagged.mean()) if flagged.size else None,
            "n_snapshots": int(rows.sum()),
            "flags": {code: lift.to_dict() for code, lift in flags.items()},
        }

    fold = predictions["fold"].to_numpy(dtype=object)
    return {
        "min_lift": MIN_LIFT,
        "pooled": scope(np.ones(len(predictions), dtype=bool)),
        "by_fold": {f.label: scope(fold == f.label) for f in folds},
    }


@dataclass
class _PeriodCase:
    fold: str
    quarter: str
    team: str
    week: int
    deals: pd.DataFrame
    won_to_date: float
    actual: float
    quota: float
    days_left: float
    new_business: NewBusinessModel

    @property
    def amounts(self) -> np.ndarray:
        """The open deals' amounts as revenue: one not known yet counts for nothing
        (features.validation's repairs leave it unknown until one is entered)."""
        return np.nan_to_num(self.deals["amount"].to_numpy(dtype=np.float64), nan=0.0)

    def team_quarter(self) -> TeamQuarter:
        return TeamQuarter(
            probabilities=self.deals["pin_model"].to_numpy(),
            amounts=self.amounts,
            won_to_date=self.won_to_date,
            actual_revenue=self.actual,
            new_business=(self.new_business, self.team, self.days_left),
            probability_low=self.deals["pin_model_low"].to_numpy(),
            probability_high=self.deals["pin_model_high"].to_numpy(),
        )


def _period_cases(
    data: PreparedData, fold: Fold, predictions: pd.DataFrame, weeks: tuple[int, ...]
) -> list[_PeriodCase]:
    """The team-quarter forecasts of one fold: at each grid time of the fold that is week w
    of its quarter (w in `weeks`), for quarters that ended by the end of the data."""
    new_business = NewBusinessModel.fit(
        _closed_deals(data),
        as_of=fold.start,
        fiscal_year_start_month=data.plan.config.fiscal_year_start_month,
    )
    start_month = data.plan.config.fiscal_year_start_month
    cases = []
    teams = sorted(set(data.deals["team"]))
    times = pd.DatetimeIndex(sorted(predictions["as_of"].unique()))
    for at in times:
        at_ns = np.array([at.value])
        week = int(week_of_quarter(at_ns, start_month=start_month)[0])
        q_start_ns, q_end_ns = quarter_bounds(at_ns, start_month=start_month)
        q_start, q_end = pd.Timestamp(q_start_ns[0], tz="UTC"), pd.Timestamp(q_end_ns[0], tz="UTC")
        if week not in weeks or q_end > data.data_end:
            continue
        label = str(quarter_labels(at_ns, start_month=start_month)[0])
        actual = _won_between(data, q_start, q_end)
        so_far = _won_to_date(data, q_start, at)
        quotas = quota_by_team(data, label)
        open_now = predictions[predictions["as_of"] == at]
        for team in teams:
            cases.append(
                _PeriodCase(
                    fold=fold.label,
                    quarter=label,
                    team=team,
                    week=week,
                    deals=open_now[open_now["team"] == team],
                    won_to_date=float(so_far.get(team, 0.0)),
                    actual=float(actual.get(team, 0.0)),
                    quota=float(quotas.get(team, np.nan)),
                    days_left=(q_end - at) / DAY,
                    new_business=new_business,
                )
            )
    return cases


def _evaluate_periods(
    cases: list[_PeriodCase], config: BacktestConfig, forecasters: tuple[str, ...] = FORECASTERS
) -> tuple[pd.DataFrame, float]:
    """Forecasts, actuals and attainment per case; the dependence scale for all quarters."""
    quarters = sorted({c.quarter for c in cases})
    scale_for: dict[str, float] = {}
    for quarter in quarters:
        others = [c.team_quarter() for c in cases if c.quarter != quarter]
        scale_for[quarter] = (
            fit_dependence(others, draws=config.attainment_draws) if others else 0.0
        )
    overall = (
        fit_dependence([c.team_quarter() for c in cases], draws=config.attainment_draws)
        if cases
        else 0.0
    )
    rows = []
    for case in tqdm(cases, desc="attainment", leave=False, disable=None):
        deals = case.deals
        amounts = case.amounts
        figures = quarter_forecast(
            quota=case.quota,
            won_to_date=case.won_to_date,
            pipeline=Pipeline(
                probabilities=deals["pin_model"].to_numpy(dtype=np.float64),
                probability_low=deals["pin_model_low"].to_numpy(dtype=np.float64),
                probability_high=deals["pin_model_high"].to_numpy(dtype=np.float64),
                amounts=amounts,
                closes_in_period=closes_in_period(deals),
            ),
            new_business=NewBusiness(case.new_business, case.team, case.days_left),
            dependence=scale_for[case.quarter],
            seed=quarters.index(case.quarter) * 1000 + case.week,
        )
        row: dict[str, Any] = {
            "fold": case.fold,
            "quarter": case.quarter,
            "team": case.team,
            "week": case.week,
            "won_to_date": case.won_to_date,
            "actual": case.actual,
            "quota": case.quota,
            "open_deals": len(deals),
            "open_pipeline": figures.open_pipeline,
            "new_business": figures.new_business,
            "dependence": scale_for[case.quarter],
            "forecast_model": figures.expected_revenue,
        }
        for name in forecasters:
            if name == "model":
                continue
            row[f"forecast_{name}"] = case.won_to_date + float(
                deals[f"weight_{name}"].to_numpy() @ amounts
            )
        if MANUAL_WEIGHT in forecasters:
            row["manual_typed_deals"] = int(deals["manual_typed"].sum())
        attainment = figures.attainment
        if attainment is not None:
            row.update(p_attain=attainment.p_attain, p10=attainment.p10, p90=attainment.p90)
        else:
            row.update(p_attain=np.nan, p10=np.nan, p90=np.nan)
        rows.append(row)
    return pd.DataFrame(rows), overall


def _deal_block(
    predictions: pd.DataFrame,
    column: Callable[[str], str],
    target: str,
    weeks: tuple[int, ...],
    weight: str | None = None,
    forecasters: tuple[str, ...] = FORECASTERS,
) -> dict[str, Any]:
    block: dict[str, Any] = {}
    y = predictions[target].to_numpy(dtype=np.float64)
    w = None if weight is None else predictions[weight].to_numpy(dtype=np.float64)
    week = predictions["week"].to_numpy()
    stage = predictions["stage"].to_numpy(dtype=object)

    def metrics(p: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        return deal_metrics(p[mask], y[mask], None if w is None else w[mask])

    every = np.ones(len(predictions), dtype=bool)
    for name in forecasters:
        p = predictions[column(name)].to_numpy(dtype=np.float64)
        block[name] = {
            "overall": metrics(p, every),
            "by_week": {str(k): metrics(p, week == k) for k in weeks},
            "by_stage": {
                str(s): metrics(p, stage == s)
                for s in sorted(predictions["stage"].dropna().unique())
            },
        }
    if MANUAL_WEIGHT in forecasters:
        # What the comparison is about: the snapshots whose deal had a typed value (the others
        # are the fallback's), with the model and the fallback on the same snapshots.
        typed = predictions["manual_typed"].to_numpy(dtype=bool)
        on_typed = {
            name: metrics(predictions[column(name)].to_numpy(dtype=np.float64), typed)
            for name in ("model", MANUAL_FALLBACK, MANUAL_WEIGHT)
        }
        block[MANUAL_WEIGHT].update(
            fallback=MANUAL_FALLBACK,
            n_typed=on_typed[MANUAL_WEIGHT]["n"],  # of the snapshots behind `overall`
            on_typed=on_typed,
        )
    return block


def _period_block(
    periods: pd.DataFrame, weeks: tuple[int, ...], forecasters: tuple[str, ...] = FORECASTERS
) -> dict[str, Any]:
    block: dict[str, Any] = {}
    if periods.empty:
        periods = pd.DataFrame(
            columns=["quarter", "team", "week", "actual", "quota", "p_attain", "p10", "p90"]
            + [f"forecast_{name}" for name in forecasters]
            + (["manual_typed_deals"] if MANUAL_WEIGHT in forecasters else [])
        )
    with_quota = periods[np.isfinite(periods["quota"].astype(float)) & (periods["quota"] > 0)]
    attained = (with_quota["actual"] >= with_quota["quota"]).to_numpy(dtype=np.float64)
    team_quarters = periods[["quarter", "team"]].drop_duplicates()
    for name in forecasters:
        forecast = periods[f"forecast_{name}"]
        by_week = {
            str(w): period_metrics(
                forecast[periods["week"] == w].to_numpy(dtype=np.float64),
                periods.loc[periods["week"] == w, "actual"].to_numpy(dtype=np.float64),
            )
            for w in weeks
        }
        if name == "model":
            p_attain = with_quota["p_attain"].to_numpy(dtype=np.float64)
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
    if MANUAL_WEIGHT in forecasters:
        typed = periods[periods["manual_typed_deals"].astype(float) > 0]
        block[MANUAL_WEIGHT].update(
            fallback=MANUAL_FALLBACK,
            n_team_quarters_typed=len(typed[["quarter", "team"]].drop_duplicates()),
            n_forecasts_typed=len(typed),
        )
    return block


def _horizon_blocks(
    predictions: pd.DataFrame,
    horizons: tuple[str, ...],
    weeks: tuple[int, ...],
    forecasters: tuple[str, ...] = FORECASTERS,
) -> dict[str, Any]:
    return {
        horizon: _deal_block(
            predictions,
            lambda name, h=horizon: f"h_{name}_{h}",  # type: ignore[misc]
            f"y_{horizon}",
            weeks,
            weight=f"w_{horizon}",
            forecasters=forecasters,
        )
        for horizon in horizons
    }


def run_backtest(
    data: PreparedData,
    *,
    config: BacktestConfig | None = None,
    progress: Callable[[str], None] | None = None,
    require_folds: int = 2,
) -> BacktestResult:
    """The backtest on the folds the data allows; raises NoBacktestFolds when fewer than
    `require_folds` exist (`dealcast train` asks for 1: its gate runs on what exists)."""
    config = config or BacktestConfig()
    minimum = config.model.minimum_deals
    step, folds = backtest_folds(data, step=config.step, folds=config.folds, minimum_deals=minimum)
    if len(folds) < max(require_folds, 1):
        raise NoBacktestFolds(_fold_error(data, step, len(folds), minimum))
    logger.info("backtest by %s: %s", step, ", ".join(f.label for f in folds))
    all_predictions, cases = [], []
    censoring: dict[str, CensoringEffect] = {}
    summaries: dict[str, dict[str, Any]] = {}
    forecasters = forecasters_of(data)
    for fold in tqdm(folds, desc=f"backtest {step}s", disable=None):
        if progress:
            progress(fold.label)
        predictions, effect, summary = _score_fold(data, fold, config, forecasters)
        censoring[fold.label], summaries[fold.label] = effect, summary
        all_predictions.append(predictions)
        cases += _period_cases(data, fold, predictions, config.weeks)
    predictions = pd.concat(all_predictions, ignore_index=True)
    periods, dependence = _evaluate_periods(cases, config, forecasters)
    horizons = data.plan.config.horizons.names
    metrics = {
        "data": {
            "fingerprint": data.export.fingerprint,
            "n_opportunities": data.export.n_opportunities,
            "test_quarters": sorted(predictions["quarter"].unique().tolist()),
            "step": step,
            "folds": [f.label for f in folds],
            "n_snapshots": len(predictions),
            # What loading repaired (features.validation), by kind: the rows are in repairs.csv.
            "repairs": data.export.report.repairs.counts(),
        },
        "deal": _deal_block(
            predictions, lambda name: f"p_{name}", "won", config.weeks, forecasters=forecasters
        ),
        "deal_in_period": _deal_block(
            predictions,
            lambda name: f"pin_{name}",
            "won_in_period",
            config.weeks,
            forecasters=forecasters,
        ),
        "deal_by_horizon": _horizon_blocks(predictions, horizons, config.weeks, forecasters),
        "period": _period_block(periods, config.weeks, forecasters),
        "risk_flags": _risk_block(predictions, folds),
        "attainment": {"dependence": dependence, "interval_level": config.interval_level},
        "censoring": {label: effect.to_dict() for label, effect in censoring.items()},
        "training": summaries,
    }
    return BacktestResult(
        metrics,
        predictions,
        periods,
        dependence,
        censoring,
        step,
        repairs=data.export.report.repairs.to_frame(),
        forecasters=forecasters,
    )
