"""Repairs of a messy export: deterministic, point-in-time safe, each one listed by row.

The data contract's "Bad input": the problems every real CRM org has are repaired rather than
refused, and every repaired row is reported (kind, table, row, key, column, before, after;
`features.errors.RepairLog`). A repair of a row stamped at t uses only rows of the same deal
stamped at or before t, so repairing an export and then cutting it at t gives the same rows
as cutting it at t and then repairing it: training at a cut-off sees what a CRM exported then
would have given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import REPAIR_COLUMNS, Violation, empty_repairs
from features.stages import StageConfig

# Every kind of repair and what it does; the README of a repair report.
KINDS: dict[str, str] = {
    "text_cleaned": "NUL bytes and control characters removed from a text field (tabs and "
    "line breaks are kept)",
    "same_instant_superseded": "a deal's row at the same instant as a later row of the file "
    "with other values: the file's last row is the state at that instant, this one is removed",
    "created_at_moved": "a deal with history stamped before its created_at: the creation "
    "moves to its first history row",
    "amount_carried_forward": "an empty history amount: the deal's latest earlier amount",
    "amount_unknown": "an empty history amount before any amount of the deal is known: left "
    "unknown (a missing feature, out of revenue sums until known)",
    "created_closed": "a deal whose first history row is already closed (entered after the "
    "fact): kept as it is, never an open snapshot",
    "closed_before_created": "a closed deal whose close date lies before the day it was "
    "created: kept as it is, its revenue counts",
}
# Identical copies of a row are merged with a warning (nothing changes), but the copies are
# rows removed, so they are named in the row accounting.
MERGED_DUPLICATE = "identical_duplicate_merged"

# Where each history row came from: its table (history, or opportunities for a deal read
# from its current state) and its 1-based row there. Dropped before the export is built.
SOURCE_TABLE = "_source_table"
SOURCE_ROW = "_source_row"

_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_HISTORY = "opportunity_history"


def _shown(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "empty"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(kind: str, table: object, **columns: object) -> pd.DataFrame:
    """Repair rows of one kind; `table` and every column is a scalar or an array, the arrays
    of one length."""
    frame = pd.DataFrame({"kind": kind, "table": table, **columns})
    frame["row"] = frame["row"].astype("Int64")
    return frame[list(REPAIR_COLUMNS)].astype({c: "object" for c in REPAIR_COLUMNS if c != "row"})


def clean_text(
    frame: pd.DataFrame, *, table: str, key_column: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frame (index reset) with NUL bytes and control characters removed from every text
    column, contract or extra, and the listing of the cleaned fields."""
    frame = frame.reset_index(drop=True)
    listings: list[pd.DataFrame] = []
    cleaned: dict[str, pd.Series] = {}
    for column in frame.columns:
        values = frame[column]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        text = values.astype(pd.StringDtype("pyarrow"))
        dirty = text.str.contains(_CONTROL, regex=True).fillna(False).to_numpy(dtype=bool)
        if not dirty.any():
            continue
        fixed = text[dirty].str.replace(_CONTROL, "", regex=True)
        cleaned[str(column)] = values.astype(object).where(~dirty, fixed.reindex(values.index))
        listings.append(
            _listing(
                "text_cleaned",
                table,
                row=np.flatnonzero(dirty) + 1,
                key=None,
                column=str(column),
                before=[_shown(v) for v in values[dirty]],
                after=[_shown(v) for v in fixed],
            )
        )
    if not cleaned:
        return frame, empty_repairs()
    frame = frame.assign(**cleaned)
    repairs = pd.concat(listings, ignore_index=True)
    if key_column is not None and key_column in frame.columns:
        repairs["key"] = frame[key_column].to_numpy(dtype=object)[repairs["row"].to_numpy() - 1]
    return frame, repairs


@dataclass(frozen=True)
class RepairedHistory:
    """The repaired tables, what was done, and where every history row went."""

    opportunities: pd.DataFrame
    history: pd.DataFrame  # sorted by (deal, time); one row per deal and instant
    repairs: pd.DataFrame
    warnings: list[Violation]
    used: dict[str, int]  # source table -> history rows kept
    removed: dict[str, dict[str, int]]  # source table -> kind -> history rows removed


def _counts(sources: pd.Series) -> dict[str, int]:
    return {str(k): int(n) for k, n in sources.value_counts().items()}


