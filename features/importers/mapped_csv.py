"""Any CRM's CSV export converted into the data contract through a mapping file.

`import_csv(src, mapping, out)` reads the files a mapping (`features.importers.mapping`) names
from `src`, checks every value it maps, and writes a contract export folder. Decoding,
typed columns and the import report are `source_files`'; a wide export's stage dates are
rebuilt by `stage_dates`, the rebuild the HubSpot importer uses.

What each kind of history can know, and what it cannot:

- `long` (a file of one row per change, the state after it): the history as it happened. A
  field the history file does not carry (amount, close date) is the deal's export-time value
  on every row, and the features reading its history are unavailable. A deal without history
  rows is refused: its current stage would be read back to its creation.
- `wide` (per-stage entry and exit dates): the stage path as it happened, each stage at its
  last entry; amount and close date are export-time values, as in HubSpot's export.
- `current` (the current state only): nothing between creation and the export. Every deal
  starts in `history.stage_at_creation` (what the mapping says deals start in, not what each
  did); an open deal is in its current stage from `source.exported_at` on, never earlier (a
  current stage back-dated to creation would show early snapshots where the deal got to);
  a closed deal closes at the end of its close date (its outcome is not seen before that day
  is over). The stage-path features (stage changes, days in stage, ...) are unavailable.

Forecast categories and other current values of a wide or current-state export are not
written: on a deal's early rows they would leak its outcome. Unavailable features go to the
export's `dealcast.toml` (`features.unavailable_features`), which train and score read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
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
from features.importers.mapping import (
    CsvMapping,
    FileMapping,
    MappingError,
    check_columns,
    load_mapping,
)
from features.importers.source_files import (
    ImportProblems,
    SourceFileReport,
    SourceTable,
    read_source_file,
)
from features.importers.stage_dates import rebuild_from_stage_dates
from features.stages import StageConfig

logger = logging.getLogger(__name__)

CONFIG_MARK: Final = "# written by dealcast import csv"
AMOUNT_HISTORY: Final = AMOUNT_HISTORY_FEATURES
CLOSE_DATE_HISTORY: Final = CLOSE_DATE_HISTORY_FEATURES
# A current-state export knows no stage path: these would read one made up of the assumed
# first stage and the export time.
STAGE_PATH: Final = (
    "stage_order",
    "stage_probability",
    "days_in_stage",
    "stage_duration_percentile",
    "stage_changes",
    "stage_regressions",
    "stage_skips",
)


class CsvImportError(DealcastDataError):
    """The export cannot be imported with this mapping; `report` lists every problem."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


@dataclass(frozen=True)
class CsvImportReport:
    """What an import read, wrote and decided, for the person running it."""

    src: Path
    out: Path
    mapping: Path
    history_kind: str
    timezone: str
    files: tuple[SourceFileReport, ...]
    rows_written: dict[str, int]
    stages: StageConfig
    unavailable_features: tuple[str, ...]
    owners_added: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def format(self) -> str:
        lines = [
            f"CSV export {self.src} -> {self.out} with {self.mapping.name} ({self.history_kind} "
            f"history, naive times read in {self.timezone})"
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
                f"repair owner_added: {len(self.owners_added)} deal owners missing from the owners "
                "file added without a team: " + ", ".join(self.owners_added)
            )
        if self.unavailable_features:
            lines.append(
                "unavailable (missing on every snapshot, written to "
                f"{CONFIG_FILE}): " + ", ".join(self.unavailable_features)
            )
        lines.extend(f"note: {text}" for text in self.notes)
        return "\n".join(lines)


