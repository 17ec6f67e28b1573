"""The manager's page as data: one team's quarter seen at one time, every number computed.

`build_manager_view` turns a CRM export, a scorer, a team and an as-of time into a typed
`ManagerView`; `serving.page.render` only formats it. Keeping the two apart lets the CLI and
the service render the same view and lets tests check numbers without parsing HTML.

Everything is point-in-time: the export is cut at `as_of` (`export_as_of`), so the deals are
scored exactly as the CRM would send them then, and nothing after `as_of` is visible.

Definitions (shown on the page, too): the quarter, quota, won to date, open deals, team and
rep attainment (a rep's with its share of the team's new business), coverage against the
3-5x target, the target decomposition (own win rate and deal size, deals and pipeline
needed), the process targets and the deal flow are those of models.team_quarter, the one
assembly `/v1/teams/{team}/forecast` and `/v1/attainment` answer with: the page embeds the
route's JSON (`FORECAST_JSON_ID`) and shows the same numbers.
- At risk: flagged deals (risk level medium or high), by expected value at risk = amount x
  in-period win probability (the revenue the forecast counts on from them).

A rep's page (`build_rep_view`, `RepView`) is read from the same team quarter: the rep's row
of the team page (`RepSummary`: forecast, quota, won, P(attain), gap, Commit hit rate, forecast
review) and the rep's baselines, with every open deal of the rep as the team page's at-risk
deals are shown (the same `AtRiskDeal` lines), ranked by value at risk, flagged or not.

The fan chart (`FanPoint`): projected closed-won revenue at the end of each remaining fiscal
week. An open deal is won in the period with its calibrated in-period probability p; the page
places that win at the deal's expected close date (an overdue date counts as now, a date
after the quarter as its last day), so by week end w the deal contributes with probability p
if its date falls before w, else 0. New business by w is the team's new-business model for a
window of (w - as_of) days: deals that can be created and won within that time. Each week's
distribution is `models.attainment.simulate_attainment` with the model's shared factor (so
deals move together, as in the headline), `FAN_DRAWS` Monte-Carlo draws and a fixed seed; the
last point is the headline forecast itself, so the chart ends exactly on the numbers above it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.errors import DealcastError
from features.loading import CrmExport
from features.reliability import CommitReliability, commit_reliability
from features.timestamps import TimeLike, to_ns
from models.actions import EFFECTS_DISCLAIMER
from models.attainment import AttainmentResult, simulate_attainment
from models.baselines import MANUAL_WEIGHT
from models.explain import Driver
from models.forecast_review import ForecastReview, model_label, records_of
from models.forecast_store import ForecastStore, keep_and_review
from models.monitor_summary import QuarterOutcome
from models.scoring import BASELINE_NAMES, DealScore, PipelineForecast, Scorer
from models.team_quarter import (
    DealFlow,
    Gap,
    TeamQuarterForecast,
    TeamQuarterInputError,
    build_team_quarter,
    team_reps,
    teams_of,
)
from serving.present import team_forecast_response

logger = logging.getLogger(__name__)

FORECAST_JSON_ID = "dealcast-forecast"  # the script element holding the forecast route's JSON
AT_RISK_SHOWN = 10  # deals listed in full; the rest are counted and summed
LOWERING_SHOWN = 3  # drivers pulling an at-risk deal's odds down, shown first
RAISING_SHOWN = 2  # and what holds them up
ACTIONS_SHOWN = 3
REPS_NAMED = 50  # in the error for a rep not in the team; the rest are counted
FAN_DRAWS = 4096  # P10 / P90 to about a percent of the spread, in milliseconds per week
WEEK = pd.Timedelta(days=7)
SHORT_WEEK = pd.Timedelta(days=4)
DAY = pd.Timedelta(days=1)

FORECAST_LABELS: Mapping[str, str] = {
    "model": "dealcast model",
    "stage_weight_crm": "Stage weight (CRM)",
    "stage_weight_empirical": "Stage weight (empirical)",
    "commit": "Commit",
    "manual_weight": "Manager's weight",
}
FORECAST_DESCRIPTIONS: Mapping[str, str] = {
    "model": "won to date + each open deal's amount x its in-period win probability "
    "+ expected new business",
    "stage_weight_crm": "won to date + amount x the CRM's stage probability, deals closing "
    "this quarter",
    "stage_weight_empirical": "won to date + amount x the historical win rate of the stage, "
    "deals closing this quarter",
    "commit": "won to date + the amount of Commit deals closing this quarter",
    "manual_weight": "won to date + amount x the probability the manager typed, deals closing "
    "this quarter (a deal without one at its CRM stage weight)",
}


class PageInputError(TeamQuarterInputError):
    """The page cannot be built for this team or time; `field` names which, the message why."""


@dataclass(frozen=True)
class ForecastLine:
    """One forecaster's closed-won revenue forecast for the quarter."""

    name: str  # model, stage_weight_crm, stage_weight_empirical, commit
    label: str
    value: float
    description: str


