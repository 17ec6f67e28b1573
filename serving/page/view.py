"""The manager's page as data: one team's quarter seen at one time, every number computed.

`build_manager_view` turns a CRM export, a scorer, a team and an as-of time into a typed
`ManagerView`; `serving.page.render` only formats it. Keeping the two apart lets the CLI and
the service render the same view and lets tests check numbers without parsing HTML.

Everything is point-in-time: the export is cut at `as_of` (`export_as_of`), so the deals are
scored exactly as the CRM would send them then, and nothing after `as_of` is visible.

Definitions (shown on the page, too)
- Quarter: the fiscal quarter containing `as_of` (the model's fiscal-year start month).
- Quota: the team's own row in `quotas` for the quarter, else the sum of its reps' rows; a
  rep's quota is its own row. Without any, the page shows forecasts without P(attain).
- Won to date: deals whose state at `as_of` is a won stage, reached in the quarter, at their
  amount then.
- Open deals: every deal of the team open at `as_of`, whatever its close date (the
  in-period probability already discounts deals expected to close later, and the backtest
  judged the attainment forecast on the same set).
- Team attainment: `Scorer.forecast_pipeline` (open deals, shared factor, new business).
  Rep attainment: the rep's open deals with the same shared factor and the team's win rate,
  but without new business: the new-business model is fitted per team, and splitting it
  between reps would be a guess. Rep figures are therefore slightly pessimistic.
- At risk: flagged deals (risk level medium or high), by expected value at risk = amount x
  in-period win probability (the revenue the forecast counts on from them).
- Coverage: pipeline closing this quarter (open deals with a close date before the quarter
  ends, overdue ones included) / remaining quota; pipeline needed = remaining quota / the
  team's win rate (the attainment model's gap analysis); still needed = what that leaves
  beyond the pipeline closing this quarter.
- Changes: the last `CHANGE_WINDOW` before `as_of`: deals created (new), closed won, closed
  lost, and open deals whose close date moved out of (pushed) or into (pulled in) the quarter.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from features.errors import DealcastError
from features.fiscal import quarter_bounds, quarter_labels
from features.loading import CrmExport, export_as_of
from features.payload import deals_as_payloads
from features.reliability import CommitReliability, commit_reliability
from features.timestamps import TimeLike, to_ns
from models.actions import EFFECTS_DISCLAIMER
from models.attainment import AttainmentResult, simulate_attainment
from models.explain import Driver
from models.scoring import BASELINE_NAMES, DealScore, PipelineForecast, Scorer

logger = logging.getLogger(__name__)

CHANGE_WINDOW = pd.Timedelta(days=7)
AT_RISK_SHOWN = 10  # deals listed in full; the rest are counted and summed
LOWERING_SHOWN = 3  # drivers pulling an at-risk deal's odds down, shown first
RAISING_SHOWN = 2  # and what holds them up
ACTIONS_SHOWN = 3
FAN_DRAWS = 4096  # P10 / P90 to about a percent of the spread, in milliseconds per week
WEEK = pd.Timedelta(days=7)
SHORT_WEEK = pd.Timedelta(days=4)
DAY = pd.Timedelta(days=1)

FORECAST_LABELS: Mapping[str, str] = {
    "model": "dealcast model",
    "stage_weight_crm": "Stage weight (CRM)",
    "stage_weight_empirical": "Stage weight (empirical)",
    "commit": "Commit",
}
FORECAST_DESCRIPTIONS: Mapping[str, str] = {
    "model": "won to date + each open deal's amount x its in-period win probability "
    "+ expected new business",
    "stage_weight_crm": "won to date + amount x the CRM's stage probability, deals closing "
    "this quarter",
    "stage_weight_empirical": "won to date + amount x the historical win rate of the stage, "
    "deals closing this quarter",
    "commit": "won to date + the amount of Commit deals closing this quarter",
}


class PageInputError(DealcastError):
    """The page cannot be built for this team or time; the message says which and why."""


@dataclass(frozen=True)
class ForecastLine:
    """One forecaster's closed-won revenue forecast for the quarter."""

    name: str  # model, stage_weight_crm, stage_weight_empirical, commit
    label: str
    value: float
    description: str


