"""One rep's or team's quarter as of a time: the numbers the backtest, `/v1/attainment`,
`/v1/teams/{team}/forecast`, the manager's page and `dealcast report` all show.

Each number has one rule, here:

- Quarter: the fiscal quarter containing as_of (the model's fiscal-year start month).
- Quota: a rep's quota is the sum of its own rows for the period; a team's, the sum of its
  own rows, else of its reps' rows, else none. A row whose quota is missing states no quota
  and is skipped, so a team row without a value falls back to the reps' sum (the backtest
  once counted it as 0 while the page showed the reps' 9,000).
- Won to date: deals whose state at as_of (`features.state.state_at`) is a won stage
  reached in the quarter (that row stamped in [quarter start, as_of]), at their amount then;
  an amount not known yet counts 0.
- Open pipeline: every deal open at as_of, whatever its close date (the in-period win
  probability already discounts deals expected to close later). Pipeline closing this
  quarter: the open deals whose close date is before the quarter's end, overdue included.
- Coverage: pipeline closing this quarter / remaining quota (models.attainment; capped at
  COVERAGE_CAP, and that once the quota is met), read against the seeds' 3-5x target
  (COVERAGE_TARGET). Dividing all open pipeline instead counted deals that cannot close this
  quarter (19.5x where 9.0x closes).
- New business of a team: models.attainment.NewBusinessModel, fitted per team. Of a rep:
  the team's new business thinned by the rep's share of the deals the team created in the
  WINDOW_DAYS before as_of. Not the rep's own history: new business is counted in whole
  quarters of deals created and won within them, which a rep has a handful of, so a
  per-rep rate would be mostly noise or mostly prior, while a team creates hundreds of
  deals a year and creating them is the step a rep owns. Thinning a Poisson count keeps it
  Poisson with the same deal amounts, so the reps' expected new business adds up to the
  team's. The share is read from the model's outcome reference (deals created strictly
  before as_of), which the API has as well as the page, so both give a rep the same figure.
  (The API once added the whole team's new business to a single rep: 56% there, 10% on
  the page.)
- Attainment: `models.attainment.simulate_attainment` on the open deals' in-period
  probabilities and intervals, the bundle's shared factor and new business, seed 0 unless
  asked; without a quota the revenue distribution is still computed (P10 / P50 / P90 do
  not depend on the quota) and P(attain), status, coverage and the gap are left out.
- Target decomposition (the seeds'): a rep's and a team's own win rate (won / closed) and
  average won deal size, over its deals closed in the WINDOW_DAYS before as_of, read as
  the outcome reference reads them (states strictly before as_of: nothing closed at or
  after as_of counts). A team's record is used as it is (it closes hundreds of deals a
  year); a rep's is shrunk toward its team's with WIN_RATE_PRIOR pseudo-closed deals at the
  team's win rate and DEAL_SIZE_PRIOR pseudo-won deals at the team's size, so a rep with
  20 closed deals sits halfway. Won deals needed = remaining quota / deal size; deals
  needed = won deals needed / win rate; pipeline needed = remaining quota / win rate;
  still needed = pipeline needed - pipeline closing this quarter (at least 0). Without any
  closed deal to read, the pipeline's amount-weighted probability stands in (and the gap
  says so). The pipeline's weighted probability is not a win rate: it gave "2% win rate,
  133 deals needed".
- Process targets: for each of PROCESS_ACTIVITIES, the activities logged (before as_of) on
  the deals closed in the window, per won deal among them: the historical conversion from
  that activity to a won deal; a rep's shrunk toward the team's with ACTIVITY_PRIOR
  pseudo-won deals. Needed this quarter = won deals needed x activities per won deal. They
  come from the export's activities (the outcome reference carries none), so the API's
  `/v1/attainment` has no process targets; the forecast route and the page do.
- Deal flow: since a time (default CHANGE_WINDOW before as_of) until as_of: deals created
  (new), closed won, closed lost, and open deals that existed then whose close date moved
  out of (pushed) or into (pulled in) the quarter, each with its amount at as_of.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from features.deals import DAY_NS, DealTables
from features.errors import DealcastError
from features.fiscal import quarter_bounds, quarter_labels
from features.loading import CrmExport, export_as_of
from features.payload import deals_as_payloads
from features.reference import OutcomeReference
from features.state import state_at
from features.timestamps import TimeLike
from models.attainment import AttainmentResult, NewBusinessModel, simulate_attainment

if TYPE_CHECKING:
    from models.bundle import DealcastBundle
    from models.scoring import DealScore, PipelineForecast, Scorer

logger = logging.getLogger(__name__)

WINDOW_DAYS = 365  # closed deals behind a record, created deals behind a new-business share
WIN_RATE_PRIOR = 20.0  # pseudo-closed deals at the team's win rate in a rep's
DEAL_SIZE_PRIOR = 5.0  # pseudo-won deals at the team's average won size in a rep's
ACTIVITY_PRIOR = 5.0  # pseudo-won deals at the team's activities per won deal in a rep's
COVERAGE_TARGET = (3.0, 5.0)  # the seeds' pipeline coverage target, x the remaining quota
PROCESS_ACTIVITIES: tuple[str, ...] = ("meeting", "call", "proposal")
CHANGE_WINDOW = pd.Timedelta(days=7)
NO_QUOTA = 1.0  # any positive quota: without one only the quota-free quantiles are read

CoverageStatus = Literal["below", "within", "above"]


class TeamQuarterInputError(DealcastError):
    """A team-quarter cannot be built for this input; `field` names the input."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