@dataclass(frozen=True)
class RepSummary:
    """One rep's quarter (models.team_quarter): quota, won, forecast, P(attain), the gap."""

    owner_id: str
    quota: float | None
    won_to_date: float
    open_deals: int
    open_pipeline: float
    forecast: float  # expected revenue: won + open deals x probability + new business share
    at_risk_deals: int
    attainment: AttainmentResult | None  # None without a quota
    gap: Gap | None = None  # None without a quota
    new_business: float = 0.0
    # The rep's Commit calls won, shrunk toward the team's (features.reliability), as the
    # model read it at as_of, and the closed Commit deals behind it; None: nothing closed yet.
    commit_hit_rate: float | None = None
    commit_deals: int = 0
    review: ForecastReview | None = None  # against the rep's previous forecast and quota


@dataclass(frozen=True)
class DriverLine:
    factor: str
    direction: str  # "raises" or "lowers"
    sentence: str


@dataclass(frozen=True)
class ActionLine:
    text: str
    delta_probability: float  # won probability with the action - now
    expected_value: float  # delta x amount


@dataclass(frozen=True)
class AtRiskDeal:
    opportunity_id: str
    owner_id: str
    stage: str
    forecast_category: str | None
    amount: float
    close_date: pd.Timestamp | None
    win_probability: float
    win_in_period_probability: float
    win_in_period_interval: tuple[float, float]
    value_at_risk: float  # amount x in-period probability
    risk_level: str
    reasons: tuple[str, ...]  # the risk flags' reasons, most severe first
    drivers: tuple[DriverLine, ...]  # strongest pulls on the odds, by |contribution|
    trend: str | None  # the 7-day trend in a sentence
    actions: tuple[ActionLine, ...]  # ranked by expected value
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class FanPoint:
    """The projected distribution of closed-won revenue at one time of the quarter."""

    at: pd.Timestamp
    week: int  # fiscal week of the quarter that ends at `at` (1-based)
    p10: float
    p50: float
    p90: float
    expected: float


@dataclass(frozen=True)
class ModelInfo:
    uri: str | None
    version: str | None
    trained_at: str | None
    data_end: str | None
    mode: str | None  # "full", "small-data" or "baseline"; None with no deal scored
    # The backtest's share of team-quarters whose actual revenue fell in the 80% range
    # (P10-P90), and how many team-quarters that is; None when the backtest had none.
    range_coverage: float | None = None
    range_team_quarters: int | None = None


