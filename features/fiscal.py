"""Fiscal quarters: labels, boundaries and weeks of the quarter, vectorised over nanosecond times.

A fiscal year starts on the first day of `start_month` (January unless configured) and is
labelled by the calendar year in which it ends, so with a February start `2027-Q1` runs from
2026-02-01 to 2026-04-30. Quarter boundaries are midnight UTC.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_LABEL = re.compile(r"^(\d{4})-Q([1-4])$")


def _months(times_ns: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each time (UTC)."""
    return np.asarray(times_ns, dtype="datetime64[ns]").astype("datetime64[M]").astype(np.int64)


def _quarter_index(times_ns: np.ndarray, start_month: int) -> np.ndarray:
    """A running quarter number: quarter k starts at month 3k + (start_month - 1) since 1970."""
    return (_months(times_ns) - (start_month - 1)) // 3


def _quarter_start_ns(index: np.ndarray, start_month: int) -> np.ndarray:
    months = index * 3 + (start_month - 1)
    return months.astype("datetime64[M]").astype("datetime64[ns]").astype(np.int64)


def quarter_bounds(times_ns: np.ndarray, *, start_month: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) of the fiscal quarter containing each time, in ns."""
    index = _quarter_index(times_ns, start_month)
    return _quarter_start_ns(index, start_month), _quarter_start_ns(index + 1, start_month)


def quarter_labels(times_ns: np.ndarray, *, start_month: int = 1) -> np.ndarray:
    """`YYYY-Qn` of each time, the year being the calendar year in which the fiscal year ends."""
    index = _quarter_index(times_ns, start_month)
    first_month = index * 3 + (start_month - 1)
    fiscal_year_start = first_month - (index % 4) * 3
    end_year = 1970 + (fiscal_year_start + 11) // 12
    quarter = index % 4 + 1
    return np.char.add(np.char.add(end_year.astype(str), "-Q"), quarter.astype(str))


def week_of_quarter(times_ns: np.ndarray, *, start_month: int = 1) -> np.ndarray:
    """1-based week of the fiscal quarter (days 0-6 are week 1); at most 14 in a 92-day quarter."""
    start, _ = quarter_bounds(times_ns, start_month=start_month)
    return (np.asarray(times_ns, dtype=np.int64) - start) // (7 * 86_400 * 10**9) + 1


def period_bounds(label: str, *, start_month: int = 1) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Start (inclusive) and end (exclusive) of the fiscal quarter `YYYY-Qn`."""
    match = _LABEL.match(label)
    if match is None:
        raise ValueError(f"period {label!r} is not a fiscal quarter label YYYY-Qn")
    end_year, quarter = int(match.group(1)), int(match.group(2))
    # The fiscal year ending in `end_year` starts 12 months before its last month.
    fiscal_start_month = (end_year - 1970) * 12 + (start_month - 1) - (12 if start_month > 1 else 0)
    first = fiscal_start_month + (quarter - 1) * 3
    start = np.array([first], dtype="datetime64[M]").astype("datetime64[ns]")
    end = np.array([first + 3], dtype="datetime64[M]").astype("datetime64[ns]")
    return pd.Timestamp(start[0], tz="UTC"), pd.Timestamp(end[0], tz="UTC")


def snapshot_grid(
    first: pd.Timestamp, last: pd.Timestamp, *, step_days: int = 7, start_month: int = 1
) -> pd.DatetimeIndex:
    """As-of times from `first` to `last`: each fiscal quarter's start plus whole steps.

    Anchoring on quarter starts makes week k of every quarter a grid time, so metrics by week
    of quarter compare like with like. Times are midnight UTC.
    """
    first_ns = np.array([pd.Timestamp(first).value])
    last_ns = pd.Timestamp(last).value
    index = _quarter_index(first_ns, start_month)[0]
    times: list[np.ndarray] = []
    step = step_days * 86_400 * 10**9
    while True:
        start = _quarter_start_ns(np.array([index]), start_month)[0]
        if start > last_ns:
            break
        end = _quarter_start_ns(np.array([index + 1]), start_month)[0]
        times.append(np.arange(start, end, step, dtype=np.int64))
        index += 1
    grid = np.concatenate(times) if times else np.array([], dtype=np.int64)
    grid = grid[(grid >= first_ns[0]) & (grid <= last_ns)]
    return pd.DatetimeIndex(grid.astype("datetime64[ns]"), tz="UTC")


def completed_quarters(
    before: pd.Timestamp, count: int, *, start_month: int = 1
) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """The last `count` fiscal quarters that ended by `before`, oldest first, as
    (label, start, end)."""
    # The quarter containing `before` has not ended (when `before` is its first instant,
    # the previous one just has), so the range stops short of it.
    index = _quarter_index(np.array([pd.Timestamp(before).value]), start_month)[0]
    out = []
    for k in range(index - count, index):
        start, end = _quarter_start_ns(np.array([k, k + 1]), start_month)
        label = str(quarter_labels(np.array([start]), start_month=start_month)[0])
        out.append((label, pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")))
    return out