# --------------------------------------------------------------------------- the quarter


@dataclass(frozen=True)
class Quarter:
    period: str  # YYYY-Qn
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive


def quarter_of(when: pd.Timestamp, *, start_month: int) -> Quarter:
    """The fiscal quarter containing `when`."""
    now = np.array([when.value], dtype=np.int64)
    start, end = quarter_bounds(now, start_month=start_month)
    return Quarter(
        period=str(quarter_labels(now, start_month=start_month)[0]),
        start=pd.Timestamp(int(start[0]), tz="UTC"),
        end=pd.Timestamp(int(end[0]), tz="UTC"),
    )


# --------------------------------------------------------------------------- quotas


def _quota_rows(quotas: pd.DataFrame, period: str) -> pd.DataFrame:
    """The period's rows that state a quota (a missing value states none)."""
    if quotas.empty or "period" not in quotas.columns or "quota" not in quotas.columns:
        return quotas.iloc[0:0]
    rows = quotas[quotas["period"].astype(str) == period]
    return rows[rows["quota"].notna()]


def team_quota(quotas: pd.DataFrame, *, team: str, owners: Sequence[str], period: str) -> float:
    """The team's own rows for the period, else its reps' rows, summed (NaN: neither)."""
    rows = _quota_rows(quotas, period)
    if "team" in rows.columns:
        own = rows.loc[rows["team"].notna() & (rows["team"].astype(str) == team), "quota"]
        if len(own):
            return float(own.astype(np.float64).sum())
    reps = rep_quotas(quotas, owners=owners, period=period)
    return float(sum(reps.values())) if reps else float("nan")


def rep_quotas(quotas: pd.DataFrame, *, owners: Sequence[str], period: str) -> dict[str, float]:
    """Each rep's own rows for the period, summed; reps without a row are absent."""
    rows = _quota_rows(quotas, period)
    if "owner_id" not in rows.columns:
        return {}
    rows = rows[rows["owner_id"].notna()]
    rows = rows[rows["owner_id"].astype(str).isin(list(owners))]
    grouped = rows["quota"].astype(np.float64).groupby(rows["owner_id"].astype(str)).sum()
    return {str(k): float(v) for k, v in grouped.items()}


# --------------------------------------------------------------------------- won to date


