"""Requests and responses of the HTTP API, in the data contract's words.

A deal is its `opportunities` row (opportunity_id, account_id, owner_id, created_at, type,
lead_source, and any further static attributes) plus `history` (its `opportunity_history`
rows), `activities` (its `activities` rows), and optionally `account` and `owner` (its
`accounts` and `owners` rows), each without the repeated key. So a CRM sends what it exports.

Field rules live here and answer 422 with the path of each bad field: required fields, types,
finite numbers only (NaN and infinities are refused, also in extra attributes), amounts in
[0, 1e15], percentages in [0, 100], ISO 8601 times between 1900 and 2200 (naive = UTC),
forecast categories from the contract. Rules that need the model (its stages) or span rows
are in `serving.checks` and the scorer.

Responses carry finite numbers only: `serving.present` builds them and refuses anything else.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_AMOUNT = 1e15
# Bounds that keep one deal's rows within what a CRM holds and the body limit allows.
MAX_HISTORY_ROWS = 10_000
MAX_ACTIVITY_ROWS = 100_000
MAX_TOP_K = 20
MAX_JSON_INT = 2**63 - 1


def _time(value: object) -> datetime:
    """ISO 8601 text (or a datetime) as a timezone-aware UTC datetime; naive times are UTC."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "datetime_invalid",
                "not an ISO 8601 date or time (e.g. 2026-03-31 or 2026-03-31T14:05:00Z)",
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise PydanticCustomError("datetime_type", "expected an ISO 8601 date or time as a string")
    try:
        aware = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+00:01 is before year 1 in UTC
        raise PydanticCustomError("datetime_range", "must be between 1900 and 2200") from None
    if not EARLIEST <= aware < LATEST:
        raise PydanticCustomError("datetime_range", "must be between 1900 and 2200")
    return aware


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("string_unicode", "not valid Unicode text") from None
    return value


