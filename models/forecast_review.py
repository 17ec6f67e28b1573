"""The forecast deviation review (the seeds: a deviation beyond +-15% triggers a review).

A forecast record is what one forecast run said of one team's or rep's quarter at one as-of
time: its expected revenue, P10 / P50 / P90, P(attain) and quota, and what each deal
contributed to the expected revenue, so that the change between two records can be told deal
by deal. A record's expected revenue is exactly the sum of its deals' contributions and the
expected new business (models.team_quarter: won to date + each open deal's amount x its
in-period probability + new business):

- an open deal contributes amount x its in-period probability (an unknown amount: 0);
- a deal won in the quarter so far contributes its amount (won to date);
- a lost deal contributes nothing, and so is not listed.

`review` compares a record with the previous one of the same team-quarter (the store's latest
with an earlier as_of, models.forecast_store) and flags it when the forecast moved more than
REVIEW_THRESHOLD since then, or lies more than REVIEW_THRESHOLD from the quota, either way.
The change is split over the deals that made it, each classed by what happened to it:

- new: open now, not in the previous record (created, or reopened, since);
- won: won now, open (or absent) before; its change is its amount less what it was counted for;
- lost: in the previous record, not in this one (lost, or moved to another owner);
- pushed: open in both, counted in the quarter before and not now (close date moved out);
- pulled_in: open in both, not counted in the quarter before and counted now;
- amount: open in both, the amount changed (a probability change alongside is folded in);
- probability: open in both, only the in-period probability changed;
and new business as one line of its own. The changes add up to the change of the forecast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.scoring import PipelineForecast
    from models.team_quarter import TeamQuarterForecast

REVIEW_THRESHOLD = 0.15  # the seeds' +-15% deviation that triggers a review
TOP_DEALS = 10  # the deals listed, by the size of their part in the change

DealState = Literal["open", "won"]
MoveKind = Literal["new", "won", "lost", "pushed", "pulled_in", "amount", "probability"]


@dataclass(frozen=True)
class DealContribution:
    """What one deal contributed to a record's expected revenue."""

    opportunity_id: str
    state: DealState
    amount: float  # NaN: not known yet (contributes 0)
    probability: float  # in-period win probability (1 for a won deal)
    closes_in_period: bool  # its close date is before the quarter's end (a won deal: True)

    @property
    def contribution(self) -> float:
        amount = 0.0 if math.isnan(self.amount) else self.amount
        return amount if self.state == "won" else amount * self.probability


@dataclass(frozen=True)
class ForecastRecord:
    """One forecast of one team's (owner_id None) or rep's quarter, as a run made it."""

    team: str
    owner_id: str | None
    period: str
    as_of: pd.Timestamp
    made_at: pd.Timestamp
    expected_revenue: float
    p10: float
    p50: float
    p90: float
    p_attain: float | None  # None without a quota
    quota: float | None
    new_business: float
    model: str  # the model URI and the bundle's training time: which model said it
    deals: tuple[DealContribution, ...]


@dataclass(frozen=True)
class DealMove:
    opportunity_id: str
    kind: MoveKind
    before: float  # its contribution in the previous record (0 when absent)
    after: float
    amount_before: float | None
    amount_after: float | None

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class ForecastReview:
    """A record against its previous one and its quota."""

    previous_as_of: pd.Timestamp | None
    previous_expected_revenue: float | None
    change: float | None  # expected revenue now - then
    change_share: float | None  # change / then (None: no previous record, or it was 0)
    quota_deviation: float | None  # (expected revenue - quota) / quota (None: no quota)
    moved: bool  # |change_share| > threshold
    off_quota: bool  # |quota_deviation| > threshold
    new_business_change: float | None
    deals: tuple[DealMove, ...]  # the deals that moved it most, largest part first
    deals_moved: int  # how many deals changed in all (those listed are the largest)
    threshold: float = REVIEW_THRESHOLD

    @property
    def flagged(self) -> bool:
        return self.moved or self.off_quota

    @property
    def reasons(self) -> tuple[str, ...]:
        out = []
        if self.moved and self.change_share is not None and self.previous_as_of is not None:
            out.append(
                f"moved {self.change_share:+.0%} since the forecast as of "
                f"{self.previous_as_of.date().isoformat()} (review beyond "
                f"+-{self.threshold:.0%})"
            )
        if self.off_quota and self.quota_deviation is not None:
            out.append(
                f"{abs(self.quota_deviation):.0%} "
                f"{'above' if self.quota_deviation > 0 else 'below'} the quota (review beyond "
                f"+-{self.threshold:.0%})"
            )
        return tuple(out)


def _exceeds(share: float | None, threshold: float) -> bool:
    return share is not None and abs(share) > threshold


def _move(
    deal_id: str, before: DealContribution | None, after: DealContribution | None
) -> DealMove | None:
    b = before.contribution if before is not None else 0.0
    a = after.contribution if after is not None else 0.0
    kind: MoveKind
    if after is None:
        if before is None:
            return None
        kind = "lost"  # lost, or (a deal won before) moved out of this team's or rep's books
    elif after.state == "won":
        if before is not None and before.state == "won":
            if a == b:
                return None
            kind = "amount"
        else:
            kind = "won"
    elif before is None or before.state == "won":
        kind = "new"
    elif before.closes_in_period and not after.closes_in_period:
        kind = "pushed"
    elif not before.closes_in_period and after.closes_in_period:
        kind = "pulled_in"
    elif not _same_amount(before.amount, after.amount):
        kind = "amount"
    elif before.probability != after.probability:
        kind = "probability"
    else:
        return None
    if kind not in ("new", "lost", "won") and a == b:
        return None
    return DealMove(
        opportunity_id=deal_id,
        kind=kind,
        before=b,
        after=a,
        amount_before=_amount(before),
        amount_after=_amount(after),
    )