def won_in_quarter(
    states: pd.DataFrame, *, won_stages: Sequence[str], start: pd.Timestamp, when: pd.Timestamp
) -> pd.Series:
    """The amount of each deal won in the quarter so far, from `states` = `state_at(history,
    when)`; indexed like `states` (by opportunity id)."""
    won = (
        states["stage"].astype(str).isin(list(won_stages))
        & (states["changed_at"] >= start)
        & (states["changed_at"] <= when)
    )
    return states.loc[won, "amount"].astype(np.float64).fillna(0.0)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SalesRecord:
    """A rep's or team's deals closed in the WINDOW_DAYS before as_of, and the win rate and
    average won deal size read from them (a rep's shrunk toward its team's)."""

    closed_deals: int
    won_deals: int
    won_amount: float
    win_rate: float | None  # None: nothing closed to read (nor a team to lean on)
    average_deal_size: float | None


def _shrunk(hits: float, count: float, *, prior: float | None, strength: float) -> float | None:
    if prior is None:
        return hits / count if count > 0 else None
    return (hits + strength * prior) / (count + strength)


def _record(
    closed: int, won: int, won_amount: float, *, team: SalesRecord | None = None
) -> SalesRecord:
    rate = _shrunk(won, closed, prior=team.win_rate if team else None, strength=WIN_RATE_PRIOR)
    size = _shrunk(
        won_amount,
        won,
        prior=team.average_deal_size if team else None,
        strength=DEAL_SIZE_PRIOR,
    )
    return SalesRecord(
        closed_deals=closed,
        won_deals=won,
        won_amount=won_amount,
        win_rate=rate if rate is not None and rate > 0 else None,
        average_deal_size=size if size is not None and size > 0 else None,
    )


@dataclass(frozen=True)
class TeamRecords:
    team: SalesRecord
    reps: Mapping[str, SalesRecord]


Deals = OutcomeReference | DealTables  # a model's reference, or tables it is built from


def _reference(deals: Deals) -> OutcomeReference:
    return deals if isinstance(deals, OutcomeReference) else OutcomeReference(deals)


def team_members(deals: Deals, team: str, owners: Sequence[str] = ()) -> set[str]:
    """The team's reps: those the reference places in it, and `owners` (the caller's reps)."""
    placed = _reference(deals).owner_team
    return {o for o, t in placed.items() if t == team} | {str(o) for o in owners}


def team_of_rep(deals: Deals, owner_id: str, named: str | None = None) -> str:
    """A rep's team: the one its deals name, else the reference's, else a team of one (the
    contract's rule for an owner without a team)."""
    if named:
        return named
    return _reference(deals).owner_team.get(owner_id, owner_id)


def sales_records(
    deals: Deals, *, when: pd.Timestamp, team: str, owners: Sequence[str]
) -> TeamRecords:
    """The team's record and each of `owners`' (see the module), from the deals as they
    stood strictly before `when` (the reference's closed rows, features.reference)."""
    reference = _reference(deals)
    data = reference.data
    members = team_members(reference, team, owners)
    if data.closed_time.size == 0:
        empty = _record(0, 0, 0.0)
        return TeamRecords(empty, {str(o): empty for o in owners})
    when_ns = int(when.value)
    # A closed row is a deal's last before `when` when its time < when <= the next row's.
    closed = (
        (data.closed_time < when_ns)
        & (when_ns <= data.closed_until)
        & (data.closed_time >= when_ns - WINDOW_DAYS * DAY_NS)
    )
    owner = reference.owner_names(data.closed_owner[closed]).astype(str)
    won = data.closed_won[closed]
    amount = np.nan_to_num(data.closed_amount[closed])

    def record_of(mask: np.ndarray, team_record: SalesRecord | None = None) -> SalesRecord:
        return _record(
            int(mask.sum()),
            int((mask & won).sum()),
            float(amount[mask & won].sum()),
            team=team_record,
        )

    team_record = record_of(np.isin(owner, sorted(members)))
    return TeamRecords(
        team_record, {str(o): record_of(owner == str(o), team_record) for o in owners}
    )


