"""The prediction log: every deal the service answered, appended to Parquet files by day.

With `DEALCAST_PREDICTION_LOG=DIR` each scored deal becomes one row: when it was answered,
its `opportunity_id` and `as_of`, the model (name, version, URI, mode), every probability
with its interval and horizon, the baselines' probabilities, a hash of its features and the
features themselves (for drift). What a later export says happened to those deals is joined
to them by `dealcast monitor`. `dealcast score --log DIR` appends its batch the same way, in
the same columns (`PredictionColumns`: one implementation of a logged row, whichever path
scored the deals).

Off the request path: a request only puts its scores on a queue (a few microseconds). One
writer thread turns what is queued into rows and writes them, at least every
`flush_seconds`, as a new file `DIR/YYYY-MM-DD/predictions-<host>-<pid>-<token>-<n>.parquet`
(the day of `logged_at`, UTC). Files are never rewritten: appending is adding a file, so several
server processes share a folder safely. A write that fails is counted and logged, and its
rows are dropped; it never fails a request. `close()` writes what is still queued.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import DealcastDataError
from models.scoring import PROBABILITY_COLUMNS, DealScore, ExportScores

logger = logging.getLogger(__name__)

FEATURE_PREFIX = "feature."
BASELINE_PREFIX = "baseline_"
BASELINE_IN_PERIOD_PREFIX = "baseline_in_period_"


@dataclass(frozen=True)
class ModelStamp:
    """Which model answered."""

    name: str
    version: str | None
    uri: str


@dataclass(frozen=True)
class PredictionColumns:
    """Scored deals column by column, as the log keeps them (`table`)."""

    opportunity_id: Sequence[str]
    as_of: Sequence[datetime]
    mode: Sequence[str]
    probabilities: Mapping[str, Sequence[float]]  # DealScore.probabilities()'s names
    horizons: Mapping[str, tuple[Sequence[float], Sequence[float]]]  # name -> (days, P)
    baselines: Mapping[str, Sequence[float | None]]
    baselines_in_period: Mapping[str, Sequence[float | None]]
    features: Mapping[str, Sequence[object]]

    def __len__(self) -> int:
        return len(self.opportunity_id)

    @classmethod
    def of_scores(cls, scores: Sequence[DealScore]) -> PredictionColumns:
        """The service's answered deals (a baseline one deal lacks is None for it)."""
        probabilities = [s.probabilities() for s in scores]
        horizons = list(dict.fromkeys(h for s in scores for h, _, _ in s.horizons))
        by_horizon = [{h: (d, p) for h, d, p in s.horizons} for s in scores]
        features = list(dict.fromkeys(name for s in scores for name in s.features))
        return cls(
            opportunity_id=[s.opportunity_id for s in scores],
            as_of=[datetime.fromisoformat(s.as_of) for s in scores],
            mode=[s.mode for s in scores],
            probabilities={k: [p[k] for p in probabilities] for k in probabilities[0]},
            horizons={
                h: (
                    [row.get(h, (None, None))[0] for row in by_horizon],  # type: ignore[misc]
                    [row.get(h, (None, None))[1] for row in by_horizon],  # type: ignore[misc]
                )
                for h in horizons
            },
            baselines=_by_name([s.baselines for s in scores]),
            baselines_in_period=_by_name([s.baselines_in_period for s in scores]),
            features={n: [s.features.get(n) for s in scores] for n in features},
        )

    @classmethod
    def of_export(cls, scores: ExportScores) -> PredictionColumns:
        """A batch of `dealcast score` (models.scoring.score_open_deals)."""
        frame = scores.frame
        horizons = [c.removeprefix("p_won_") for c in frame.columns if c.startswith("p_won_")]
        as_of = pd.to_datetime(frame["as_of"], utc=True)
        return cls(
            opportunity_id=frame["opportunity_id"].astype(str).tolist(),
            as_of=[t.to_pydatetime() for t in as_of],
            mode=frame["mode"].astype(str).tolist(),
            probabilities={
                name: frame[name].to_numpy(dtype=np.float64).tolist()
                for name in PROBABILITY_COLUMNS
            },
            horizons={
                h: (frame[f"days_{h}"].tolist(), frame[f"p_won_{h}"].tolist()) for h in horizons
            },
            baselines={
                name: frame[name].to_numpy(dtype=np.float64).tolist()
                for name in scores.baselines_in_period
            },
            baselines_in_period={
                name: np.asarray(p, dtype=np.float64).tolist()
                for name, p in scores.baselines_in_period.items()
            },
            features={name: list(values) for name, values in scores.features.items()},
        )

    def columns(self, model: ModelStamp, logged_at: datetime) -> dict[str, list[Any]]:
        """The logged rows, column by column: what was answered, by which model, from which
        features."""
        n = len(self)
        features = {name: [_plain(v) for v in values] for name, values in self.features.items()}
        out: dict[str, list[Any]] = {
            "logged_at": [logged_at] * n,
            "opportunity_id": list(self.opportunity_id),
            "as_of": list(self.as_of),
            "model_name": [model.name] * n,
            "model_version": [model.version] * n,
            "model_uri": [model.uri] * n,
            "mode": list(self.mode),
            **{name: list(values) for name, values in self.probabilities.items()},
        }
        for horizon, (days, p) in self.horizons.items():
            out[f"p_won_{horizon}"] = list(p)
            out[f"days_{horizon}"] = list(days)
        for name, values in self.baselines.items():
            out[BASELINE_PREFIX + name] = list(values)
        for name, values in self.baselines_in_period.items():
            out[BASELINE_IN_PERIOD_PREFIX + name] = list(values)
        out["feature_hash"] = [
            feature_hash({name: column[i] for name, column in features.items()}) for i in range(n)
        ]
        for name, column in features.items():
            out[FEATURE_PREFIX + name] = column
        return out


