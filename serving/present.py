"""Scores and forecasts as response models, with finite numbers only.

A number the client reads as a probability, a contribution or revenue must be finite. Where
a value may legitimately be unknown (a driver's missing value, the expected value of an
action on a deal without amount, a trend too young to exist) a non-finite number becomes
null. Where it may not (a probability, an interval, P(attain)), it is a fault of the model:
`ModelOutputInvalid` (500, logged) answers instead, and the number never reaches the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd

from models.actions import Action
from models.explain import Driver, FactorEffect, TrendWindow
from models.forecast_review import ForecastReview
from models.risk import RiskFlag
from models.scoring import DealScore, PipelineForecast
from models.team_quarter import DealChange, Gap, TeamQuarterForecast
from serving.errors import ModelOutputInvalid
from serving.model_store import LoadedModel
from serving.schemas import (
    ActionOut,
    AtRiskDeal,
    AttainmentRequest,
    AttainmentResponse,
    Baselines,
    DataWindow,
    DealFlowDeal,
    DealFlowKind,
    DealFlowOut,
    DealMoveOut,
    DealScoreOut,
    DriverOut,
    ExplanationOut,
    FactorMoveOut,
    FactorOut,
    ForecastReviewOut,
    GapOut,
    HorizonOut,
    Interval,
    ModelInfoResponse,
    ModelRef,
    PeriodForecasts,
    ProcessTargetOut,
    QuarterForecastOut,
    RepForecastOut,
    RiskFlagOut,
    ScoreResponse,
    TeamForecastResponse,
    TrendOut,
)

AT_RISK_DRIVERS = 3


def finite(value: float, path: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ModelOutputInvalid(f"the model produced a non-finite {path}; nothing was returned")
    return number


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def model_ref(loaded: LoadedModel) -> ModelRef:
    return ModelRef(name=loaded.name, version=loaded.version)


def _interval(bounds: tuple[float, float], path: str) -> Interval:
    return Interval(low=finite(bounds[0], f"{path}.low"), high=finite(bounds[1], f"{path}.high"))


def _baselines(values: Mapping[str, float], path: str) -> Baselines:
    return Baselines(
        stage_weight_crm=finite(values["stage_weight_crm"], f"{path}.stage_weight_crm"),
        stage_weight_empirical=finite(
            values["stage_weight_empirical"], f"{path}.stage_weight_empirical"
        ),
        commit=finite(values["commit"], f"{path}.commit"),
        manual_weight=_optional(values, "manual_weight", path),
    )


def _optional(values: Mapping[str, float], name: str, path: str) -> float | None:
    """A baseline present only for some deals or pipelines (manual_weight: where a typed
    probability exists), else None."""
    return finite(values[name], f"{path}.{name}") if name in values else None


def period_forecasts(forecast: PipelineForecast, path: str) -> PeriodForecasts:
    """The quarter's expected closed-won revenue by the model and each baseline."""
    baselines = forecast.baselines
    return PeriodForecasts(
        stage_weight_crm=finite(baselines["stage_weight_crm"], f"{path}.stage_weight_crm"),
        stage_weight_empirical=finite(
            baselines["stage_weight_empirical"], f"{path}.stage_weight_empirical"
        ),
        commit=finite(baselines["commit"], f"{path}.commit"),
        model=finite(forecast.model_forecast, f"{path}.model"),
        manual_weight=_optional(baselines, "manual_weight", path),
    )


def _flag(flag: RiskFlag) -> RiskFlagOut:
    return RiskFlagOut(code=flag.code, severity=flag.severity, reason=flag.reason)


def _driver(driver: Driver, path: str) -> DriverOut:
    value = driver.value
    return DriverOut(
        factor=driver.factor,
        feature=driver.feature,
        value=value if isinstance(value, str) or value is None else finite_or_none(value),
        contribution=finite(driver.contribution, f"{path}.contribution"),
        sentence=driver.sentence,
    )


def _factor(effect: FactorEffect, path: str) -> FactorOut:
    return FactorOut(
        factor=effect.factor,
        contribution=finite(effect.contribution, f"{path}.contribution"),
        direction=effect.direction,
        drivers=[_driver(d, f"{path}.drivers[{k}]") for k, d in enumerate(effect.drivers)],
        sentence=effect.sentence,
    )


