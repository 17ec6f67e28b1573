"""Reading a CRM's raw CSV files: encodings, API column names, typed columns, every problem noted.

An importer maps one raw file at a time through a `SourceTable`, which parses columns into
typed Series (text, times, dates, numbers, booleans) and records each bad value in a shared
`ImportProblems` rather than stopping at the first, so a person sees everything wrong with an
export in one run. Nothing is coerced: a value that does not parse is a problem, an empty value
is missing (and a problem only where the column must be filled).

Decoding never garbles. Salesforce exports are UTF-8, Windows-1252, or both in one file (a
Windows-1252 file that later lines were appended to in UTF-8, say), so each physical line is
decoded on its own: as UTF-8 when it is valid UTF-8, else as Windows-1252. A file is decoded
whole first and line by line only around the lines that are not UTF-8, which keeps clean files
at C speed. NUL bytes (rich-text fields carry them) are removed and counted; a BOM and CRLF line
ends are taken as they come; CRs and newlines inside quoted fields are kept as they are.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.errors import Violation

logger = logging.getLogger(__name__)

BooleanConvention = Literal["true/false", "1/0", "true/false and 1/0", "none"]

_TRUE_WORDS = frozenset({"true"})
_FALSE_WORDS = frozenset({"false"})
_TRUE_DIGITS = frozenset({"1"})
_FALSE_DIGITS = frozenset({"0"})

TIME_EXPECTATION = "an ISO 8601 date or time (e.g. 2026-03-31T14:05:00.000Z or 2026-03-31)"
DATE_EXPECTATION = "an ISO 8601 date (e.g. 2026-03-31)"
NUMBER_EXPECTATION = "a finite number (e.g. 12500.00)"
BOOLEAN_EXPECTATION = "a boolean: true/false or 1/0"
# dealcast computes on nanosecond timestamps; a time outside their range would wrap around.
EARLIEST_TIME = pd.Timestamp.min.ceil("D").tz_localize("UTC")
LATEST_TIME = pd.Timestamp.max.floor("D").tz_localize("UTC")
RANGE_EXPECTATION = (
    f"a time dealcast can represent (from {EARLIEST_TIME:%Y-%m-%d} to {LATEST_TIME:%Y-%m-%d})"
)

# The five bytes Windows-1252 leaves undefined. Windows (MultiByteToWideChar) decodes them to
# the C1 control characters of the same value, as Latin-1 does; so does dealcast, losslessly,
# and counts them (the contract's validator cleans control characters out of text).
UNDEFINED_CP1252 = b"\x81\x8d\x8f\x90\x9d"
_CP1252_FROM_LATIN1 = {
    byte: bytes([byte]).decode("cp1252")
    for byte in range(0x80, 0xA0)
    if bytes([byte]) not in UNDEFINED_CP1252
}


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
        if not len(positions):
            return
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
class Decoding:
    """What decoding one file found, for the import report.

    `lines` counts physical lines (the header too) by how they were decoded: `ascii` lines read
    the same in every encoding, `utf-8` lines hold non-ASCII UTF-8, `cp1252` lines are not valid
    UTF-8 and were read as Windows-1252. `undefined_bytes` counts the cp1252 bytes with no
    character (kept as C1 control characters); `nul_removed` the NUL bytes taken out.
    """

    lines: Mapping[str, int]
    bom: bool = False
    nul_removed: int = 0
    undefined_bytes: int = 0
    line_ends: str = "none"
    declared: str | None = None

    @property
    def encoding(self) -> str:
        """One word for the file: `utf-8`, `cp1252`, or `utf-8 + cp1252` when lines mix both;
        the declared encoding (a mapping's `source.encoding`, say `gbk`) when one was given."""
        if self.declared is not None:
            return self.declared
        found = [name for name in ("utf-8", "cp1252") if self.lines.get(name)]
        return " + ".join(found) if found else "utf-8"

    def describe(self) -> str:
        counts = ", ".join(f"{n} {name}" for name, n in self.lines.items() if n)
        parts = [f"lines {counts or 'none'}", f"{self.line_ends} line ends"]
        if self.bom:
            parts.append("UTF-8 BOM")
        if self.nul_removed:
            parts.append(f"{self.nul_removed} NUL bytes removed")
        if self.undefined_bytes:
            parts.append(
                f"{self.undefined_bytes} bytes undefined in cp1252 kept as C1 control characters"
            )
        return "; ".join(parts)


def _cp1252(line: bytes) -> str:
    return line.decode("latin-1").translate(_CP1252_FROM_LATIN1)


def _line_ends(data: bytes) -> str:
    crlf = data.count(b"\r\n")
    lf = data.count(b"\n") - crlf
    if crlf and lf:
        return f"mixed ({crlf} CRLF, {lf} LF)"
    return "CRLF" if crlf else "LF" if lf else "no"


def _non_ascii_lines(data: bytes) -> int:
    """How many physical lines hold a byte >= 0x80 (vectorised: one pass over the bytes)."""
    octets = np.frombuffer(data, dtype=np.uint8)
    high = np.flatnonzero(octets >= 0x80)
    if not len(high):
        return 0
    newlines = np.flatnonzero(octets == 0x0A)
    # Positions ascend, so their line numbers do too: count where the line number changes.
    line_of = np.searchsorted(newlines, high)
    return int(np.count_nonzero(np.diff(line_of))) + 1


def decode(data: bytes) -> tuple[str, Decoding]:
    """Decode a file as Salesforce writes it, line by line: UTF-8, else Windows-1252.

    Windows-1252 accepts almost any byte sequence, so UTF-8 is tried first: a line that decodes
    as UTF-8 is UTF-8 in practice (Windows-1252 text whose non-ASCII bytes happen to form valid
    UTF-8, such as a literal `Ã©`, is vanishingly rare). The file is decoded whole, invalid
    bytes escaped to lone surrogates; only the lines holding one are decoded again, from their
    bytes, as Windows-1252. A newline byte never occurs inside a UTF-8 or Windows-1252
    character, so the k-th line of the text is the k-th line of the bytes. The work is linear in
    the file; the Python loop runs once per non-UTF-8 line. Raises ValueError for UTF-16 (with
    or without BOM), which Salesforce does not write.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError("the file is UTF-16; save it as UTF-8 or Windows-1252")
    bom = data.startswith(codecs.BOM_UTF8)
    if bom:
        data = data[len(codecs.BOM_UTF8) :]
    nul = data.count(b"\x00")
    if nul and nul * 4 > len(data):
        raise ValueError(
            f"{nul} of its {len(data)} bytes are NUL: the file looks like UTF-16 without a BOM; "
            "save it as UTF-8 or Windows-1252"
        )
    if nul:
        data = data.replace(b"\x00", b"")
    cp1252_lines = 0
    undefined = 0
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text, cp1252_lines, undefined = _decode_mixed(data)
    total = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
    non_ascii = _non_ascii_lines(data)
    decoding = Decoding(
        lines={
            "ascii": total - non_ascii,
            "utf-8": non_ascii - cp1252_lines,
            "cp1252": cp1252_lines,
        },
        bom=bom,
        nul_removed=nul,
        undefined_bytes=undefined,
        line_ends=_line_ends(data),
    )
    return text, decoding


def decode_declared(data: bytes, encoding: str) -> tuple[str, Decoding]:
    """Decode a file in the one encoding its exporter declares (GBK for a Chinese CRM, say).

    Strict: a byte sequence the encoding cannot read is a ValueError naming the line, never a
    replacement character. A UTF-8 BOM is taken off when the encoding is a UTF-8 one.
    """
    name = codecs.lookup(encoding).name
    bom = name.startswith("utf-8") and data.startswith(codecs.BOM_UTF8)
    if bom:
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode(name)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"line {line} is not {encoding}: bytes {data[error.start : error.end]!r} "
            f"({error.reason})"
        ) from error
    total = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
    non_ascii = _non_ascii_lines(data)
    decoding = Decoding(
        lines={"ascii": total - non_ascii, encoding: non_ascii},
        bom=bom,
        line_ends=_line_ends(data),
        declared=encoding,
    )
    return text, decoding


_ESCAPED = re.compile("[\udc80-\udcff]")


def _decode_mixed(data: bytes) -> tuple[str, int, int]:
    """The text of a file some of whose lines are not UTF-8, the number of those lines (read
    as Windows-1252), and how many of their bytes Windows-1252 leaves undefined."""
    escaped = data.decode("utf-8", "surrogateescape")
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    parts: list[str] = []
    lines = undefined = 0
    done = 0  # text up to here is in `parts`
    line = 0  # index of the line starting at `done`
    for match in _ESCAPED.finditer(escaped):
        if match.start() < done:
            continue  # a further invalid byte on a line already decoded
        start = escaped.rfind("\n", done, match.start()) + 1 or done
        end = escaped.find("\n", match.start())
        end = len(escaped) if end < 0 else end + 1
        line += escaped.count("\n", done, start)
        first = 0 if line == 0 else int(newlines[line - 1]) + 1
        last = int(newlines[line]) + 1 if line < len(newlines) else len(data)
        raw = data[first:last]
        parts.append(escaped[done:start])
        parts.append(_cp1252(raw))
        undefined += sum(raw.count(bytes([byte])) for byte in UNDEFINED_CP1252)
        lines += 1
        line += 1
        done = end
    parts.append(escaped[done:])
    return "".join(parts), lines, undefined


@dataclass(frozen=True)
class SourceFile:
    """One raw CSV file as text cells: `frame` holds str values, NaN where a cell is empty.

    `header_only` marks a file with no data rows (or no bytes at all): an absent table.
    """

    name: str
    path: Path
    decoding: Decoding
    frame: pd.DataFrame
    header_only: bool = False

    @property
    def encoding(self) -> str:
        return self.decoding.encoding


_HEADER_LIMIT = 1 << 20


def _header(text: str) -> list[str] | None:
    """The first record's fields (a header may quote its names), None for a file without one.

    Read from the file's first megabyte, so a large file is not copied for its first line.
    """
    try:
        return next(csv.reader(io.StringIO(text[:_HEADER_LIMIT])))
    except StopIteration:
        return None


def _unique_names(names: list[str]) -> list[str]:
    """Column names made unique as pandas does (`Name`, `Name.1`), so each selects one column."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}.{count}")
    return unique