def _by_name(values: Sequence[Mapping[str, float]]) -> dict[str, list[float | None]]:
    names = list(dict.fromkeys(name for value in values for name in value))
    return {name: [value.get(name) for value in values] for name in names}


@dataclass(frozen=True)
class _Batch:
    logged_at: datetime
    model: ModelStamp
    scores: Sequence[DealScore] = ()
    columns: PredictionColumns | None = None

    def rows(self) -> dict[str, list[Any]]:
        # Built here, in the writer thread: a request only queued its scores.
        columns = (
            self.columns if self.columns is not None else PredictionColumns.of_scores(self.scores)
        )
        return columns.columns(self.model, self.logged_at)


class PredictionLog:
    """Appends answered deals to `directory` from a writer thread of its own."""

    def __init__(
        self, directory: Path, *, flush_seconds: float = 1.0, max_rows: int = 50_000
    ) -> None:
        self.directory = Path(directory)
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.rows_written = 0
        self.rows_failed = 0
        self.files_written = 0
        self.write_errors = 0
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._files = itertools.count()
        # The token tells apart two logs of one process (each `dealcast score --log` run in a
        # notebook or a test): the same host, pid and count would overwrite the other's file.
        token = uuid.uuid4().hex[:8]
        self._prefix = f"predictions-{socket.gethostname()}-{os.getpid()}-{token}"
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, scores: Sequence[DealScore], model: ModelStamp) -> None:
        """Queue a request's answered deals (the request does nothing more)."""
        if scores:
            self._queue.put(_Batch(datetime.now(UTC), model, scores=list(scores)))

    def append_columns(self, columns: PredictionColumns, model: ModelStamp) -> None:
        """Queue a batch's scored deals (`dealcast score --log`)."""
        if len(columns):
            self._queue.put(_Batch(datetime.now(UTC), model, columns=columns))

    def close(self, timeout: float | None = 30.0) -> None:
        """Write everything queued, then stop the writer (None: however long it takes)."""
        self._queue.put(None)
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "rows_written": self.rows_written,
            "rows_failed": self.rows_failed,
            "files_written": self.files_written,
            "write_errors": self.write_errors,
        }

    def _run(self) -> None:
        pending: list[_Batch] = []
        rows = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                pass  # time to flush what is pending
            else:
                if item is None:
                    self._write(pending)
                    return
                pending.append(item)
                rows += len(item.scores) if item.columns is None else len(item.columns)
            if rows >= self.max_rows or time.monotonic() >= deadline:
                self._write(pending)
                pending, rows = [], 0
                deadline = time.monotonic() + self.flush_seconds

    def _write(self, batches: list[_Batch]) -> None:
        by_day: dict[str, list[dict[str, list[Any]]]] = {}
        for batch in batches:
            by_day.setdefault(batch.logged_at.strftime("%Y-%m-%d"), []).append(batch.rows())
        for day, parts in by_day.items():
            folder = self.directory / day
            path = folder / f"{self._prefix}-{next(self._files):06d}.parquet"
            rows = sum(len(part["opportunity_id"]) for part in parts)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                table = pa.table(_merged(parts))
                # Written under a temporary name and renamed: a reader never sees half a file.
                partial = path.with_suffix(".parquet.tmp")
                pq.write_table(table, partial)
                partial.replace(path)
            except Exception:  # a full disk, a read-only folder: count, log, carry on
                self.write_errors += 1
                self.rows_failed += rows
                logger.exception(
                    "prediction log: could not write %d rows to %s (dropped; %d rows lost so far)",
                    rows,
                    path,
                    self.rows_failed,
                )
                continue
            self.rows_written += rows
            self.files_written += 1