def _trend(window: TrendWindow, path: str) -> TrendOut:
    return TrendOut(
        days=window.days,
        probability_then=finite_or_none(window.probability_then),
        change=finite_or_none(window.change),
        moves=[
            FactorMoveOut(factor=m.factor, change=finite(m.change, f"{path}.moves[{k}].change"))
            for k, m in enumerate(window.moves)
        ],
        sentence=window.sentence,
    )


def _action(action: Action, path: str) -> ActionOut:
    return ActionOut(
        lever=action.lever,
        text=action.text,
        delta_probability=finite(action.delta_probability, f"{path}.delta_probability"),
        delta_in_period=finite(action.delta_in_period, f"{path}.delta_in_period"),
        expected_value=finite_or_none(action.expected_value),
        changes={name: finite_or_none(value) for name, value in action.changes.items()},
    )


LINK_FORMULA = (
    "win_probability = min(max(1 / (1 + exp(-(scale * margin + shift))), floor), 1 - floor), "
    "margin = base_value + sum of factors[].contribution, clipped to +-13.8"
)


def _explanation(score: DealScore, path: str) -> ExplanationOut | None:
    if score.base_value is None or score.margin is None or score.link is None:
        return None
    return ExplanationOut(
        base_value=finite(score.base_value, f"{path}.base_value"),
        margin=finite(score.margin, f"{path}.margin"),
        scale=finite(score.link.scale, f"{path}.scale"),
        shift=finite(score.link.shift, f"{path}.shift"),
        floor=score.link.floor,
        formula=LINK_FORMULA,
    )


def deal_score(score: DealScore, model: ModelRef, path: str) -> DealScoreOut:
    return DealScoreOut(
        opportunity_id=score.opportunity_id,
        as_of=datetime.fromisoformat(score.as_of),
        win_probability=finite(score.win_probability, f"{path}.win_probability"),
        win_probability_interval=_interval(
            score.win_probability_interval, f"{path}.win_probability_interval"
        ),
        win_in_period_probability=finite(
            score.win_in_period_probability, f"{path}.win_in_period_probability"
        ),
        win_in_period_interval=_interval(
            score.win_in_period_interval, f"{path}.win_in_period_interval"
        ),
        horizons=[
            HorizonOut(
                horizon=name,
                days=finite(days, f"{path}.horizons[{k}].days"),
                probability=finite(p, f"{path}.horizons[{k}].probability"),
            )
            for k, (name, days, p) in enumerate(score.horizons)
        ],
        baselines=_baselines(score.baselines, f"{path}.baselines"),
        baselines_in_period=_baselines(score.baselines_in_period, f"{path}.baselines_in_period"),
        grade=score.grade,
        risk_level=score.risk_level,  # type: ignore[arg-type]
        risk_flags=[_flag(f) for f in score.risk_flags],
        trend=[_trend(w, f"{path}.trend[{k}]") for k, w in enumerate(score.trend)],
        drivers=[_driver(d, f"{path}.drivers[{k}]") for k, d in enumerate(score.drivers)],
        factors=[_factor(f, f"{path}.factors[{k}]") for k, f in enumerate(score.factors)],
        actions=[_action(a, f"{path}.actions[{k}]") for k, a in enumerate(score.actions)],
        actions_disclaimer=score.actions_disclaimer,
        explanation=_explanation(score, f"{path}.explanation"),
        warnings=list(score.warnings),
        mode=score.mode,
        model=model,
    )


def score_response(scores: Sequence[DealScore], loaded: LoadedModel) -> ScoreResponse:
    model = model_ref(loaded)
    return ScoreResponse(
        model=model,
        scores=[deal_score(s, model, f"scores[{i}]") for i, s in enumerate(scores)],
    )


def _at_risk(score: DealScore, path: str) -> AtRiskDeal:
    return AtRiskDeal(
        opportunity_id=score.opportunity_id,
        amount=finite(score.amount, f"{path}.amount"),
        win_probability=finite(score.win_probability, f"{path}.win_probability"),
        win_in_period_probability=finite(
            score.win_in_period_probability, f"{path}.win_in_period_probability"
        ),
        risk_level=score.risk_level,  # type: ignore[arg-type]
        risk_flags=[_flag(f) for f in score.risk_flags],
        drivers=[
            _driver(d, f"{path}.drivers[{k}]")
            for k, d in enumerate(score.drivers[:AT_RISK_DRIVERS])
        ],
    )


