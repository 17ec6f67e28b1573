"""Errors of the data side, each carrying the data a person needs to fix the input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


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


@dataclass
class ValidationReport:
    """Every violation of one export, errors and warnings, found in one pass."""

    source: str
    violations: list[Violation] = field(default_factory=list)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

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
        lines.append("valid" if self.ok else "INVALID")
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
