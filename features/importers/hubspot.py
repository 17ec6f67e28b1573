"""A HubSpot export (deals, owners, companies, engagements) converted into the data contract.

`import_hubspot(src, out, pipeline=None, timezone="UTC")` reads `deals.csv` (required),
`owners.csv`, `companies.csv` and the engagements (`engagements.csv` with an `Activity type`
column, or one file per type: `calls.csv`, `emails.csv`, `meetings.csv`, `notes.csv`,
`tasks.csv`) from `src` (file names case-insensitive), checks every value it maps, and writes
a contract export folder with `features.export_writer`. Decoding (UTF-8 / Windows-1252 per
line, BOM, NUL bytes, header-only files) is `source_files`'.

HubSpot's deal export is wide: one row per deal, its current `Deal Stage`, `Pipeline`,
`Amount`, `Close Date`, `Create Date`, `Deal owner`, `Associated Company`, `Record ID`, and for
every stage of every pipeline the calculated properties `Date entered "<stage>" (<pipeline>)`
and `Date exited "<stage>" (<pipeline>)` (HubSpot also labels them
`Date entered "<stage> (<pipeline>)"`; both are read). Decisions worth knowing:

- Times come in the portal's time zone without an offset: `timezone` names it, and they are
  converted to UTC (a repeated daylight-saving hour read as its later pass, a time in the
  skipped hour refused by row). Close dates are calendar days, never shifted.
- One pipeline per import. Each pipeline has its own stages, and the contract one stage
  model, so a deal export with several pipelines and no `pipeline` chosen is refused with the
  pipelines and their deal counts listed (importing the largest silently would drop deals
  nobody asked to drop); with `pipeline`, the other pipelines' deals are skipped and counted.
- The stage history is rebuilt from the stage dates (`stage_dates`, the rebuild `dealcast
  import csv` uses for wide exports too): one history row per stage the deal
  entered, at its `Date entered`, in time order, so skipped stages are absent and a return to
  an earlier stage is a regression, as they happened. HubSpot keeps one entry per stage, so a
  stage entered twice shows its last entry only. The deal's current stage is the one stage with
  an entry and no exit; a stage exited before it was entered, or another stage without an
  exit, is refused. A deal with no stage dates at all is one row at its creation.
- Stage order is the export's column order (HubSpot writes a pipeline's stages in order).
  Won and lost stages are recognised from their probability (100% won, 0% lost), else their
  names ("won", "lost"). A stage's probability is the `Deal probability` of the deals in it
  (HubSpot writes the pipeline's stage probability there, 0-1 or percent); deals of one stage
  that disagree are refused. It becomes `probability` of every history row and `stages.yaml`.
- What a wide export cannot know is said, not guessed. Amount and close date have no history:
  every rebuilt row carries the export-time value (the report says so). Forecast category and
  deal probability overrides are export-time values too, and a category read back onto a
  deal's early rows would leak its outcome: they are not written.
- Owners are named in `Deal owner` as HubSpot writes them (first and last name), and that name
  is the owner_id. An owner of a deal missing from owners.csv is added with no team (each is a
  team of one, as the contract's default), listed and counted in the report.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pandas as pd

from features.contract import STAGES_FILE
from features.errors import DealcastDataError, ValidationReport
from features.export_writer import write_export
from features.importers.export_folder import (
    AMOUNT_HISTORY_FEATURES,
    CLOSE_DATE_HISTORY_FEATURES,
    CONFIG_FILE,
    source_file_lines,
    stale_outputs,
    unavailable_config_text,
    with_deal_owners,
)
from features.importers.source_files import (
    ImportProblems,
    SourceFileReport,
    SourceTable,
    TimeReading,
    known_zone,
    read_source_file,
)
from features.importers.stage_dates import rebuild_from_stage_dates
from features.stages import StageConfig

logger = logging.getLogger(__name__)

DEALS_FILE: Final = "deals"
OWNERS_FILE: Final = "owners"
COMPANIES_FILE: Final = "companies"
# One engagements file with a type column, or one file per type (the type from its name).
ENGAGEMENT_FILES: Final[dict[str, str | None]] = {
    "engagements": None,
    "calls": "CALL",
    "emails": "EMAIL",
    "meetings": "MEETING",
    "notes": "NOTE",
    "tasks": "TASK",
}

DEAL_COLUMNS: Final = (
    "Record ID",
    "Deal Name",
    "Deal Stage",
    "Pipeline",
    "Amount",
    "Close Date",
    "Create Date",
    "Deal owner",
    "Associated Company",
    "Deal Type",
    "Forecast category",
    "Deal probability",
)
OWNER_COLUMNS: Final = ("Owner", "Email", "Team")
COMPANY_COLUMNS: Final = ("Record ID", "Company name", "Industry", "Number of Employees")
ENGAGEMENT_COLUMNS: Final = ("Activity type", "Activity date", "Associated Deal IDs")
# HubSpot's engagement types as the contract's activity types.
ACTIVITY_TYPES: Final = {
    "CALL": "call",
    "EMAIL": "email",
    "MEETING": "meeting",
    "NOTE": "other",
    "TASK": "other",
}
# The features that read the history of amount and close date, and those that read the close
# date at as_of (for a closed deal, the export's close date is the day it closed: its outcome
# seen early): missing on every snapshot of this export (FeatureConfig.unavailable_features,
# written to the export's dealcast.toml). Without close_date_in_quarter the baselines' period
# forecasts take each stage's learned in-period share (models.baselines.PeriodShare).
UNAVAILABLE_FEATURES: Final = AMOUNT_HISTORY_FEATURES + CLOSE_DATE_HISTORY_FEATURES
CONFIG_MARK: Final = "# written by dealcast import hubspot"
EXPORT_TIME_NOTE: Final = (
    "amount and close_date have no history in a HubSpot deal export: every rebuilt history row "
    "carries the export-time value, so amount changes and close-date pushes are not observed, "
    "and a closed deal's close date is its actual one on every row; the features that read "
    "their history or the close date at as_of (" + ", ".join(UNAVAILABLE_FEATURES) + ") are "
    f"missing on every snapshot (unavailable_features in {CONFIG_FILE}), and the baselines' "
    "period forecasts count each open deal by its stage's learned share of wins closing in "
    "the period instead of its close date"
)

# `Date entered "Stage" (Pipeline)` and HubSpot's own `Date entered "Stage (Pipeline)"`.
_STAGE_COLUMN = re.compile(
    r'^Date (?P<kind>entered|exited) "(?:(?P<s1>.+)" \((?P<p1>.+)\)|(?P<s2>.+) \((?P<p2>.+)\)")$'
)


class HubSpotImportError(DealcastDataError):
    """The HubSpot export cannot be imported; `report` lists every problem found."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


