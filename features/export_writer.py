"""Writing an export folder in the data contract (CSV or Parquet, one file per table).

CSV files are written through Arrow rather than `DataFrame.to_csv`: a million-deal synthetic
world has tens of millions of rows, and pandas' writer plus `strftime` take minutes where
Arrow's multi-threaded writer and the arithmetic ISO 8601 formatter below take seconds.
Booleans come out as `true`/`false` and text fields quoted, both of which the contract reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import yaml

from features.contract import STAGES_FILE, TABLES

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "parquet"]

_DATE_COLUMNS = frozenset({"close_date", "valid_from"})
_SECONDS_PER_DAY = 86_400
_NS_PER_SECOND = 1_000_000_000


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of days since 1970-01-01 (Howard Hinnant's algorithm, vectorised)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative `values` as an (n, width) array of ASCII."""
    powers = 10 ** np.arange(width - 1, -1, -1)
    return (ord("0") + (values[:, None] // powers) % 10).astype(np.uint8)


@cache
def _times_of_day() -> np.ndarray:
    """`HH:MM:SS` of every second of a day, as fixed-width bytes indexed by second."""
    second = np.arange(_SECONDS_PER_DAY)
    text = np.full((_SECONDS_PER_DAY, 8), ord(":"), dtype=np.uint8)
    text[:, 0:2] = _digits(second // 3600, 2)
    text[:, 3:5] = _digits((second // 60) % 60, 2)
    text[:, 6:8] = _digits(second % 60, 2)
    return text.view("S8").ravel()


def _dates(first_day: int, last_day: int) -> np.ndarray:
    """`YYYY-MM-DD` of every day in [first_day, last_day] (days since 1970-01-01) as bytes."""
    year, month, day = _civil_from_days(np.arange(first_day, last_day + 1))
    text = np.full((last_day - first_day + 1, 10), ord("-"), dtype=np.uint8)
    text[:, 0:4] = _digits(year, 4)
    text[:, 5:7] = _digits(month, 2)
    text[:, 8:10] = _digits(day, 2)
    return text.view("S10").ravel()


def iso_strings(column: pd.Series, *, as_date: bool) -> pa.Array:
    """ISO 8601 text of a datetime column as an Arrow string array (NaT becomes null).

    Times are written in UTC with a `Z` suffix (`2026-03-31T14:05:00Z`, whole seconds), dates
    as `2026-03-31`. Naive times are taken as UTC, as the contract reads them. Each distinct
    day and second of day is formatted once and looked up, which is what makes this fast.
    """
    values = column.dt.tz_convert("UTC") if column.dt.tz is not None else column
    nanos = values.to_numpy(dtype="datetime64[ns]").view("int64")
    valid = ~values.isna().to_numpy()
    seconds = np.floor_divide(np.where(valid, nanos, 0), _NS_PER_SECOND)
    days = np.floor_divide(seconds, _SECONDS_PER_DAY)
    first_day = int(days.min()) if len(days) else 0
    last_day = int(days.max()) if len(days) else 0
    dates = _dates(first_day, last_day)[days - first_day]
    if as_date:
        text = dates
        width = 10
    else:
        layout = np.dtype([("date", "S10"), ("t", "S1"), ("time", "S8"), ("z", "S1")])
        text = np.empty(len(values), dtype=layout)
        text["date"] = dates
        text["t"] = b"T"
        text["time"] = _times_of_day()[seconds - days * _SECONDS_PER_DAY]
        text["z"] = b"Z"
        width = 20
    offsets = np.arange(0, (len(values) + 1) * width, width, dtype=np.int32)
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(
        len(values), pa.py_buffer(offsets), pa.py_buffer(text.tobytes()), validity
    )


def _is_datetime(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column)


def _is_date_column(name: str, column: pd.Series) -> bool:
    """Dates are the contract's date columns, or `*_date` columns that hold only midnights."""
    if name in _DATE_COLUMNS:
        return True
    if not name.endswith("_date"):
        return False
    present = column.dropna()
    return bool((present == present.dt.normalize()).all())


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Arrow columns, datetimes already rendered as ISO 8601 text."""
    arrays: list[pa.Array] = []
    for name in frame.columns:
        column = frame[name]
        if _is_datetime(column):
            arrays.append(iso_strings(column, as_date=_is_date_column(str(name), column)))
            continue
        array = pa.Array.from_pandas(column)
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=[str(name) for name in frame.columns])


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    try:
        table = _arrow_table(frame)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        # Mixed-type object columns have no Arrow type; pandas writes them as their str().
        logger.debug("%s: writing through pandas (%s)", path.name, error)
        text = frame.copy()
        for name in text.columns:
            if _is_datetime(text[name]):
                strings = iso_strings(text[name], as_date=_is_date_column(str(name), text[name]))
                text[name] = strings.to_pandas()
        text.to_csv(path, index=False)
        return
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))


def write_export(
    tables: Mapping[str, pd.DataFrame],
    out_dir: Path,
    *,
    stages: Mapping[str, object] | None = None,
    fmt: ExportFormat = "csv",
) -> list[Path]:
    """Write contract tables (and optionally `stages.yaml`) into `out_dir`; returns the files.

    Table names must be contract tables; their columns are written as given (extra columns
    are allowed by the contract). Times are written as ISO 8601 in UTC.
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"not contract tables: {unknown}; expected some of {sorted(TABLES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, frame in tables.items():
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            _write_csv(frame, path)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
    if stages is not None:
        path = out_dir / STAGES_FILE
        path.write_text(yaml.safe_dump(dict(stages), sort_keys=False), encoding="utf-8")
        written.append(path)
    return written