def repair_history(
    opportunities: pd.DataFrame, history: pd.DataFrame, stages: StageConfig | None
) -> RepairedHistory:
    """Apply the history repairs of the contract, in this order: identical copies merged;
    rows of one deal at one instant resolved to the file's last; creation moved to the first
    history row; empty amounts carried forward; deals entered after the fact listed.

    `history` is typed, in file order, with `SOURCE_TABLE`/`SOURCE_ROW`; `opportunities` is
    typed with index = row - 1. Rows without a deal or a time are errors reported elsewhere:
    they are carried along untouched.
    """
    ordered = history.sort_values(
        ["opportunity_id", "changed_at"], kind="stable", na_position="last"
    )
    content = [c for c in ordered.columns if c not in (SOURCE_TABLE, SOURCE_ROW)]
    duplicate = ordered.duplicated(content, keep="first")
    copies = ordered[duplicate]
    warnings = [
        Violation(
            table=str(table),
            column=None,
            row=int(row),
            expected="no repeated rows (an identical copy of an earlier row is merged into it)",
            key=None if pd.isna(key) else str(key),
            severity="warning",
        )
        for table, row, key in zip(
            copies[SOURCE_TABLE], copies[SOURCE_ROW], copies["opportunity_id"], strict=True
        )
    ]
    rest = ordered[~duplicate]
    valid = rest["opportunity_id"].notna() & rest["changed_at"].notna()
    at_instant = rest.duplicated(["opportunity_id", "changed_at"], keep=False) & valid
    superseded = rest.duplicated(["opportunity_id", "changed_at"], keep="last") & valid
    listings = [_superseded(rest[at_instant], superseded[at_instant])]
    kept = rest[~superseded]
    valid = valid[~superseded]

    opportunities, moved = _move_creation(opportunities, kept[valid])
    listings.append(moved)
    kept, amounts = _carry_amounts(kept, valid)
    listings.append(amounts)
    if stages is not None:
        listings.append(_entered_after_the_fact(opportunities, kept[valid], stages))

    removed: dict[str, dict[str, int]] = {}
    for kind, rows in ((MERGED_DUPLICATE, copies), ("same_instant_superseded", rest[superseded])):
        for table, n in _counts(rows[SOURCE_TABLE]).items():
            removed.setdefault(table, {})[kind] = n
    listings = [frame for frame in listings if len(frame)]
    return RepairedHistory(
        opportunities=opportunities,
        history=kept,
        repairs=pd.concat(listings, ignore_index=True) if listings else empty_repairs(),
        warnings=warnings,
        used=_counts(kept[SOURCE_TABLE]),
        removed=removed,
    )


def _state_text(rows: pd.DataFrame) -> list[str]:
    dates = rows["close_date"].dt.strftime("%Y-%m-%d").fillna("empty")
    return [
        f"stage {_shown(stage)}, amount {_shown(amount)}, close_date {date}"
        for stage, amount, date in zip(rows["stage"], rows["amount"], dates, strict=True)
    ]


def _superseded(rows: pd.DataFrame, superseded: pd.Series) -> pd.DataFrame:
    """Listing of the rows that lose to a later row of the file at the same instant."""
    if not superseded.any():
        return empty_repairs()
    winner = rows.groupby(["opportunity_id", "changed_at"])[SOURCE_ROW].transform("last")
    lost = rows[superseded]
    return _listing(
        "same_instant_superseded",
        lost[SOURCE_TABLE].to_numpy(dtype=object),
        row=lost[SOURCE_ROW].to_numpy(),
        key=lost["opportunity_id"].to_numpy(dtype=object),
        column="changed_at",
        before=_state_text(lost),
        after=[
            f"removed: row {int(w)} is the state at {t.isoformat()}"
            for w, t in zip(winner[superseded], lost["changed_at"], strict=True)
        ],
    )