@dataclass(frozen=True)
class ManagerView:
    team: str
    period: str  # YYYY-Qn
    period_start: pd.Timestamp
    period_end: pd.Timestamp  # exclusive
    as_of: pd.Timestamp
    quota: float | None
    won_to_date: float
    open_deals: int
    attainment: AttainmentResult | None  # None without a quota
    forecasts: tuple[ForecastLine, ...]  # model first, then the baselines
    reps: tuple[RepSummary, ...]
    at_risk: tuple[AtRiskDeal, ...]  # the first AT_RISK_SHOWN by value at risk
    at_risk_count: int
    at_risk_value: float  # summed over every flagged deal
    changes: DealFlow
    coverage: Gap | None  # None without a quota
    fan: tuple[FanPoint, ...]  # remaining week ends, the last at the quarter's end
    won_path: tuple[tuple[pd.Timestamp, float], ...]  # closed-won so far, week by week
    model: ModelInfo
    actions_disclaimer: str = EFFECTS_DISCLAIMER
    team_commit_hit_rate: float | None = None  # the team's Commit calls won (shrunk)
    # `/v1/teams/{team}/forecast`'s answer for this team and time, as JSON text.
    forecast_json: str = ""
    # The team's forecast against the previous one kept and its quota (models.forecast_review).
    review: ForecastReview | None = None
    # Last quarter's forecasts against what happened, from the latest `dealcast monitor`.
    last_quarter: QuarterOutcome | None = None

    @property
    def days_left(self) -> float:
        return max((self.period_end - self.as_of) / DAY, 0.0)

    @property
    def expected_revenue(self) -> float:
        return next(f.value for f in self.forecasts if f.name == "model")


@dataclass(frozen=True)
class RepView:
    """One rep's quarter seen at one time, from the same team quarter as the team's page:
    the rep's line of the team page (`rep`) in full, the baselines beside the rep's forecast,
    and every open deal of the rep with what drives it and what to do."""

    team: str
    owner_id: str
    period: str
    period_start: pd.Timestamp
    period_end: pd.Timestamp  # exclusive
    as_of: pd.Timestamp
    rep: RepSummary  # the team page's row of this rep, and its forecast review
    forecasts: tuple[ForecastLine, ...]  # the rep's: model first, then the baselines
    deals: tuple[AtRiskDeal, ...]  # every open deal of the rep, by value at risk
    model: ModelInfo
    team_commit_hit_rate: float | None = None
    actions_disclaimer: str = EFFECTS_DISCLAIMER

    @property
    def quota(self) -> float | None:
        return self.rep.quota

    @property
    def won_to_date(self) -> float:
        return self.rep.won_to_date

    @property
    def open_deals(self) -> int:
        return self.rep.open_deals

    @property
    def attainment(self) -> AttainmentResult | None:
        return self.rep.attainment

    @property
    def coverage(self) -> Gap | None:
        return self.rep.gap

    @property
    def review(self) -> ForecastReview | None:
        return self.rep.review

    @property
    def at_risk_count(self) -> int:
        return self.rep.at_risk_deals

    @property
    def at_risk_value(self) -> float:
        return value_at_risk(self.deals)

    @property
    def days_left(self) -> float:
        return max((self.period_end - self.as_of) / DAY, 0.0)

    @property
    def expected_revenue(self) -> float:
        return next(f.value for f in self.forecasts if f.name == "model")


class QuarterPage(Protocol):
    """What the team's page and a rep's page both show of a quarter: the render functions
    the two share (serving.page.render) read only these."""

    @property
    def period(self) -> str: ...
    @property
    def period_start(self) -> pd.Timestamp: ...
    @property
    def period_end(self) -> pd.Timestamp: ...
    @property
    def as_of(self) -> pd.Timestamp: ...
    @property
    def quota(self) -> float | None: ...
    @property
    def won_to_date(self) -> float: ...
    @property
    def open_deals(self) -> int: ...
    @property
    def attainment(self) -> AttainmentResult | None: ...
    @property
    def forecasts(self) -> tuple[ForecastLine, ...]: ...
    @property
    def at_risk_count(self) -> int: ...
    @property
    def at_risk_value(self) -> float: ...
    @property
    def model(self) -> ModelInfo: ...
    @property
    def days_left(self) -> float: ...
    @property
    def expected_revenue(self) -> float: ...


class RepNotInTeam(DealcastError):
    """The rep asked for is not one of the team's reps (the owners table's)."""

    def __init__(self, team: str, owner_id: str, reps: Sequence[str]) -> None:
        self.team = team
        self.owner_id = owner_id
        self.reps = tuple(reps)
        shown = ", ".join(self.reps[:REPS_NAMED])
        if len(self.reps) > REPS_NAMED:
            shown += f" and {len(self.reps) - REPS_NAMED} more"
        super().__init__(
            f"{owner_id!r} is not a rep of team {team!r} in the export's owners table; "
            f"its reps: {shown or 'none'}"
        )