def new_business_share(
    deals: Deals, *, when: pd.Timestamp, owner_id: str, members: set[str]
) -> float:
    """The rep's share of the deals the team created in the WINDOW_DAYS before `when`;
    with none created, an equal split among the team's reps."""
    reference = _reference(deals)
    data = reference.data
    when_ns = int(when.value)
    created = data.created_time
    window = (created < when_ns) & (created >= when_ns - WINDOW_DAYS * DAY_NS)
    owners = reference.owner_names(data.created_owner).astype(str)
    in_team = window & np.isin(owners, sorted(members))
    total = int(in_team.sum())
    if total == 0:
        return 1.0 / len(members) if owner_id in members else 0.0
    return float((in_team & (owners == owner_id)).sum()) / total


# --------------------------------------------------------------------------- process


@dataclass(frozen=True)
class ProcessTarget:
    activity: str  # meeting, call, proposal
    per_won_deal: float | None  # activities logged per deal won, historically
    needed: float | None  # this quarter: won deals needed x per_won_deal


ActivityRates = Mapping[str, float | None]  # activity -> activities per won deal


def activity_rates(
    export: CrmExport, *, when: pd.Timestamp, team_owners: Sequence[str], owners: Sequence[str]
) -> tuple[ActivityRates, dict[str, ActivityRates]]:
    """Activities of each PROCESS_ACTIVITIES type per won deal, over the deals closed in the
    WINDOW_DAYS before `when` (states and activities strictly before it): the team's, and
    each of `owners`' shrunk toward it (see the module)."""
    opportunities = export.opportunities
    owner_of = opportunities.set_index(opportunities["opportunity_id"].astype(str))[
        "owner_id"
    ].astype(str)
    team_ids = owner_of.index[owner_of.isin(list(team_owners))]
    history = export.history[export.history["opportunity_id"].astype(str).isin(team_ids)]
    states = state_at(history[history["changed_at"] < when])
    stages = export.stages
    closed = states[
        states["stage"].astype(str).isin([*stages.won_stages, *stages.lost_stages])
        & (states["changed_at"] >= when - pd.Timedelta(days=WINDOW_DAYS))
    ]
    won_ids = closed.index[closed["stage"].astype(str).isin(stages.won_stages)]
    activities = export.activities
    logged = activities[
        (activities["occurred_at"] < when)
        & activities["opportunity_id"].astype(str).isin(closed.index)
        & activities["type"].astype(str).isin(PROCESS_ACTIVITIES)
    ]
    logged_owner = logged["opportunity_id"].astype(str).map(owner_of)
    counts = logged.groupby([logged_owner, logged["type"].astype(str)]).size()
    won_by_owner = pd.Series(owner_of.reindex(won_ids).to_numpy()).value_counts()

    def rates(owner_ids: Sequence[str], prior: ActivityRates | None) -> dict[str, float | None]:
        won = float(sum(int(won_by_owner.get(o, 0)) for o in owner_ids))
        out: dict[str, float | None] = {}
        for kind in PROCESS_ACTIVITIES:
            done = float(sum(int(counts.get((o, kind), 0)) for o in owner_ids))
            out[kind] = _shrunk(
                done,
                won,
                prior=prior.get(kind) if prior is not None else None,
                strength=ACTIVITY_PRIOR,
            )
        return out

    team = rates(list(team_owners), None)
    return team, {str(o): rates([str(o)], team) for o in owners}


# --------------------------------------------------------------------------- the forecast


@dataclass(frozen=True)
class Pipeline:
    """The open deals of a rep or team: in-period win probabilities with their interval,
    amounts (not known yet: 0) and whether each closes before the quarter ends."""

    probabilities: np.ndarray
    probability_low: np.ndarray
    probability_high: np.ndarray
    amounts: np.ndarray
    closes_in_period: np.ndarray

    @classmethod
    def of_scores(cls, scores: Sequence[DealScore]) -> Pipeline:
        return cls(
            probabilities=np.array([s.win_in_period_probability for s in scores], np.float64),
            probability_low=np.array([s.win_in_period_interval[0] for s in scores], np.float64),
            probability_high=np.array([s.win_in_period_interval[1] for s in scores], np.float64),
            amounts=np.nan_to_num(np.array([s.amount for s in scores], np.float64), nan=0.0),
            closes_in_period=np.array([s.closes_in_period for s in scores], dtype=bool),
        )