def _move_creation(
    opportunities: pd.DataFrame, history: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A deal with history before its created_at is created at its first history row."""
    if "created_at" not in opportunities.columns or history.empty:
        return opportunities, empty_repairs()
    first = history.drop_duplicates("opportunity_id").set_index("opportunity_id")
    ids = opportunities["opportunity_id"]
    first_time = ids.map(first["changed_at"])
    moved = (first_time < opportunities["created_at"]).fillna(False).to_numpy(dtype=bool)
    if not moved.any():
        return opportunities, empty_repairs()
    before = opportunities["created_at"][moved]
    after = first_time[moved]
    source = ids[moved].map(first[SOURCE_ROW])
    repaired = opportunities.assign(
        created_at=opportunities["created_at"].mask(pd.Series(moved, index=ids.index), first_time)
    )
    return repaired, _listing(
        "created_at_moved",
        "opportunities",
        row=np.flatnonzero(moved) + 1,
        key=ids[moved].to_numpy(dtype=object),
        column="created_at",
        before=[_shown(t) for t in before],
        after=[
            f"{t.isoformat()} (history row {int(r)})" for t, r in zip(after, source, strict=True)
        ],
    )


def _carry_amounts(history: pd.DataFrame, valid: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty amounts take the deal's latest earlier amount in (time, file) order; before the
    first known amount they stay NaN. Rows are sorted by deal and time, so a deal's rows are
    contiguous and "earlier" is "above"."""
    amount = history["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    empty = np.isnan(amount) & valid.to_numpy(dtype=bool)
    if not empty.any():
        return history, empty_repairs()
    deal = history["opportunity_id"].to_numpy(dtype=object)
    positions = np.arange(deal.size)
    starts = np.ones(deal.size, dtype=bool)
    starts[1:] = deal[1:] != deal[:-1]
    group_start = np.maximum.accumulate(np.where(starts, positions, 0))
    last_known = np.maximum.accumulate(np.where(~np.isnan(amount), positions, -1))
    carried = empty & (last_known >= group_start)
    unknown = empty & ~carried
    source = last_known[carried]
    filled = {"amount": amount.copy()}
    filled["amount"][carried] = amount[source]
    if "amount_original" in history.columns:
        original = history["amount_original"].to_numpy(dtype=np.float64, na_value=np.nan)
        filled["amount_original"] = original.copy()
        filled["amount_original"][carried] = original[source]
    rows = history[SOURCE_ROW].to_numpy()
    tables = history[SOURCE_TABLE].to_numpy(dtype=object)
    listings = [
        _listing(
            "amount_carried_forward",
            tables[carried],
            row=rows[carried],
            key=deal[carried],
            column="amount",
            before="empty",
            after=[
                f"{float(amount[s])!r} (from row {int(r)})"
                for s, r in zip(source, rows[source], strict=True)
            ],
        ),
        _listing(
            "amount_unknown",
            tables[unknown],
            row=rows[unknown],
            key=deal[unknown],
            column="amount",
            before="empty",
            after="unknown (NaN): no earlier amount of the deal",
        ),
    ]
    listings = [f for f in listings if len(f)]
    return history.assign(**filled), pd.concat(listings, ignore_index=True)


def _entered_after_the_fact(
    opportunities: pd.DataFrame, history: pd.DataFrame, stages: StageConfig
) -> pd.DataFrame:
    """Deals created already closed, and closed deals whose close date precedes their
    creation: kept as they are, and listed."""
    if history.empty or "created_at" not in opportunities.columns:
        return empty_repairs()
    closed_stages = stages.won_stages + stages.lost_stages
    first = history.drop_duplicates("opportunity_id", keep="first")
    # A deal read from its current state has one row at creation by the contract's rule:
    # that it is closed then is what the export says, not something to repair.
    born_closed = first[first["stage"].isin(closed_stages) & (first[SOURCE_TABLE] == _HISTORY)]
    last = history.drop_duplicates("opportunity_id", keep="last")
    last = last[last["stage"].isin(closed_stages)]
    created = last["opportunity_id"].map(
        opportunities.drop_duplicates("opportunity_id").set_index("opportunity_id")["created_at"]
    )
    early = last[(last["close_date"] < created.dt.normalize()).fillna(False)]
    early_created = created[early.index]
    listings = [
        _listing(
            "created_closed",
            born_closed[SOURCE_TABLE].to_numpy(dtype=object),
            row=born_closed[SOURCE_ROW].to_numpy(),
            key=born_closed["opportunity_id"].to_numpy(dtype=object),
            column="stage",
            before=[_shown(s) for s in born_closed["stage"]],
            after="kept: the deal's first state is closed",
        ),
        _listing(
            "closed_before_created",
            early[SOURCE_TABLE].to_numpy(dtype=object),
            row=early[SOURCE_ROW].to_numpy(),
            key=early["opportunity_id"].to_numpy(dtype=object),
            column="close_date",
            before=early["close_date"].dt.strftime("%Y-%m-%d").to_numpy(dtype=object),
            after=[f"kept (created {t.isoformat()})" for t in early_created],
        ),
    ]
    listings = [f for f in listings if len(f)]
    return pd.concat(listings, ignore_index=True) if listings else empty_repairs()
