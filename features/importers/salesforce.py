"""A Salesforce export (one CSV per object, API field names) converted into the data contract.

`import_salesforce(src, out)` reads the object files in `src` (Opportunity.csv is required;
OpportunityHistory, OpportunityFieldHistory, Task, Event, OpportunityContactRole, User,
UserRole, ForecastingQuota, CurrencyType, DatedConversionRate, Account, OpportunityStage,
FiscalYearSettings, Period and Organization are used when present), checks every value it
maps, and writes a contract export folder with `features.export_writer`.

Decisions worth knowing:

- Two classes of problems (spec "Bad input"). The importer refuses only what no repair can
  mend: a file it cannot decode or parse as a table (a record with missing or extra fields), a
  required column missing, an unparsable or unrepresentable key, time, number or boolean. The
  repairable kinds (an empty history Amount, rows of one deal in the same second, deals closed
  before their creation or created closed, history stamped before CreatedDate) are written as
  they are, in the file's order, for the contract validator to repair and count.
- Empty objects. A file with a header only (whatever its columns), or no bytes at all, is an
  absent table and reported as such; only Opportunity, which the contract requires, must have
  rows.
- The fiscal year. Its first month comes from FiscalYearSettings, Period or Organization when
  the export holds one (an explicit `fiscal_year_start_month` wins); it labels quota periods and
  is written to `dealcast.toml` in the output folder, so that training uses the same quarters.

- Currencies. Amounts stay in the currency they were entered in: every history row (and every
  opportunity) carries its ISO code in `currency`, and CurrencyType / DatedConversionRate become
  `exchange_rates`. The loader converts them to the corporate currency with the rate valid on the
  row's close date, as Salesforce's advanced currency management does, so there is one
  conversion rule in dealcast. Quotas are the exception: the contract has no currency for them,
  so they are converted here, with the rate valid on the quota's StartDate.
- Leakage. Opportunity fields whose export-time value is only known after the deal closed, or
  that were overwritten during the deal without history (Probability, ExpectedRevenue, loss and
  win reasons, Fiscal*, Last*, NextStep, ...), are never written; the report lists each with its
  reason. The history's Probability is the stage default at that time and is kept.
- Nothing is dropped silently: rows left out (deleted records, activities on other objects,
  history of opportunities not in Opportunity.csv, empty or quantity quotas) are counted per
  reason in the report, and every bad value raises `SalesforceImportError`, all at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pandas as pd

from features.contract import STAGES_FILE, TABLES
from features.errors import DealcastDataError, ValidationReport
from features.export_writer import write_export
from features.importers.salesforce_fields import (
    ACCOUNT_RENAMES,
    ACTIVITY_COLUMNS,
    CONTACT_ROLE_COLUMNS,
    CURRENCY_COLUMNS,
    DATED_RATE_COLUMNS,
    FIELD_HISTORY_COLUMNS,
    FISCAL_YEAR_COLUMNS,
    HISTORY_COLUMNS,
    LEAKY_FIELDS,
    OPPORTUNITY_MAPPED,
    ORGANIZATION_COLUMNS,
    PERIOD_COLUMNS,
    QUOTA_COLUMNS,
    ROLE_COLUMNS,
    STAGE_COLUMNS,
    USER_COLUMNS,
)
from features.importers.salesforce_objects import (
    FiscalYearStart,
    check_stage_names,
    contact_roles,
    empty_history,
    fiscal_year_start,
    map_accounts,
    map_activities,
    map_field_history,
    map_history,
    map_opportunities,
    map_owners,
    map_quotas,
    map_rates,
    map_stages,
    with_open_first_period,
)
from features.importers.source_files import (
    DroppedColumn,
    ImportProblems,
    SourceFileReport,
    SourceTable,
    read_source_file,
)
from features.stages import StageConfig

logger = logging.getLogger(__name__)

CONFIG_FILE: Final = "dealcast.toml"
CONFIG_MARK: Final = "# written by dealcast import salesforce"
HEADER_ONLY: Final = "header only: treated as absent"


class SalesforceImportError(DealcastDataError):
    """The Salesforce export cannot be imported; `report` lists every problem found.

    Each problem names the source file (as the table), the column, the 1-based data row and
    what was expected, in the same form as the contract's violations.
    """

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


@dataclass(frozen=True)
class SalesforceImportReport:
    """What an import read, wrote, dropped and decided, for the person running it."""

    src: Path
    out: Path
    files: tuple[SourceFileReport, ...]
    rows_written: dict[str, int]
    written: tuple[Path, ...]
    currencies: tuple[str, ...] = ()
    corporate_currency: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    fiscal_year_start_month: int = 1
    fiscal_year_source: str = "the default, January"

    def file(self, name: str) -> SourceFileReport:
        """The report of one source file, e.g. `report.file("Opportunity.csv")`."""
        for item in self.files:
            if item.file.lower() == name.lower():
                return item
        raise KeyError(f"{name} was not read; read: {[f.file for f in self.files]}")

    @property
    def dropped_columns(self) -> tuple[DroppedColumn, ...]:
        return tuple(d for f in self.files for d in f.dropped_columns)

    @property
    def leaky_columns(self) -> tuple[DroppedColumn, ...]:
        return tuple(d for d in self.dropped_columns if d.leaky)

    def format(self) -> str:
        lines = [f"Salesforce export {self.src} -> {self.out}", "source files:"]
        for item in self.files:
            if item.header_only:
                lines.append(f"  {item.file}: {HEADER_ONLY}")
                continue
            lines.append(
                f"  {item.file}: {item.encoding}, booleans {item.booleans}, "
                f"{item.rows_read} rows read, {item.rows_used} used"
            )
            lines.append(f"    decoded: {item.decoding.describe()}")
            lines.extend(f"    skipped {n} rows: {reason}" for reason, n in item.skipped.items())
            leaky = [d for d in item.dropped_columns if d.leaky]
            if leaky:
                lines.append("    dropped as post-close or leaky:")
                lines.extend(f"      {d.column}: {d.reason}" for d in leaky)
            unmapped = [d for d in item.dropped_columns if not d.leaky]
            if unmapped:
                lines.append("    not carried:")
                lines.extend(f"      {d.column}: {d.reason}" for d in unmapped)
            lines.extend(f"    note: {text}" for text in item.notes)
        lines.append(f"written to {self.out}:")
        lines.extend(
            f"  {name}: {n} {'stages' if name == STAGES_FILE else 'rows'}"
            for name, n in self.rows_written.items()
        )
        config = [p for p in self.written if p.name == CONFIG_FILE]
        lines.append(
            f"fiscal year starts in month {self.fiscal_year_start_month} "
            f"(from {self.fiscal_year_source})"
            + (f"; written to {config[0].name}" if config else "")
        )
        if self.currencies:
            corporate = self.corporate_currency or "unknown"
            lines.append(
                f"currencies: {', '.join(self.currencies)} (corporate {corporate}); deal amounts "
                "stay in their currency (column currency) for the loader to convert with "
                "exchange_rates; quotas are converted to the corporate currency here"
            )
        lines.extend(f"note: {text}" for text in self.notes)
        return "\n".join(lines)


def _written_by_us(path: Path) -> bool:
    try:
        return path.read_text(encoding="utf-8").startswith(CONFIG_MARK)
    except (OSError, UnicodeDecodeError):
        return False


def _stale_outputs(out: Path, writing: set[str]) -> list[tuple[Path, str]]:
    """Files already in `out` that would mislead: contract files this import does not
    overwrite (they would be read with the new ones), a `dealcast.toml` of an earlier import
    that this one does not write, and a hand-written `dealcast.toml` it would overwrite.
    """
    if not out.is_dir():
        return []
    names = {f"{t}.{ext}" for t in TABLES for ext in ("csv", "parquet")} | {STAGES_FILE}
    stale = [
        (
            p,
            "an output folder without contract files this import does not write (they would "
            "be read together with the new ones)",
        )
        for p in sorted(out.iterdir())
        if p.name in names and p.name not in writing
    ]
    config = out / CONFIG_FILE
    if config.is_file():
        ours = _written_by_us(config)
        if ours and CONFIG_FILE not in writing:
            stale.append(
                (config, "no dealcast.toml of an earlier import (this export sets no fiscal year)")
            )
        elif not ours and CONFIG_FILE in writing:
            stale.append(
                (config, "no hand-written dealcast.toml, which this import would overwrite")
            )
    return stale


class _Reader:
    """Opens the object files of one export, keeping every file read for the report."""

    def __init__(self, src: Path, problems: ImportProblems) -> None:
        self.problems = problems
        csv_files = (p for p in sorted(src.iterdir()) if p.suffix.lower() == ".csv")
        self.files = {p.stem.lower(): p for p in csv_files}
        self.read: list[SourceTable] = []
        self.notes: list[str] = []

    def open(self, object_name: str, known: tuple[str, ...]) -> SourceTable | None:
        """The object's file as a table; None when there is no file, it cannot be read (a
        problem is noted), or it has a header only (an absent table, noted in the report).
        """
        path = self.files.get(object_name.lower())
        if path is None:
            return None
        source = read_source_file(path, known_columns=known, problems=self.problems)
        if source is None:
            return None
        if source.header_only:
            self.read.append(SourceTable(source, self.problems))
            return None
        if object_name == "DatedConversionRate":
            source, opened = with_open_first_period(source)
            if opened:
                self.notes.append(
                    f"{opened} DatedConversionRate rows start before 1900 (Salesforce's open "
                    "first period): written as valid_from 1900-01-01"
                )
        table = SourceTable(source, self.problems)
        self.read.append(table)
        return table

    def header_only(self, object_name: str) -> bool:
        return any(
            t.source.header_only and t.source.path.stem.lower() == object_name.lower()
            for t in self.read
        )

    def unread(self) -> list[str]:
        read = {t.source.path for t in self.read}
        return [p.name for p in self.files.values() if p not in read]


def _map_export(
    reader: _Reader, *, start_month: int | None
) -> tuple[dict[str, pd.DataFrame], StageConfig | None, str | None, FiscalYearStart | None]:
    """Every contract table of the export, the stage model, the corporate currency and the
    fiscal year's first month as the export gives it (`start_month`, if given, labels quotas).
    """
    tables: dict[str, pd.DataFrame] = {}
    opportunity_table = reader.open("Opportunity", (*OPPORTUNITY_MAPPED, *LEAKY_FIELDS))
    if opportunity_table is None:
        if "opportunity" not in reader.files:
            reader.problems.add(
                "Opportunity.csv", None, None, "the Opportunity object's file", "no such file"
            )
        elif reader.header_only("Opportunity"):
            reader.problems.add(
                reader.files["opportunity"].name,
                None,
                None,
                "at least one opportunity (the contract requires the table)",
                "a header only",
            )
        opportunities = pd.DataFrame({"opportunity_id": pd.Series(dtype="string")})
    else:
        opportunities = map_opportunities(opportunity_table)
        opportunity_table.use(len(opportunities))
    tables["opportunities"] = opportunities
    ids = opportunities["opportunity_id"].dropna()

    history_table = reader.open("OpportunityHistory", HISTORY_COLUMNS)
    if history_table is not None:
        history = map_history(history_table, opportunities)
        history_table.use(len(history))
    else:
        history = empty_history("currency" in opportunities.columns)
        reader.notes.append(
            "no OpportunityHistory rows (no file, or a header only): opportunity_history is "
            "written empty, so every deal is read from its current state (stage, amount, "
            "close_date) at created_at"
        )
    tables["opportunity_history"] = history

    field_history_table = reader.open("OpportunityFieldHistory", FIELD_HISTORY_COLUMNS)
    if field_history_table is not None:
        field_history = map_field_history(field_history_table, opportunities)
        field_history_table.use(len(field_history))
        tables["opportunity_field_history"] = field_history

    role_table = reader.open("OpportunityContactRole", CONTACT_ROLE_COLUMNS)
    roles = None if role_table is None else contact_roles(role_table, ids)
    if role_table is not None and roles is not None:
        role_table.use(len(roles))
    activities: list[pd.DataFrame] = []
    for object_name, is_event in (("Task", False), ("Event", True)):
        activity_table = reader.open(object_name, ACTIVITY_COLUMNS)
        if activity_table is not None:
            activities.append(map_activities(activity_table, ids, roles, is_event=is_event))
            activity_table.use(len(activities[-1]))
    if activities:
        tables["activities"] = pd.concat(activities, ignore_index=True)

    account_table = reader.open("Account", ("Id", "IsDeleted", *ACCOUNT_RENAMES, *LEAKY_FIELDS))
    if account_table is not None:
        tables["accounts"] = map_accounts(account_table)
        account_table.use(len(tables["accounts"]))

    user_table = reader.open("User", USER_COLUMNS)
    user_role_table = reader.open("UserRole", ROLE_COLUMNS)
    if user_table is not None:
        tables["owners"] = map_owners(user_table, user_role_table)
        user_table.use(len(tables["owners"]))
    elif user_role_table is not None:
        user_role_table.note("not used: there is no User.csv to give role names to")

    currency_table = reader.open("CurrencyType", CURRENCY_COLUMNS)
    dated_table = reader.open("DatedConversionRate", DATED_RATE_COLUMNS)
    rates, corporate = map_rates(currency_table, dated_table)
    if not rates.empty:
        tables["exchange_rates"] = rates

    fiscal = fiscal_year_start(
        reader.open("FiscalYearSettings", FISCAL_YEAR_COLUMNS),
        reader.open("Period", PERIOD_COLUMNS),
        reader.open("Organization", ORGANIZATION_COLUMNS),
    )
    if start_month is None:
        start_month = 1 if fiscal is None else fiscal.month

    currencies: set[str] = set()
    for frame in (opportunities, history):
        if "currency" in frame.columns:
            currencies |= set(frame["currency"].dropna().astype(str))
    quota_table = reader.open("ForecastingQuota", QUOTA_COLUMNS)
    if quota_table is not None:
        quotas = map_quotas(quota_table, rates, currencies, start_month=start_month)
        if quotas is not None:
            tables["quotas"] = quotas
    _check_currencies(opportunity_table, history_table, rates, currencies, reader.problems)

    stages: StageConfig | None = None
    stage_table = reader.open("OpportunityStage", STAGE_COLUMNS)
    if stage_table is not None:
        used = set(opportunities.get("stage", pd.Series(dtype="string")).dropna())
        stages = map_stages(stage_table, used | set(history["stage"].dropna()))
        if stages is not None:
            stage_table.use(len(stages.all_stages))
            mapped = [(opportunity_table, opportunities), (history_table, history)]
            check_stage_names(stages, [(t, f) for t, f in mapped if t is not None], reader.problems)
    else:
        reader.notes.append(
            "no OpportunityStage rows: the loader infers the stages from the history and IsWon"
        )
    unread = reader.unread()
    if unread:
        reader.notes.append(
            f"{len(unread)} files are not Salesforce objects this importer reads, left as they "
            "are: " + ", ".join(unread)
        )
    return tables, stages, corporate, fiscal


def config_text(month: int, source: str) -> str:
    """`dealcast.toml` of an import: the fiscal year's first month, for training to read."""
    return f"{CONFIG_MARK}: from {source}\n[features]\nfiscal_year_start_month = {month}\n"