@dataclass(frozen=True)
class NewBusiness:
    """New business for a quarter: the team's model, days left, and the share of it (1 for a
    team, a rep's share for a rep)."""

    model: NewBusinessModel
    team: str
    days_left: float
    share: float = 1.0

    def part(self) -> tuple[NewBusinessModel, str, float]:
        """The attainment model's new-business argument, thinned by `share`."""
        if self.share == 1.0:
            return self.model, self.team, self.days_left
        rate = np.asarray(self.model.rates.get(self.team, self.model.global_rate)) * self.share
        thinned = replace(self.model, rates={**self.model.rates, self.team: rate})
        return thinned, self.team, self.days_left


@dataclass(frozen=True)
class Gap:
    """The target decomposition of a quarter with a quota (see the module)."""

    remaining_quota: float
    open_pipeline: float
    pipeline_in_period: float  # open deals closing before the quarter ends
    coverage: float  # pipeline_in_period / remaining quota (capped)
    coverage_status: CoverageStatus  # against COVERAGE_TARGET
    win_rate: float | None  # own historical; None: the pipeline's weighted probability stood in
    average_deal_size: float | None
    pipeline_needed: float
    still_needed: float
    won_deals_needed: float
    deals_needed: float
    process: tuple[ProcessTarget, ...]

    @property
    def coverage_target(self) -> tuple[float, float]:
        return COVERAGE_TARGET


@dataclass(frozen=True)
class QuarterFigures:
    """A rep's or team's quarter: every number the API and the page show."""

    quota: float | None
    won_to_date: float
    open_deals: int
    open_pipeline: float
    new_business: float  # expected
    new_business_share: float
    result: AttainmentResult  # against the quota (NO_QUOTA without one: quantiles only)
    record: SalesRecord | None
    process_rates: ActivityRates | None

    @property
    def has_quota(self) -> bool:
        return self.quota is not None

    @property
    def expected_revenue(self) -> float:
        return self.result.expected_revenue

    @property
    def attainment(self) -> AttainmentResult | None:
        return self.result if self.has_quota else None

    @property
    def gap(self) -> Gap | None:
        if not self.has_quota:
            return None
        result = self.result
        remaining = result.remaining_quota
        rate = remaining / result.pipeline_needed if result.pipeline_needed > 0 else None
        won_needed = result.deals_needed * rate if rate is not None else 0.0
        record = self.record
        coverage = result.coverage
        low, high = COVERAGE_TARGET
        status: CoverageStatus = "within"
        if coverage < low:
            status = "below"
        elif coverage > high:
            status = "above"
        process: tuple[ProcessTarget, ...] = ()
        if self.process_rates is not None:
            process = tuple(
                _process_target(kind, self.process_rates.get(kind), won_needed)
                for kind in PROCESS_ACTIVITIES
            )
        return Gap(
            remaining_quota=remaining,
            open_pipeline=result.open_pipeline,
            pipeline_in_period=result.pipeline_in_period,
            coverage=coverage,
            coverage_status=status,
            win_rate=record.win_rate if record is not None else None,
            average_deal_size=record.average_deal_size if record is not None else None,
            pipeline_needed=result.pipeline_needed,
            still_needed=max(result.pipeline_needed - result.pipeline_in_period, 0.0),
            won_deals_needed=won_needed,
            deals_needed=result.deals_needed,
            process=process,
        )


def _process_target(kind: str, per_won_deal: float | None, won_needed: float) -> ProcessTarget:
    needed = won_needed * per_won_deal if per_won_deal is not None else None
    return ProcessTarget(activity=kind, per_won_deal=per_won_deal, needed=needed)


