"""Checking contract tables: typed parsing plus every cross-table rule, all violations at once.

`check_tables` is the one implementation used both for an export folder and for the deals a
client posts to the service, so a CRM export and a scoring request obey the same rules.
Row numbers in violations are 1-based data rows of the input table (the frame's position).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.contract import (
    CURRENT_STATE_COLUMNS,
    QUOTA_PERIOD_PATTERN,
    TABLES,
    Column,
    Table,
)
from features.errors import TableRows, Violation, empty_repairs
from features.repairs import (
    SOURCE_ROW,
    SOURCE_TABLE,
    RepairedHistory,
    clean_text,
    repair_history,
)
from features.stages import StageConfig, StagesError, infer_stages, salesforce_standard
from features.state import state_at

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}
# Times are carried as int64 nanoseconds: pandas' representable range.
_EARLIEST = pd.Timestamp.min.tz_localize("UTC")
_LATEST = pd.Timestamp.max.tz_localize("UTC")
_RANGE = (
    f"a time within the representable range ({_EARLIEST.date().isoformat()} to "
    f"{_LATEST.date().isoformat()})"
)


@dataclass(frozen=True)
class CheckedTables:
    """Typed, repaired tables and the stage model they obey. Tables keep their row order
    (index = row - 1), except `opportunity_history`: sorted by deal and time, one row per
    deal and instant. `repairs` lists every repaired row (`RepairLog` columns); `rows` says
    per table where its rows went."""

    frames: dict[str, pd.DataFrame]
    stages: StageConfig | None
    violations: list[Violation]
    repairs: pd.DataFrame
    rows: dict[str, TableRows]


def _rows(mask: pd.Series) -> np.ndarray:
    return np.flatnonzero(mask.to_numpy(dtype=bool))


def _text(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _add_rows(
    out: list[Violation],
    frame: pd.DataFrame,
    mask: pd.Series,
    *,
    table: str,
    column: str | None,
    expected: str,
    found: pd.Series | None = None,
    key_column: str | None = None,
    severity: str = "error",
) -> None:
    """One violation per row of `mask`, naming its row, key and found value."""
    positions = _rows(mask)
    if positions.size == 0:
        return
    keys = (
        frame[key_column].to_numpy()[positions]
        if key_column is not None and key_column in frame.columns
        else [None] * positions.size
    )
    values = found.to_numpy()[positions] if found is not None else [None] * positions.size
    labels = frame.index.to_numpy()[positions]
    for label, key, value in zip(labels, keys, values, strict=True):
        out.append(
            Violation(
                table=table,
                column=column,
                row=int(label) + 1,
                expected=expected,
                found=None if found is None else ("empty" if _is_missing(value) else _text(value)),
                key=None if key is None or _is_missing(key) else str(key),
                severity=severity,  # type: ignore[arg-type]
            )
        )


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _key_column(table: Table) -> str | None:
    for name in ("opportunity_id", "account_id", "owner_id", "currency", "period"):
        if any(c.name == name for c in table.columns):
            return name
    return None


def _parse_column(raw: pd.Series, column: Column) -> pd.Series:
    """The column in its contract type; values that do not parse become missing."""
    if column.kind == "string":
        text = raw.astype("string").str.strip()
        return text.mask(text == "")
    if column.kind in ("datetime", "date"):
        parsed = _times(raw)
        return parsed.mask(_outside_range(parsed)).astype("datetime64[ns, UTC]")
    if column.kind == "float":
        if pd.api.types.is_bool_dtype(raw):
            return pd.Series(np.nan, index=raw.index)
        return pd.to_numeric(raw, errors="coerce").astype("float64")
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype("boolean")
    text = raw.astype("string").str.strip().str.lower()
    parsed = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    parsed[text.isin(_TRUE).fillna(False).to_numpy()] = True
    parsed[text.isin(_FALSE).fillna(False).to_numpy()] = False
    return parsed


def _times(raw: pd.Series) -> pd.Series:
    """Times in UTC at whatever resolution they parse to (a year 1 or 9999 time parses,
    but has no nanosecond form)."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw):
        return raw.dt.tz_localize("UTC")
    text = raw.astype("string").str.strip()
    return pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")


def _outside_range(parsed: pd.Series) -> pd.Series:
    return (parsed.notna() & ((parsed < _EARLIEST) | (parsed > _LATEST))).fillna(False)