def import_salesforce(
    src: Path,
    out: Path,
    *,
    fiscal_year_start_month: int | None = None,
) -> SalesforceImportReport:
    """Convert the Salesforce export in `src` into a contract export folder `out`.

    Raises SalesforceImportError, listing every problem, if the export is unusable; nothing is
    written then. `fiscal_year_start_month` labels quota periods (the training config's
    setting of the same name; a fiscal year is named after the calendar year it ends in); left
    None, it comes from the export's FiscalYearSettings, Period or Organization, else January.
    When the export gives the month, it is written to `out/dealcast.toml`.
    """
    src, out = Path(src), Path(out)
    if fiscal_year_start_month is not None and not 1 <= fiscal_year_start_month <= 12:
        raise ValueError(f"fiscal_year_start_month must be 1..12, got {fiscal_year_start_month}")
    problems = ImportProblems()
    if not src.is_dir():
        problems.add(str(src), None, None, "a folder of Salesforce CSV files", "no such folder")
        raise SalesforceImportError(ValidationReport(str(src), problems.violations))
    reader = _Reader(src, problems)
    tables, stages, corporate, fiscal = _map_export(reader, start_month=fiscal_year_start_month)
    month, source = _fiscal_year(fiscal_year_start_month, fiscal, reader.notes)
    writing = {f"{name}.csv" for name in tables} | ({STAGES_FILE} if stages else set())
    if fiscal is not None:
        writing.add(CONFIG_FILE)
    for stale, expected in _stale_outputs(out, writing):
        problems.add(str(out), None, None, expected, stale.name)
    if problems:
        raise SalesforceImportError(ValidationReport(str(src), problems.violations))

    stages_document = stages.to_yaml_dict() if stages is not None else None
    written = write_export(tables, out, stages=stages_document)
    if fiscal is not None:
        config = out / CONFIG_FILE
        config.write_text(config_text(month, source), encoding="utf-8")
        written.append(config)
    rows_written = {f"{name}.csv": len(frame) for name, frame in tables.items()}
    if stages is not None:
        rows_written[STAGES_FILE] = len(stages.all_stages)
    currencies: set[str] = set()
    for name, column in (
        ("opportunities", "currency"),
        ("opportunity_history", "currency"),
        ("exchange_rates", "currency"),
    ):
        if name in tables and column in tables[name].columns:
            currencies |= set(tables[name][column].dropna().astype(str))
    report = SalesforceImportReport(
        src=src,
        out=out,
        files=tuple(t.report() for t in reader.read),
        rows_written=rows_written,
        written=tuple(written),
        currencies=tuple(sorted(currencies)),
        corporate_currency=corporate,
        notes=tuple(reader.notes),
        fiscal_year_start_month=month,
        fiscal_year_source=source,
    )
    logger.info("imported %s into %s: %s", src, out, rows_written)
    return report