def quarter_forecast(
    *,
    quota: float | None,
    won_to_date: float,
    pipeline: Pipeline,
    new_business: NewBusiness | None,
    dependence: float,
    record: SalesRecord | None = None,
    process_rates: ActivityRates | None = None,
    seed: int = 0,
    draws: int | None = None,
) -> QuarterFigures:
    """The one assembly of a quarter's figures (see the module). A quota that is missing,
    not finite or not positive is no quota."""
    has_quota = quota is not None and math.isfinite(quota) and quota > 0
    part = new_business.part() if new_business is not None else None
    record_usable = record is not None and record.win_rate is not None
    result = simulate_attainment(
        quota=float(quota) if has_quota and quota is not None else NO_QUOTA,
        won_to_date=won_to_date,
        probabilities=pipeline.probabilities,
        amounts=pipeline.amounts,
        probability_low=pipeline.probability_low,
        probability_high=pipeline.probability_high,
        closes_in_period=pipeline.closes_in_period,
        new_business=part,
        dependence=dependence,
        win_rate=record.win_rate if record is not None and record_usable else None,
        average_deal_size=record.average_deal_size if record is not None else None,
        draws=draws,
        seed=seed,
    )
    expected_new = part[0].expected(part[1], part[2]) if part is not None else 0.0
    return QuarterFigures(
        quota=float(quota) if has_quota and quota is not None else None,
        won_to_date=float(won_to_date),
        open_deals=int(pipeline.amounts.size),
        open_pipeline=float(pipeline.amounts.sum()),
        new_business=float(expected_new),
        new_business_share=new_business.share if new_business is not None else 0.0,
        result=result,
        record=record if record_usable else None,
        process_rates=process_rates,
    )


def bundle_forecast(
    bundle: DealcastBundle,
    pipeline: Pipeline,
    *,
    quota: float | None,
    won_to_date: float,
    team: str,
    owner_id: str | None,
    when: pd.Timestamp,
    period_end: pd.Timestamp,
    process_rates: ActivityRates | None = None,
    seed: int = 0,
) -> QuarterFigures:
    """`quarter_forecast` with a model bundle's parts: its new-business model and shared
    factor, records and new-business shares from its outcome reference (whose teams are the
    reps it places in them), so that the API and the page, which share the bundle, agree.
    `owner_id` makes it that rep's quarter, else the team's."""
    reference = bundle.reference
    days_left = max((period_end - when) / pd.Timedelta(days=1), 0.0)
    if owner_id is None:
        record = sales_records(reference, when=when, team=team, owners=[]).team
        share = 1.0
    else:
        record = sales_records(reference, when=when, team=team, owners=[owner_id]).reps[owner_id]
        members = team_members(reference, team, [owner_id])
        share = new_business_share(reference, when=when, owner_id=owner_id, members=members)
    return quarter_forecast(
        quota=quota,
        won_to_date=won_to_date,
        pipeline=pipeline,
        new_business=NewBusiness(bundle.new_business, team, days_left, share),
        dependence=bundle.dependence,
        record=record,
        process_rates=process_rates,
        seed=seed,
    )


# --------------------------------------------------------------------------- deal flow


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
class DealFlow:
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


def _day(value: Any) -> str:
    if value is None or pd.isna(value):
        return "no date"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def deal_flow(
    history: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    owner_of: Mapping[str, str],
    team_ids: pd.Index,
    won_stages: Sequence[str],
    lost_stages: Sequence[str],
    open_stages: Sequence[str],
    since: pd.Timestamp,
    when: pd.Timestamp,
    period_end: pd.Timestamp,
) -> DealFlow:
    """What moved in the team's deals between `since` and `when` (see the module);
    `history` holds the team's rows, none after `when`."""
    now = state_at(history, when)
    before = state_at(history, since)
    stage_of = {str(k): str(v) for k, v in now["stage"].items()}
    amount_of = {str(k): float(v) for k, v in now["amount"].items()}

    def change(kind: str, opportunity_id: str, at: Any, detail: str) -> DealChange:
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
        kind: recent[recent["stage"].astype(str).isin(list(names))]["changed_at"]
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
    open_now = now[now["stage"].astype(str).isin(list(open_stages))]
    both = open_now.index.intersection(before.index)
    then_close = before.loc[both, "close_date"]
    now_close = open_now.loc[both, "close_date"]
    pushed_ids = both[((then_close < period_end) & (now_close >= period_end)).to_numpy()]
    pulled_ids = both[((then_close >= period_end) & (now_close < period_end)).to_numpy()]
    moved_at = open_now["changed_at"]
    moves = {
        kind: [
            change(
                kind,
                str(oid),
                moved_at[oid],
                f"close date {_day(then_close[oid])} → {_day(now_close[oid])}",
            )
            for oid in ids
        ]
        for kind, ids in (("pushed", pushed_ids), ("pulled_in", pulled_ids))
    }

    def ordered(items: list[DealChange]) -> tuple[DealChange, ...]:
        return tuple(sorted(items, key=lambda c: (-c.amount, c.opportunity_id)))

    return DealFlow(
        since=since,
        until=when,
        new=ordered(new),
        won=ordered(won),
        lost=ordered(lost),
        pushed=ordered(moves["pushed"]),
        pulled_in=ordered(moves["pulled_in"]),
    )