def _member(values: pd.Series, pool: pd.Series | pd.Index) -> pd.Series:
    """`values.isin(pool)` for large key columns: a hash index is ~20x faster than the
    Arrow-backed string `isin` of pandas 3."""
    index = pd.Index(np.asarray(pool, dtype=object)).unique()
    found = index.get_indexer(pd.Index(values.to_numpy(dtype=object))) >= 0
    return pd.Series(found, index=values.index)


def _present(raw: pd.Series) -> pd.Series:
    """Values given: not missing and, for text, not blank."""
    present = raw.notna()
    if pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw):
        present &= (raw.astype("string").str.strip() != "").fillna(False)
    return present


def _check_table(raw: pd.DataFrame, table: Table, out: list[Violation]) -> pd.DataFrame:
    """Parse a table's contract columns; report missing columns and bad values."""
    frame = raw.reset_index(drop=True).copy()
    key = _key_column(table)
    for name in table.required_columns:
        if name not in frame.columns:
            out.append(
                Violation(table.name, name, None, "a required column", found="no such column")
            )
    for column in table.columns:
        if column.name not in frame.columns:
            continue
        raw_values = frame[column.name]
        parsed = _parse_column(raw_values, column)
        present = _present(raw_values)
        unparsed = present & parsed.isna()
        outside = pd.Series(False, index=frame.index)
        if column.kind in ("datetime", "date") and unparsed.any():
            # Parsed again, the few values that did not parse: which of them are times
            # beyond the nanosecond range rather than text that is no time at all.
            outside[unparsed] = _outside_range(_times(raw_values[unparsed]))
            unparsed &= ~outside
            _add_rows(
                out,
                frame,
                outside,
                table=table.name,
                column=column.name,
                expected=_RANGE,
                found=raw_values,
                key_column=key,
            )
        if column.kind == "float":
            finite = np.isfinite(parsed.to_numpy(dtype="float64", na_value=np.nan))
            unparsed = unparsed | (parsed.notna() & ~pd.Series(finite, index=parsed.index))
        _add_rows(
            out,
            frame,
            unparsed,
            table=table.name,
            column=column.name,
            expected=column.expectation(),
            found=raw_values,
            key_column=key,
        )
        if column.required and not column.repaired_when_empty:
            _add_rows(
                out,
                frame,
                ~present,
                table=table.name,
                column=column.name,
                expected=column.expectation(),
                found=raw_values,
                key_column=key,
            )
        bad = pd.Series(False, index=frame.index)
        if column.kind == "float":
            values = parsed.where(np.isfinite(parsed))
            if column.minimum is not None:
                below = (
                    values <= column.minimum
                    if column.exclusive_minimum
                    else values < column.minimum
                )
                bad |= below.fillna(False)
            if column.maximum is not None:
                bad |= (values > column.maximum).fillna(False)
        if column.kind == "date":
            bad |= (parsed.notna() & (parsed != parsed.dt.normalize())).fillna(False)
        if column.choices is not None:
            bad |= (parsed.notna() & ~parsed.isin(column.choices)).fillna(False)
        _add_rows(
            out,
            frame,
            bad,
            table=table.name,
            column=column.name,
            expected=column.expectation(),
            found=raw_values,
            key_column=key,
        )
        frame[column.name] = parsed
    if table.key and all(k in frame.columns for k in table.key):
        keyed = frame[list(table.key)]
        duplicated = keyed.notna().all(axis=1) & keyed.duplicated(keep="first")
        _add_rows(
            out,
            frame,
            duplicated,
            table=table.name,
            column=",".join(table.key),
            expected="a unique key",
            found=frame[table.key[0]],
            key_column=key,
        )
    return frame


def _has(frame: pd.DataFrame | None, *columns: str) -> bool:
    return frame is not None and all(c in frame.columns for c in columns)


def _check_references(
    frames: Mapping[str, pd.DataFrame], out: list[Violation], known: pd.Index
) -> None:
    for name in ("opportunity_history", "activities", "opportunity_field_history"):
        frame = frames.get(name)
        if not _has(frame, "opportunity_id"):
            continue
        assert frame is not None
        ids = frame["opportunity_id"]
        _add_rows(
            out,
            frame,
            ids.notna() & ~_member(ids, known),
            table=name,
            column="opportunity_id",
            expected="an opportunity_id present in opportunities",
            found=ids,
        )