@dataclass(frozen=True)
class RepSummary:
    """One rep's quarter: quota, won, forecasts and P(attain) from its own open deals."""

    owner_id: str
    quota: float | None
    won_to_date: float
    open_deals: int
    open_pipeline: float
    forecast: float  # won + sum of amount x in-period probability (no new business)
    at_risk_deals: int
    attainment: AttainmentResult | None  # None without a quota
    # The rep's Commit calls won, shrunk toward the team's (features.reliability), as the
    # model read it at as_of, and the closed Commit deals behind it; None: nothing closed yet.
    commit_hit_rate: float | None = None
    commit_deals: int = 0


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
class DealChange:
    kind: str  # new, won, lost, pushed, pulled_in
    opportunity_id: str
    owner_id: str
    stage: str
    amount: float
    at: pd.Timestamp  # when it happened (created, closed, or the move's history row)
    detail: str


@dataclass(frozen=True)
class Changes:
    since: pd.Timestamp
    until: pd.Timestamp
    new: tuple[DealChange, ...]
    won: tuple[DealChange, ...]
    lost: tuple[DealChange, ...]
    pushed: tuple[DealChange, ...]
    pulled_in: tuple[DealChange, ...]

    def by_kind(self) -> dict[str, tuple[DealChange, ...]]:
        return {
            "new": self.new,
            "won": self.won,
            "lost": self.lost,
            "pushed": self.pushed,
            "pulled_in": self.pulled_in,
        }


@dataclass(frozen=True)
class Coverage:
    remaining_quota: float
    in_quarter_pipeline: float  # open deals closing before the quarter ends (overdue included)
    coverage: float | None  # in_quarter_pipeline / remaining_quota; None once the quota is met
    all_open_pipeline: float  # every open deal, any close date
    win_rate: float | None  # the win rate of the gap analysis
    pipeline_needed: float  # remaining quota / win rate
    still_needed: float  # max(pipeline_needed - in_quarter_pipeline, 0)
    deals_needed: float


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
    changes: Changes
    coverage: Coverage | None  # None without a quota
    fan: tuple[FanPoint, ...]  # remaining week ends, the last at the quarter's end
    won_path: tuple[tuple[pd.Timestamp, float], ...]  # closed-won so far, week by week
    model: ModelInfo
    actions_disclaimer: str = EFFECTS_DISCLAIMER
    team_commit_hit_rate: float | None = None  # the team's Commit calls won (shrunk)

    @property
    def days_left(self) -> float:
        return max((self.period_end - self.as_of) / DAY, 0.0)

    @property
    def expected_revenue(self) -> float:
        return next(f.value for f in self.forecasts if f.name == "model")


# --------------------------------------------------------------------------- inputs


def _utc(value: TimeLike) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def teams_of(export: CrmExport) -> list[str]:
    """The export's teams, sorted: the unit the page rolls up to."""
    return sorted({str(t) for t in export.owners["team"].dropna()})


def last_change(export: CrmExport) -> pd.Timestamp:
    """The latest time the export knows of: its last history change, deal creation or
    activity. (The last history change alone would cut off activities logged after it.)"""
    stamps = [export.history["changed_at"].max(), export.opportunities["created_at"].max()]
    if len(export.activities):
        stamps.append(export.activities["occurred_at"].max())
    return pd.Timestamp(max(stamps))


def _team_owners(export: CrmExport, team: str) -> list[str]:
    owners = export.owners
    return sorted({str(o) for o in owners.loc[owners["team"].astype(str) == team, "owner_id"]})


