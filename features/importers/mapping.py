"""The mapping file of `dealcast import csv`: which source file and column is which contract
field, how the export writes its values, and what its history looks like.

A mapping is TOML (see `features/importers/mappings/` for commented examples). It is checked
whole before any row is read: an unknown key, a missing required key or a bad value is each an
error naming its key (`opportunities.columns.amount`), all of them at once. Once the source
files' headers are read, every mapped column must be in its file (`check_columns`).

Sections (keys in brackets are optional):

- `[source]`: [encoding] (default: UTF-8 or Windows-1252, detected per line), [timezone] of
  naive times (IANA, default UTC), [datetime_format] and [date_format] (strftime patterns;
  default ISO 8601), [exported_at] (when the export was taken; required by `current` history).
- `[currency]`: code (one ISO 4217 currency for every amount) or column (of the deal file);
  several currencies need `[exchange_rates]`: file, columns {currency, rate, [valid_from]}
  (units of the currency per unit of the corporate currency, as the contract's table).
- `[opportunities]`: file, columns {opportunity_id, account_id, owner_id, created_at, [stage],
  [amount], [close_date], [type], [lead_source], [forecast_category]}, [keep] {attribute =
  column} (further static attributes), [select] {column, values} (only these deals, e.g. one
  pipeline), [outcome] {column, won, lost, [open]} (a status column checked against the stage).
- `[history]`: kind = "long" (a file of one row per change: file, columns {opportunity_id,
  changed_at, stage, [amount], [close_date], [forecast_category], [probability],
  [manual_probability]}), "wide" (per-stage date columns of the deal file: entered, [exited],
  templates with `{stage}` for the stage's label) or "current" (the deal file's current state
  only: stage_at_creation).
- `[stages]`: open (in order), won, lost: lists of {label, [name], [probability]}.
- `[forecast_categories]`: source label = contract category.
- `[owners]`, `[accounts]`, `[activities]`: file, columns, and for accounts [keep], for
  activities [types] {label = contract type} and [deal_separator] (several deals in one cell).
"""

from __future__ import annotations

import codecs
import datetime as dt
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from features.errors import DealcastDataError
from features.importers.source_files import TimeReading, known_zone

HistoryKind = Literal["long", "wide", "current"]
HISTORY_KINDS: Final = ("long", "wide", "current")
FORECAST_CATEGORIES: Final = ("Pipeline", "Best Case", "Commit", "Closed", "Omitted")
ACTIVITY_TYPES: Final = ("call", "email", "meeting", "demo", "proposal", "other")

# Contract columns each file maps: required first, then optional.
DEAL_REQUIRED: Final = ("opportunity_id", "account_id", "owner_id", "created_at")
DEAL_OPTIONAL: Final = ("stage", "amount", "close_date", "type", "lead_source", "forecast_category")
HISTORY_REQUIRED: Final = ("opportunity_id", "changed_at", "stage")
HISTORY_OPTIONAL: Final = (
    "amount",
    "close_date",
    "forecast_category",
    "probability",
    "manual_probability",
)
OWNER_REQUIRED: Final = ("owner_id",)
OWNER_OPTIONAL: Final = ("team", "manager_id", "region")
ACCOUNT_REQUIRED: Final = ("account_id",)
ACTIVITY_REQUIRED: Final = ("opportunity_id", "occurred_at", "type")
ACTIVITY_OPTIONAL: Final = ("contact_role",)
RATE_REQUIRED: Final = ("currency", "rate")
RATE_OPTIONAL: Final = ("valid_from",)
STAGE_PLACEHOLDER: Final = "{stage}"


class MappingError(DealcastDataError):
    """The mapping file is unusable; `problems` names each key and what is wrong with it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class FileMapping:
    """One source file: contract column -> source column, and further attributes to keep."""

    key: str  # the mapping's section, for messages (`opportunities`)
    file: str
    columns: Mapping[str, str]
    keep: Mapping[str, str] = field(default_factory=dict)

    def source_columns(self) -> dict[str, str]:
        """Mapping key -> source column, for every column this file's mapping names."""
        found = {f"{self.key}.columns.{k}": v for k, v in self.columns.items()}
        found.update({f"{self.key}.keep.{k}": v for k, v in self.keep.items()})
        return found