def _check_current_state(
    opportunities: pd.DataFrame, history: pd.DataFrame, stages: StageConfig, out: list[Violation]
) -> None:
    """Current-state columns must agree with the last history row: warn; the history wins."""
    present = [c.name for c in CURRENT_STATE_COLUMNS if c.name in opportunities.columns]
    if not present or not _has(history, "opportunity_id", "changed_at"):
        return
    last = state_at(
        history.dropna(subset=["opportunity_id", "changed_at"]).sort_values(
            ["opportunity_id", "changed_at"], kind="stable"
        )
    )
    if last.empty:
        return
    last = last.assign(
        is_won=last["stage"].isin(stages.won_stages),
        is_closed=last["stage"].isin(stages.won_stages + stages.lost_stages),
    )
    if "amount_original" in last.columns:  # the export's amounts are in the deal's currency
        last = last.assign(amount=last["amount_original"])
    for name in present:
        if name not in last.columns:
            continue
        theirs = opportunities["opportunity_id"].map(last[name])
        mine = opportunities[name]
        has_both = mine.notna() & theirs.notna()
        if name == "amount":
            differ = ~np.isclose(
                mine.to_numpy(dtype="float64", na_value=np.nan),
                theirs.to_numpy(dtype="float64", na_value=np.nan),
                rtol=1e-9,
                atol=1e-6,
            )
        else:
            differ = (mine.astype("object") != theirs.astype("object")).to_numpy()
        _add_rows(
            out,
            opportunities,
            has_both & pd.Series(differ, index=opportunities.index),
            table="opportunities",
            column=name,
            expected="the same value as the deal's last history row (the history is used)",
            found=mine,
            key_column="opportunity_id",
            severity="warning",
        )


def _check_deals_without_history(
    opportunities: pd.DataFrame, history: pd.DataFrame | None, out: list[Violation]
) -> None:
    if not _has(opportunities, "opportunity_id"):
        return
    with_history = (
        history["opportunity_id"]
        if history is not None and "opportunity_id" in history.columns
        else pd.Series(dtype="string")
    )
    missing = opportunities["opportunity_id"].notna() & ~_member(
        opportunities["opportunity_id"], with_history
    )
    needed = ("stage", "amount", "close_date")
    complete = pd.Series(True, index=opportunities.index)
    for name in needed:
        complete &= opportunities[name].notna() if name in opportunities.columns else False
    _add_rows(
        out,
        opportunities,
        missing & ~complete,
        table="opportunities",
        column=None,
        expected="history rows, or the current-state columns stage, amount and close_date to "
        "read the deal from",
        key_column="opportunity_id",
    )


def _check_stage_names(history: pd.DataFrame, stages: StageConfig, out: list[Violation]) -> None:
    if "stage" not in history.columns:
        return
    unknown = history["stage"].notna() & ~history["stage"].isin(stages.all_stages)
    _add_rows(
        out,
        history,
        unknown,
        table="opportunity_history",
        column="stage",
        expected=f"a stage of the stage model ({stages.source}): " + ", ".join(stages.all_stages),
        found=history["stage"],
        key_column="opportunity_id",
    )


def _check_quotas(quotas: pd.DataFrame, out: list[Violation]) -> None:
    if "period" in quotas.columns:
        malformed = quotas["period"].notna() & ~quotas["period"].str.fullmatch(
            QUOTA_PERIOD_PATTERN
        ).fillna(False)
        _add_rows(
            out,
            quotas,
            malformed,
            table="quotas",
            column="period",
            expected="a fiscal quarter label YYYY-Qn (e.g. 2026-Q3)",
            found=quotas["period"],
        )
    owner = (
        quotas["owner_id"] if "owner_id" in quotas.columns else pd.Series(pd.NA, index=quotas.index)
    )
    team = quotas["team"] if "team" in quotas.columns else pd.Series(pd.NA, index=quotas.index)
    _add_rows(
        out,
        quotas,
        owner.isna() == team.isna(),
        table="quotas",
        column="owner_id,team",
        expected="exactly one of owner_id and team",
    )
    subject = ("owner:" + owner.astype("string")).fillna("team:" + team.astype("string"))
    if "period" in quotas.columns:
        keyed = pd.DataFrame({"period": quotas["period"], "subject": subject})
        duplicated = keyed.notna().all(axis=1) & keyed.duplicated(keep="first")
        _add_rows(
            out,
            quotas,
            duplicated,
            table="quotas",
            column="period",
            expected="one quota per owner or team and period",
            found=keyed["subject"],
        )


