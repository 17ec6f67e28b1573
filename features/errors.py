"""Errors of the data side, each carrying the data a person needs to fix the input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

Severity = Literal["error", "warning"]

REPAIR_COLUMNS: tuple[str, ...] = ("kind", "table", "row", "key", "column", "before", "after")


@dataclass(frozen=True)
class Violation:
    """One breach of the data contract.

    `row` is the 1-based data row of the table's file (CSV line = row + 1, after the header),
    None where a violation concerns a whole table or column; `key` names the record
    (an opportunity id, say) where it has one.
    """

    table: str
    column: str | None
    row: int | None
    expected: str
    found: str | None = None
    key: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.table
        if self.column is not None:
            where += f".{self.column}"
        if self.row is not None:
            where += f" row {self.row}"
        if self.key is not None:
            where += f" ({self.key})"
        found = "" if self.found is None else f", found {self.found}"
        return f"{where}: expected {self.expected}{found}"


def empty_repairs() -> pd.DataFrame:
    """A repair listing with no rows (the columns of `RepairLog.to_frame`)."""
    return pd.DataFrame(
        {name: pd.Series(dtype="Int64" if name == "row" else "object") for name in REPAIR_COLUMNS}
    )


@dataclass(frozen=True)
class TableRows:
    """Where a table's rows went: `rows_in = rows_used + rows_removed`, each removal by a
    named repair (`removed`: kind -> rows). `rows_added` counts rows built from another
    table (history read from a deal's current state), which `rows_used` leaves out."""

    table: str
    rows_in: int
    rows_used: int
    removed: dict[str, int] = field(default_factory=dict)
    rows_added: int = 0

    @property
    def rows_removed(self) -> int:
        return sum(self.removed.values())

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.rows_used + self.rows_removed

    def __str__(self) -> str:
        text = f"{self.table}: {self.rows_in} in = {self.rows_used} used"
        if self.removed:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.removed.items()))
            text += f" + {self.rows_removed} removed ({kinds})"
        if self.rows_added:
            text += f"; {self.rows_added} added from opportunities' current state"
        return text


@dataclass
class RepairLog:
    """Every repair made to an export, one row per repaired row (see `REPAIR_COLUMNS`:
    `row` is the 1-based data row of `table`'s file, `before`/`after` the values as text),
    and the row accounting of every table read."""

    frame: pd.DataFrame = field(default_factory=empty_repairs)
    tables: dict[str, TableRows] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def counts(self) -> dict[str, int]:
        """Repaired rows by kind, largest first."""
        counts = self.frame["kind"].value_counts(sort=False)
        return {str(k): int(n) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}

    def to_frame(self) -> pd.DataFrame:
        """Every repaired row (a copy): kind, table, row, key, column, before, after."""
        return self.frame.reset_index(drop=True).copy()

    def accounting(self) -> pd.DataFrame:
        """One row per table: rows_in, rows_used, rows_removed, rows_added, balanced, and
        one `removed_<kind>` column per kind of removal."""
        kinds = sorted({kind for t in self.tables.values() for kind in t.removed})
        records = [
            {
                "table": t.table,
                "rows_in": t.rows_in,
                "rows_used": t.rows_used,
                "rows_removed": t.rows_removed,
                "rows_added": t.rows_added,
                "balanced": t.balanced,
                **{f"removed_{kind}": t.removed.get(kind, 0) for kind in kinds},
            }
            for t in self.tables.values()
        ]
        return pd.DataFrame.from_records(records)

    def format(self, *, max_per_kind: int = 20) -> list[str]:
        """Lines: the repairs by kind with counts, then the first `max_per_kind` rows of each."""
        if not len(self):
            return []
        lines = [f"{len(self)} repairs:"]
        for kind, count in self.counts().items():
            lines.append(f"  {kind}: {count}")
            rows = self.frame[self.frame["kind"] == kind].head(max_per_kind)
            for r in rows.itertuples(index=False):
                lines.append(f"    - {_repair_text(r)}")
            if count > max_per_kind:
                lines.append(f"    ... and {count - max_per_kind} more")
        return lines


def _repair_text(r: Any) -> str:
    """One listed repair (a row of `RepairLog.frame` as a named tuple)."""
    where = r.table if pd.isna(r.column) else f"{r.table}.{r.column}"
    if not pd.isna(r.row):
        where += f" row {int(r.row)}"
    if not pd.isna(r.key):
        where += f" ({r.key})"
    return f"{where}: {r.before} -> {r.after}"


@dataclass
class ValidationReport:
    """Every violation of one export, errors and warnings, found in one pass, and every
    repair made to it (`repairs`)."""

    source: str
    violations: list[Violation] = field(default_factory=list)
    repairs: RepairLog = field(default_factory=RepairLog)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def warning_counts(self) -> dict[str, int]:
        """Warnings by check (`table.column: expected ...`)."""
        counts: Counter[str] = Counter()
        for v in self.warnings:
            where = v.table if v.column is None else f"{v.table}.{v.column}"
            counts[f"{where}: {v.expected}"] += 1
        return dict(counts)

    def format(self, *, max_per_check: int = 20) -> str:
        """A readable report; long runs of one kind of violation are cut after `max_per_check`."""
        lines = [f"export: {self.source}"]
        for title, items in (("errors", self.errors), ("warnings", self.warnings)):
            if not items:
                continue
            lines.append(f"{len(items)} {title}:")
            seen: Counter[tuple[str, str | None, str]] = Counter()
            hidden: Counter[tuple[str, str | None, str]] = Counter()
            for v in items:
                check = (v.table, v.column, v.expected)
                seen[check] += 1
                if seen[check] <= max_per_check:
                    lines.append(f"  - {v}")
                else:
                    hidden[check] += 1
            for (table, column, expected), count in hidden.items():
                where = table if column is None else f"{table}.{column}"
                lines.append(f"  ... and {count} more in {where} (expected {expected})")
        lines += self.repairs.format(max_per_kind=max_per_check)
        reshaped = [t for t in self.repairs.tables.values() if t.removed or t.rows_added]
        if reshaped:
            lines.append("rows:")
            lines += [f"  {t}" for t in reshaped]
        verdict = "valid" if self.ok else "INVALID"
        if self.ok and len(self.repairs):
            verdict += f" ({len(self.repairs)} rows repaired)"
        lines.append(verdict)
        return "\n".join(lines)


class DealcastError(Exception):
    """Base of every error dealcast reports to a person (the CLI prints it in one line)."""


class DealcastDataError(DealcastError):
    """Base of the data side's errors."""


class ExportInvalid(DealcastDataError):
    """An export broke the data contract; `report` lists every violation."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())