# --------------------------------------------------------------------------- a team's quarter


@dataclass(frozen=True)
class RepQuarter:
    owner_id: str
    forecast: PipelineForecast  # the rep's open deals' scores and figures


@dataclass(frozen=True)
class TeamQuarterForecast:
    """A team's quarter seen at one time, with each rep's, from a CRM export and a scorer."""

    team: str
    quarter: Quarter
    as_of: pd.Timestamp
    owners: tuple[str, ...]
    forecast: PipelineForecast  # the team's: every open deal's score, the team's figures
    reps: tuple[RepQuarter, ...]
    open_rows: pd.DataFrame  # each open deal's state at as_of, by opportunity id
    won_rows: pd.DataFrame  # each deal won in the quarter so far, its state at as_of
    won: pd.Series  # the amount each of them counts in won to date (won_in_quarter), by id
    owner_of: Mapping[str, str]  # opportunity id -> owner id
    flow: DealFlow

    @property
    def figures(self) -> QuarterFigures:
        return self.forecast.figures


def teams_of(export: CrmExport) -> list[str]:
    """The export's teams, sorted: the unit the page and the forecast route roll up to."""
    return sorted({str(t) for t in export.owners["team"].dropna()})


def team_reps(export: CrmExport, team: str) -> tuple[str, ...]:
    """The team's reps, sorted: the owners table's rows placing them in `team` (the reps a
    team's quarter rolls up)."""
    owners = export.owners
    return tuple(
        sorted({str(o) for o in owners.loc[owners["team"].astype(str) == team, "owner_id"]})
    )


def last_change(export: CrmExport) -> pd.Timestamp:
    """The latest time the export knows of: its last history change, deal creation or
    activity. (The last history change alone would cut off activities logged after it.)"""
    stamps = [export.history["changed_at"].max(), export.opportunities["created_at"].max()]
    if len(export.activities):
        stamps.append(export.activities["occurred_at"].max())
    return pd.Timestamp(max(stamps))