def _parse_rows(text: str, width: int, name: str, problems: ImportProblems) -> pd.DataFrame | None:
    """Every record as `width` text cells, or None after noting each record of another width.

    Arrow's reader parses quoted newlines and CRs inside fields, keeps every cell as text and
    calls back once per record whose field count differs from the header's, so one bad record
    is one problem naming its row, not a shifted table (pandas takes a first row with an extra
    field as an index column and pads short rows silently).
    """
    bad: list[tuple[int | None, int]] = []

    def invalid_row(row: pa_csv.InvalidRow) -> str:
        bad.append((row.number, row.actual_columns))
        return "skip"

    columns = [f"f{i}" for i in range(width)]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            # Serial parsing is what gives each bad record its row number.
            read_options=pa_csv.ReadOptions(column_names=columns, use_threads=False),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=invalid_row
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        problems.add(name, None, None, "a well-formed CSV file", str(error))
        return None
    for number, fields in bad:
        row = None if number is None else number - 1
        problems.add(
            name,
            None,
            row,
            f"a row of {width} fields, as many as the header has",
            f"{fields} fields",
        )
    if bad:
        return None
    return table.slice(1).to_pandas()


def read_source_file(
    path: Path,
    *,
    known_columns: Iterable[str],
    problems: ImportProblems,
    encoding: str | None = None,
) -> SourceFile | None:
    """Read a raw CSV as text cells, naming columns by their API names (case-insensitively).

    Data Loader writes headers in upper case (`ACCOUNTID`), the weekly export in API case
    (`AccountId`); both map onto `known_columns`. Returns None (with a problem) if unreadable:
    not a UTF-8 or Windows-1252 file (or not in `encoding`, when the exporter declares one), or
    a record whose field count is not the header's.
    """
    try:
        data = path.read_bytes()
        text, decoding = decode(data) if encoding is None else decode_declared(data, encoding)
    except (ValueError, OSError) as error:
        expected = "a UTF-8 or Windows-1252" if encoding is None else f"a {encoding}"
        problems.add(path.name, None, None, f"{expected} CSV file", str(error))
        return None
    header = _header(text)
    if header is None:
        empty = pd.DataFrame()
        return SourceFile(path.name, path, decoding, empty, header_only=True)
    canonical = {name.lower(): name for name in known_columns}
    names = _unique_names([canonical.get(c.strip().lower(), c.strip()) for c in header])
    frame = _parse_rows(text, len(header), path.name, problems)
    if frame is None:
        return None
    frame.columns = names
    logger.info("read %s: %d rows, %s", path.name, len(frame), decoding.encoding)
    return SourceFile(path.name, path, decoding, frame, header_only=frame.empty)


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
    decoding: Decoding
    booleans: BooleanConvention
    rows_read: int
    rows_used: int
    skipped: dict[str, int] = field(default_factory=dict)
    dropped_columns: tuple[DroppedColumn, ...] = ()
    notes: tuple[str, ...] = ()
    header_only: bool = False

    @property
    def encoding(self) -> str:
        """`utf-8`, `cp1252`, or `utf-8 + cp1252` (see `Decoding` for the counts by line)."""
        return self.decoding.encoding


