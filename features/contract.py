"""The data contract (../shared/spec/data-contract.md) as data.

One declaration of every table, column, type and key serves the loader, the validator,
the importers and the synthetic world, so that what they read and write cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["string", "datetime", "date", "float", "bool"]

FORECAST_CATEGORIES: tuple[str, ...] = ("Pipeline", "Best Case", "Commit", "Closed", "Omitted")
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "demo", "proposal", "other")
QUOTA_PERIOD_PATTERN = r"^\d{4}-Q[1-4]$"


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    `minimum`/`maximum` bound numeric values (inclusive unless `exclusive_minimum`);
    `choices` restricts strings to a closed vocabulary. `repaired_when_empty`: the column is
    required, but an empty value is repaired (features.repairs), not refused.
    """

    name: str
    kind: ColumnKind
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    repaired_when_empty: bool = False

    def expectation(self) -> str:
        """A plain description of a valid value, used in violation messages."""
        parts = {
            "string": "a non-empty string",
            "datetime": "an ISO 8601 date or time (e.g. 2026-03-31T14:05:00, optional UTC offset)",
            "date": "an ISO 8601 date (e.g. 2026-03-31)",
            "float": "a finite number",
            "bool": "a boolean (true/false or 1/0)",
        }
        text = parts[self.kind]
        if self.minimum is not None and self.maximum is not None:
            text += f" in [{self.minimum:g}, {self.maximum:g}]"
        elif self.minimum is not None:
            text += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        return text


@dataclass(frozen=True)
class Table:
    """One contract table: its columns and, where it has one, its unique key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    required: bool = False

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no contract column {name!r}")


# Current-state columns that a raw export may carry on `opportunities`; they must agree with
# the last history row, and the history wins.
CURRENT_STATE_COLUMNS: tuple[Column, ...] = (
    Column("stage", "string"),
    Column("amount", "float", minimum=0.0),
    Column("close_date", "date"),
    Column("is_closed", "bool"),
    Column("is_won", "bool"),
    Column("forecast_category", "string", choices=FORECAST_CATEGORIES),
)

OPPORTUNITIES = Table(
    "opportunities",
    (
        Column("opportunity_id", "string", required=True),
        Column("account_id", "string", required=True),
        Column("owner_id", "string", required=True),
        Column("created_at", "datetime", required=True),
        Column("type", "string"),
        Column("lead_source", "string"),
        *CURRENT_STATE_COLUMNS,
    ),
    key=("opportunity_id",),
    required=True,
)

OPPORTUNITY_HISTORY = Table(
    "opportunity_history",
    (
        Column("opportunity_id", "string", required=True),
        Column("changed_at", "datetime", required=True),
        Column("stage", "string", required=True),
        # Deals often get an amount only later: carried forward, else unknown (NaN).
        Column("amount", "float", required=True, minimum=0.0, repaired_when_empty=True),
        Column("close_date", "date", required=True),
        Column("forecast_category", "string", choices=FORECAST_CATEGORIES),
        Column("probability", "float", minimum=0.0, maximum=100.0),
        Column("manual_probability", "float", minimum=0.0, maximum=100.0),
        Column("currency", "string"),
    ),
    required=True,
)

ACTIVITIES = Table(
    "activities",
    (
        Column("opportunity_id", "string", required=True),
        Column("occurred_at", "datetime", required=True),
        Column("type", "string", required=True),
        Column("contact_role", "string"),
    ),
)

ACCOUNTS = Table("accounts", (Column("account_id", "string", required=True),), key=("account_id",))

OWNERS = Table(
    "owners",
    (
        Column("owner_id", "string", required=True),
        Column("team", "string"),
        Column("manager_id", "string"),
        Column("region", "string"),
    ),
    key=("owner_id",),
)

QUOTAS = Table(
    "quotas",
    (
        Column("period", "string", required=True),
        Column("owner_id", "string"),
        Column("team", "string"),
        Column("quota", "float", required=True, minimum=0.0, exclusive_minimum=True),
    ),
)

EXCHANGE_RATES = Table(
    "exchange_rates",
    (
        Column("currency", "string", required=True),
        Column("rate", "float", required=True, minimum=0.0, exclusive_minimum=True),
        Column("valid_from", "date"),
    ),
)

OPPORTUNITY_FIELD_HISTORY = Table(
    "opportunity_field_history",
    (
        Column("opportunity_id", "string", required=True),
        Column("changed_at", "datetime", required=True),
        Column("field", "string", required=True),
        Column("new_value", "string"),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        OPPORTUNITIES,
        OPPORTUNITY_HISTORY,
        ACTIVITIES,
        ACCOUNTS,
        OWNERS,
        QUOTAS,
        EXCHANGE_RATES,
        OPPORTUNITY_FIELD_HISTORY,
    )
}

STAGES_FILE = "stages.yaml"