def _resolve_stages(
    stages_document: object | None,
    opportunities: pd.DataFrame,
    history: pd.DataFrame,
    out: list[Violation],
) -> StageConfig | None:
    if stages_document is not None:
        try:
            return StageConfig.from_yaml_dict(stages_document)
        except StagesError as error:
            out.append(Violation("stages.yaml", None, None, str(error)))
            return None
    if _has(opportunities, "opportunity_id", "is_closed", "is_won") and _has(
        history, "opportunity_id", "changed_at", "stage"
    ):
        inferred = infer_stages(
            history.dropna(subset=["opportunity_id", "changed_at", "stage"]),
            opportunities[["opportunity_id", "is_closed", "is_won"]].dropna(),
        )
        if inferred is not None:
            return inferred
    return salesforce_standard()


def rate_on(currency: pd.Series, when: pd.Series, rates: pd.DataFrame) -> pd.Series:
    """The rate of each currency on each date: the latest dated rate with valid_from <= the
    date, else the undated rate; missing where neither exists. Used for history amounts
    here and for quotas by the Salesforce importer."""
    rates = rates.dropna(subset=["currency", "rate"])
    has_dates = "valid_from" in rates.columns
    undated = rates[rates["valid_from"].isna()] if has_dates else rates
    rate = currency.map(undated.drop_duplicates("currency").set_index("currency")["rate"]).astype(
        "float64"
    )
    dated = rates.dropna(subset=["valid_from"]) if has_dates else rates.iloc[:0]
    if dated.empty:
        return rate
    probe = (
        pd.DataFrame(
            {
                "position": np.arange(len(currency)),
                "currency": currency.astype("string").to_numpy(),
                "when": when.to_numpy(),
            }
        )
        .astype({"currency": "string"})
        .dropna(subset=["when", "currency"])
    )
    matched = pd.merge_asof(
        probe.sort_values("when"),
        dated.assign(currency=dated["currency"].astype("string")).sort_values("valid_from")[
            ["currency", "valid_from", "rate"]
        ],
        left_on="when",
        right_on="valid_from",
        by="currency",
        direction="backward",
    ).set_index("position")["rate"]
    dated_rate = pd.Series(
        matched.reindex(np.arange(len(currency))).to_numpy(dtype="float64"), index=currency.index
    )
    return dated_rate.fillna(rate)


def convert_currency(
    history: pd.DataFrame,
    rates: pd.DataFrame | None,
    out: list[Violation],
    *,
    table: str = "opportunity_history",
    several: bool = False,
) -> pd.DataFrame:
    """Amounts in the corporate currency, keeping the original in `amount_original`.

    A rate is `units of the currency per corporate unit` (Salesforce's ConversionRate), taken
    as the latest dated rate valid on the row's close date, else the undated rate, as
    Salesforce converts opportunity amounts with the rate of their close date.
    """
    if "currency" not in history.columns:
        return history
    currencies = history["currency"].dropna().unique()
    if len(currencies) <= 1 and not several and (rates is None or rates.empty):
        return history
    if rates is None or not _has(rates, "currency", "rate"):
        _add_rows(
            out,
            history,
            history["currency"].notna(),
            table=table,
            column="currency",
            expected="a rate in exchange_rates (required when amounts come in several currencies)",
            found=history["currency"],
            key_column="opportunity_id",
        )
        return history
    rate = rate_on(history["currency"], history["close_date"], rates)
    no_rate = history["currency"].notna() & rate.isna()
    _add_rows(
        out,
        history,
        no_rate,
        table=table,
        column="currency",
        expected="a currency with a rate in exchange_rates valid on the close date",
        found=history["currency"],
        key_column="opportunity_id",
    )
    converted = history.copy()
    converted["amount_original"] = history["amount"]
    converted["amount"] = history["amount"] / rate.where(history["currency"].notna(), 1.0)
    return converted