# --------------------------------------------------------------------------- the view


def build_manager_view(
    export: CrmExport,
    scorer: Scorer,
    *,
    team: str,
    as_of: TimeLike | None = None,
    model_uri: str | None = None,
    seed: int = 0,
    store: ForecastStore | None = None,
    last_quarter: QuarterOutcome | None = None,
) -> ManagerView:
    """The manager's page for `team` in the fiscal quarter containing `as_of` (default: the
    export's last change). `model_uri` is shown on the page (where the scores came from) and
    names the model in the kept forecasts. `store`: where the team's and reps' forecasts are
    kept and their previous ones read (models.forecast_store); without it each is reviewed
    against its quota only. `last_quarter`: the latest monitor report's judgement of the
    team's past quarter (models.monitor_summary.last_quarter), shown as it is.
    """
    quarter, reviews = _reviewed_quarter(
        export, scorer, team=team, as_of=as_of, model_uri=model_uri, seed=seed, store=store
    )
    when = quarter.as_of
    period_start, period_end = quarter.quarter.start, quarter.quarter.end
    forecast = quarter.forecast
    figures = forecast.figures
    close_dates = _close_dates(quarter)
    reps, commit = _rep_summaries(quarter, scorer, reviews)
    at_risk = _deal_lines(quarter, forecast.at_risk, close_dates=close_dates)
    return ManagerView(
        team=team,
        period=quarter.quarter.period,
        period_start=period_start,
        period_end=period_end,
        as_of=when,
        quota=figures.quota,
        won_to_date=figures.won_to_date,
        open_deals=figures.open_deals,
        attainment=figures.attainment,
        forecasts=_forecast_lines(forecast),
        reps=reps,
        at_risk=tuple(at_risk[:AT_RISK_SHOWN]),
        at_risk_count=len(at_risk),
        at_risk_value=value_at_risk(at_risk),
        changes=quarter.flow,
        coverage=figures.gap,
        fan=_fan(
            scorer,
            forecast,
            close_dates=close_dates,
            team=team,
            when=when,
            period_start=period_start,
            period_end=period_end,
            quota=figures.quota or 1.0,
            seed=seed,
        ),
        won_path=_won_path(quarter.won_rows, period_start=period_start, when=when),
        model=_model_info(scorer, quarter, model_uri),
        team_commit_hit_rate=_team_commit_hit_rate(commit, quarter),
        forecast_json=team_forecast_response(quarter, reviews).model_dump_json(),
        review=reviews[None],
        last_quarter=last_quarter,
    )


def build_rep_view(
    export: CrmExport,
    scorer: Scorer,
    *,
    team: str,
    owner_id: str,
    as_of: TimeLike | None = None,
    model_uri: str | None = None,
    seed: int = 0,
    store: ForecastStore | None = None,
) -> RepView:
    """The page of rep `owner_id` of `team`, from the team's quarter exactly as the team's
    page builds it (`build_manager_view`'s arguments mean the same): the same figures, review
    and deal lines, so the two pages agree. Raises RepNotInTeam for a rep of another team
    or of none."""
    if team in teams_of(export):  # an unknown team is the quarter's error, as on the team page
        reps = team_reps(export, team)
        if owner_id not in reps:
            raise RepNotInTeam(team, owner_id, reps)
    quarter, reviews = _reviewed_quarter(
        export, scorer, team=team, as_of=as_of, model_uri=model_uri, seed=seed, store=store
    )
    position = quarter.owners.index(owner_id)
    summaries, commit = _rep_summaries(quarter, scorer, reviews)
    forecast = quarter.reps[position].forecast
    lines = _deal_lines(quarter, forecast.deals, close_dates=_close_dates(quarter))
    return RepView(
        team=team,
        owner_id=owner_id,
        period=quarter.quarter.period,
        period_start=quarter.quarter.start,
        period_end=quarter.quarter.end,
        as_of=quarter.as_of,
        rep=summaries[position],
        forecasts=_forecast_lines(forecast),
        deals=tuple(sorted(lines, key=_by_value_at_risk)),
        model=_model_info(scorer, quarter, model_uri),
        team_commit_hit_rate=_team_commit_hit_rate(commit, quarter),
    )


