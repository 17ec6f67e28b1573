"""Reading an export folder into one typed, validated, repaired `CrmExport`.

Nothing downstream accepts an export that failed validation: `load_export` raises
`ExportInvalid` with every violation, and `CrmExport` can only be built from checked tables.
Repairable problems are repaired (features.repairs) and listed in `CrmExport.report.repairs`;
`strict=True` refuses them instead.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import yaml

from features.contract import STAGES_FILE, TABLES
from features.errors import ExportInvalid, RepairLog, ValidationReport, Violation
from features.repairs import KINDS
from features.stages import StageConfig
from features.validation import check_tables

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrmExport:
    """A validated CRM export: typed tables in the corporate currency, times in UTC.

    `history` and `activities` are sorted by deal and time; every deal has at least one
    history row (deals exported without history get one, read from their current state at
    `created_at`). `owners` covers every owner of a deal; an owner without a team is a team
    of one. `report` keeps the warnings the export raised and, in `report.repairs`, every
    repaired row and the row accounting of every table.
    """

    opportunities: pd.DataFrame
    history: pd.DataFrame
    activities: pd.DataFrame
    accounts: pd.DataFrame
    owners: pd.DataFrame
    quotas: pd.DataFrame
    exchange_rates: pd.DataFrame
    field_history: pd.DataFrame
    stages: StageConfig
    fingerprint: str
    report: ValidationReport

    @property
    def n_opportunities(self) -> int:
        return len(self.opportunities)


def _header(path: Path) -> list[str] | None:
    """The header row's fields (None for an empty file)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), None) or None


def _read_csv(path: Path, table: str, out: list[Violation]) -> pd.DataFrame | None:
    """Every field as text, empty fields missing. A row with more or fewer fields than the
    header makes the file unreadable, one violation per such row (pandas would fill a short
    row with NaN, or shift every column of a long first row under the index)."""
    header = _header(path)
    if header is None:
        out.append(Violation(table, None, None, "a file with a header row", found="an empty file"))
        return None
    repeated = sorted({name for name in header if header.count(name) > 1})
    for name in repeated:
        out.append(
            Violation(
                table, name, None, "unique column names", found=f"{header.count(name)} columns"
            )
        )
    if repeated:
        return None
    bad: list[pa_csv.InvalidRow] = []

    def skip(row: pa_csv.InvalidRow) -> str:
        bad.append(row)
        return "skip"

    def read(*, use_threads: bool) -> pa.Table:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=use_threads),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )

    parsed = read(use_threads=True)
    if bad:
        # Only a read on one thread knows the rows' line numbers: read again to name them.
        bad.clear()
        read(use_threads=False)
        for row in bad:
            line = row.number if row.number is not None and row.number > 0 else None
            text = row.text if len(row.text) <= 60 else row.text[:57] + "..."
            out.append(
                Violation(
                    table,
                    None,
                    None if line is None else line - 1,
                    f"a row of the header's {row.expected_columns} fields",
                    found=f"{row.actual_columns} fields"
                    + ("" if line is None else f" on line {line}")
                    + f": {text!r}",
                )
            )
        return None
    return parsed.to_pandas()