def _json_value(value: Any, depth: int = 0) -> Any:
    """Extra attributes: any JSON value, but numbers finite and integers within int64."""
    if depth > 32:
        raise PydanticCustomError("json_depth", "nested too deeply (more than 32 levels)")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > MAX_JSON_INT:
            raise PydanticCustomError("int_range", "integer out of the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "must be a finite number")
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_json_value(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_text(str(key)): _json_value(item, depth + 1) for key, item in value.items()}
    raise PydanticCustomError("json_type", "not a JSON value")


Time = Annotated[
    datetime,
    BeforeValidator(_time),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601; a date alone means midnight; naive times are UTC",
        }
    ),
]
Text = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_text)]
# Numbers and booleans are strict: "100", true or "yes" where a number or a boolean belongs is
# refused (422), never coerced; a JSON integer is a number (120000 for 120000.0).
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, strict=True)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
ForecastCategory = Literal["Pipeline", "Best Case", "Commit", "Closed", "Omitted"]
ExtraValue = Annotated[Any, AfterValidator(_json_value)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Row(BaseModel):
    """A contract row: the named columns typed, further columns kept as given."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, ExtraValue] = Field(init=False)


class HistoryRow(Row):
    """One `opportunity_history` row: the deal's full state after a change."""

    changed_at: Time
    stage: Text = Field(description="a stage of the model's stage list (else 422)")
    amount: Amount
    close_date: Time = Field(description="expected close date after the change (ISO 8601)")
    forecast_category: ForecastCategory | None = None
    probability: Percent | None = Field(
        default=None, description="the CRM's default probability of the stage, in percent"
    )
    manual_probability: Percent | None = None
    currency: Currency | None = None


class ActivityRow(Row):
    """One `activities` row. Types outside call, email, meeting, demo, proposal, other are
    accepted and count as 'other'."""

    occurred_at: Time
    type: Text
    contact_role: Text | None = None


class AccountRow(Row):
    """The deal's `accounts` row (industry, employees, region, ...)."""

    account_id: Text | None = None


class OwnerRow(Row):
    """The deal's `owners` row."""

    owner_id: Text | None = None
    team: Text | None = None
    manager_id: Text | None = None
    region: Text | None = None


class Deal(Row):
    """One opportunity as a CRM exports it: its row, history and activities."""

    opportunity_id: Text
    account_id: Text
    owner_id: Text
    created_at: Time
    type: Text | None = None
    lead_source: Text | None = None
    as_of: Time | None = Field(
        default=None,
        description="score this deal as of this time (default: the request's as_of, else now)",
    )
    history: list[HistoryRow] = Field(min_length=1, max_length=MAX_HISTORY_ROWS)
    activities: list[ActivityRow] = Field(default_factory=list, max_length=MAX_ACTIVITY_ROWS)
    account: AccountRow | None = None
    owner: OwnerRow | None = None


EXAMPLE_DEAL: dict[str, Any] = {
    "opportunity_id": "OPP-3886",
    "account_id": "ACC-623",
    "owner_id": "REP-010",
    "created_at": "2026-10-14T14:11:15Z",
    "type": "Renewal",
    "lead_source": "Web",
    "history": [
        {
            "changed_at": "2026-10-14T14:11:15Z",
            "stage": "Prospecting",
            "amount": 120300.0,
            "close_date": "2026-12-31",
            "forecast_category": "Pipeline",
            "probability": 10.0,
            "currency": "USD",
        },
        {
            "changed_at": "2026-10-22T12:00:20Z",
            "stage": "Qualification",
            "amount": 150620.0,
            "close_date": "2026-12-31",
            "forecast_category": "Pipeline",
            "probability": 20.0,
            "currency": "USD",
        },
        {
            "changed_at": "2026-10-25T01:09:18Z",
            "stage": "Discovery",
            "amount": 150620.0,
            "close_date": "2026-12-31",
            "forecast_category": "Best Case",
            "probability": 30.0,
            "currency": "USD",
        },
    ],
    "activities": [
        {"occurred_at": "2026-10-25T08:44:37Z", "type": "demo", "contact_role": "user"},
        {"occurred_at": "2026-10-29T23:13:53Z", "type": "meeting", "contact_role": "champion"},
        {"occurred_at": "2026-10-31T06:29:57Z", "type": "call", "contact_role": None},
        {"occurred_at": "2026-11-09T01:01:52Z", "type": "email", "contact_role": "champion"},
        {
            "occurred_at": "2026-11-13T13:46:29Z",
            "type": "meeting",
            "contact_role": "economic_buyer",
        },
    ],
    "account": {
        "segment": "Mid-Market",
        "industry": "Financial Services",
        "employees": 1532,
        "annual_revenue": 108390000.0,
        "region": "EMEA",
    },
    "owner": {"team": "EMEA 2", "manager_id": "MGR-02", "region": "EMEA"},
}
EXAMPLE_AS_OF = "2026-11-16T09:00:00Z"


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deals: list[Deal] = Field(
        min_length=1,
        json_schema_extra={"maxItems": 1000},
        description="1 to 1,000 deals (more: 413); scores come back in the same order",
    )
    as_of: Time | None = Field(default=None, description="score as of this time (default: now)")
    explain: bool = Field(
        default=True,
        strict=True,
        description="add drivers, factors, trend and actions (slower for batches)",
    )
    top_k: int = Field(
        default=5, ge=1, le=MAX_TOP_K, strict=True, description="drivers and actions per deal"
    )


class AttainmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(
        pattern=r"^\d{4}-Q[1-4]$",
        description="fiscal quarter YYYY-Qn; it must contain as_of",
        examples=["2026-Q4"],
    )
    quota: float = Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)
    won_to_date: Amount = Field(description="closed-won revenue in the period so far")
    team: Text | None = Field(default=None, description="the team (give team or owner_id)")
    owner_id: Text | None = Field(default=None, description="the rep (give team or owner_id)")
    as_of: Time | None = Field(default=None, description="forecast as of (default: now)")
    deals: list[Deal] = Field(
        default_factory=list,
        json_schema_extra={"maxItems": 1000},
        description="the open pipeline (0 to 1,000 deals, more: 413)",
    )
    explain: bool = Field(default=True, strict=True, description="top drivers on the at-risk deals")


