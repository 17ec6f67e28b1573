"""Request rules the field schema cannot state: they need the model (its stages), span
several rows or fields, or depend on the deployment (the batch limit).

The scorer checks the rest of what spans rows (nothing stamped after as_of, the deal open at
as_of) and raises `PayloadInvalid` with the same kind of paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from features.currencies import convert_amounts
from features.fiscal import period_bounds
from serving.errors import BatchTooLarge, RequestInvalid
from serving.model_store import LoadedModel
from serving.schemas import AttainmentRequest, Deal


def check_batch(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise BatchTooLarge(
            f"{count} deals in one request; at most {max_batch}",
            problems={"deals": f"at most {max_batch} deals per request, got {count}"},
        )


def deal_problems(deals: Sequence[Deal], stages: Sequence[str]) -> dict[str, str]:
    """Unknown stages (policy: 422, naming the model's stages), history or activities before
    the deal was created, two different states at one time, a deal sent twice (it would be
    counted twice in a pipeline), and several currencies in one request (which would need
    exchange rates the API does not take)."""
    problems: dict[str, str] = {}
    known = frozenset(stages)
    first_currency: tuple[str, str] | None = None
    first_of: dict[str, int] = {}
    for i, deal in enumerate(deals):
        first = first_of.setdefault(deal.opportunity_id, i)
        if first != i:
            problems[f"deals[{i}].opportunity_id"] = (
                f"the same opportunity_id as deals[{first}]: send each deal once"
            )
        for j, activity in enumerate(deal.activities):
            if activity.occurred_at < deal.created_at:
                problems[f"deals[{i}].activities[{j}].occurred_at"] = "before the deal's created_at"
        seen: dict[datetime, int] = {}
        for j, row in enumerate(deal.history):
            path = f"deals[{i}].history[{j}]"
            if row.stage not in known:
                problems[f"{path}.stage"] = (
                    f"unknown stage {row.stage!r}; the model's stages are " + ", ".join(stages)
                )
            if row.changed_at < deal.created_at:
                problems[f"{path}.changed_at"] = "before the deal's created_at"
            earlier = seen.setdefault(row.changed_at, j)
            if earlier != j and deal.history[earlier] != row:
                problems[f"{path}.changed_at"] = (
                    f"same time as history[{earlier}] but a different state"
                )
            if row.currency is not None:
                if first_currency is None:
                    first_currency = (row.currency, path)
                elif row.currency != first_currency[0]:
                    problems[f"{path}.currency"] = (
                        f"{row.currency} while {first_currency[1]} is in {first_currency[0]}: "
                        "one request takes one currency (converting needs exchange rates)"
                    )
    return problems


def check_deals(deals: Sequence[Deal], stages: Sequence[str]) -> None:
    problems = deal_problems(deals, stages)
    if problems:
        raise RequestInvalid(problems)


def model_currency(deals: Sequence[Deal], loaded: LoadedModel) -> list[dict[str, Any]]:
    """The deals as payloads, their amounts converted to the model's corporate currency with
    the exchange rates its training used (features.currencies); 422 naming each row whose
    currency the model has no rate for."""
    payloads, problems = convert_amounts(
        [deal.model_dump() for deal in deals], loaded.model.bundle.metadata.get("currencies")
    )
    if problems:
        raise RequestInvalid(problems)
    return payloads


def check_attainment(
    request: AttainmentRequest, stages: Sequence[str], *, fiscal_year_start_month: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The request's rules; returns its as-of time and the period's end."""
    problems: dict[str, str] = {}
    if (request.team is None) == (request.owner_id is None):
        problems["team"] = "give exactly one of team and owner_id"
    as_of = pd.Timestamp(request.as_of) if request.as_of else pd.Timestamp.now(tz="UTC")
    start, end = period_bounds(request.period, start_month=fiscal_year_start_month)
    if not start <= as_of < end:
        problems["period"] = (
            f"{request.period} runs from {start.date()} to {end.date()} (exclusive) and does "
            f"not contain as_of {as_of.isoformat()}; the forecast is for the quarter of as_of"
        )
    for i, deal in enumerate(request.deals):
        if deal.as_of is not None:
            problems[f"deals[{i}].as_of"] = "a pipeline has one as_of: give it once, at the top"
        if request.owner_id is not None and deal.owner_id != request.owner_id:
            problems[f"deals[{i}].owner_id"] = f"not the owner {request.owner_id!r} forecast"
        team = deal.owner.team if deal.owner else None
        if request.team is not None and team is not None and team != request.team:
            problems[f"deals[{i}].owner.team"] = f"not the team {request.team!r} forecast"
    problems.update(deal_problems(request.deals, stages))
    if problems:
        raise RequestInvalid(problems)
    return as_of, end
