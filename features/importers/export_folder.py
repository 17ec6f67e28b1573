"""What every importer of a one-row-per-deal export shares: the output folder's checks, the
`dealcast.toml` saying which features the export cannot give, the owners a deal names but the
owners file lacks, and the per-file lines of the import report.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from features.contract import STAGES_FILE, TABLES
from features.importers.source_files import ImportProblems, SourceFileReport

CONFIG_FILE = "dealcast.toml"
# The features that read the history of the amount, and those that read the history of the
# close date or the close date at as_of (for a closed deal, an export-time close date is the
# day it closed: its outcome seen early). An export without that history marks them
# unavailable (FeatureConfig.unavailable_features): missing on every snapshot.
AMOUNT_HISTORY_FEATURES = ("amount_change_since_creation", "amount_change_recent")
CLOSE_DATE_HISTORY_FEATURES = (
    "close_date_pushes",
    "close_date_days_pushed",
    "days_to_close",
    "close_date_past",
    "close_date_in_quarter",  # the baselines' period forecasts use models.baselines.PeriodShare
)


def stale_outputs(out: Path, writing: set[str], problems: ImportProblems, *, mark: str) -> None:
    """Files in `out` that would mislead: contract files this import does not overwrite
    (they would be read with the new ones) and a dealcast.toml that does not start with this
    importer's `mark` (a person's own settings would be overwritten)."""
    if not out.is_dir():
        return
    names = {f"{t}.{ext}" for t in TABLES for ext in ("csv", "parquet")} | {STAGES_FILE}
    for path in sorted(out.iterdir()):
        if path.name in names and path.name not in writing:
            problems.add(
                str(out),
                None,
                None,
                "an output folder without contract files this import does not write",
                path.name,
            )
    config = out / CONFIG_FILE
    if config.is_file() and not config.read_bytes().startswith(mark.encode()):
        problems.add(
            str(out), None, None, f"no {CONFIG_FILE} but one this importer wrote", config.name
        )


def unavailable_config_text(mark: str, *, reason: str, features: Iterable[str]) -> str:
    """`dealcast.toml` of an import: the features the export cannot give (missing on every
    snapshot, in training and serving: `FeatureConfig.unavailable_features`)."""
    names = ", ".join(f'"{name}"' for name in features)
    return f"{mark}: {reason}\n[features]\nunavailable_features = [{names}]\n"


def with_deal_owners(
    owners: pd.DataFrame, deal_owners: pd.Series
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """`owners` plus, without a team, every owner a deal names that it lacks (each is a team
    of one, the contract's default), and those owners sorted, for the report to list."""
    missing = sorted(set(deal_owners.dropna()) - set(owners["owner_id"].dropna()))
    added = pd.DataFrame({"owner_id": list(missing), "team": pd.NA})
    return pd.concat([owners, added], ignore_index=True), tuple(missing)


def source_file_lines(files: Iterable[SourceFileReport]) -> list[str]:
    """The report's lines on each source file: decoding, rows read and used, what was left."""
    lines = ["source files:"]
    for item in files:
        lines.append(
            f"  {item.file}: {item.encoding}, {item.rows_read} rows read, "
            f"{item.rows_used} used; decoded: {item.decoding.describe()}"
        )
        lines.extend(f"    skipped {n} rows: {reason}" for reason, n in item.skipped.items())
        lines.extend(f"    not carried: {d.column}: {d.reason}" for d in item.dropped_columns)
        lines.extend(f"    note: {text}" for text in item.notes)
    return lines