def attainment_response(
    forecast: PipelineForecast,
    request: AttainmentRequest,
    *,
    as_of: pd.Timestamp,
    loaded: LoadedModel,
) -> AttainmentResponse:
    result = forecast.attainment
    return AttainmentResponse(
        period=request.period,
        team=request.team,
        owner_id=request.owner_id,
        as_of=as_of.to_pydatetime(),
        quota=finite(result.quota, "quota"),
        won_to_date=finite(result.won_to_date, "won_to_date"),
        p_attain=finite(result.p_attain, "p_attain"),
        p_attain_interval=_interval(
            (result.p_attain_low, result.p_attain_high), "p_attain_interval"
        ),
        expected_revenue=finite(result.expected_revenue, "expected_revenue"),
        p10=finite(result.p10, "p10"),
        p50=finite(result.p50, "p50"),
        p90=finite(result.p90, "p90"),
        status=result.status,
        status_reason=result.status_reason,
        coverage=finite(result.coverage, "coverage"),
        open_pipeline=finite(result.open_pipeline, "open_pipeline"),
        remaining_quota=finite(result.remaining_quota, "remaining_quota"),
        pipeline_needed=finite(result.pipeline_needed, "pipeline_needed"),
        deals_needed=finite(result.deals_needed, "deals_needed"),
        gap=gap_out(forecast.figures.gap, "gap"),
        method=result.method,
        at_risk=[_at_risk(s, f"at_risk[{i}]") for i, s in enumerate(forecast.at_risk)],
        baselines=period_forecasts(forecast, "baselines"),
        model=model_ref(loaded),
    )


def gap_out(gap: Gap | None, path: str) -> GapOut:
    if gap is None:  # only a quarter without a quota has none, and /v1/attainment needs one
        raise ModelOutputInvalid(f"no {path} for a quarter with a quota; nothing was returned")
    low, high = gap.coverage_target
    return GapOut(
        remaining_quota=finite(gap.remaining_quota, f"{path}.remaining_quota"),
        open_pipeline=finite(gap.open_pipeline, f"{path}.open_pipeline"),
        pipeline_in_period=finite(gap.pipeline_in_period, f"{path}.pipeline_in_period"),
        coverage=finite(gap.coverage, f"{path}.coverage"),
        coverage_target=Interval(low=low, high=high),
        coverage_status=gap.coverage_status,
        win_rate=finite_or_none(gap.win_rate),
        average_deal_size=finite_or_none(gap.average_deal_size),
        pipeline_needed=finite(gap.pipeline_needed, f"{path}.pipeline_needed"),
        still_needed=finite(gap.still_needed, f"{path}.still_needed"),
        won_deals_needed=finite(gap.won_deals_needed, f"{path}.won_deals_needed"),
        deals_needed=finite(gap.deals_needed, f"{path}.deals_needed"),
        process=[
            ProcessTargetOut(
                activity=target.activity,  # type: ignore[arg-type]
                per_won_deal=finite_or_none(target.per_won_deal),
                needed=finite_or_none(target.needed),
            )
            for target in gap.process
        ],
    )


def review_out(review: ForecastReview, path: str) -> ForecastReviewOut:
    return ForecastReviewOut(
        previous_as_of=review.previous_as_of.to_pydatetime()
        if review.previous_as_of is not None
        else None,
        previous_expected_revenue=finite_or_none(review.previous_expected_revenue),
        change=finite_or_none(review.change),
        change_share=finite_or_none(review.change_share),
        quota_deviation=finite_or_none(review.quota_deviation),
        threshold=review.threshold,
        moved=review.moved,
        off_quota=review.off_quota,
        flagged=review.flagged,
        reasons=list(review.reasons),
        new_business_change=finite_or_none(review.new_business_change),
        deals_moved=review.deals_moved,
        deals=[
            DealMoveOut(
                opportunity_id=m.opportunity_id,
                kind=m.kind,
                before=finite(m.before, f"{path}.deals[{k}].before"),
                after=finite(m.after, f"{path}.deals[{k}].after"),
                change=finite(m.change, f"{path}.deals[{k}].change"),
                amount_before=finite_or_none(m.amount_before),
                amount_after=finite_or_none(m.amount_after),
            )
            for k, m in enumerate(review.deals)
        ],
    )