def _by_value_at_risk(deal: AtRiskDeal) -> tuple[float, str]:
    """Most revenue counted on first (as the scorer orders the flagged deals); a deal whose
    amount is not known yet, last."""
    value = deal.value_at_risk
    return (-value if math.isfinite(value) else math.inf, deal.opportunity_id)


def _reviewed_quarter(
    export: CrmExport,
    scorer: Scorer,
    *,
    team: str,
    as_of: TimeLike | None,
    model_uri: str | None,
    seed: int,
    store: ForecastStore | None,
) -> tuple[TeamQuarterForecast, dict[str | None, ForecastReview]]:
    """The team's quarter (models.team_quarter) and each forecast of it reviewed against the
    previous one kept (the team's under None, each rep's under its id), then kept."""
    try:
        quarter = build_team_quarter(export, scorer, team=team, as_of=as_of, seed=seed)
    except TeamQuarterInputError as error:
        raise PageInputError(error.field, error.problem) from error
    reviews = keep_and_review(
        store, records_of(quarter, model=model_label(model_uri, scorer.bundle.metadata))
    )
    return quarter, reviews


def _close_dates(quarter: TeamQuarterForecast) -> dict[str, pd.Timestamp | None]:
    """Each open deal's expected close date at as_of (None: not set)."""
    return {
        str(k): (None if pd.isna(v) else pd.Timestamp(v))
        for k, v in quarter.open_rows["close_date"].items()
    }


def _deal_lines(
    quarter: TeamQuarterForecast,
    scores: Sequence[DealScore],
    *,
    close_dates: Mapping[str, pd.Timestamp | None],
) -> list[AtRiskDeal]:
    """The page's line of each scored open deal, in the order given."""
    open_rows = quarter.open_rows
    categories = (
        open_rows["forecast_category"].astype(object).where(open_rows["forecast_category"].notna())
        if "forecast_category" in open_rows.columns
        else pd.Series(None, index=open_rows.index, dtype=object)
    )
    return [
        _at_risk_deal(
            s,
            owner=quarter.owner_of.get(s.opportunity_id, ""),
            stage=str(open_rows.at[s.opportunity_id, "stage"]),
            category=_text(categories.get(s.opportunity_id)),
            close_date=close_dates.get(s.opportunity_id),
        )
        for s in scores
    ]


def value_at_risk(deals: Iterable[AtRiskDeal]) -> float:
    """The revenue the forecast counts on from the flagged deals among `deals`."""
    return float(sum(d.value_at_risk for d in deals if d.risk_level != "low"))


def _rep_summaries(
    quarter: TeamQuarterForecast,
    scorer: Scorer,
    reviews: Mapping[str | None, ForecastReview],
) -> tuple[tuple[RepSummary, ...], CommitReliability]:
    """Each rep's line, in the quarter's order of reps, and the Commit hit rates behind it."""
    commit = _commit_reliability(scorer, quarter.owners, team=quarter.team, when=quarter.as_of)
    reps = tuple(
        _rep_summary(
            rep.forecast,
            owner_id=rep.owner_id,
            commit_hit_rate=_finite(commit.rep_rate[k]),
            commit_deals=int(commit.rep_closed[k]),
            review=reviews[rep.owner_id],
        )
        for k, rep in enumerate(quarter.reps)
    )
    return reps, commit


def _team_commit_hit_rate(commit: CommitReliability, quarter: TeamQuarterForecast) -> float | None:
    return _finite(commit.team_rate[0]) if len(quarter.owners) else None


def _model_info(scorer: Scorer, quarter: TeamQuarterForecast, model_uri: str | None) -> ModelInfo:
    """Where the scores came from; the mode is the one the team's deals were scored in."""
    metadata = scorer.bundle.metadata
    deals = quarter.forecast.deals
    return ModelInfo(
        uri=model_uri,
        version=scorer.version,
        trained_at=_text(metadata.get("trained_at")),
        data_end=_text((metadata.get("data_window") or {}).get("end")),
        mode=deals[0].mode if deals else None,
        **_range_coverage(metadata.get("backtest") or {}),
    )


