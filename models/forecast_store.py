"""Where forecast runs keep the team-quarter forecasts they made (models.forecast_review).

One SQLite file beside the data: `DATA_DIR/.dealcast/forecasts.sqlite`. The service (which
has a data folder) and `dealcast report` (given one) both write it; a forecast belongs to
the export it was made from, so it lives with it, and no tracking server is needed to
compare this week's forecast with last week's. SQLite, not a file per record: two processes
may write at once, and SQLite's own locking makes each append one transaction (a writer
waits up to TIMEOUT_S for the other); "the latest earlier forecast of this team-quarter" is
an indexed query, not a scan of files. Append-only: a record is never changed; the first
forecast of a (team, rep, period, as_of, model) is kept and a repeat of it (the same model
asked the same question, the page and the route alike) is not stored twice.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path

import pandas as pd

from models.forecast_review import DealContribution, ForecastRecord, ForecastReview, review

logger = logging.getLogger(__name__)

FOLDER = ".dealcast"
FILE_NAME = "forecasts.sqlite"
TIMEOUT_S = 30.0
_TEAM = ""  # owner_key of a team's record (NULL cannot take part in a unique key)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forecasts (
    team TEXT NOT NULL,
    owner_key TEXT NOT NULL,
    period TEXT NOT NULL,
    as_of TEXT NOT NULL,
    made_at TEXT NOT NULL,
    model TEXT NOT NULL,
    expected_revenue REAL NOT NULL,
    p10 REAL NOT NULL,
    p50 REAL NOT NULL,
    p90 REAL NOT NULL,
    p_attain REAL,
    quota REAL,
    new_business REAL NOT NULL,
    deals TEXT NOT NULL,
    UNIQUE (team, owner_key, period, as_of, model)
);
CREATE INDEX IF NOT EXISTS forecasts_by_quarter ON forecasts (team, owner_key, period, as_of);
"""


def _time(value: pd.Timestamp) -> str:
    """UTC, fixed width: text order is time order."""
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _float(value: float) -> float | None:
    return None if value != value else float(value)  # NaN -> NULL


class ForecastStore:
    """The forecasts kept in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, data_dir: Path) -> ForecastStore:
        """The store of the export in `data_dir`."""
        return cls(Path(data_dir) / FOLDER / FILE_NAME)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=TIMEOUT_S, isolation_level=None)
        connection.executescript(_SCHEMA)
        return connection

    def append(self, records: Iterable[ForecastRecord]) -> int:
        """Keep `records` in one transaction; returns how many were new."""
        rows = [
            (
                r.team,
                r.owner_id if r.owner_id is not None else _TEAM,
                r.period,
                _time(r.as_of),
                _time(r.made_at),
                r.model,
                r.expected_revenue,
                r.p10,
                r.p50,
                r.p90,
                r.p_attain,
                r.quota,
                r.new_business,
                json.dumps(
                    [
                        [
                            d.opportunity_id,
                            d.state,
                            _float(d.amount),
                            d.probability,
                            d.closes_in_period,
                        ]
                        for d in r.deals
                    ]
                ),
            )
            for r in records
        ]
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                before = connection.total_changes
                connection.executemany(
                    "INSERT OR IGNORE INTO forecasts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
                )
                added = connection.total_changes - before
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return added

    def previous(
        self, *, team: str, owner_id: str | None, period: str, before: pd.Timestamp
    ) -> ForecastRecord | None:
        """The latest record of this team's (owner_id None) or rep's quarter with an as-of
        time before `before` (the earliest made, of those at that time); None if none."""
        return self.previous_of([(team, owner_id, period, before)])[0]

    def previous_of(
        self, keys: Sequence[tuple[str, str | None, str, pd.Timestamp]]
    ) -> list[ForecastRecord | None]:
        """`previous` of each (team, owner_id, period, before), over one connection."""
        if not self.path.exists():
            return [None] * len(keys)
        with closing(self._connect()) as connection:
            rows = [
                connection.execute(
                    "SELECT * FROM forecasts WHERE team = ? AND owner_key = ? AND period = ? "
                    "AND as_of < ? ORDER BY as_of DESC, made_at ASC LIMIT 1",
                    (team, owner_id if owner_id is not None else _TEAM, period, _time(before)),
                ).fetchone()
                for team, owner_id, period, before in keys
            ]
        return [None if row is None else _record(row) for row in rows]

    def records(self) -> list[ForecastRecord]:
        """Every record, in the order kept."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT * FROM forecasts ORDER BY rowid").fetchall()
        return [_record(row) for row in rows]


def _record(row: tuple) -> ForecastRecord:
    (team, owner, period, as_of, made_at, model, expected, p10, p50, p90, p_attain, quota,
     new_business, deals) = row  # fmt: skip
    return ForecastRecord(
        team=team,
        owner_id=None if owner == _TEAM else owner,
        period=period,
        as_of=pd.Timestamp(as_of),
        made_at=pd.Timestamp(made_at),
        expected_revenue=expected,
        p10=p10,
        p50=p50,
        p90=p90,
        p_attain=p_attain,
        quota=quota,
        new_business=new_business,
        model=model,
        deals=tuple(
            DealContribution(
                opportunity_id=i,
                state=state,
                amount=float("nan") if amount is None else amount,
                probability=probability,
                closes_in_period=bool(closes),
            )
            for i, state, amount, probability, closes in json.loads(deals)
        ),
    )


def keep_and_review(
    store: ForecastStore | None, records: Sequence[ForecastRecord]
) -> dict[str | None, ForecastReview]:
    """Each record reviewed against the store's previous one of its team-quarter (owner_id
    None: the team's), then kept. Without a store, or when it cannot be written (a read-only
    data folder), the records are reviewed against their quotas only and the failure logged:
    the forecast itself still answers."""
    previous: dict[str | None, ForecastRecord | None] = {r.owner_id: None for r in records}
    if store is not None:
        try:
            found = store.previous_of([(r.team, r.owner_id, r.period, r.as_of) for r in records])
            previous.update(zip((r.owner_id for r in records), found, strict=True))
            store.append(records)
        except (sqlite3.Error, OSError) as error:
            logger.warning("forecasts not kept in %s: %s", store.path, error)
    return {r.owner_id: review(r, previous[r.owner_id]) for r in records}