def _source_path(src: Path, name: str) -> Path | None:
    exact = src / name
    if exact.is_file():
        return exact
    matches = [p for p in src.iterdir() if p.is_file() and p.name.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _filled(table: SourceTable, column: str, values: pd.Series, keep: pd.Series) -> pd.Series:
    """`values` of a column every imported row must fill (rows not selected need not)."""
    empty = keep & values.isna() & table.text(column).isna()
    table.problems.add_rows(table.name, column, empty, "a non-empty value", values)
    return values


def _attribute(table: SourceTable, column: str) -> pd.Series:
    """A kept attribute: numbers when every filled value is one (employees, revenue), so the
    features read a size as a size; text otherwise."""
    values = table.text(column)
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return numbers if bool(numbers.notna().eq(values.notna()).all()) else values


def _labels(
    table: SourceTable,
    column: str,
    names: dict[str, str],
    keep: pd.Series,
    what: str,
) -> pd.Series:
    """A column of labels through a value map; a label the map lacks is a problem by row."""
    labels = table.text(column)
    unknown = keep & labels.notna() & ~labels.isin(list(names))
    shown = ", ".join(repr(label) for label in names)
    table.problems.add_rows(table.name, column, unknown, f"{what} ({shown})", labels)
    return labels.map(names).astype("string")


class _Import:
    """One run of `import_csv`: the mapping, the opened files and the shared problems."""

    def __init__(self, mapping: CsvMapping, src: Path) -> None:
        self.mapping = mapping
        self.src = src
        self.problems = ImportProblems()
        self.tables: dict[str, SourceTable] = {}
        self.notes: list[str] = []

    def open(self) -> None:
        """Read every mapped file and check its mapped columns, before any value is read."""
        mapping, where = self.mapping, self.mapping.path.name
        missing = []
        headers: dict[str, list[str]] = {}
        for item in mapping.files():
            path = _source_path(self.src, item.file)
            if path is None:
                missing.append(f"{where}: {item.key}.file: no file {item.file!r} in {self.src}")
                continue
            source = read_source_file(
                path, known_columns=(), problems=self.problems, encoding=mapping.encoding
            )
            if source is None:
                continue
            self.tables[item.key] = SourceTable(source, self.problems, times=mapping.times)
            headers[item.file] = list(source.frame.columns)
        problems = missing + check_columns(mapping, headers)
        if problems:
            raise MappingError(problems)
        if self.problems:
            raise CsvImportError(ValidationReport(str(self.src), self.problems.violations))

    def stage_config(self) -> StageConfig:
        m = self.mapping
        return StageConfig(
            open_stages=tuple(s.name for s in m.open_stages),
            won_stages=tuple(s.name for s in m.won_stages),
            lost_stages=tuple(s.name for s in m.lost_stages),
            probabilities={s.name: s.probability for s in m.stages if s.probability is not None},
            source="stages.yaml",
        )


def import_csv(src: Path, mapping: Path, out: Path) -> CsvImportReport:
    """Convert the export in `src` into a contract export folder `out` through `mapping`.

    Raises MappingError (naming each bad key) before reading any row if the mapping is
    unusable, and CsvImportError (listing every problem) if the export is; nothing is
    written then.
    """
    src, out = Path(src), Path(out)
    checked = load_mapping(mapping)
    run = _Import(checked, src)
    if not src.is_dir():
        run.problems.add(str(src), None, None, "a folder of CSV files", "no such folder")
        raise CsvImportError(ValidationReport(str(src), run.problems.violations))
    run.open()
    stages = run.stage_config()
    tables, unavailable, owners_added = _convert(run, stages)
    problems = run.problems
    writing = {f"{name}.csv" for name in tables} | {STAGES_FILE}
    stale_outputs(out, writing, problems, mark=CONFIG_MARK)
    if problems:
        raise CsvImportError(ValidationReport(str(src), problems.violations))
    write_export(tables, out, stages=stages.to_yaml_dict())
    reason = "what this export's history cannot give" if unavailable else "nothing unavailable"
    (out / CONFIG_FILE).write_text(
        unavailable_config_text(CONFIG_MARK, reason=reason, features=unavailable),
        encoding="utf-8",
    )
    report = CsvImportReport(
        src=src,
        out=out,
        mapping=checked.path,
        history_kind=checked.history_kind,
        timezone=checked.times.zone,
        files=tuple(t.report() for t in run.tables.values()),
        rows_written={f"{name}.csv": len(frame) for name, frame in tables.items()},
        stages=stages,
        unavailable_features=unavailable,
        owners_added=owners_added,
        notes=tuple(run.notes),
    )
    logger.info("imported %s into %s: %s", src, out, report.rows_written)
    return report


def _convert(
    run: _Import, stages: StageConfig
) -> tuple[dict[str, pd.DataFrame], tuple[str, ...], tuple[str, ...]]:
    m = run.mapping
    deals = run.tables["opportunities"]
    c = m.opportunities.columns
    if deals.source.header_only:
        run.problems.add(deals.name, None, None, "a deal export with rows", "no deals")
        return {}, (), ()
    keep = pd.Series(True, index=deals.frame.index)
    if m.selection is not None:
        chosen = deals.text(m.selection.column)
        keep = chosen.isin(list(m.selection.values)).fillna(False)
        deals.skip(
            f"{m.selection.column} not one of {', '.join(map(repr, m.selection.values))}", ~keep
        )
    ids = _filled(deals, c["opportunity_id"], deals.text(c["opportunity_id"]), keep)
    repeated = keep & ids.duplicated(keep=False) & ids.notna()
    run.problems.add_rows(deals.name, c["opportunity_id"], repeated, "a unique deal id", ids)
    created = _filled(deals, c["created_at"], deals.timestamps(c["created_at"]), keep)
    names = m.stage_names()
    current = None
    if "stage" in c:
        current = _labels(deals, c["stage"], names, keep, "a stage label of [stages]")
        current = _filled(deals, c["stage"], current, keep) if m.history_kind != "long" else current
    amount = deals.numbers(c["amount"]) if "amount" in c else None
    close_date = deals.dates(c["close_date"], time_of_day=True) if "close_date" in c else None
    if amount is not None:
        negative = keep & (amount < 0).fillna(False)
        run.problems.add_rows(deals.name, c["amount"], negative, "amount >= 0", amount)
    if m.currency_column is not None:
        currency = _filled(deals, m.currency_column, deals.text(m.currency_column), keep)
    else:
        currency = pd.Series(m.currency_code, index=deals.frame.index, dtype="string")
    opportunities = pd.DataFrame(
        {
            "opportunity_id": ids,
            "account_id": _filled(deals, c["account_id"], deals.text(c["account_id"]), keep),
            "owner_id": _filled(deals, c["owner_id"], deals.text(c["owner_id"]), keep),
            "created_at": created,
        }
    )
    for name in ("type", "lead_source"):
        if name in c:
            opportunities[name] = deals.text(c[name])
    for name, column in m.opportunities.keep.items():
        opportunities[name] = _attribute(deals, column)
    state = pd.DataFrame(
        {
            "amount": np.nan if amount is None else amount.to_numpy(),
            "close_date": pd.NaT if close_date is None else close_date.to_numpy(),
            "currency": currency.to_numpy(),
        },
        index=ids.to_numpy(),
    )[keep.to_numpy()]
    state = state[~state.index.duplicated() & state.index.notna()]
    unavailable: list[str] = []

    if m.history_kind == "long":
        history = _long_history(run, set(ids[keep].dropna()), set(ids[~keep].dropna()))
        without = keep & ~ids.isin(set(history["opportunity_id"])) & ids.notna()
        history_file = m.history.file if m.history is not None else "the history file"
        run.problems.add_rows(
            deals.name,
            c["opportunity_id"],
            without,
            f"a history row in {history_file} (without one, the deal's current state would be "
            "read back to its creation)",
            ids,
        )
    elif current is None:  # load_mapping requires the current stage of the other kinds
        raise MappingError([f"{m.path.name}: opportunities.columns.stage: a required key"])
    elif m.history_kind == "wide":
        entered, exited = m.wide_columns()
        history = rebuild_from_stage_dates(
            deals,
            entered=entered,
            exited=exited,
            ids=ids,
            current=current,
            current_column=c["stage"],
            created=created,
            keep=keep,
        )
    else:
        history = _current_history(
            run,
            ids=ids,
            current=current,
            created=created,
            keep=keep,
            close_date=close_date,
            stages=stages,
        )
        unavailable.extend(STAGE_PATH)
        run.notes.append(
            "the export has the current state only: every deal is taken to start in "
            f"{m.stage_at_creation!r} (source.stage_at_creation), an open deal is in its current "
            f"stage from the export time {m.exported_at:%Y-%m-%dT%H:%M:%SZ} on, and a closed "
            "deal closes at the end of its close date; the stage path in between is unknown"
        )
    deal_of_row = history["opportunity_id"].astype(object)
    for name, missing_features in (("amount", AMOUNT_HISTORY), ("close_date", CLOSE_DATE_HISTORY)):
        if name not in history.columns:
            history[name] = state[name].reindex(deal_of_row).to_numpy()
            unavailable.extend(missing_features)
            run.notes.append(
                f"{name} has no history in this export: every history row carries the deal's "
                "export-time value (for a closed deal, its final one)"
            )
    if "probability" not in history.columns:
        history["probability"] = history["stage"].map(dict(stages.probabilities)).astype(float)
    history["currency"] = state["currency"].reindex(deal_of_row).to_numpy()
    if m.history_kind != "long" and "forecast_category" in c:
        deals.drop(
            c["forecast_category"],
            "an export-time value with no history: on a deal's early rows it would leak its "
            "outcome",
            leaky=True,
        )
    _check_outcome(run, deals, ids=ids, keep=keep, history=history, stages=stages)
    opportunities = opportunities[keep].reset_index(drop=True)
    deals.use(len(opportunities))
    tables: dict[str, pd.DataFrame] = {
        "opportunities": opportunities,
        "opportunity_history": history.reset_index(drop=True),
    }
    owners_added: tuple[str, ...] = ()
    if m.owners is not None and not run.tables["owners"].source.header_only:
        owners = _simple_table(run, m.owners, "owner_id")
        tables["owners"], owners_added = with_deal_owners(owners, opportunities["owner_id"])
    if m.accounts is not None and not run.tables["accounts"].source.header_only:
        tables["accounts"] = _simple_table(run, m.accounts, "account_id")
    if m.activities is not None and not run.tables["activities"].source.header_only:
        tables["activities"] = _activities(run, set(opportunities["opportunity_id"].dropna()))
    if m.exchange_rates is not None and not run.tables["exchange_rates"].source.header_only:
        tables["exchange_rates"] = _exchange_rates(run, m.exchange_rates)
    return tables, tuple(dict.fromkeys(unavailable)), owners_added


def _exchange_rates(run: _Import, mapping: FileMapping) -> pd.DataFrame:
    """The contract's exchange_rates: currency, rate > 0 and, for dated rates, valid_from."""
    table = run.tables[mapping.key]
    c = mapping.columns
    rate = table.numbers(c["rate"], required=True)
    table.problems.add_rows(
        table.name, c["rate"], (rate <= 0).fillna(False), "a rate > 0", rate.astype("string")
    )
    frame = pd.DataFrame({"currency": table.text(c["currency"], required=True), "rate": rate})
    if "valid_from" in c:
        frame["valid_from"] = table.dates(c["valid_from"], required=True)
    table.use(len(frame))
    return frame


def _long_history(run: _Import, kept: set[str], skipped: set[str]) -> pd.DataFrame:
    m = run.mapping
    table = run.tables["history"]
    c = m.history.columns if m.history is not None else {}
    ids = table.text(c["opportunity_id"], required=True)
    of_skipped = ids.isin(skipped).fillna(False) & ~ids.isin(kept).fillna(False)
    table.skip("of deals not selected (opportunities.select)", of_skipped)
    use = ~of_skipped
    frame = pd.DataFrame(
        {
            "opportunity_id": ids,
            "changed_at": _filled(table, c["changed_at"], table.timestamps(c["changed_at"]), use),
            "stage": _filled(
                table,
                c["stage"],
                _labels(table, c["stage"], m.stage_names(), use, "a stage label of [stages]"),
                use,
            ),
        }
    )
    if "amount" in c:
        frame["amount"] = table.numbers(c["amount"])
        negative = use & (frame["amount"] < 0).fillna(False)
        run.problems.add_rows(table.name, c["amount"], negative, "amount >= 0", frame["amount"])
    if "close_date" in c:
        frame["close_date"] = table.dates(c["close_date"], time_of_day=True)
    if "forecast_category" in c:
        if m.forecast_categories:
            frame["forecast_category"] = _labels(
                table,
                c["forecast_category"],
                dict(m.forecast_categories),
                use,
                "a forecast category label of [forecast_categories]",
            )
        else:
            frame["forecast_category"] = table.text(c["forecast_category"])
    for name in ("probability", "manual_probability"):
        if name in c:
            values = table.numbers(c[name])
            outside = use & ((values < 0) | (values > 100)).fillna(False)
            run.problems.add_rows(table.name, c[name], outside, "a percent in 0-100", values)
            frame[name] = values
    frame = frame[use & ids.notna()]
    table.use(len(frame))
    return frame.sort_values(["opportunity_id", "changed_at"], kind="stable")


def _current_history(
    run: _Import,
    *,
    ids: pd.Series,
    current: pd.Series,
    created: pd.Series,
    keep: pd.Series,
    close_date: pd.Series | None,
    stages: StageConfig,
) -> pd.DataFrame:
    m = run.mapping
    deals = run.tables["opportunities"]
    c = m.opportunities.columns
    if m.exported_at is None or m.stage_at_creation is None:  # load_mapping requires both
        raise MappingError([f"{m.path.name}: source.exported_at: a required key"])
    exported = m.exported_at
    first = m.stage_names()[m.stage_at_creation]
    late = keep & (created > exported).fillna(False)
    run.problems.add_rows(
        deals.name,
        c["created_at"],
        late,
        f"a creation before source.exported_at ({exported:%Y-%m-%dT%H:%M:%SZ})",
        created.astype("string"),
    )
    closed = current.isin([*stages.won_stages, *stages.lost_stages]).fillna(False)
    ends = pd.Series(pd.NaT, index=ids.index, dtype="datetime64[us, UTC]")
    if close_date is not None:
        # The end of the close day in the export's zone: the outcome is not seen before then.
        day = close_date.dt.tz_localize(None) + pd.Timedelta(days=1)
        ends = day.dt.tz_localize(m.times.zone, ambiguous=False, nonexistent="shift_forward")
        ends = ends.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        future = keep & closed & (close_date > exported.normalize()).fillna(False)
        run.problems.add_rows(
            deals.name,
            c["close_date"],
            future,
            "a closed deal's close date on or before source.exported_at",
            close_date.astype("string"),
        )
    no_close = keep & closed & ends.isna() & created.notna()
    run.problems.add_rows(
        deals.name, c.get("close_date"), no_close, "a closed deal's close date", None
    )
    ends = ends.where(ends < exported, exported)
    moved = keep & current.notna() & current.ne(first).fillna(False)
    at = ends.where(closed, exported)
    parts = [
        pd.DataFrame({"opportunity_id": ids, "changed_at": created, "stage": first})[keep],
        pd.DataFrame({"opportunity_id": ids, "changed_at": at, "stage": current})[moved],
    ]
    history = pd.concat(parts, ignore_index=True)
    history = history[history["opportunity_id"].notna() & history["changed_at"].notna()]
    return history.sort_values(["opportunity_id", "changed_at"], kind="stable")


def _check_outcome(
    run: _Import,
    deals: SourceTable,
    *,
    ids: pd.Series,
    keep: pd.Series,
    history: pd.DataFrame,
    stages: StageConfig,
) -> None:
    """A status column (won/lost/open) must agree with the deal's last stage."""
    outcome = run.mapping.outcome
    if outcome is None:
        return
    status = deals.text(outcome.column)
    known = [*outcome.won, *outcome.lost, *outcome.open]
    deals.problems.add_rows(
        deals.name,
        outcome.column,
        keep & status.notna() & ~status.isin(known),
        f"an outcome of opportunities.outcome ({', '.join(map(repr, known))})",
        status,
    )
    last = history.drop_duplicates("opportunity_id", keep="last").set_index("opportunity_id")
    final = pd.Series(last["stage"].reindex(ids.astype(object)).to_numpy(), index=ids.index)
    says_won, says_lost = status.isin(list(outcome.won)), status.isin(list(outcome.lost))
    says_open = status.isin(list(outcome.open)) if outcome.open else ~(says_won | says_lost)
    is_won = final.isin(list(stages.won_stages))
    is_lost = final.isin(list(stages.lost_stages))
    disagree = (
        keep
        & status.notna()
        & status.isin(known)
        & ((says_won != is_won) | (says_lost != is_lost) | (says_open != ~(is_won | is_lost)))
    )
    deals.problems.add_rows(
        deals.name,
        outcome.column,
        disagree.fillna(False),
        "an outcome that agrees with the deal's last stage",
        status + " (last stage " + final.astype("string").fillna("none") + ")",
    )


def _simple_table(run: _Import, mapping: FileMapping, key: str) -> pd.DataFrame:
    """Owners or accounts: one row per key, the mapped columns, and the kept attributes."""
    table = run.tables[mapping.key]
    values = {key: table.text(mapping.columns[key], required=True)}
    for name, column in mapping.columns.items():
        if name != key:
            values[name] = table.text(column)
    for name, column in mapping.keep.items():
        values[name] = _attribute(table, column)
    frame = pd.DataFrame(values)
    run.problems.add_rows(
        table.name,
        mapping.columns[key],
        frame[key].duplicated(keep=False) & frame[key].notna(),
        f"one row per {key}",
        frame[key],
    )
    table.use(len(frame))
    return frame


def _activities(run: _Import, deal_ids: set[str]) -> pd.DataFrame:
    """Activities, one per associated deal; every row used or skipped with its reason."""
    m = run.mapping
    table = run.tables["activities"]
    c = m.activities.columns if m.activities is not None else {}
    raw = table.text(c["type"], required=True)
    if m.activity_types:
        kind = _labels(
            table,
            c["type"],
            dict(m.activity_types),
            pd.Series(True, index=raw.index),
            "an activity label of activities.types",
        )
    else:
        kind = raw
    deals = table.text(c["opportunity_id"])
    frame = pd.DataFrame(
        {
            "deal": deals.str.split(m.deal_separator) if m.deal_separator else deals,
            "occurred_at": table.timestamps(c["occurred_at"], required=True),
            "type": kind,
        }
    )
    if "contact_role" in c:
        frame["contact_role"] = table.text(c["contact_role"])
    if m.deal_separator:
        frame = frame.explode("deal")
    frame["deal"] = frame["deal"].astype("string").str.strip()
    frame = frame[frame["deal"].notna() & frame["deal"].ne("")]
    ours = frame["deal"].isin(deal_ids).to_numpy(dtype=bool)
    frame = frame[ours]
    used = pd.Series(table.frame.index.isin(frame.index), index=table.frame.index)
    table.skip("of no deal", deals.isna())
    table.skip("of deals not imported", deals.notna() & ~used)
    table.use(int(used.sum()))
    out = frame.rename(columns={"deal": "opportunity_id"})
    return out.assign(opportunity_id=out["opportunity_id"].astype(object)).reset_index(drop=True)