def _range_coverage(backtest: Mapping[str, Any]) -> dict[str, Any]:
    """The backtest's coverage of the 80% revenue range, from the bundle's headline
    metrics (`period.model.coverage_80` and its team-quarter count)."""
    coverage = _finite(backtest.get("period.model.coverage_80", math.nan))
    count = _finite(backtest.get("period.model.coverage_80_team_quarters", math.nan))
    return {
        "range_coverage": coverage,
        "range_team_quarters": int(count) if coverage is not None and count is not None else None,
    }


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _forecast_lines(forecast: PipelineForecast) -> tuple[ForecastLine, ...]:
    values = {"model": forecast.model_forecast, **forecast.baselines}
    return tuple(
        ForecastLine(
            name=name,
            label=FORECAST_LABELS[name],
            value=float(values[name]),
            description=FORECAST_DESCRIPTIONS[name],
        )
        # The manager's weight only where the export carries typed probabilities.
        for name in ("model", *BASELINE_NAMES, MANUAL_WEIGHT)
        if name in values
    )


def _rep_summary(
    forecast: PipelineForecast,
    *,
    owner_id: str,
    commit_hit_rate: float | None,
    commit_deals: int,
    review: ForecastReview | None = None,
) -> RepSummary:
    figures = forecast.figures
    return RepSummary(
        owner_id=owner_id,
        quota=figures.quota,
        won_to_date=figures.won_to_date,
        open_deals=figures.open_deals,
        open_pipeline=figures.open_pipeline,
        forecast=figures.expected_revenue,
        at_risk_deals=sum(1 for s in forecast.deals if s.risk_level != "low"),
        attainment=figures.attainment,
        gap=figures.gap,
        new_business=figures.new_business,
        commit_hit_rate=commit_hit_rate,
        commit_deals=commit_deals,
        review=review,
    )


