"""Deals as a CRM sends them to the service: one `opportunities` row plus its `history` and
`activities` rows (and optionally its `account` and `owner` rows), in the contract's words.

`deal_tables_from_payloads` turns them into the same `DealTables` an export gives, so that
`compute_features` scores a live deal exactly as the snapshot pipeline saw deals in training.
Field-level validation (types, ranges, required fields) is the service's schema; here the
rows are already well-typed and only the cross-row rules are checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.deals import DealTables, typed_attribute
from features.errors import DealcastDataError
from features.snapshots import FeaturePlan
from features.timestamps import to_ns


class PayloadInvalid(DealcastDataError):
    """A deal breaks a rule that spans rows; `problems` maps a field path to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {text}" for path, text in problems.items()))


def deal_tables_from_payloads(deals: Sequence[Mapping[str, Any]], plan: FeaturePlan) -> DealTables:
    """DealTables of request deals, deal code = position in `deals`."""
    history_rows = [(i, row) for i, deal in enumerate(deals) for row in deal.get("history", ())]
    activity_rows = [(i, row) for i, deal in enumerate(deals) for row in deal.get("activities", ())]
    problems: dict[str, str] = {}
    for i, deal in enumerate(deals):
        if not deal.get("history"):
            problems[f"deals[{i}].history"] = "at least one history row is required"
        stages = {row["stage"] for row in deal.get("history", ())}
        for stage in sorted(stages - set(plan.stages.all_stages)):
            problems[f"deals[{i}].history"] = (
                f"unknown stage {stage!r}; expected one of " + ", ".join(plan.stages.all_stages)
            )
    if problems:
        raise PayloadInvalid(problems)
    static = {}
    for attribute in plan.attributes:
        if attribute.table == "opportunities":
            values = [deal.get(attribute.column) for deal in deals]
        else:
            key = "account" if attribute.table == "accounts" else "owner"
            values = [(deal.get(key) or {}).get(attribute.column) for deal in deals]
        static[attribute.feature] = typed_attribute(np.array(values, dtype=object), attribute)

    def column(rows: list[tuple[int, Mapping[str, Any]]], name: str) -> list[Any]:
        return [row.get(name) for _, row in rows]

    def numbers(rows: list[tuple[int, Mapping[str, Any]]], name: str) -> np.ndarray:
        values = column(rows, name)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    return DealTables.build(
        stages=plan.stages,
        opportunity_id=np.array([str(deal["opportunity_id"]) for deal in deals], dtype=object),
        created=to_ns([deal["created_at"] for deal in deals]),
        owner_id=np.array([str(deal["owner_id"]) for deal in deals], dtype=object),
        account_id=np.array([str(deal["account_id"]) for deal in deals], dtype=object),
        static=static,
        history={
            "deal": np.array([i for i, _ in history_rows], dtype=np.int64),
            "time": to_ns(column(history_rows, "changed_at")),
            "stage": np.array(column(history_rows, "stage"), dtype=object),
            "amount": numbers(history_rows, "amount"),
            "close_ns": to_ns(column(history_rows, "close_date")),
            "category": np.array(column(history_rows, "forecast_category"), dtype=object),
            "probability": numbers(history_rows, "probability"),
        },
        activities={
            "deal": np.array([i for i, _ in activity_rows], dtype=np.int64),
            "time": to_ns(column(activity_rows, "occurred_at")),
            "type": np.array(column(activity_rows, "type"), dtype=object),
            "contact_role": np.array(column(activity_rows, "contact_role"), dtype=object),
        },
        owner_team={
            str(deal["owner_id"]): str(team)
            for deal in deals
            if (team := (deal.get("owner") or {}).get("team")) is not None
        },
    )


def deals_as_payloads(
    export_tables: Mapping[str, pd.DataFrame], ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The request a CRM would send for `ids`, from contract tables (for tests and demos)."""
    opportunities = export_tables["opportunities"].set_index("opportunity_id", drop=False)
    history = export_tables["opportunity_history"]
    activities = export_tables.get("activities", pd.DataFrame(columns=["opportunity_id"]))
    accounts = export_tables.get("accounts")
    owners = export_tables.get("owners")
    payloads: list[dict[str, Any]] = []
    for opportunity_id in ids:
        deal = _clean(opportunities.loc[opportunity_id].to_dict())
        deal["history"] = [
            _clean(r)
            for r in history[history["opportunity_id"] == opportunity_id]
            .drop(columns="opportunity_id")
            .to_dict("records")
        ]
        deal["activities"] = [
            _clean(r)
            for r in activities[activities["opportunity_id"] == opportunity_id]
            .drop(columns="opportunity_id")
            .to_dict("records")
        ]
        if accounts is not None:
            match = accounts[accounts["account_id"] == deal["account_id"]]
            if len(match):
                deal["account"] = _clean(match.iloc[0].to_dict())
        if owners is not None:
            match = owners[owners["owner_id"] == deal["owner_id"]]
            if len(match):
                deal["owner"] = _clean(match.iloc[0].to_dict())
        payloads.append(deal)
    return payloads


def _clean(record: Mapping[Any, Any]) -> dict[str, Any]:
    """JSON-like values: missing as None, timestamps as ISO 8601 text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(value, list | dict) and pd.isna(value):
            out[str(key)] = None
        elif isinstance(value, pd.Timestamp):
            out[str(key)] = value.isoformat()
        elif isinstance(value, np.generic):
            out[str(key)] = value.item()
        else:
            out[str(key)] = value
    return out
