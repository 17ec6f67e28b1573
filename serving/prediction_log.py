"""The prediction log: every deal the service answered, appended to Parquet files by day.

With `DEALCAST_PREDICTION_LOG=DIR` each scored deal becomes one row: when it was answered,
its `opportunity_id` and `as_of`, the model (name, version, URI, mode), every probability
with its interval and horizon, the baselines' probabilities, a hash of its features and the
features themselves (for drift). What a later export says happened to those deals is joined
to them by `dealcast monitor`.

Off the request path: a request only puts its scores on a queue (a few microseconds). One
writer thread turns what is queued into rows and writes them, at least every
`flush_seconds`, as a new file `DIR/YYYY-MM-DD/predictions-<host>-<pid>-<n>.parquet` (the day
of `logged_at`, UTC). Files are never rewritten: appending is adding a file, so several
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from models.scoring import DealScore

if TYPE_CHECKING:
    from serving.model_store import LoadedModel

logger = logging.getLogger(__name__)

FEATURE_PREFIX = "feature."


@dataclass(frozen=True)
class ModelStamp:
    """Which model answered."""

    name: str
    version: str | None
    uri: str


@dataclass(frozen=True)
class _Batch:
    logged_at: datetime
    model: ModelStamp
    scores: Sequence[DealScore]


def stamp(loaded: LoadedModel) -> ModelStamp:
    """The served model, as a log row names it."""
    return ModelStamp(name=loaded.name, version=loaded.version, uri=loaded.uri)


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
        self._prefix = f"predictions-{socket.gethostname()}-{os.getpid()}"
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(self, scores: Sequence[DealScore], model: ModelStamp) -> None:
        """Queue a request's answered deals (the request does nothing more)."""
        if scores:
            self._queue.put(_Batch(datetime.now(UTC), model, list(scores)))

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
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
                rows += len(item.scores)
            if rows >= self.max_rows or time.monotonic() >= deadline:
                self._write(pending)
                pending, rows = [], 0
                deadline = time.monotonic() + self.flush_seconds

    def _write(self, batches: list[_Batch]) -> None:
        by_day: dict[str, list[dict[str, Any]]] = {}
        for batch in batches:
            day = batch.logged_at.strftime("%Y-%m-%d")
            by_day.setdefault(day, []).extend(
                prediction_row(score, batch.model, batch.logged_at) for score in batch.scores
            )
        for day, rows in by_day.items():
            folder = self.directory / day
            path = folder / f"{self._prefix}-{next(self._files):06d}.parquet"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                # Every key of every row (a deal may carry a baseline the others lack).
                names = list(dict.fromkeys(name for row in rows for name in row))
                table = pa.table({name: [row.get(name) for row in rows] for name in names})
                # Written under a temporary name and renamed: a reader never sees half a file.
                partial = path.with_suffix(".parquet.tmp")
                pq.write_table(table, partial)
                partial.replace(path)
            except Exception:  # a full disk, a read-only folder: count, log, carry on
                self.write_errors += 1
                self.rows_failed += len(rows)
                logger.exception(
                    "prediction log: could not write %d rows to %s (dropped; %d rows lost so far)",
                    len(rows),
                    path,
                    self.rows_failed,
                )
                continue
            self.rows_written += len(rows)
            self.files_written += 1


def prediction_row(score: DealScore, model: ModelStamp, logged_at: datetime) -> dict[str, Any]:
    """One logged deal: what was answered, by which model, from which features."""
    row: dict[str, Any] = {
        "logged_at": logged_at,
        "opportunity_id": score.opportunity_id,
        "as_of": datetime.fromisoformat(score.as_of),
        "model_name": model.name,
        "model_version": model.version,
        "model_uri": model.uri,
        "mode": score.mode,
        **score.probabilities(),
    }
    for horizon, days, p in score.horizons:
        row[f"p_won_{horizon}"] = p
        row[f"days_{horizon}"] = days
    for name, p in score.baselines.items():
        row[f"baseline_{name}"] = p
    for name, p in score.baselines_in_period.items():
        row[f"baseline_in_period_{name}"] = p
    features = dict(score.features)
    row["feature_hash"] = feature_hash(features)
    for name, value in features.items():
        row[FEATURE_PREFIX + name] = _plain(value)
    return row


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