def _history_of_bare_deals(opportunities: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One history row at `created_at`, from the current-state columns, for each deal that
    has no history rows (the contract's rule); indexed like `opportunities` so violations
    name the opportunities row."""
    if not _has(opportunities, "opportunity_id", "created_at", "stage", "amount", "close_date"):
        return history.iloc[:0]
    bare = opportunities[
        opportunities["opportunity_id"].notna()
        & ~_member(opportunities["opportunity_id"], history["opportunity_id"])
    ]
    columns = [c for c in history.columns if c in bare.columns and c != "changed_at"]
    if "currency" in bare.columns and "currency" not in columns:
        columns.append("currency")
    return bare[columns].assign(changed_at=bare["created_at"])


def check_tables(
    raw: Mapping[str, pd.DataFrame],
    *,
    stages_document: object | None = None,
    stages: StageConfig | None = None,
) -> CheckedTables:
    """Type every contract table and apply every rule of the contract.

    `raw` maps table names to frames as read (text or typed). Give either the parsed
    `stages.yaml` document or an already-known `stages` (the service passes the model's).
    """
    out: list[Violation] = []
    for required in (n for n, t in TABLES.items() if t.required):
        if required not in raw:
            out.append(
                Violation(
                    required, None, None, "a table file (CSV or Parquet)", found="no such file"
                )
            )
    frames: dict[str, pd.DataFrame] = {}
    listings: list[pd.DataFrame] = []
    for name, frame in raw.items():
        if name not in TABLES:
            continue
        cleaned, listing = clean_text(frame, table=name, key_column=_key_column(TABLES[name]))
        frames[name] = _check_table(cleaned, TABLES[name], out)
        listings.append(listing)
    opportunities = frames.get("opportunities", pd.DataFrame())
    history = frames.get("opportunity_history")
    if _has(opportunities, "opportunity_id"):
        _check_references(frames, out, pd.Index(opportunities["opportunity_id"].dropna()))
    if history is not None:
        _check_deals_without_history(opportunities, history, out)
    resolved = stages or _resolve_stages(
        stages_document, opportunities, history if history is not None else pd.DataFrame(), out
    )
    if resolved is not None and history is not None:
        _check_stage_names(history, resolved, out)
    repaired = None
    if history is not None and _has(
        history, "opportunity_id", "changed_at", "amount", "close_date"
    ):
        rates = frames.get("exchange_rates")
        bare = _history_of_bare_deals(opportunities, history)
        currencies = [f["currency"] for f in (history, bare) if "currency" in f.columns]
        several = bool(currencies) and pd.concat(currencies).nunique() > 1
        source: dict[str, Any] = {
            SOURCE_TABLE: "opportunity_history",
            SOURCE_ROW: np.arange(len(history)) + 1,
        }
        converted = convert_currency(history, rates, out, several=several).assign(**source)
        if not bare.empty:
            bare = convert_currency(bare, rates, out, table="opportunities", several=several)
            source = {SOURCE_TABLE: "opportunities", SOURCE_ROW: bare.index + 1}
            bare = bare.assign(**source)
            converted = pd.concat([converted, bare], ignore_index=True)
        if _has(converted, "stage"):
            repaired = repair_history(opportunities, converted, resolved)
            out += repaired.warnings
            listings.append(repaired.repairs)
            opportunities = frames["opportunities"] = repaired.opportunities
            converted = repaired.history
        history = frames["opportunity_history"] = converted.drop(columns=[SOURCE_TABLE, SOURCE_ROW])
    if resolved is not None and history is not None:
        _check_current_state(opportunities, history, resolved, out)
    if "quotas" in frames:
        _check_quotas(frames["quotas"], out)
    listings = [listing for listing in listings if len(listing)]
    return CheckedTables(
        frames=frames,
        stages=resolved,
        violations=out,
        repairs=pd.concat(listings, ignore_index=True) if listings else empty_repairs(),
        rows=_row_accounting(raw, frames, repaired),
    )


def _row_accounting(
    raw: Mapping[str, pd.DataFrame],
    frames: Mapping[str, pd.DataFrame],
    repaired: RepairedHistory | None,
) -> dict[str, TableRows]:
    """Per table read: rows in, rows used, rows removed by each named repair."""
    rows: dict[str, TableRows] = {}
    for name, frame in raw.items():
        if name not in frames:
            continue
        if name == "opportunity_history" and repaired is not None:
            rows[name] = TableRows(
                name,
                rows_in=len(frame),
                rows_used=repaired.used.get(name, 0),
                removed=repaired.removed.get(name, {}),
                rows_added=repaired.used.get("opportunities", 0),
            )
        else:
            rows[name] = TableRows(name, rows_in=len(frame), rows_used=len(frames[name]))
    return rows