def team_quota(quotas: pd.DataFrame, *, team: str, owners: Sequence[str], period: str) -> float:
    """The team's own quota row for the period, else the sum of its reps' rows (NaN: none).

    The same rule as the backtest's roll-up (training.backtest.quota_by_team), written over
    again here because serving never imports training.
    """
    if quotas.empty or "period" not in quotas.columns:
        return float("nan")
    rows = quotas[quotas["period"].astype(str) == period]
    if "team" in rows.columns:
        own = rows[rows["team"].astype(str) == team]["quota"].dropna()
        if len(own):
            return float(own.sum())
    if "owner_id" in rows.columns:
        reps = rows[rows["owner_id"].astype(str).isin(list(owners))]["quota"].dropna()
        if len(reps):
            return float(reps.sum())
    return float("nan")


def rep_quotas(quotas: pd.DataFrame, *, owners: Sequence[str], period: str) -> dict[str, float]:
    if quotas.empty or "owner_id" not in quotas.columns or "period" not in quotas.columns:
        return {}
    rows = quotas[(quotas["period"].astype(str) == period) & quotas["owner_id"].notna()]
    rows = rows[rows["owner_id"].astype(str).isin(list(owners))]
    return {
        str(k): float(v)
        for k, v in rows.groupby(rows["owner_id"].astype(str))["quota"].sum().items()
    }


def state_at(history: pd.DataFrame, when: pd.Timestamp) -> pd.DataFrame:
    """Each deal's last history row stamped <= `when`, indexed by opportunity id.

    The export keeps history sorted by deal and time, so the last row per deal is its state.
    """
    rows = history[history["changed_at"] <= when]
    last = rows.groupby("opportunity_id", sort=False).tail(1)
    return last.set_index(last["opportunity_id"].astype(str))


# --------------------------------------------------------------------------- the view