@dataclass(frozen=True)
class StageEntry:
    label: str  # as the export writes it
    name: str  # as the contract export names it
    probability: float | None


@dataclass(frozen=True)
class Selection:
    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    column: str
    won: tuple[str, ...]
    lost: tuple[str, ...]
    open: tuple[str, ...]


@dataclass(frozen=True)
class CsvMapping:
    """A checked mapping file (`load_mapping`)."""

    path: Path
    encoding: str | None
    times: TimeReading
    exported_at: pd.Timestamp | None
    currency_code: str | None
    currency_column: str | None
    opportunities: FileMapping
    selection: Selection | None
    outcome: Outcome | None
    history_kind: HistoryKind
    history: FileMapping | None
    entered: str | None
    exited: str | None
    stage_at_creation: str | None
    open_stages: tuple[StageEntry, ...]
    won_stages: tuple[StageEntry, ...]
    lost_stages: tuple[StageEntry, ...]
    forecast_categories: Mapping[str, str]
    owners: FileMapping | None
    accounts: FileMapping | None
    activities: FileMapping | None
    activity_types: Mapping[str, str]
    deal_separator: str | None
    exchange_rates: FileMapping | None = None

    @property
    def stages(self) -> tuple[StageEntry, ...]:
        return self.open_stages + self.won_stages + self.lost_stages

    def stage_names(self) -> dict[str, str]:
        """Source label -> contract stage name."""
        return {entry.label: entry.name for entry in self.stages}

    def wide_columns(self) -> tuple[dict[str, str], dict[str, str]]:
        """Stage name -> entered column, and -> exited column, of a wide export."""
        entered = self.entered or ""
        entries = {e.name: entered.replace(STAGE_PLACEHOLDER, e.label) for e in self.stages}
        exits = {}
        if self.exited is not None:
            exits = {e.name: self.exited.replace(STAGE_PLACEHOLDER, e.label) for e in self.stages}
        return entries, exits

    def files(self) -> list[FileMapping]:
        found = [
            self.opportunities,
            self.history,
            self.owners,
            self.accounts,
            self.activities,
            self.exchange_rates,
        ]
        return [f for f in found if f is not None]