def quarter_out(
    forecast: PipelineForecast, path: str, review: ForecastReview
) -> QuarterForecastOut:
    """One team's or rep's figures as the forecast route and the page show them."""
    figures = forecast.figures
    result = figures.result
    attainment = figures.attainment
    gap = figures.gap
    return QuarterForecastOut(
        quota=figures.quota,
        won_to_date=finite(figures.won_to_date, f"{path}.won_to_date"),
        p_attain=finite(attainment.p_attain, f"{path}.p_attain") if attainment else None,
        p_attain_interval=_interval(
            (attainment.p_attain_low, attainment.p_attain_high), f"{path}.p_attain_interval"
        )
        if attainment
        else None,
        expected_revenue=finite(figures.expected_revenue, f"{path}.expected_revenue"),
        p10=finite(result.p10, f"{path}.p10"),
        p50=finite(result.p50, f"{path}.p50"),
        p90=finite(result.p90, f"{path}.p90"),
        status=attainment.status if attainment else None,
        coverage=finite(gap.coverage, f"{path}.coverage") if gap else None,
        gap=gap_out(gap, f"{path}.gap") if gap else None,
        open_deals=figures.open_deals,
        new_business=finite(figures.new_business, f"{path}.new_business"),
        forecasts=period_forecasts(forecast, f"{path}.forecasts"),
        review=review_out(review, f"{path}.review"),
    )


def _flow_kind(changes: Sequence[DealChange]) -> DealFlowKind:
    return DealFlowKind(
        count=len(changes),
        amount=float(sum(c.amount for c in changes if math.isfinite(c.amount))),
        deals=[
            DealFlowDeal(
                opportunity_id=c.opportunity_id,
                owner_id=c.owner_id,
                stage=c.stage,
                amount=finite_or_none(c.amount),
                at=c.at.to_pydatetime(),
                detail=c.detail,
            )
            for c in changes
        ],
    )


def team_forecast_response(
    quarter: TeamQuarterForecast, reviews: Mapping[str | None, ForecastReview]
) -> TeamForecastResponse:
    """The team's quarter as the forecast route answers it and the page embeds it, with each
    figure's review (`reviews`: by owner id, None for the team; models.forecast_store)."""
    flow = quarter.flow
    return TeamForecastResponse(
        team=quarter.team,
        period=quarter.quarter.period,
        as_of=quarter.as_of.to_pydatetime(),
        **quarter_out(quarter.forecast, "team", reviews[None]).model_dump(),
        reps=[
            RepForecastOut(
                owner_id=rep.owner_id,
                **quarter_out(rep.forecast, f"reps[{k}]", reviews[rep.owner_id]).model_dump(),
            )
            for k, rep in enumerate(quarter.reps)
        ],
        deal_flow=DealFlowOut(
            since=flow.since.to_pydatetime(),
            until=flow.until.to_pydatetime(),
            new=_flow_kind(flow.new),
            won=_flow_kind(flow.won),
            lost=_flow_kind(flow.lost),
            pushed=_flow_kind(flow.pushed),
            pulled_in=_flow_kind(flow.pulled_in),
        ),
    )


def model_info(loaded: LoadedModel) -> ModelInfoResponse:
    metadata = loaded.model.bundle.metadata
    window = metadata.get("data_window") or {}
    training = metadata.get("training") or {}
    backtest = metadata.get("backtest") or {}
    return ModelInfoResponse(
        name=loaded.name,
        version=loaded.version,
        alias=loaded.alias,
        uri=loaded.uri,
        run_id=loaded.run_id,
        trained_at=metadata.get("trained_at"),
        loaded_at=loaded.loaded_at,
        data_window=DataWindow(start=window.get("start"), end=window.get("end")),
        mode=training.get("mode"),
        stages=list(loaded.stages),
        backtest={
            str(name): float(value)
            for name, value in backtest.items()
            if isinstance(value, int | float) and math.isfinite(value)
        },
        code_version=metadata.get("code_version"),
    )