@dataclass(frozen=True)
class HubSpotImportReport:
    """What an import read, wrote and decided, for the person running it."""

    src: Path
    out: Path
    pipeline: str
    timezone: str
    files: tuple[SourceFileReport, ...]
    rows_written: dict[str, int]
    stages: StageConfig
    owners_added: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def format(self) -> str:
        lines = [
            f"HubSpot export {self.src} -> {self.out} (pipeline {self.pipeline!r}, naive times "
            f"read in {self.timezone})"
        ]
        lines.extend(source_file_lines(self.files))
        lines.append(f"written to {self.out}:")
        lines.extend(f"  {name}: {n} rows" for name, n in self.rows_written.items())
        won, lost = ", ".join(self.stages.won_stages), ", ".join(self.stages.lost_stages)
        lines.append(
            f"stages: {len(self.stages.open_stages)} open ({', '.join(self.stages.open_stages)}),"
            f" won {won}, lost {lost}"
        )
        if self.owners_added:
            lines.append(
                f"repair owner_added: {len(self.owners_added)} deal owners missing from owners.csv "
                "added without a team: " + ", ".join(self.owners_added)
            )
        lines.extend(f"note: {text}" for text in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class StageColumn:
    """One stage calculated property of the deal file."""

    column: str
    kind: str  # entered | exited
    stage: str
    pipeline: str


def stage_columns(columns: list[str]) -> list[StageColumn]:
    """The `Date entered`/`Date exited` columns of a deal file, in the file's order."""
    found = []
    for column in columns:
        match = _STAGE_COLUMN.match(column)
        if match is not None:
            stage = match["s1"] if match["s1"] is not None else match["s2"]
            pipeline = match["p1"] if match["p1"] is not None else match["p2"]
            found.append(StageColumn(column, match["kind"], stage.strip(), pipeline.strip()))
    return found


def _probabilities(deals: SourceTable, stage: pd.Series, keep: pd.Series) -> dict[str, float]:
    """Each stage's probability in percent, from the `Deal probability` of its deals."""
    if not deals.has("Deal probability"):
        return {}
    raw = deals.numbers("Deal probability")
    fraction = bool(raw[keep].dropna().le(1.0).all())
    percent = raw * 100.0 if fraction else raw
    out_of_range = keep & ((percent < 0) | (percent > 100)).fillna(False)
    deals.problems.add_rows(
        deals.name, "Deal probability", out_of_range, "a probability in 0-1 or 0-100", raw
    )
    frame = pd.DataFrame({"stage": stage, "p": percent})[keep & percent.notna()]
    spread = frame.groupby("stage")["p"].agg(["min", "max"])
    disagree = spread.index[spread["min"] != spread["max"]]
    for name in disagree:
        deals.problems.add_rows(
            deals.name,
            "Deal probability",
            keep & stage.eq(name).fillna(False),
            f"one probability for every deal in stage {name!r} (the pipeline's stage probability)",
            raw,
        )
    return {str(k): float(v) for k, v in spread["min"].items()}


def stage_model(stages: list[str], probabilities: dict[str, float]) -> StageConfig | None:
    """The pipeline's stage model: stages in pipeline order, won/lost by probability or name."""

    def closed(name: str, word: str, percent: float) -> bool:
        p = probabilities.get(name)
        return p == percent if p is not None else word in name.lower()

    won = tuple(s for s in stages if closed(s, "won", 100.0))
    lost = tuple(s for s in stages if s not in won and closed(s, "lost", 0.0))
    if not won or not lost:
        return None
    probabilities = {**probabilities, **dict.fromkeys(won, 100.0), **dict.fromkeys(lost, 0.0)}
    return StageConfig(
        open_stages=tuple(s for s in stages if s not in won and s not in lost),
        won_stages=won,
        lost_stages=lost,
        probabilities={s: probabilities[s] for s in stages if s in probabilities},
        source="stages.yaml",
    )


def rebuild_history(
    deals: SourceTable,
    columns: list[StageColumn],
    *,
    ids: pd.Series,
    current: pd.Series,
    created: pd.Series,
    keep: pd.Series,
) -> pd.DataFrame:
    """(opportunity_id, changed_at, stage) of every stage entry of the kept deals, time order
    (`stage_dates.rebuild_from_stage_dates`, the one rebuild of a wide export's stage dates).
    """
    entered = {c.stage: c.column for c in columns if c.kind == "entered"}
    exited = {c.stage: c.column for c in columns if c.kind == "exited"}
    for stage, column in exited.items():
        if stage not in entered:
            deals.problems.add(
                deals.name,
                column.replace("Date exited", "Date entered", 1),
                None,
                "a Date entered column for every Date exited column",
                "no such column",
            )
    return rebuild_from_stage_dates(
        deals,
        entered=entered,
        exited={s: c for s, c in exited.items() if s in entered},
        ids=ids,
        current=current,
        current_column="Deal Stage",
        created=created,
        keep=keep,
    )


def config_text() -> str:
    """`dealcast.toml` of a HubSpot import: the features this export cannot give."""
    return unavailable_config_text(
        CONFIG_MARK,
        reason="a deal export has no amount or close-date history",
        features=UNAVAILABLE_FEATURES,
    )


def _open(
    files: dict[str, Path],
    name: str,
    known: tuple[str, ...],
    problems: ImportProblems,
    times: TimeReading,
) -> SourceTable | None:
    path = files.get(name)
    if path is None:
        return None
    source = read_source_file(path, known_columns=known, problems=problems)
    return None if source is None else SourceTable(source, problems, times=times)


def _filled(deals: SourceTable, column: str, values: pd.Series, keep: pd.Series) -> pd.Series:
    """`values` of a column every imported deal must fill (another pipeline's deals need not)."""
    empty = keep & values.isna() & deals.text(column).isna()
    deals.problems.add_rows(deals.name, column, empty, "a non-empty value", values)
    return values


def _choose_pipeline(
    deals: SourceTable, pipelines: pd.Series, chosen: str | None
) -> tuple[str | None, pd.Series]:
    counts = pipelines.value_counts()
    listing = ", ".join(f"{name!r} ({n} deals)" for name, n in counts.items())
    if chosen is None:
        if len(counts) > 1:
            deals.problems.add(
                deals.name,
                "Pipeline",
                None,
                "one pipeline (choose one with --pipeline NAME: each has its own stages)",
                listing,
            )
            return None, pd.Series(False, index=pipelines.index)
        if not len(counts):
            return None, pd.Series(False, index=pipelines.index)  # every Pipeline is empty
        chosen = str(counts.index[0])
    elif chosen not in counts.index:
        deals.problems.add(deals.name, "Pipeline", None, f"the pipeline {chosen!r}", listing)
        return None, pd.Series(False, index=pipelines.index)
    keep = pipelines.eq(chosen).fillna(False)
    deals.skip(f"in another pipeline than {chosen!r}", ~keep & pipelines.notna())
    return chosen, keep


def import_hubspot(
    src: Path, out: Path, *, pipeline: str | None = None, timezone: str = "UTC"
) -> HubSpotImportReport:
    """Convert the HubSpot export in `src` into a contract export folder `out`.

    HubSpot writes times in the portal's time zone without an offset: `timezone` (an IANA
    name, e.g. America/New_York) is that zone, and every naive time is read in it and
    converted to UTC. Dates (Close Date) are calendar days and are not shifted.

    Raises HubSpotImportError, listing every problem, if the export is unusable; nothing is
    written then.
    """
    src, out = Path(src), Path(out)
    problems = ImportProblems()
    if not known_zone(timezone):
        problems.add("--timezone", None, None, "an IANA time zone (e.g. Europe/Berlin)", timezone)
    if not src.is_dir():
        problems.add(str(src), None, None, "a folder of HubSpot CSV exports", "no such folder")
    if problems:
        raise HubSpotImportError(ValidationReport(str(src), problems.violations))
    times = TimeReading(zone=timezone)
    files = {p.stem.lower(): p for p in sorted(src.iterdir()) if p.suffix.lower() == ".csv"}
    deals = _open(files, DEALS_FILE, DEAL_COLUMNS, problems, times)
    if deals is None or deals.source.header_only:
        if not problems:
            problems.add(f"{DEALS_FILE}.csv", None, None, "a HubSpot deal export", "no deals")
        raise HubSpotImportError(ValidationReport(str(src), problems.violations))
    read = [deals]
    notes = [EXPORT_TIME_NOTE]
    deals.require("Record ID", "Deal Stage", "Pipeline", "Create Date", "Deal owner")
    pipelines = deals.text("Pipeline", required=True)
    chosen, keep = _choose_pipeline(deals, pipelines, pipeline)
    if chosen is None:
        raise HubSpotImportError(ValidationReport(str(src), problems.violations))
    ids = _filled(deals, "Record ID", deals.text("Record ID"), keep)
    repeated = keep & ids.duplicated(keep=False) & ids.notna()
    problems.add_rows(deals.name, "Record ID", repeated, "a unique Record ID", ids)
    current = _filled(deals, "Deal Stage", deals.text("Deal Stage"), keep)
    created = _filled(deals, "Create Date", deals.timestamps("Create Date"), keep)
    owner = _filled(deals, "Deal owner", deals.text("Deal owner"), keep)
    columns = [c for c in stage_columns(list(deals.frame.columns)) if c.pipeline == chosen]
    if not columns:
        problems.add(
            deals.name,
            f'Date entered "<stage>" ({chosen})',
            None,
            f"the stage calculated properties of pipeline {chosen!r}",
            "no such columns",
        )
    other = {c.column for c in stage_columns(list(deals.frame.columns))} - {
        c.column for c in columns
    }
    if other:
        deals.note(f"{len(other)} stage date columns of other pipelines not read")
    order = list(dict.fromkeys(c.stage for c in columns))
    unknown_stage = keep & current.notna() & ~current.isin(order)
    problems.add_rows(
        deals.name, "Deal Stage", unknown_stage, f"a stage of pipeline {chosen!r}", current
    )
    probabilities = _probabilities(deals, current, keep)
    stages = stage_model(order, probabilities) if order else None
    if order and stages is None:
        problems.add(
            deals.name,
            "Deal Stage",
            None,
            "a won stage and a lost stage in the pipeline (probability 100%/0%, or named won/lost)",
            ", ".join(order),
        )
    history = rebuild_history(deals, columns, ids=ids, current=current, created=created, keep=keep)
    amount = deals.numbers("Amount")
    problems.add_rows(
        deals.name, "Amount", keep & (amount < 0).fillna(False), "amount >= 0", amount
    )
    # A close date is a day on the calendar: never shifted by the portal's zone.
    close_date = _filled(deals, "Close Date", deals.dates("Close Date", time_of_day=True), keep)
    state = pd.DataFrame(
        {"amount": amount.to_numpy(), "close_date": close_date.to_numpy()}, index=ids.to_numpy()
    )[keep.to_numpy()]
    state = state[~state.index.duplicated()]
    deal_of_row = history["opportunity_id"].astype(object)
    history = history.assign(
        amount=state["amount"].reindex(deal_of_row).to_numpy(),
        close_date=state["close_date"].reindex(deal_of_row).to_numpy(),
        probability=history["stage"].map(stages.probabilities if stages else {}).astype(float),
    )
    company = _filled(deals, "Associated Company", deals.text("Associated Company"), keep)
    opportunities = pd.DataFrame(
        {
            "opportunity_id": ids,
            "account_id": company,
            "owner_id": owner,
            "created_at": created,
            "type": deals.text("Deal Type"),
            "name": deals.text("Deal Name"),
        }
    )[keep].reset_index(drop=True)
    for column in ("Forecast category", "Deal probability"):
        if deals.has(column):
            deals.drop(
                column,
                "an export-time value with no history: on a deal's early rows it would leak "
                "its outcome (the stage's probability is written as probability)",
                leaky=True,
            )
    deals.use(len(opportunities))
    tables: dict[str, pd.DataFrame] = {
        "opportunities": opportunities,
        "opportunity_history": history,
    }
    owners_added: tuple[str, ...] = ()
    owner_table = _open(files, OWNERS_FILE, OWNER_COLUMNS, problems, times)
    if owner_table is not None and not owner_table.source.header_only:
        read.append(owner_table)
        owner_table.require("Owner")
        owners = pd.DataFrame(
            {"owner_id": owner_table.text("Owner", required=True), "team": owner_table.text("Team")}
        )
        problems.add_rows(
            owner_table.name,
            "Owner",
            owners["owner_id"].duplicated(keep=False) & owners["owner_id"].notna(),
            "one row per owner",
            owners["owner_id"],
        )
        owner_table.use(len(owners))
        tables["owners"], owners_added = with_deal_owners(owners, opportunities["owner_id"])
    company_table = _open(files, COMPANIES_FILE, COMPANY_COLUMNS, problems, times)
    if company_table is not None and not company_table.source.header_only:
        read.append(company_table)
        company_table.require("Company name")
        names = company_table.text("Company name", required=True)
        problems.add_rows(
            company_table.name,
            "Company name",
            names.duplicated(keep=False) & names.notna(),
            "a unique company name (deals name their company in Associated Company)",
            names,
        )
        accounts = pd.DataFrame(
            {"account_id": names, "hubspot_id": company_table.text("Record ID")}
        )
        if company_table.has("Industry"):
            accounts["industry"] = company_table.text("Industry")
        if company_table.has("Number of Employees"):
            accounts["employees"] = company_table.numbers("Number of Employees")
        company_table.use(len(accounts))
        tables["accounts"] = accounts
    activities = []
    for name, file_type in ENGAGEMENT_FILES.items():
        engagement_table = _open(files, name, ENGAGEMENT_COLUMNS, problems, times)
        if engagement_table is not None and not engagement_table.source.header_only:
            read.append(engagement_table)
            ids_imported = set(opportunities["opportunity_id"])
            activities.append(_activities(engagement_table, ids_imported, file_type))
    if activities:
        tables["activities"] = pd.concat(activities, ignore_index=True)
    writing = {f"{name}.csv" for name in tables} | {STAGES_FILE}
    stale_outputs(out, writing, problems, mark=CONFIG_MARK)
    if problems or stages is None:  # no stages is always a problem noted above
        raise HubSpotImportError(ValidationReport(str(src), problems.violations))
    write_export(tables, out, stages=stages.to_yaml_dict())
    (out / CONFIG_FILE).write_text(config_text(), encoding="utf-8")
    report = HubSpotImportReport(
        src=src,
        out=out,
        pipeline=chosen,
        timezone=timezone,
        files=tuple(t.report() for t in read),
        rows_written={f"{name}.csv": len(frame) for name, frame in tables.items()},
        stages=stages,
        owners_added=owners_added,
        notes=tuple(notes),
    )
    logger.info("imported %s into %s: %s", src, out, report.rows_written)
    return report


def _activities(table: SourceTable, deal_ids: set[str], file_type: str | None) -> pd.DataFrame:
    """Engagements as activities, one per associated deal; HubSpot separates ids with ';'.

    `file_type` is the engagement type of a per-type export (calls.csv, ...): its rows need
    no type column. Every row is used or skipped with its reason, none silently dropped.
    """
    table.require("Activity date", "Associated Deal IDs")
    if file_type is None or table.has("Activity type"):
        table.require("Activity type")
        kind = table.text("Activity type", required=True).str.upper()
    else:
        kind = pd.Series(file_type, index=table.frame.index, dtype="string")
    known = kind.isin(list(ACTIVITY_TYPES)).fillna(False)
    table.problems.add_rows(
        table.name,
        "Activity type",
        kind.notna() & ~known,
        "an engagement type: " + ", ".join(ACTIVITY_TYPES),
        kind,
    )
    occurred = table.timestamps("Activity date", required=True)
    deals = table.text("Associated Deal IDs")
    frame = pd.DataFrame(
        {"deal": deals.str.split(";"), "occurred_at": occurred, "type": kind.map(ACTIVITY_TYPES)}
    ).explode("deal")
    frame["deal"] = frame["deal"].astype("string").str.strip()
    frame = frame[frame["deal"].notna() & frame["deal"].ne("")]
    ours = frame["deal"].isin(deal_ids).to_numpy(dtype=bool)
    outside = int((~ours).sum())
    if outside:
        table.note(
            f"{outside} deal associations name deals not imported (another pipeline, or not in "
            "deals.csv): not written"
        )
    frame = frame[ours]
    used = pd.Series(table.frame.index.isin(frame.index), index=table.frame.index)
    table.skip("associated with no deal", deals.isna())
    table.skip("associated only with deals not imported", deals.notna() & ~used)
    table.use(int(used.sum()))
    return pd.DataFrame(
        {
            "opportunity_id": frame["deal"].to_numpy(dtype=object),
            "occurred_at": frame["occurred_at"].to_numpy(),
            "type": frame["type"].to_numpy(dtype=object),
        }
    )