def _commit_reliability(
    scorer: Scorer, owners: Sequence[str], *, team: str, when: pd.Timestamp
) -> CommitReliability:
    """The reps' Commit hit rates as the model's reference knew them at `when` (deals closed
    strictly before it), the same numbers the model's commit-reliability features read."""
    context = scorer.bundle.reference.context_at(int(when.value))
    ids = np.array(list(owners), dtype=object)
    return commit_reliability(
        context.commit, context.owners, ids, np.full(ids.size, team, dtype=object)
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _at_risk_deal(
    score: DealScore,
    *,
    owner: str,
    stage: str,
    category: str | None,
    close_date: pd.Timestamp | None,
) -> AtRiskDeal:
    week = next((w for w in score.trend if w.days == 7), None)
    return AtRiskDeal(
        opportunity_id=score.opportunity_id,
        owner_id=owner,
        stage=stage,
        forecast_category=category,
        amount=score.amount,
        close_date=close_date,
        win_probability=score.win_probability,
        win_in_period_probability=score.win_in_period_probability,
        win_in_period_interval=score.win_in_period_interval,
        value_at_risk=score.amount * score.win_in_period_probability,
        risk_level=score.risk_level,
        reasons=tuple(flag.reason for flag in score.risk_flags),
        drivers=_drivers(score),
        trend=week.sentence if week is not None else None,
        actions=tuple(
            ActionLine(
                text=a.text,
                delta_probability=a.delta_probability,
                expected_value=a.expected_value,
            )
            for a in score.actions[:ACTIONS_SHOWN]
        ),
        warnings=tuple(score.warnings),
    )


def _drivers(score: DealScore) -> tuple[DriverLine, ...]:
    """What pulls an at-risk deal's odds down (strongest first), then what holds them up.

    A manager reading an at-risk deal asks "why is it at risk", so the lowering drivers lead
    even when a raising one is stronger; candidates are the top drivers overall and each
    factor's own top drivers, so a factor's strongest negative is never lost.
    """
    seen: dict[str, Driver] = {}
    for driver in (*score.drivers, *(d for f in score.factors for d in f.drivers)):
        seen.setdefault(driver.feature, driver)
    lowering = sorted(
        (d for d in seen.values() if d.contribution < 0), key=lambda d: d.contribution
    )
    raising = sorted(
        (d for d in seen.values() if d.contribution > 0), key=lambda d: -d.contribution
    )
    return tuple(
        DriverLine(factor=d.factor, direction=direction, sentence=d.sentence)
        for direction, chosen in (
            ("lowers", lowering[:LOWERING_SHOWN]),
            ("raises", raising[:RAISING_SHOWN]),
        )
        for d in chosen
    )


# --------------------------------------------------------------------------- fan chart


def week_ends(
    when: pd.Timestamp, period_start: pd.Timestamp, period_end: pd.Timestamp
) -> list[tuple[pd.Timestamp, int]]:
    """The ends of the fiscal weeks after `when`, then the quarter's end.

    A quarter is 90 to 92 days, so its 13th week ends 0 to 1 days before the quarter does;
    a week end closer than SHORT_WEEK to the quarter's end is merged into the last week
    rather than drawn as a separate stub.
    """
    out = []
    week = 1
    while (end := period_start + week * WEEK) <= period_end - SHORT_WEEK:
        if end > when:
            out.append((end, week))
        week += 1
    out.append((period_end, week))
    return out


def _fan(
    scorer: Scorer,
    forecast: PipelineForecast,
    *,
    close_dates: Mapping[str, pd.Timestamp | None],
    team: str,
    when: pd.Timestamp,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    quota: float,
    seed: int,
) -> tuple[FanPoint, ...]:
    """P10 / P50 / P90 of closed-won revenue at each remaining week end (see the module)."""
    bundle = scorer.bundle
    scores = forecast.deals
    p = np.array([s.win_in_period_probability for s in scores], dtype=np.float64)
    amounts = np.array([_revenue(s.amount) for s in scores], dtype=np.float64)
    last_day = period_end - DAY
    due = np.array(
        [
            min(max(close, when), last_day).value
            if (close := close_dates.get(s.opportunity_id)) is not None
            else last_day.value
            for s in scores
        ],
        dtype=np.int64,
    )
    ends = week_ends(when, period_start, period_end)
    points = []
    for k, (end, week) in enumerate(ends):
        if end >= period_end:
            result = forecast.attainment
        else:
            # A deal due on day d is counted by the week ending at the start of day d + 1.
            counted = np.where(due < end.value, p, 0.0)
            result = simulate_attainment(
                quota=quota,
                won_to_date=forecast.attainment.won_to_date,
                probabilities=counted,
                amounts=amounts,
                new_business=(bundle.new_business, team, (end - when) / DAY),
                dependence=bundle.dependence,
                draws=FAN_DRAWS,
                seed=seed + k,
            )
        points.append(
            FanPoint(
                at=end,
                week=week,
                p10=result.p10,
                p50=result.p50,
                p90=result.p90,
                expected=result.expected_revenue,
            )
        )
    return tuple(points)


def _won_path(
    won_rows: pd.DataFrame, *, period_start: pd.Timestamp, when: pd.Timestamp
) -> tuple[tuple[pd.Timestamp, float], ...]:
    """Closed-won revenue of the quarter at its start, at each week end so far, and now."""
    times = [period_start]
    week = 1
    while period_start + week * WEEK < when:
        times.append(period_start + week * WEEK)
        week += 1
    times.append(when)
    closed = to_ns(won_rows["changed_at"]) if len(won_rows) else np.array([], dtype=np.int64)
    amounts = np.nan_to_num(won_rows["amount"].to_numpy(dtype=np.float64), nan=0.0)
    return tuple((t, float(amounts[closed <= t.value].sum())) for t in times)


def _revenue(amount: float) -> float:
    """An amount not known yet counts for nothing in a revenue sum (as in
    models.team_quarter's pipeline and won to date)."""
    return 0.0 if math.isnan(amount) else amount