# An offset after a time of day (`14:05:00Z`, `14:05+08:00`), never a date's own `-15`.
_OFFSET = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone (Asia/Shanghai, Europe/Berlin, UTC)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class TimeReading:
    """How an export writes its times: the zone of its naive times and, when they are not ISO
    8601, their strftime patterns (`%Y/%m/%d %H:%M`). A time column also accepts a bare date
    in `date_format`; a date column accepts only dates."""

    zone: str = "UTC"
    datetime_format: str | None = None
    date_format: str | None = None

    def patterns(self) -> list[str | None]:
        """The patterns a time is tried in, in order (None: ISO 8601)."""
        found = [self.datetime_format, self.date_format]
        return [p for p in found if p is not None] or [None]

    @property
    def time_expectation(self) -> str:
        if self.datetime_format is None and self.date_format is None:
            return TIME_EXPECTATION
        shown = " or ".join(repr(p) for p in self.patterns())
        return f"a time written as {shown} (strftime)"

    @property
    def date_expectation(self) -> str:
        if self.date_format is None:
            return DATE_EXPECTATION
        return f"a date written as {self.date_format!r} (strftime)"


class SourceTable:
    """Typed access to one raw file's columns; bad values go to the shared `ImportProblems`.

    Each parser returns a Series aligned with the file's rows (missing where empty or bad) and
    records, per bad row, the file, the column, the 1-based row and what was expected.
    """

    def __init__(
        self, source: SourceFile, problems: ImportProblems, *, times: TimeReading | None = None
    ) -> None:
        self.source = source
        self.frame = source.frame
        self.problems = problems
        self.times = TimeReading() if times is None else times
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
        parsed, in_gap = self._parse_times(column, values)
        bad = values.notna() & parsed.isna() & ~in_gap
        self.problems.add_rows(self.name, column, bad, expectation, values)
        unrepresentable = ((parsed < EARLIEST_TIME) | (parsed > LATEST_TIME)).fillna(False)
        self.problems.add_rows(self.name, column, unrepresentable, RANGE_EXPECTATION, values)
        return values, parsed.mask(unrepresentable)

    def _parse_times(self, column: str, values: pd.Series) -> tuple[pd.Series, pd.Series]:
        """Times in UTC: a value with an offset (or Z) is converted, a naive one is read in the
        export's zone (`TimeReading.zone`); NaT where a value does not parse. The mask marks
        the naive times that do not exist in the zone (noted here, with their own message)."""
        reading = self.times
        none = pd.Series(False, index=values.index)
        if reading == TimeReading():  # ISO 8601, naive times UTC: one parse (the hot path)
            parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
            return pd.Series(parsed, index=values.index).astype("datetime64[us, UTC]"), none
        aware = values.str.contains(_OFFSET, regex=True).fillna(False)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
        if bool(aware.any()):
            with_offset = pd.to_datetime(values[aware], utc=True, format="ISO8601", errors="coerce")
            parsed[aware] = with_offset.astype("datetime64[us, UTC]")
        naive = values.notna() & ~aware
        if not bool(naive.any()):
            return parsed, none
        local = pd.Series(pd.NaT, index=values[naive].index, dtype="datetime64[us]")
        for pattern in reading.patterns():
            todo = local.isna()
            if not bool(todo.any()):
                break
            found = pd.to_datetime(
                values[naive][todo],
                format="ISO8601" if pattern is None else pattern,
                errors="coerce",
            )
            local[todo] = found.astype("datetime64[us]")
        if reading.zone == "UTC":
            parsed[naive] = local.dt.tz_localize("UTC")
            return parsed, none
        # The repeated hour of a daylight-saving change is read as its later pass (standard
        # time): a change is then seen up to an hour after it happened, never before.
        later = local.dt.tz_localize(reading.zone, ambiguous=False, nonexistent="NaT")
        earlier = local.dt.tz_localize(
            reading.zone, ambiguous=np.ones(len(local), dtype=bool), nonexistent="NaT"
        )
        ambiguous = int((later.notna() & (later != earlier)).sum())
        if ambiguous:
            self.note(
                f"{column}: {ambiguous} times in the repeated hour of a daylight-saving change "
                f"in {reading.zone} read as its later pass (standard time)"
            )
        gap = (local.notna() & later.isna()).reindex(values.index, fill_value=False)
        self.problems.add_rows(
            self.name,
            column,
            gap,
            f"a time that exists in {reading.zone} (this one falls in a daylight-saving gap)",
            values,
        )
        parsed[naive] = later.dt.tz_convert("UTC")
        return parsed, gap

    def timestamps(self, column: str, *, required: bool = False) -> pd.Series:
        """Times in UTC; naive times are read in the export's zone (UTC unless told, as
        Salesforce exports them)."""
        return self._times(column, required, self.times.time_expectation)[1]

    def dates(self, column: str, *, required: bool = False, time_of_day: bool = False) -> pd.Series:
        """Calendar dates as UTC midnights; a time of day other than midnight is a problem,
        or, with `time_of_day`, dropped (the day as written: HubSpot writes some close dates
        with a time).

        A date is a day on the calendar, not an instant: it is never shifted by the zone.
        """
        values = self.text(column, required=required)
        reading = self.times
        if reading.date_format is None:
            parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
            parsed = pd.Series(parsed, index=values.index).astype("datetime64[us, UTC]")
        else:
            parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
            patterns = [reading.date_format]
            if time_of_day and reading.datetime_format is not None:
                patterns.append(reading.datetime_format)
            for pattern in patterns:
                todo = parsed.isna() & values.notna()
                found = pd.to_datetime(values[todo], format=pattern, errors="coerce")
                parsed[todo] = found.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
        expectation = reading.date_expectation
        self.problems.add_rows(
            self.name, column, values.notna() & parsed.isna(), expectation, values
        )
        with_time = (parsed.notna() & (parsed != parsed.dt.normalize())).fillna(False)
        if time_of_day:
            parsed = parsed.dt.normalize()
        else:
            self.problems.add_rows(self.name, column, with_time, expectation, values)
        unrepresentable = ((parsed < EARLIEST_TIME) | (parsed > LATEST_TIME)).fillna(False)
        self.problems.add_rows(self.name, column, unrepresentable, RANGE_EXPECTATION, values)
        return parsed.mask((with_time & ~time_of_day) | unrepresentable)

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
            decoding=self.source.decoding,
            booleans=booleans,
            rows_read=len(self.frame),
            rows_used=self.rows_used,
            skipped=dict(self._skipped),
            dropped_columns=tuple(self._dropped),
            notes=tuple(self._notes),
            header_only=self.source.header_only,
        )