# --------------------------------------------------------------------------- responses


class Interval(BaseModel):
    low: Finite
    high: Finite


class Baselines(BaseModel):
    """The forecasts sales teams already use, as probabilities."""

    stage_weight_crm: Finite = Field(description="the CRM's probability of the stage")
    stage_weight_empirical: Finite = Field(description="the stage's historical win rate")
    commit: Finite = Field(description="the historical win rate of the forecast category")
    manual_weight: Finite | None = Field(
        None,
        description="the probability the manager typed (`manual_probability` of the deal's "
        "history row in force at as_of); null when none is typed",
    )


class RiskFlagOut(BaseModel):
    code: str
    severity: Literal["high", "medium"]
    reason: str


class DriverOut(BaseModel):
    factor: str
    feature: str
    value: Finite | str | None
    contribution: Finite = Field(description="pull on the log-odds of winning")
    sentence: str


class FactorOut(BaseModel):
    factor: str
    contribution: Finite
    direction: Literal["raises", "lowers", "neutral"]
    drivers: list[DriverOut]
    sentence: str


class FactorMoveOut(BaseModel):
    factor: str
    change: Finite = Field(description="change of the log-odds through this factor")


class TrendOut(BaseModel):
    days: int
    probability_then: Finite | None
    change: Finite | None
    moves: list[FactorMoveOut]
    sentence: str


class ActionOut(BaseModel):
    lever: str
    text: str
    delta_probability: Finite = Field(description="win probability with the action minus now")
    delta_in_period: Finite
    expected_value: Finite | None = Field(description="delta_probability x amount")
    changes: dict[str, Finite | None]


class ModelRef(BaseModel):
    name: str
    version: str | None


class HorizonOut(BaseModel):
    horizon: str = Field(
        description="30d, 90d, 180d, this_quarter, next_quarter, or ever: the longest horizon "
        "the training data supports (`days` says how long that is)"
    )
    days: Finite = Field(description="the horizon's length from as_of, in days")
    probability: Finite = Field(description="P(won within the horizon); monotone in `days`")


class ExplanationOut(BaseModel):
    """How the drivers add up to the served probability, exactly."""

    base_value: Finite = Field(
        description="log-odds of winning before any feature's contribution (the same for "
        "every deal of a model)"
    )
    margin: Finite = Field(
        description="base_value plus the contributions of every factor (`factors`, which "
        "hold every feature; `drivers` are the largest of them)"
    )
    scale: Finite
    shift: Finite
    floor: Finite
    formula: str = Field(
        description="win_probability = min(max(1 / (1 + exp(-(scale * margin + shift))), "
        "floor), 1 - floor), with margin clipped to +-13.8"
    )


class DealScoreOut(BaseModel):
    opportunity_id: str
    as_of: datetime
    win_probability: Finite
    win_probability_interval: Interval
    win_in_period_probability: Finite
    win_in_period_interval: Interval
    horizons: list[HorizonOut] = Field(
        description="P(won within each horizon), shortest first; `ever` equals "
        "win_probability and `this_quarter` win_in_period_probability"
    )
    baselines: Baselines
    baselines_in_period: Baselines
    grade: str = Field(description="A (>= 70%) to E (< 15%) on the win probability")
    risk_level: Literal["high", "medium", "low"]
    risk_flags: list[RiskFlagOut]
    trend: list[TrendOut]
    drivers: list[DriverOut]
    factors: list[FactorOut]
    actions: list[ActionOut]
    actions_disclaimer: str
    explanation: ExplanationOut | None = Field(
        description="with `explain`: base value, margin and the link to win_probability"
    )
    warnings: list[str]
    mode: str = Field(
        description='"full", "small-data", or "baseline": no model has passed the promotion '
        "gate yet, so the probability is the stage's historical win rate (empirical stage "
        "weight), the interval that rate's uncertainty, the only driver the stage, and no "
        "actions are proposed"
    )
    model: ModelRef


class ScoreResponse(BaseModel):
    model: ModelRef
    scores: list[DealScoreOut]