def _read_file(path: Path, table: str, out: list[Violation]) -> pd.DataFrame | None:
    try:
        if path.suffix == ".csv":
            frame = _read_csv(path, table, out)
            if frame is None:
                return None
        else:
            frame = pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as error:
        out.append(
            Violation(
                table,
                None,
                None,
                "a readable CSV or Parquet file",
                found=f"{type(error).__name__}: {error}",
            )
        )
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_export(path: Path) -> tuple[dict[str, pd.DataFrame], object | None, list[Violation]]:
    """The raw tables of an export folder, its parsed `stages.yaml` (or None), and read errors."""
    out: list[Violation] = []
    if not path.is_dir():
        out.append(Violation("export", None, None, "a folder of table files", found=str(path)))
        return {}, None, out
    raw: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        files = [p for p in (path / f"{name}.csv", path / f"{name}.parquet") if p.exists()]
        if len(files) > 1:
            out.append(
                Violation(
                    name,
                    None,
                    None,
                    "one file per table",
                    found=" and ".join(p.name for p in files),
                )
            )
            continue
        if files and (frame := _read_file(files[0], name, out)) is not None:
            raw[name] = frame
    stages_document: object | None = None
    stages_path = path / STAGES_FILE
    if stages_path.exists():
        try:
            stages_document = yaml.safe_load(stages_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            out.append(
                Violation(
                    STAGES_FILE,
                    None,
                    None,
                    "a readable YAML file",
                    found=f"{type(error).__name__}: {error}",
                )
            )
    return raw, stages_document, out


def fingerprint_export(path: Path) -> str:
    """sha256 over the contract files' names and bytes: the same export, the same print."""
    digest = hashlib.sha256()
    names = [f"{n}.{ext}" for n in TABLES for ext in ("csv", "parquet")] + [STAGES_FILE]
    for name in names:
        file = path / name
        if not file.exists():
            continue
        digest.update(name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def _owners(opportunities: pd.DataFrame, owners: pd.DataFrame | None) -> pd.DataFrame:
    """Every owner of a deal, with a team (an owner without one is a team of one)."""
    listed = owners if owners is not None else pd.DataFrame({"owner_id": pd.Series(dtype="string")})
    missing = pd.Index(opportunities["owner_id"].unique()).difference(listed["owner_id"])
    out = pd.concat(
        [listed, pd.DataFrame({"owner_id": missing.astype("string")})], ignore_index=True
    )
    team = out["team"] if "team" in out.columns else pd.Series(pd.NA, index=out.index)
    return out.assign(team=team.astype("string").fillna(out["owner_id"].astype("string")))


def build_export(
    raw: Mapping[str, pd.DataFrame],
    *,
    stages_document: object | None = None,
    stages: StageConfig | None = None,
    source: str = "<memory>",
    fingerprint: str = "",
    read_violations: list[Violation] | None = None,
    strict: bool = False,
) -> CrmExport:
    """Check and repair raw tables and assemble the typed export; raises ExportInvalid on
    any error, and with `strict` on any repair too."""
    checked = check_tables(raw, stages_document=stages_document, stages=stages)
    unreadable = {v.table for v in read_violations or []}
    found = [v for v in checked.violations if not (v.table in unreadable and v.row is None)]
    repairs = RepairLog(checked.repairs, checked.rows)
    refused = strict_violations(repairs) if strict else []
    report = ValidationReport(source, [*(read_violations or []), *found, *refused], repairs)
    if not report.ok or checked.stages is None:
        raise ExportInvalid(report)
    frames = checked.frames
    opportunities = frames["opportunities"]
    history = frames["opportunity_history"].sort_values(
        ["opportunity_id", "changed_at"], kind="stable"
    )
    empty_activities = pd.DataFrame(
        {
            "opportunity_id": pd.Series(dtype="string"),
            "occurred_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "type": pd.Series(dtype="string"),
            "contact_role": pd.Series(dtype="string"),
        }
    )
    activities = frames.get("activities", empty_activities)
    if "contact_role" not in activities.columns:
        activities = activities.assign(
            contact_role=pd.Series(pd.NA, index=activities.index, dtype="string")
        )
    activities = activities.sort_values(["opportunity_id", "occurred_at"], kind="stable")

    def table(name: str) -> pd.DataFrame:
        columns = [c.name for c in TABLES[name].columns]
        return frames.get(name, pd.DataFrame({c: pd.Series(dtype="object") for c in columns}))

    if report.warnings:
        logger.warning("%s: %d warnings", source, len(report.warnings))
    if len(repairs):
        logger.warning("%s: %d rows repaired %s", source, len(repairs), repairs.counts())
    return CrmExport(
        opportunities=opportunities.reset_index(drop=True),
        history=history.reset_index(drop=True),
        activities=activities.reset_index(drop=True),
        accounts=table("accounts"),
        owners=_owners(opportunities, frames.get("owners")),
        quotas=table("quotas"),
        exchange_rates=table("exchange_rates"),
        field_history=table("opportunity_field_history"),
        stages=checked.stages,
        fingerprint=fingerprint,
        report=report,
    )


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def strict_violations(repairs: RepairLog) -> list[Violation]:
    """Every repair as an error: what `strict` loading refuses."""
    return [
        Violation(
            table=str(r["table"]),
            column=None if _missing(r["column"]) else str(r["column"]),
            row=None if _missing(r["row"]) else int(r["row"]),
            expected=f"no repair (strict): {r['kind']}, {KINDS[str(r['kind'])]}",
            found=f"{r['before']} -> {r['after']}",
            key=None if _missing(r["key"]) else str(r["key"]),
        )
        for r in repairs.frame.to_dict("records")
    ]


def validate_export(path: Path, *, strict: bool = False) -> ValidationReport:
    """Every violation and repair of the export at `path`, without raising."""
    try:
        return load_export(path, strict=strict).report
    except ExportInvalid as invalid:
        return invalid.report


def load_export(path: Path, *, strict: bool = False) -> CrmExport:
    """Read, check, repair and type the export folder at `path`; raises ExportInvalid if it
    is bad (with `strict`, also if anything needed a repair)."""
    path = Path(path)
    raw, stages_document, read_violations = read_export(path)
    export = build_export(
        raw,
        stages_document=stages_document,
        source=str(path),
        fingerprint=fingerprint_export(path) if path.is_dir() else "",
        read_violations=read_violations,
        strict=strict,
    )
    del raw
    # Arrow's allocator keeps what parsing and typing freed for its own later use; handed
    # back, it serves the snapshots' numpy arrays (a fifth of the load's peak at 100,000 deals).
    pa.default_memory_pool().release_unused()
    return export


def export_as_of(export: CrmExport, cutoff: pd.Timestamp) -> CrmExport:
    """The export as it stood at `cutoff`: deals created, history changed and activities
    logged after it are gone, as if the CRM had been exported then. Static tables (accounts,
    owners, quotas, rates) are kept whole; they carry no time."""
    cutoff = pd.Timestamp(cutoff)
    opportunities = export.opportunities[export.opportunities["created_at"] <= cutoff]
    history = export.history[export.history["changed_at"] <= cutoff]
    history = history[history["opportunity_id"].isin(opportunities["opportunity_id"])]
    # A deal whose first history row came after the cut-off did not exist yet.
    opportunities = opportunities[opportunities["opportunity_id"].isin(history["opportunity_id"])]
    activities = export.activities[
        (export.activities["occurred_at"] <= cutoff)
        & export.activities["opportunity_id"].isin(opportunities["opportunity_id"])
    ]
    field_history = export.field_history
    if "changed_at" in field_history.columns and len(field_history):
        field_history = field_history[field_history["changed_at"] <= cutoff]
    return replace(
        export,
        opportunities=opportunities.reset_index(drop=True),
        history=history.reset_index(drop=True),
        activities=activities.reset_index(drop=True),
        field_history=field_history,
        fingerprint=f"{export.fingerprint}@{cutoff.isoformat()}",
    )
