"""Reading a CRM's raw CSV files: encodings, API column names, typed columns, every problem noted.

An importer maps one raw file at a time through a `SourceTable`, which parses columns into
typed Series (text, times, dates, numbers, booleans) and records each bad value in a shared
`ImportProblems` rather than stopping at the first, so a person sees everything wrong with an
export in one run. Nothing is coerced: a value that does not parse is a problem, an empty value
is missing (and a problem only where the column must be filled).
"""

from __future__ import annotations

import codecs
import io
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from features.errors import Violation

logger = logging.getLogger(__name__)

Encoding = Literal["utf-8", "utf-8-sig", "cp1252"]
BooleanConvention = Literal["true/false", "1/0", "true/false and 1/0", "none"]

_TRUE_WORDS = frozenset({"true"})
_FALSE_WORDS = frozenset({"false"})
_TRUE_DIGITS = frozenset({"1"})
_FALSE_DIGITS = frozenset({"0"})

TIME_EXPECTATION = "an ISO 8601 date or time (e.g. 2026-03-31T14:05:00.000Z or 2026-03-31)"
DATE_EXPECTATION = "an ISO 8601 date (e.g. 2026-03-31)"
NUMBER_EXPECTATION = "a finite number (e.g. 12500.00)"
BOOLEAN_EXPECTATION = "a boolean: true/false or 1/0"


class ImportProblems:
    """Every problem found in a raw export, as contract-style violations naming the file."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def __bool__(self) -> bool:
        return bool(self.violations)

    def add(
        self, file: str, column: str | None, row: int | None, expected: str, found: str | None
    ) -> None:
        self.violations.append(Violation(file, column, row, expected, found=found))

    def add_rows(
        self,
        file: str,
        column: str | None,
        mask: pd.Series,
        expected: str,
        found: pd.Series | None = None,
    ) -> None:
        """One problem per flagged row (1-based data row of the file), with the value found.

        The loop runs over bad rows only, to build their messages; clean tables cost nothing.
        """
        positions = np.flatnonzero(mask.to_numpy(dtype=bool, na_value=False))
        omitted = found is None
        values = (
            [None] * len(positions) if found is None else found.to_numpy(dtype=object)[positions]
        )
        for position, value in zip(positions, values, strict=True):
            self.add(file, column, int(position) + 1, expected, _describe(value, omitted))


def _describe(value: object, omitted: bool) -> str | None:
    if omitted:
        return None
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "empty"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class SourceFile:
    """One raw CSV file as text cells: `frame` holds str values, NaN where a cell is empty."""

    name: str
    path: Path
    encoding: Encoding
    frame: pd.DataFrame


def decode(data: bytes) -> tuple[str, Encoding]:
    """Decode a file as Salesforce writes it: UTF-8 (maybe with a BOM), else Windows-1252.

    Windows-1252 accepts almost any byte sequence, so UTF-8 is tried first: text that decodes
    as UTF-8 is UTF-8 in practice. Raises UnicodeDecodeError (or ValueError for UTF-16) otherwise.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError("the file is UTF-16; save it as UTF-8 or Windows-1252")
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text = data.decode("cp1252")
        if "\x00" in text:
            raise ValueError("the file holds NUL bytes, so it is not Windows-1252 text") from None
        return text, "cp1252"


def read_source_file(
    path: Path, *, known_columns: Iterable[str], problems: ImportProblems
) -> SourceFile | None:
    """Read a raw CSV as text cells, naming columns by their API names (case-insensitively).

    Data Loader writes headers in upper case (`ACCOUNTID`), the weekly export in API case
    (`AccountId`); both map onto `known_columns`. Returns None (with a problem) if unreadable.
    """
    try:
        text, encoding = decode(path.read_bytes())
    except (UnicodeDecodeError, ValueError, OSError) as error:
        problems.add(path.name, None, None, "a UTF-8 or Windows-1252 CSV file", str(error))
        return None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        problems.add(path.name, None, None, "a CSV file with a header row", "an empty file")
        return None
    except pd.errors.ParserError as error:
        problems.add(path.name, None, None, "a well-formed CSV file", str(error))
        return None
    canonical = {name.lower(): name for name in known_columns}
    frame.columns = [canonical.get(str(c).strip().lower(), str(c).strip()) for c in frame.columns]
    logger.info("read %s: %d rows, %s", path.name, len(frame), encoding)
    return SourceFile(name=path.name, path=path, encoding=encoding, frame=frame)


@dataclass(frozen=True)
class DroppedColumn:
    """A source column that is not written, and why.

    `leaky` marks columns only known after a deal closes, or whose export-time value differs
    from their value while the deal was open: using them as features would leak the outcome.
    """

    file: str
    column: str
    reason: str
    leaky: bool


@dataclass(frozen=True)
class SourceFileReport:
    """What the importer read from one file and what it did with it."""

    file: str
    encoding: Encoding
    booleans: BooleanConvention
    rows_read: int
    rows_used: int
    skipped: dict[str, int] = field(default_factory=dict)
    dropped_columns: tuple[DroppedColumn, ...] = ()
    notes: tuple[str, ...] = ()