class AtRiskDeal(BaseModel):
    opportunity_id: str
    amount: Finite
    win_probability: Finite
    win_in_period_probability: Finite
    risk_level: Literal["high", "medium", "low"]
    risk_flags: list[RiskFlagOut]
    drivers: list[DriverOut]


class PeriodForecasts(BaseModel):
    """Expected closed-won revenue of the period by each forecast."""

    stage_weight_crm: Finite
    stage_weight_empirical: Finite
    commit: Finite
    model: Finite
    manual_weight: Finite | None = Field(
        None,
        description="won to date + amount x the manager's typed probability, deals closing "
        "this quarter (a deal without one at its CRM stage weight); null when no open deal "
        "carries a typed probability",
    )


class ProcessTargetOut(BaseModel):
    activity: Literal["meeting", "call", "proposal"]
    per_won_deal: Finite | None = Field(
        description="activities of this type logged per deal won, over the deals closed in "
        "the year before as_of (a rep's pulled toward the team's)"
    )
    needed: Finite | None = Field(description="this quarter: won_deals_needed x per_won_deal")


class GapOut(BaseModel):
    """The target decomposition: what the remaining quota takes at the own win rate."""

    remaining_quota: Finite
    open_pipeline: Finite = Field(description="every open deal, any close date")
    pipeline_in_period: Finite = Field(
        description="open deals whose close date is before the quarter ends (overdue included)"
    )
    coverage: Finite = Field(
        description="pipeline_in_period / remaining_quota (capped at 100, and 100 once met)"
    )
    coverage_target: Interval = Field(description="the 3-5x pipeline coverage target")
    coverage_status: Literal["below", "within", "above"] = Field(
        description="coverage against coverage_target"
    )
    win_rate: Finite | None = Field(
        description="own win rate (won / closed) over the deals closed in the year before "
        "as_of, a rep's pulled toward the team's; null: no closed deal to read, the "
        "pipeline's weighted probability stood in"
    )
    average_deal_size: Finite | None = Field(description="own average won deal size, likewise")
    pipeline_needed: Finite = Field(description="remaining_quota / win_rate")
    still_needed: Finite = Field(description="pipeline_needed - pipeline_in_period, at least 0")
    won_deals_needed: Finite = Field(description="remaining_quota / average_deal_size")
    deals_needed: Finite = Field(description="won_deals_needed / win_rate")
    process: list[ProcessTargetOut] = Field(
        description="meetings, calls and proposals needed this quarter (empty in "
        "/v1/attainment, which has no activity history)"
    )


class AttainmentResponse(BaseModel):
    period: str
    team: str | None
    owner_id: str | None
    as_of: datetime
    quota: Finite
    won_to_date: Finite
    p_attain: Finite = Field(description="probability of reaching the quota")
    p_attain_interval: Interval
    expected_revenue: Finite
    p10: Finite
    p50: Finite
    p90: Finite
    status: Literal["green", "yellow", "red"]
    status_reason: str
    coverage: Finite = Field(
        description="pipeline closing this quarter (close date before the period ends, "
        "overdue included) / remaining quota (capped at 100, and 100 once met)"
    )
    open_pipeline: Finite
    remaining_quota: Finite
    pipeline_needed: Finite
    deals_needed: Finite
    gap: GapOut
    method: str
    at_risk: list[AtRiskDeal]
    baselines: PeriodForecasts
    model: ModelRef


class DealMoveOut(BaseModel):
    opportunity_id: str
    kind: Literal["new", "won", "lost", "pushed", "pulled_in", "amount", "probability"]
    before: Finite = Field(description="its part of the previous expected revenue (0: absent)")
    after: Finite = Field(description="its part of this one (an open deal: amount x P(in period))")
    change: Finite
    amount_before: Finite | None
    amount_after: Finite | None