def _utc(value: TimeLike, field: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise TeamQuarterInputError(field, f"not a time: {value!r}") from error
    if stamp is pd.NaT:
        raise TeamQuarterInputError(field, "is missing")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def deal_payloads(export: CrmExport, ids: Sequence[str]) -> list[dict[str, Any]]:
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


def _team_export(export: CrmExport, owners: Sequence[str]) -> CrmExport:
    """The export cut down to the deals of `owners` (what a team's quarter reads), before
    it is cut at as_of: the rest of a large export need not be copied."""
    opportunities = export.opportunities
    mine = opportunities["owner_id"].astype(str).isin(list(owners))
    wanted = opportunities.loc[mine, "opportunity_id"].astype(str).tolist()

    def only(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["opportunity_id"].astype(str).isin(wanted)].reset_index(drop=True)

    return replace(
        export,
        opportunities=only(opportunities),
        history=only(export.history),
        activities=only(export.activities),
    )


def build_team_quarter(
    export: CrmExport,
    scorer: Scorer,
    *,
    team: str,
    as_of: TimeLike | None = None,
    since: TimeLike | None = None,
    explain: bool = True,
    seed: int = 0,
) -> TeamQuarterForecast:
    """`team`'s quarter containing `as_of` (default: the export's last change), each open
    deal scored as the CRM would send it then; deal flow since `since` (default
    CHANGE_WINDOW before as_of). `explain` adds drivers and actions to the scores (the page's
    at-risk deals); the figures do not depend on it."""
    known = teams_of(export)
    if team not in known:
        raise TeamQuarterInputError(
            "team", f"{team!r} is not in the export's owners table; teams: {', '.join(known)}"
        )
    first, last = pd.Timestamp(export.history["changed_at"].min()), last_change(export)
    when = _utc(as_of, "as_of") if as_of is not None else last
    if when < first:
        raise TeamQuarterInputError(
            "as_of",
            f"{when.isoformat()} is before the export's first change ({first.isoformat()})",
        )
    if when > last:
        raise TeamQuarterInputError(
            "as_of",
            f"{when.isoformat()} is after the export's last change ({last.isoformat()}): "
            "the export does not know that time yet",
        )
    start = _utc(since, "since") if since is not None else when - CHANGE_WINDOW
    if start >= when:
        raise TeamQuarterInputError(
            "since", f"{start.isoformat()} must be before as_of {when.isoformat()}"
        )
    quarter = quarter_of(when, start_month=scorer.bundle.plan.config.fiscal_year_start_month)

    owners = team_reps(export, team)
    seen = export_as_of(_team_export(export, owners), when)
    opportunity_owner = seen.opportunities.set_index(
        seen.opportunities["opportunity_id"].astype(str)
    )["owner_id"].astype(str)
    owner_of = {str(k): str(v) for k, v in opportunity_owner.items()}
    team_ids = opportunity_owner.index[opportunity_owner.isin(owners)]
    history = seen.history[seen.history["opportunity_id"].astype(str).isin(team_ids)]
    states = state_at(history, when)
    stages = seen.stages
    open_rows = states[states["stage"].astype(str).isin(stages.open_stages)]
    won = won_in_quarter(states, won_stages=stages.won_stages, start=quarter.start, when=when)
    won_rows = states.loc[won.index]
    open_ids = sorted(open_rows.index)
    payloads = deal_payloads(seen, open_ids)
    logger.info("scoring %d open deals of %s at %s", len(payloads), team, when.isoformat())
    scores = scorer.score(payloads, as_of=when, explain=explain) if payloads else []
    team_rates, rep_rates = activity_rates(seen, when=when, team_owners=owners, owners=owners)
    team_forecast = scorer.forecast_scores(
        scores,
        quota=team_quota(seen.quotas, team=team, owners=owners, period=quarter.period),
        won_to_date=float(won.sum()),
        team=team,
        owner_id=None,
        when=when,
        period_end=quarter.end,
        process_rates=team_rates,
        seed=seed,
    )
    quotas = rep_quotas(seen.quotas, owners=owners, period=quarter.period)
    won_by_rep = won.groupby(won.index.map(owner_of)).sum()
    reps = tuple(
        RepQuarter(
            owner_id=owner,
            forecast=scorer.forecast_scores(
                [s for s in scores if owner_of.get(s.opportunity_id) == owner],
                quota=quotas.get(owner),
                won_to_date=float(won_by_rep.get(owner, 0.0)),
                team=team,
                owner_id=owner,
                when=when,
                period_end=quarter.end,
                process_rates=rep_rates[owner],
                seed=seed,
            ),
        )
        for owner in owners
    )
    flow = deal_flow(
        history,
        seen.opportunities,
        owner_of=owner_of,
        team_ids=team_ids,
        won_stages=stages.won_stages,
        lost_stages=stages.lost_stages,
        open_stages=stages.open_stages,
        since=start,
        when=when,
        period_end=quarter.end,
    )
    return TeamQuarterForecast(
        team=team,
        quarter=quarter,
        as_of=when,
        owners=owners,
        forecast=team_forecast,
        reps=reps,
        open_rows=open_rows,
        won_rows=won_rows,
        won=won,
        owner_of=owner_of,
        flow=flow,
    )