def _same_amount(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


def _amount(deal: DealContribution | None) -> float | None:
    return None if deal is None or math.isnan(deal.amount) else deal.amount


def deal_moves(previous: ForecastRecord, current: ForecastRecord) -> list[DealMove]:
    """Every deal whose contribution changed (or that came or went), largest part first."""
    before = {d.opportunity_id: d for d in previous.deals}
    after = {d.opportunity_id: d for d in current.deals}
    moves = [
        move
        for deal_id in sorted(before.keys() | after.keys())
        if (move := _move(deal_id, before.get(deal_id), after.get(deal_id))) is not None
    ]
    return sorted(moves, key=lambda m: (-abs(m.change), m.opportunity_id))


def review(
    current: ForecastRecord,
    previous: ForecastRecord | None,
    *,
    threshold: float = REVIEW_THRESHOLD,
    top: int = TOP_DEALS,
) -> ForecastReview:
    """`current` against `previous` (the same team-quarter's latest earlier forecast, None
    when there is none) and against its quota."""
    quota = current.quota
    deviation = (
        (current.expected_revenue - quota) / quota if quota is not None and quota > 0 else None
    )
    if previous is None:
        return ForecastReview(
            previous_as_of=None,
            previous_expected_revenue=None,
            change=None,
            change_share=None,
            quota_deviation=deviation,
            moved=False,
            off_quota=_exceeds(deviation, threshold),
            new_business_change=None,
            deals=(),
            deals_moved=0,
            threshold=threshold,
        )
    change = current.expected_revenue - previous.expected_revenue
    share = change / previous.expected_revenue if previous.expected_revenue > 0 else None
    moves = deal_moves(previous, current)
    return ForecastReview(
        previous_as_of=previous.as_of,
        previous_expected_revenue=previous.expected_revenue,
        change=change,
        change_share=share,
        quota_deviation=deviation,
        moved=_exceeds(share, threshold),
        off_quota=_exceeds(deviation, threshold),
        new_business_change=current.new_business - previous.new_business,
        deals=tuple(moves[:top]),
        deals_moved=len(moves),
        threshold=threshold,
    )


def contributions(
    *,
    open_ids: Sequence[str],
    open_amounts: Sequence[float],
    open_probabilities: Sequence[float],
    open_closes_in_period: Sequence[bool],
    won: pd.Series,
) -> tuple[DealContribution, ...]:
    """The deals of a record: the open ones with their in-period probabilities, and those won
    in the quarter so far (`won`: amount by opportunity id, models.team_quarter.won_in_quarter)."""
    deals = [
        DealContribution(
            opportunity_id=str(i),
            state="open",
            amount=float(a),
            probability=float(p),
            closes_in_period=bool(c),
        )
        for i, a, p, c in zip(
            open_ids, open_amounts, open_probabilities, open_closes_in_period, strict=True
        )
    ]
    amounts = np.asarray(won.to_numpy(dtype=np.float64))
    deals += [
        DealContribution(
            opportunity_id=str(i),
            state="won",
            amount=float(a),
            probability=1.0,
            closes_in_period=True,
        )
        for i, a in zip(won.index, amounts, strict=True)
    ]
    return tuple(deals)


def model_label(uri: str | None, metadata: Mapping[str, Any]) -> str:
    """Which model made a forecast: its URI and the bundle's training time (an alias such as
    @champion names different models over time)."""
    return f"{uri or 'model'} trained {metadata.get('trained_at') or 'unknown'}"


def record_of(
    forecast: PipelineForecast,
    *,
    team: str,
    owner_id: str | None,
    period: str,
    as_of: pd.Timestamp,
    won: pd.Series,
    model: str,
    made_at: pd.Timestamp,
) -> ForecastRecord:
    """The record of one team's or rep's quarter (`won`: its deals won so far, by id)."""
    figures = forecast.figures
    result = figures.result
    attainment = figures.attainment
    scores = forecast.deals
    return ForecastRecord(
        team=team,
        owner_id=owner_id,
        period=period,
        as_of=as_of,
        made_at=made_at,
        expected_revenue=figures.expected_revenue,
        p10=result.p10,
        p50=result.p50,
        p90=result.p90,
        p_attain=attainment.p_attain if attainment is not None else None,
        quota=figures.quota,
        new_business=figures.new_business,
        model=model,
        deals=contributions(
            open_ids=[s.opportunity_id for s in scores],
            open_amounts=[s.amount for s in scores],
            open_probabilities=[s.win_in_period_probability for s in scores],
            open_closes_in_period=[s.closes_in_period for s in scores],
            won=won,
        ),
    )


def records_of(
    quarter: TeamQuarterForecast, *, model: str, made_at: pd.Timestamp | None = None
) -> tuple[ForecastRecord, ...]:
    """The team's record, then each rep's, of one team-quarter forecast."""
    made = made_at if made_at is not None else pd.Timestamp.now(tz="UTC")
    won_owner = quarter.won.index.map(lambda i: quarter.owner_of.get(str(i)))

    def of(forecast: PipelineForecast, owner_id: str | None, won: pd.Series) -> ForecastRecord:
        return record_of(
            forecast,
            team=quarter.team,
            owner_id=owner_id,
            period=quarter.quarter.period,
            as_of=quarter.as_of,
            won=won,
            model=model,
            made_at=made,
        )

    team = of(quarter.forecast, None, quarter.won)
    reps = [
        of(rep.forecast, rep.owner_id, quarter.won[won_owner == rep.owner_id])
        for rep in quarter.reps
    ]
    return (team, *reps)
