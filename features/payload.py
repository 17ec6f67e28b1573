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
            "manual_probability": numbers(history_rows, "manual_probability"),
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
    """The request a CRM would send for `ids`, from contract tables (for tests, demos and
    the team-quarter forecast). Each table is read once, whatever the number of deals: a
    team's few hundred open deals are built in one pass, not one scan per deal."""
    wanted = [str(i) for i in ids]
    opportunities = _records_by_deal(export_tables["opportunities"], wanted, keep_key=True)
    history = _records_by_deal(export_tables["opportunity_history"], wanted)
    activities = _records_by_deal(export_tables.get("activities"), wanted)
    accounts = _first_by(export_tables.get("accounts"), "account_id")
    owners = _first_by(export_tables.get("owners"), "owner_id")
    payloads: list[dict[str, Any]] = []
    for opportunity_id in wanted:
        rows = opportunities.get(opportunity_id)
        if not rows:
            raise KeyError(opportunity_id)
        deal = rows[0]
        deal["history"] = history.get(opportunity_id, [])
        deal["activities"] = activities.get(opportunity_id, [])
        if deal.get("account_id") in accounts:
            deal["account"] = dict(accounts[deal["account_id"]])
        if deal.get("owner_id") in owners:
            deal["owner"] = dict(owners[deal["owner_id"]])
        payloads.append(deal)
    return payloads


def _records_by_deal(
    frame: pd.DataFrame | None, ids: Sequence[str], *, keep_key: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """The rows of `ids` as cleaned records, per deal in the table's order; without the
    repeated `opportunity_id` unless `keep_key`."""
    if frame is None or "opportunity_id" not in frame.columns or frame.empty:
        return {}
    keys = frame["opportunity_id"].astype(str)
    wanted = keys.isin(list(ids)).to_numpy()
    rows = frame[wanted]
    out: dict[str, list[dict[str, Any]]] = {}
    body = rows if keep_key else rows.drop(columns="opportunity_id")
    for key, record in zip(keys.to_numpy()[wanted], body.to_dict("records"), strict=True):
        out.setdefault(key, []).append(_clean(record))
    return out


def _first_by(frame: pd.DataFrame | None, column: str) -> dict[Any, dict[str, Any]]:
    """Each value of `column`'s first row, cleaned (a static table: accounts, owners)."""
    if frame is None or column not in frame.columns or frame.empty:
        return {}
    first = frame[frame[column].notna()].drop_duplicates(column, keep="first")
    return {record[column]: record for record in (_clean(r) for r in first.to_dict("records"))}


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