class ForecastReviewOut(BaseModel):
    """This forecast against the previous one of the same team-quarter (the latest kept with
    an earlier as_of) and against the quota: the seeds' review beyond +-15%."""

    previous_as_of: datetime | None = Field(description="null: no earlier forecast kept")
    previous_expected_revenue: Finite | None
    change: Finite | None = Field(description="expected revenue now - then")
    change_share: Finite | None = Field(description="change / then")
    quota_deviation: Finite | None = Field(description="(expected revenue - quota) / quota")
    threshold: Finite
    moved: bool = Field(description="|change_share| > threshold")
    off_quota: bool = Field(description="|quota_deviation| > threshold")
    flagged: bool = Field(description="moved or off_quota: review it")
    reasons: list[str]
    new_business_change: Finite | None
    deals_moved: int = Field(description="deals whose part changed; the largest are listed")
    deals: list[DealMoveOut] = Field(description="the deals that moved it most, largest first")


class QuarterForecastOut(BaseModel):
    """A team's or rep's quarter: the numbers the manager's page shows."""

    quota: Finite | None = Field(description="null: no quota row for the period")
    won_to_date: Finite
    p_attain: Finite | None = Field(description="probability of reaching the quota")
    p_attain_interval: Interval | None
    expected_revenue: Finite = Field(
        description="won to date + open deals x in-period probability + expected new business"
    )
    p10: Finite
    p50: Finite
    p90: Finite
    status: Literal["green", "yellow", "red"] | None
    coverage: Finite | None = Field(description="gap.coverage")
    gap: GapOut | None = Field(description="null without a quota")
    open_deals: int
    new_business: Finite = Field(
        description="expected revenue of deals not yet created (a rep: its share of the team's)"
    )
    forecasts: PeriodForecasts = Field(
        description="expected closed-won revenue by each forecast method, side by side"
    )
    review: ForecastReviewOut = Field(
        description="the change since the previous forecast, and the deviation flags"
    )


class RepForecastOut(QuarterForecastOut):
    owner_id: str


class DealFlowDeal(BaseModel):
    opportunity_id: str
    owner_id: str
    stage: str
    amount: Finite | None
    at: datetime
    detail: str


class DealFlowKind(BaseModel):
    count: int
    amount: Finite
    deals: list[DealFlowDeal] = Field(description="largest first")


class DealFlowOut(BaseModel):
    since: datetime
    until: datetime
    new: DealFlowKind
    won: DealFlowKind
    lost: DealFlowKind
    pushed: DealFlowKind = Field(description="open deals whose close date moved out of the quarter")
    pulled_in: DealFlowKind = Field(description="open deals whose close date moved into it")


class TeamForecastResponse(QuarterForecastOut):
    team: str
    period: str
    as_of: datetime
    reps: list[RepForecastOut]
    deal_flow: DealFlowOut


class DataWindow(BaseModel):
    start: str | None
    end: str | None


class ModelInfoResponse(BaseModel):
    name: str
    version: str | None
    alias: str | None
    uri: str
    run_id: str | None
    trained_at: str | None
    loaded_at: datetime
    data_window: DataWindow
    mode: str | None = Field(description='"full", "small-data" or "baseline"')
    stages: list[str]
    backtest: dict[str, Finite]
    code_version: str | None


class HealthResponse(BaseModel):
    status: Literal["alive"] = "alive"


class LoadFailureOut(BaseModel):
    version: str | None = Field(description="the version that failed (null: an unversioned URI)")
    reason: str
    attempts: int = Field(description="failed attempts in a row")
    failed_at: datetime
    next_attempt_at: datetime = Field(description="when the load is tried again (backoff)")


class ReadyResponse(BaseModel):
    ready: bool
    model: ModelRef | None
    reason: str | None = Field(description="why not ready")
    last_load_failure: LoadFailureOut | None = Field(
        default=None,
        description="the last failed model load and its next attempt; null once a load succeeds",
    )
    process: int = Field(description="the worker process that answered (its pid)")


class Problem(BaseModel):
    path: str = Field(description="where: e.g. deals[0].history[2].amount")
    message: str


class ErrorBody(BaseModel):
    error: str = Field(description="a stable code: invalid_request, unauthorized, ...")
    message: str
    problems: list[Problem] = Field(default_factory=list)