class SourceTable:
    """Typed access to one raw file's columns; bad values go to the shared `ImportProblems`.

    Each parser returns a Series aligned with the file's rows (missing where empty or bad) and
    records, per bad row, the file, the column, the 1-based row and what was expected.
    """

    def __init__(self, source: SourceFile, problems: ImportProblems) -> None:
        self.source = source
        self.frame = source.frame
        self.problems = problems
        self._conventions: set[str] = set()
        self._skipped: dict[str, int] = {}
        self._dropped: list[DroppedColumn] = []
        self._notes: list[str] = []
        self.rows_used = 0

    @property
    def name(self) -> str:
        return self.source.name

    def __len__(self) -> int:
        return len(self.frame)

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def require(self, *columns: str) -> bool:
        """Note each missing required column; True when all are present."""
        missing = [c for c in columns if not self.has(c)]
        for column in missing:
            self.problems.add(self.name, column, None, "a required column", "no such column")
        return not missing

    def require_one_of(self, *columns: str) -> bool:
        if any(self.has(c) for c in columns):
            return True
        self.problems.add(
            self.name, " or ".join(columns), None, "one of these columns", "none of them"
        )
        return False

    def text(self, column: str, *, required: bool = False) -> pd.Series:
        """Stripped text, missing where empty; a required column must be filled on every row."""
        if not self.has(column):
            return pd.Series(pd.NA, index=self.frame.index, dtype="string")
        values = self.frame[column].astype("string").str.strip()
        values = values.mask(values.eq("").fillna(False))
        if required:
            self.problems.add_rows(
                self.name, column, values.isna(), "a non-empty value", self.frame[column]
            )
        return values

    def first_filled(self, *columns: str) -> pd.Series:
        """Per row, the first non-empty value among `columns` (in that order of preference)."""
        result = pd.Series(pd.NA, index=self.frame.index, dtype="string")
        for column in columns:
            result = result.fillna(self.text(column))
        return result

    def _times(self, column: str, required: bool, expectation: str) -> tuple[pd.Series, pd.Series]:
        values = self.text(column, required=required)
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
        parsed = pd.Series(parsed, index=self.frame.index).astype("datetime64[us, UTC]")
        bad = values.notna() & parsed.isna()
        self.problems.add_rows(self.name, column, bad, expectation, values)
        return values, parsed

    def timestamps(self, column: str, *, required: bool = False) -> pd.Series:
        """Times in UTC; naive times are UTC, as Salesforce exports them."""
        return self._times(column, required, TIME_EXPECTATION)[1]

    def dates(self, column: str, *, required: bool = False) -> pd.Series:
        """Calendar dates as UTC midnights; a time of day other than midnight is a problem."""
        values, parsed = self._times(column, required, DATE_EXPECTATION)
        with_time = (parsed.notna() & (parsed != parsed.dt.normalize())).fillna(False)
        self.problems.add_rows(self.name, column, with_time, DATE_EXPECTATION, values)
        return parsed.mask(with_time)

    def numbers(self, column: str, *, required: bool = False) -> pd.Series:
        values = self.text(column, required=required)
        parsed = pd.to_numeric(values, errors="coerce").astype("float64")
        finite = np.isfinite(parsed.to_numpy(dtype="float64", na_value=np.nan))
        bad = values.notna() & ~pd.Series(finite, index=values.index)
        self.problems.add_rows(self.name, column, bad, NUMBER_EXPECTATION, values)
        return parsed.where(~bad)

    def booleans(self, column: str, *, required: bool = False) -> pd.Series:
        """true/false (any case) or 1/0, recording which convention the file uses."""
        values = self.text(column, required=required)
        lowered = values.str.lower()
        words_true = lowered.isin(_TRUE_WORDS).fillna(False)
        words_false = lowered.isin(_FALSE_WORDS).fillna(False)
        digits_true = lowered.isin(_TRUE_DIGITS).fillna(False)
        digits_false = lowered.isin(_FALSE_DIGITS).fillna(False)
        if bool((words_true | words_false).any()):
            self._conventions.add("true/false")
        if bool((digits_true | digits_false).any()):
            self._conventions.add("1/0")
        parsed = pd.Series(pd.NA, index=values.index, dtype="boolean")
        parsed = parsed.mask(words_true | digits_true, True).mask(words_false | digits_false, False)
        self.problems.add_rows(
            self.name, column, values.notna() & parsed.isna(), BOOLEAN_EXPECTATION, values
        )
        return parsed

    def skip(self, reason: str, mask: pd.Series) -> None:
        """Count rows left out on purpose, so the report can say how many and why."""
        count = int(mask.to_numpy(dtype=bool, na_value=False).sum())
        if count:
            self._skipped[reason] = self._skipped.get(reason, 0) + count

    def drop(self, column: str, reason: str, *, leaky: bool) -> None:
        self._dropped.append(DroppedColumn(self.name, column, reason, leaky))

    def note(self, text: str) -> None:
        self._notes.append(text)

    def use(self, rows: int) -> None:
        """Record how many of the file's rows went into the export (for the report)."""
        self.rows_used = rows

    def report(self) -> SourceFileReport:
        conventions = self._conventions
        booleans: BooleanConvention = (
            "true/false and 1/0"
            if len(conventions) == 2
            else "true/false"
            if "true/false" in conventions
            else "1/0"
            if "1/0" in conventions
            else "none"
        )
        return SourceFileReport(
            file=self.name,
            encoding=self.source.encoding,
            booleans=booleans,
            rows_read=len(self.frame),
            rows_used=self.rows_used,
            skipped=dict(self._skipped),
            dropped_columns=tuple(self._dropped),
            notes=tuple(self._notes),
        )
