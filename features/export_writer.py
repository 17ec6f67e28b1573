"""Writing an export folder in the data contract (CSV or Parquet, one file per table)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml

from features.contract import STAGES_FILE, TABLES

ExportFormat = Literal["csv", "parquet"]


def _serialise_times(frame: pd.DataFrame) -> pd.DataFrame:
    """ISO 8601 text for datetime columns, so CSV files read back exactly and unambiguously."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
            utc = (
                column.dt.tz_localize("UTC")
                if column.dt.tz is None
                else column.dt.tz_convert("UTC")
            )
            is_midnight = bool((utc.dropna() == utc.dropna().dt.normalize()).all())
            fmt = (
                "%Y-%m-%d"
                if name in ("close_date", "valid_from") or (name.endswith("_date") and is_midnight)
                else "%Y-%m-%dT%H:%M:%S%z"
            )
            out[name] = utc.dt.strftime(fmt)
    return out


def write_export(
    tables: Mapping[str, pd.DataFrame],
    out_dir: Path,
    *,
    stages: Mapping[str, object] | None = None,
    fmt: ExportFormat = "csv",
) -> list[Path]:
    """Write contract tables (and optionally `stages.yaml`) into `out_dir`; returns the files.

    Table names must be contract tables; their columns are written as given (extra columns
    are allowed by the contract). Times are written as ISO 8601 with their UTC offset.
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"not contract tables: {unknown}; expected some of {sorted(TABLES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, frame in tables.items():
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            _serialise_times(frame).to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
    if stages is not None:
        path = out_dir / STAGES_FILE
        path.write_text(yaml.safe_dump(dict(stages), sort_keys=False), encoding="utf-8")
        written.append(path)
    return written