def _merged(parts: Sequence[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """Batches' columns one after the other; a column one batch lacks (a baseline no deal of
    it had) is None in its rows."""
    names = list(dict.fromkeys(name for part in parts for name in part))
    out: dict[str, list[Any]] = {name: [] for name in names}
    for part in parts:
        n = len(part["opportunity_id"])
        for name in names:
            out[name].extend(part.get(name, [None] * n))
    return out


def feature_hash(features: Mapping[str, object]) -> str:
    """SHA-256 of the features, names sorted, numbers as their shortest exact repr."""
    text = json.dumps({name: _plain(value) for name, value in sorted(features.items())})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: object) -> object:
    """A feature value as JSON and Parquet take it: a float (NaN as None), a string or None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or hasattr(value, "item"):
        number = float(value)  # type: ignore[arg-type]
        return None if math.isnan(number) else number
    return str(value)


class PredictionLogInvalid(DealcastDataError):
    """A prediction log folder that cannot be read as one."""


LOG_KEYS = ("logged_at", "opportunity_id", "as_of", "model_name", "model_version", "mode")


def read_prediction_log(directory: Path) -> pd.DataFrame:
    """Every logged row under `directory` (`DAY/*.parquet`) in the order logged; times UTC.

    Files still being written (`*.parquet.tmp`) are not read."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PredictionLogInvalid(f"prediction log {directory}: no such folder")
    files = sorted(directory.glob("*/*.parquet"))
    if not files:
        raise PredictionLogInvalid(
            f"prediction log {directory}: no DAY/*.parquet file (the service writes them with "
            "DEALCAST_PREDICTION_LOG, `dealcast score --log`)"
        )
    frames = []
    for path in files:
        try:
            frame = pq.read_table(path).to_pandas()
        except Exception as error:  # a damaged file: named, never skipped in silence
            message = f"prediction log file {path}: unreadable ({error})"
            raise PredictionLogInvalid(message) from error
        missing = [key for key in LOG_KEYS if key not in frame.columns]
        if missing:
            raise PredictionLogInvalid(
                f"prediction log file {path}: missing column(s) {', '.join(missing)}"
            )
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True, sort=False)
    for column in ("logged_at", "as_of"):
        rows[column] = pd.to_datetime(rows[column], utc=True)
    # In the order logged (a batch keeps its own order): file names do not sort by time.
    rows = rows.sort_values("logged_at", kind="stable", ignore_index=True)
    rows["model_version"] = (
        rows["model_version"].astype(object).where(rows["model_version"].notna(), None)
    )
    return rows