class _Section:
    """A table of the TOML document, read key by key; every problem goes to `errors`."""

    def __init__(self, data: Mapping[str, Any], path: str, errors: list[str], where: str) -> None:
        self.data = data
        self.path = path
        self.errors = errors
        self.where = where  # the mapping file's name, prefixed to each problem

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def problem(self, key: str, text: str) -> None:
        self.errors.append(f"{self.where}: {key}: {text}")

    def known(self, *names: str) -> None:
        for name in self.data:
            if name not in names:
                self.problem(
                    self.key(name), f"unknown key (known here: {', '.join(names) or 'none'})"
                )

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.problem(self.key(name), "a required key is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(self.key(name), f"expected a non-empty string, found {value!r}")
            return None
        return value

    def texts(self, name: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.data.get(name)
        if value is None:
            if required:
                self.problem(self.key(name), "a required key is missing")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem(self.key(name), f"expected a list of strings, found {value!r}")
            return ()
        return tuple(value)

    def section(self, name: str, *, required: bool = False) -> _Section | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.problem(self.key(name), "a required section is missing")
            return None
        if not isinstance(value, dict):
            self.problem(self.key(name), f"expected a table, found {value!r}")
            return None
        return _Section(value, self.key(name), self.errors, self.where)

    def string_table(self, name: str) -> dict[str, str]:
        """A table of free keys whose values are all strings (a value map, say)."""
        section = self.section(name)
        if section is None:
            return {}
        found = {}
        for key, value in section.data.items():
            if isinstance(value, str) and value:
                found[str(key)] = value
            else:
                section.problem(section.key(str(key)), f"expected a string, found {value!r}")
        return found


def _columns(section: _Section, required: Iterable[str], optional: Iterable[str]) -> dict[str, str]:
    columns = section.section("columns", required=True)
    if columns is None:
        return {}
    required, optional = tuple(required), tuple(optional)
    columns.known(*required, *optional)
    found = {}
    for name in (*required, *optional):
        value = columns.text(name, required=name in required)
        if value is not None:
            found[name] = value
    return found


def _file(
    root: _Section,
    name: str,
    *,
    required: Iterable[str],
    optional: Iterable[str] = (),
    extra_keys: tuple[str, ...] = (),
    keep: bool = False,
    mandatory: bool = False,
) -> tuple[FileMapping | None, _Section | None]:
    section = root.section(name, required=mandatory)
    if section is None:
        return None, None
    section.known("file", "columns", *(("keep",) if keep else ()), *extra_keys)
    file = section.text("file", required=True)
    columns = _columns(section, required, optional)
    kept = section.string_table("keep") if keep else {}
    clash = sorted(set(kept) & (set(required) | set(optional)))
    for attribute in clash:
        section.problem(
            section.key(f"keep.{attribute}"),
            f"{attribute!r} is a contract column: map it in columns",
        )
    if file is None:
        return None, section
    return FileMapping(name, file, columns, kept), section


def _stage_entries(
    section: _Section, name: str, default_probability: float | None
) -> tuple[StageEntry, ...]:
    value = section.data.get(name)
    if value is None:
        section.problem(section.key(name), "a required key is missing")
        return ()
    if not isinstance(value, list) or not value:
        section.problem(section.key(name), f"expected a non-empty list of stages, found {value!r}")
        return ()
    entries = []
    for i, item in enumerate(value):
        key = f"{section.key(name)}[{i}]"
        if not isinstance(item, dict):
            section.problem(
                key, f"expected a table {{label, [name], [probability]}}, found {item!r}"
            )
            continue
        entry = _Section(item, key, section.errors, section.where)
        entry.known("label", "name", "probability")
        label = entry.text("label", required=True)
        stage = entry.text("name") or label
        probability = entry.data.get("probability", default_probability)
        if probability is not None and (
            isinstance(probability, bool)
            or not isinstance(probability, int | float)
            or not 0 <= probability <= 100
        ):
            entry.problem(
                entry.key("probability"), f"expected a percent in 0-100, found {probability!r}"
            )
            probability = None
        if label is not None and stage is not None:
            entries.append(
                StageEntry(label, stage, None if probability is None else float(probability))
            )
    return tuple(entries)


def _check_stages(section: _Section, stages: tuple[StageEntry, ...]) -> None:
    for what, values in (("label", [s.label for s in stages]), ("name", [s.name for s in stages])):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            section.problem(
                section.path,
                f"each stage {what} once, found {', '.join(map(repr, repeated))} twice",
            )


def _timestamp(section: _Section, name: str) -> pd.Timestamp | None:
    value = section.data.get(name)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        stamp = pd.Timestamp(value)
    elif isinstance(value, str):
        try:
            stamp = pd.Timestamp(value)
        except ValueError:
            stamp = None
    else:
        stamp = None
    if stamp is None or pd.isna(stamp):
        section.problem(
            section.key(name), f"expected an ISO 8601 time (2026-06-30T18:00:00), found {value!r}"
        )
        return None
    return stamp


def _strftime(section: _Section, name: str) -> str | None:
    pattern = section.text(name)
    if pattern is not None and "%" not in pattern:
        section.problem(
            section.key(name),
            f"expected a strftime pattern (e.g. %Y/%m/%d %H:%M), found {pattern!r}",
        )
        return None
    return pattern


def load_mapping(path: Path) -> CsvMapping:
    """Read and check a mapping file; raises MappingError naming every bad key."""
    path = Path(path)
    where = path.name
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MappingError([f"{where}: cannot be read: {error}"]) from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise MappingError([f"{where}: not a TOML file: {error}"]) from error
    errors: list[str] = []
    root = _Section(document, "", errors, where)
    root.known(
        "source",
        "currency",
        "opportunities",
        "history",
        "stages",
        "forecast_categories",
        "owners",
        "accounts",
        "activities",
        "exchange_rates",
    )

    source = root.section("source") or _Section({}, "source", errors, where)
    source.known("encoding", "timezone", "datetime_format", "date_format", "exported_at")
    encoding = source.text("encoding")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            source.problem(source.key("encoding"), f"{encoding!r} is not an encoding Python knows")
            encoding = None
    zone = source.text("timezone") or "UTC"
    if not known_zone(zone):
        source.problem(
            source.key("timezone"), f"{zone!r} is not an IANA time zone (e.g. Asia/Shanghai)"
        )
        zone = "UTC"
    times = TimeReading(
        zone, _strftime(source, "datetime_format"), _strftime(source, "date_format")
    )
    exported_at = _timestamp(source, "exported_at")
    if exported_at is not None:
        exported_at = (
            exported_at.tz_localize(zone) if exported_at.tzinfo is None else exported_at
        ).tz_convert("UTC")

    currency = root.section("currency", required=True)
    code = column = None
    if currency is not None:
        currency.known("code", "column")
        code, column = currency.text("code"), currency.text("column")
        if (code is None) == (column is None):
            currency.problem("currency", "expected one of code (one currency) or column")
        if code is not None and not (len(code) == 3 and code.isascii() and code.isupper()):
            currency.problem(
                currency.key("code"), f"expected an ISO 4217 code (EUR), found {code!r}"
            )

    history = root.section("history", required=True)
    kind: HistoryKind = "long"
    entered = exited = stage_at_creation = None
    history_file = None
    if history is not None:
        value = history.text("kind", required=True)
        if value is not None and value not in HISTORY_KINDS:
            history.problem(
                history.key("kind"), f"expected one of {', '.join(HISTORY_KINDS)}, found {value!r}"
            )
        kind = value if value in HISTORY_KINDS else "long"  # type: ignore[assignment]
        if kind == "long":
            history_file, _ = _file(
                root,
                "history",
                required=HISTORY_REQUIRED,
                optional=HISTORY_OPTIONAL,
                extra_keys=("kind",),
            )
        elif kind == "wide":
            history.known("kind", "entered", "exited")
            entered, exited = history.text("entered", required=True), history.text("exited")
            for name, template in (("entered", entered), ("exited", exited)):
                if template is not None and STAGE_PLACEHOLDER not in template:
                    history.problem(
                        history.key(name),
                        f"expected a column name with {STAGE_PLACEHOLDER} for the stage's "
                        f"label, found {template!r}",
                    )
        else:
            history.known("kind", "stage_at_creation")
            stage_at_creation = history.text("stage_at_creation", required=True)
            if exported_at is None:
                source.problem(
                    source.key("exported_at"),
                    "a required key when history.kind is current (the time the current state "
                    "was exported: the stage is known from then on, not from creation)",
                )

    deals, deal_section = _file(
        root,
        "opportunities",
        required=DEAL_REQUIRED,
        optional=DEAL_OPTIONAL,
        extra_keys=("select", "outcome"),
        keep=True,
        mandatory=True,
    )
    selection: Selection | None = None
    outcome: Outcome | None = None
    if deal_section is not None:
        chosen = deal_section.section("select")
        if chosen is not None:
            chosen.known("column", "values")
            select_column = chosen.text("column", required=True)
            values = chosen.texts("values", required=True)
            selection = Selection(select_column, values) if select_column and values else None
        status = deal_section.section("outcome")
        if status is not None:
            status.known("column", "won", "lost", "open")
            status_column = status.text("column", required=True)
            won, lost = status.texts("won", required=True), status.texts("lost", required=True)
            if status_column:
                outcome = Outcome(status_column, won, lost, status.texts("open"))
        if deals is not None:
            mapped = set(deals.columns) | (
                set(history_file.columns) if history_file is not None else set()
            )
            for needed in ("amount", "close_date"):
                if needed not in mapped:
                    deal_section.problem(
                        f"opportunities.columns.{needed}",
                        "a required key: every history row carries it"
                        + (" (map it here or in history.columns)" if kind == "long" else ""),
                    )
            if kind != "long" and "stage" not in deals.columns:
                deal_section.problem(
                    "opportunities.columns.stage",
                    f"a required key when history.kind is {kind} (the deal's current stage)",
                )

    stages = root.section("stages", required=True)
    open_stages: tuple[StageEntry, ...] = ()
    won_stages: tuple[StageEntry, ...] = ()
    lost_stages: tuple[StageEntry, ...] = ()
    if stages is not None:
        stages.known("open", "won", "lost")
        open_stages = _stage_entries(stages, "open", None)
        won_stages = _stage_entries(stages, "won", 100.0)
        lost_stages = _stage_entries(stages, "lost", 0.0)
        _check_stages(stages, open_stages + won_stages + lost_stages)
        if stage_at_creation is not None and stage_at_creation not in {
            s.label for s in open_stages
        }:
            history.problem(  # type: ignore[union-attr]
                "history.stage_at_creation",
                f"expected the label of an open stage of [stages], found {stage_at_creation!r}",
            )

    categories = root.string_table("forecast_categories")
    for label, category in categories.items():
        if category not in FORECAST_CATEGORIES:
            root.problem(
                f"forecast_categories.{label}",
                f"expected one of {', '.join(FORECAST_CATEGORIES)}, found {category!r}",
            )

    owners, _ = _file(root, "owners", required=OWNER_REQUIRED, optional=OWNER_OPTIONAL)
    accounts, _ = _file(root, "accounts", required=ACCOUNT_REQUIRED, keep=True)
    activities, activity_section = _file(
        root,
        "activities",
        required=ACTIVITY_REQUIRED,
        optional=ACTIVITY_OPTIONAL,
        extra_keys=("types", "deal_separator"),
    )
    rates, _ = _file(root, "exchange_rates", required=RATE_REQUIRED, optional=RATE_OPTIONAL)
    types: dict[str, str] = {}
    separator = None
    if activity_section is not None:
        types = activity_section.string_table("types")
        for label, kind_name in types.items():
            if kind_name not in ACTIVITY_TYPES:
                activity_section.problem(
                    f"activities.types.{label}",
                    f"expected one of {', '.join(ACTIVITY_TYPES)}, found {kind_name!r}",
                )
        separator = activity_section.text("deal_separator")
    if errors or deals is None:
        raise MappingError(errors or [f"{where}: opportunities: a required section is missing"])
    return CsvMapping(
        path=path,
        encoding=encoding,
        times=times,
        exported_at=exported_at,
        currency_code=code,
        currency_column=column,
        opportunities=deals,
        selection=selection,
        outcome=outcome,
        history_kind=kind,
        history=history_file,
        entered=entered,
        exited=exited,
        stage_at_creation=stage_at_creation,
        open_stages=open_stages,
        won_stages=won_stages,
        lost_stages=lost_stages,
        forecast_categories=categories,
        owners=owners,
        accounts=accounts,
        activities=activities,
        activity_types=types,
        deal_separator=separator,
        exchange_rates=rates,
    )


def check_columns(mapping: CsvMapping, headers: Mapping[str, list[str]]) -> list[str]:
    """Every mapped column that is not in its file's header, named by its mapping key.

    `headers` maps each mapped file's name to its columns (files that are absent are named by
    the importer). Returns the problems; the importer raises them before reading any row.
    """
    where = mapping.path.name
    problems = []

    def missing(key: str, file: str, column: str, note: str = "") -> None:
        columns = headers.get(file)
        if columns is not None and column not in columns:
            problems.append(
                f"{where}: {key}: column {column!r}{note} is not in {file} "
                f"(its columns: {', '.join(columns)})"
            )

    for file_mapping in mapping.files():
        for key, column in file_mapping.source_columns().items():
            missing(key, file_mapping.file, column)
    deals = mapping.opportunities.file
    deal_columns: dict[str, str | None] = {
        "currency.column": mapping.currency_column,
        "opportunities.select.column": mapping.selection.column if mapping.selection else None,
        "opportunities.outcome.column": mapping.outcome.column if mapping.outcome else None,
    }
    for key, named in deal_columns.items():
        if named:
            missing(key, deals, named)
    if mapping.history_kind == "wide":
        entered, exited = mapping.wide_columns()
        labels = {entry.name: entry.label for entry in mapping.stages}
        for key, columns in (("history.entered", entered), ("history.exited", exited)):
            for stage, column in columns.items():
                missing(key, deals, column, f" (stage {labels[stage]!r})")
    return problems