def _fiscal_year(
    given: int | None, fiscal: FiscalYearStart | None, notes: list[str]
) -> tuple[int, str]:
    """The month that labels quotas and where it came from: the caller's, else the export's."""
    if given is None:
        return (1, "the default, January") if fiscal is None else (fiscal.month, fiscal.source)
    if fiscal is not None and fiscal.month != given:
        notes.append(
            f"--fiscal-year-start-month {given} overrides {fiscal.source}, which starts the "
            f"fiscal year in month {fiscal.month}"
        )
    return given, "--fiscal-year-start-month"


def _check_currencies(
    opportunity_table: SourceTable | None,
    history_table: SourceTable | None,
    rates: pd.DataFrame,
    currencies: set[str],
    problems: ImportProblems,
) -> None:
    """Amounts in several currencies need a rate for each (the loader converts with them)."""
    if len(currencies) <= 1 and rates.empty:
        return
    if rates.empty:
        problems.add(
            "CurrencyType.csv",
            None,
            None,
            "conversion rates (CurrencyType.csv or DatedConversionRate.csv): amounts come in "
            + ", ".join(sorted(currencies)),
            "no such file",
        )
        return
    known = set(rates["currency"].dropna())
    for table in (opportunity_table, history_table):
        if table is None or not table.has("CurrencyIsoCode"):
            continue
        codes = table.text("CurrencyIsoCode").str.upper()
        problems.add_rows(
            table.name,
            "CurrencyIsoCode",
            codes.notna() & ~codes.isin(known),
            "a currency with a rate in CurrencyType.csv or DatedConversionRate.csv",
            codes,
        )