def build_manager_view(
    export: CrmExport,
    scorer: Scorer,
    *,
    team: str,
    as_of: TimeLike | None = None,
    model_uri: str | None = None,
    seed: int = 0,
) -> ManagerView:
    """The manager's page for `team` in the fiscal quarter containing `as_of` (default: the
    export's last change). `model_uri` is only shown on the page (where the scores came from).
    """
    known = teams_of(export)
    if team not in known:
        raise PageInputError(
            f"team {team!r} is not in the export's owners table; teams: {', '.join(known)}"
        )
    when = _utc(as_of) if as_of is not None else last_change(export)
    first = pd.Timestamp(export.history["changed_at"].min())
    if when < first:
        raise PageInputError(
            f"as_of {when.isoformat()} is before the export's first change ({first.isoformat()})"
        )
    start_month = scorer.bundle.plan.config.fiscal_year_start_month
    now_ns = np.array([when.value], dtype=np.int64)
    start_ns, end_ns = quarter_bounds(now_ns, start_month=start_month)
    period = str(quarter_labels(now_ns, start_month=start_month)[0])
    period_start = pd.Timestamp(int(start_ns[0]), tz="UTC")
    period_end = pd.Timestamp(int(end_ns[0]), tz="UTC")

    seen = export_as_of(export, when)
    owners = _team_owners(seen, team)
    opportunity_owner = seen.opportunities.set_index(
        seen.opportunities["opportunity_id"].astype(str)
    )["owner_id"].astype(str)
    team_ids = opportunity_owner.index[opportunity_owner.isin(owners)]
    history = seen.history[seen.history["opportunity_id"].astype(str).isin(team_ids)]
    now = state_at(history, when)
    stages = seen.stages
    is_open = now["stage"].astype(str).isin(stages.open_stages)
    won_in_quarter = (
        now["stage"].astype(str).isin(stages.won_stages)
        & (now["changed_at"] >= period_start)
        & (now["changed_at"] <= when)
    )
    won_rows = now[won_in_quarter]
    open_rows = now[is_open]
    open_ids = sorted(open_rows.index)
    owner_of = {str(k): str(v) for k, v in opportunity_owner.items()}

    quota_value = team_quota(seen.quotas, team=team, owners=owners, period=period)
    has_quota = bool(np.isfinite(quota_value) and quota_value > 0)
    won_to_date = float(won_rows["amount"].sum())
    payloads = _payloads(seen, open_ids)
    logger.info("scoring %d open deals of %s at %s", len(payloads), team, when.isoformat())
    # P(attain) needs a positive quota; without one the revenue distribution (which does not
    # depend on the quota) is still the forecast, and the page drops P(attain) and status.
    forecast = scorer.forecast_pipeline(
        quota=quota_value if has_quota else 1.0,
        won_to_date=won_to_date,
        deals=payloads,
        team=team,
        period_end=period_end,
        as_of=when,
        explain=True,
        seed=seed,
    )
    scores = {s.opportunity_id: s for s in forecast.deals}
    close_dates = {
        str(k): (None if pd.isna(v) else pd.Timestamp(v))
        for k, v in open_rows["close_date"].items()
    }
    categories = (
        open_rows["forecast_category"].astype(object).where(open_rows["forecast_category"].notna())
        if "forecast_category" in open_rows.columns
        else pd.Series(None, index=open_rows.index, dtype=object)
    )

    attainment = forecast.attainment if has_quota else None
    forecasts = _forecast_lines(forecast)
    reps = _rep_summaries(
        scorer,
        forecast.deals,
        owners=owners,
        owner_of=owner_of,
        won_rows=won_rows,
        quotas=rep_quotas(seen.quotas, owners=owners, period=period),
        team=team,
        seed=seed,
    )
    commit = _commit_reliability(scorer, owners, team=team, when=when)
    reps = tuple(
        replace(
            r,
            commit_hit_rate=_finite(commit.rep_rate[k]),
            commit_deals=int(commit.rep_closed[k]),
        )
        for k, r in enumerate(reps)
    )
    at_risk = [
        _at_risk_deal(
            s,
            owner=owner_of.get(s.opportunity_id, ""),
            stage=str(open_rows.at[s.opportunity_id, "stage"]),
            category=_text(categories.get(s.opportunity_id)),
            close_date=close_dates.get(s.opportunity_id),
        )
        for s in forecast.at_risk
    ]
    in_quarter = sum(
        _revenue(s.amount)
        for s in forecast.deals
        if (close := close_dates.get(s.opportunity_id)) is not None and close < period_end
    )
    return ManagerView(
        team=team,
        period=period,
        period_start=period_start,
        period_end=period_end,
        as_of=when,
        quota=quota_value if has_quota else None,
        won_to_date=won_to_date,
        open_deals=len(scores),
        attainment=attainment,
        forecasts=forecasts,
        reps=reps,
        at_risk=tuple(at_risk[:AT_RISK_SHOWN]),
        at_risk_count=len(at_risk),
        at_risk_value=float(sum(d.value_at_risk for d in at_risk)),
        changes=_changes(
            history,
            seen.opportunities,
            owner_of=owner_of,
            team_ids=team_ids,
            stages=(stages.won_stages, stages.lost_stages, stages.open_stages),
            when=when,
            period_end=period_end,
        ),
        coverage=_coverage(attainment, in_quarter=float(in_quarter)) if attainment else None,
        fan=_fan(
            scorer,
            forecast,
            close_dates=close_dates,
            team=team,
            when=when,
            period_start=period_start,
            period_end=period_end,
            quota=quota_value if has_quota else 1.0,
            seed=seed,
        ),
        won_path=_won_path(won_rows, period_start=period_start, when=when),
        model=ModelInfo(
            uri=model_uri,
            version=scorer.version,
            trained_at=_text(scorer.bundle.metadata.get("trained_at")),
            data_end=_text((scorer.bundle.metadata.get("data_window") or {}).get("end")),
            mode=forecast.deals[0].mode if forecast.deals else None,
        ),
        team_commit_hit_rate=_finite(commit.team_rate[0]) if len(owners) else None,
    )


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _payloads(export: CrmExport, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The requests a CRM would send for `ids`, from tables cut down to those deals first
    (`deals_as_payloads` scans its tables once per deal)."""
    wanted = pd.Index(ids)

    def only(frame: pd.DataFrame) -> pd.DataFrame:
        if "opportunity_id" not in frame.columns:
            return frame
        return frame[frame["opportunity_id"].astype(str).isin(wanted)]

    tables = {
        "opportunities": only(export.opportunities),
        "opportunity_history": only(export.history),
        "activities": only(export.activities),
        "accounts": export.accounts,
        "owners": export.owners,
    }
    return deals_as_payloads(tables, list(ids))


def _forecast_lines(forecast: PipelineForecast) -> tuple[ForecastLine, ...]:
    values = {"model": forecast.model_forecast, **forecast.baselines}
    return tuple(
        ForecastLine(
            name=name,
            label=FORECAST_LABELS[name],
            value=float(values[name]),
            description=FORECAST_DESCRIPTIONS[name],
        )
        for name in ("model", *BASELINE_NAMES)
    )


def _rep_summaries(
    scorer: Scorer,
    scores: Sequence[DealScore],
    *,
    owners: Sequence[str],
    owner_of: Mapping[str, str],
    won_rows: pd.DataFrame,
    quotas: Mapping[str, float],
    team: str,
    seed: int,
) -> tuple[RepSummary, ...]:
    """Each rep's attainment from its own open deals (see the module: no new business)."""
    bundle = scorer.bundle
    history = bundle.team_history
    record = history.loc[team].to_dict() if team in history.index else {}
    win_rate = record.get("win_rate")
    deal_size = record.get("average_deal_size")
    won_by_rep = won_rows.groupby(won_rows.index.map(owner_of))["amount"].sum()
    out = []
    for owner in owners:
        mine = [s for s in scores if owner_of.get(s.opportunity_id) == owner]
        p = np.array([s.win_in_period_probability for s in mine], dtype=np.float64)
        amounts = np.array([_revenue(s.amount) for s in mine], dtype=np.float64)
        won = float(won_by_rep.get(owner, 0.0))
        quota = quotas.get(owner)
        attainment = None
        if quota is not None and quota > 0:
            attainment = simulate_attainment(
                quota=quota,
                won_to_date=won,
                probabilities=p,
                amounts=amounts,
                probability_low=np.array([s.win_in_period_interval[0] for s in mine]),
                probability_high=np.array([s.win_in_period_interval[1] for s in mine]),
                dependence=bundle.dependence,
                win_rate=_positive(win_rate),
                average_deal_size=_positive(deal_size),
                seed=seed,
            )
        out.append(
            RepSummary(
                owner_id=owner,
                quota=quota,
                won_to_date=won,
                open_deals=len(mine),
                open_pipeline=float(amounts.sum()),
                forecast=won + float(amounts @ p),
                at_risk_deals=sum(1 for s in mine if s.risk_level != "low"),
                attainment=attainment,
            )
        )
    return tuple(out)


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


def _positive(value: Any) -> float | None:
    """A usable rate or size from the team history (missing and non-positive give None)."""
    if value is None or pd.isna(value) or float(value) <= 0:
        return None
    return float(value)


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


def _coverage(attainment: AttainmentResult, *, in_quarter: float) -> Coverage:
    remaining = attainment.remaining_quota
    needed = attainment.pipeline_needed
    return Coverage(
        remaining_quota=remaining,
        in_quarter_pipeline=in_quarter,
        coverage=in_quarter / remaining if remaining > 0 else None,
        all_open_pipeline=attainment.open_pipeline,
        win_rate=remaining / needed if remaining > 0 and needed > 0 else None,
        pipeline_needed=needed,
        still_needed=max(needed - in_quarter, 0.0),
        deals_needed=attainment.deals_needed,
    )


# --------------------------------------------------------------------------- changes


def _changes(
    history: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    owner_of: Mapping[str, str],
    team_ids: pd.Index,
    stages: tuple[Sequence[str], Sequence[str], Sequence[str]],
    when: pd.Timestamp,
    period_end: pd.Timestamp,
) -> Changes:
    """What moved in the team's deals during the last CHANGE_WINDOW (see the module)."""
    won_stages, lost_stages, open_stages = stages
    since = when - CHANGE_WINDOW
    now = state_at(history, when)
    before = state_at(history, since)

    stage_of = {str(k): str(v) for k, v in now["stage"].items()}
    amount_of = {str(k): float(v) for k, v in now["amount"].items()}

    def change(kind: str, opportunity_id: str, at: pd.Timestamp, detail: str) -> DealChange:
        return DealChange(
            kind=kind,
            opportunity_id=opportunity_id,
            owner_id=owner_of.get(opportunity_id, ""),
            stage=stage_of[opportunity_id],
            amount=amount_of[opportunity_id],
            at=pd.Timestamp(at),
            detail=detail,
        )

    created = opportunities[opportunities["opportunity_id"].astype(str).isin(team_ids)]
    created = created[(created["created_at"] > since) & (created["created_at"] <= when)]
    new = [
        change(
            "new",
            str(oid),
            at,
            f"created in {now.at[str(oid), 'stage']!s}, "
            f"closing {_day(now.at[str(oid), 'close_date'])}",
        )
        for oid, at in zip(created["opportunity_id"], created["created_at"], strict=True)
        if str(oid) in now.index
    ]
    recent = now[(now["changed_at"] > since) & (now["changed_at"] <= when)]
    closed = {
        kind: recent[recent["stage"].astype(str).isin(names)]["changed_at"]
        for kind, names in (("won", won_stages), ("lost", lost_stages))
    }
    won, lost = (
        [
            change(kind, str(oid), at, f"closed {kind} on {_day(at)}")
            for oid, at in closed[kind].items()
        ]
        for kind in ("won", "lost")
    )
    # Close-date moves across the quarter's end, among deals open now that existed before.
    open_now = now[now["stage"].astype(str).isin(open_stages)]
    both = open_now.index.intersection(before.index)
    then_close = before.loc[both, "close_date"]
    now_close = open_now.loc[both, "close_date"]
    pushed_ids = both[((then_close < period_end) & (now_close >= period_end)).to_numpy()]
    pulled_ids = both[((then_close >= period_end) & (now_close < period_end)).to_numpy()]
    moved_at = open_now["changed_at"]
    pushed = [
        change(
            "pushed",
            oid,
            moved_at[oid],
            f"close date {_day(then_close[oid])} → {_day(now_close[oid])}",
        )
        for oid in pushed_ids
    ]
    pulled = [
        change(
            "pulled_in",
            oid,
            moved_at[oid],
            f"close date {_day(then_close[oid])} → {_day(now_close[oid])}",
        )
        for oid in pulled_ids
    ]

    def ordered(items: list[DealChange]) -> tuple[DealChange, ...]:
        return tuple(sorted(items, key=lambda c: (-c.amount, c.opportunity_id)))

    return Changes(
        since=since,
        until=when,
        new=ordered(new),
        won=ordered(won),
        lost=ordered(lost),
        pushed=ordered(pushed),
        pulled_in=ordered(pulled),
    )


def _day(value: Any) -> str:
    if value is None or pd.isna(value):
        return "no date"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


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
    amounts = won_rows["amount"].to_numpy(dtype=np.float64)
    return tuple((t, float(amounts[closed <= t.value].sum())) for t in times)


def _revenue(amount: float) -> float:
    """An amount not known yet counts for nothing in a revenue sum (as in the backtest and
    `Scorer.forecast_pipeline`; issue 14 makes these one forecast)."""
    return 0.0 if math.isnan(amount) else amount
