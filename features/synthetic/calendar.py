"""Calendar arithmetic on whole days since 1970-01-01 (UTC), vectorised.

The generator keeps every time as float days since the epoch, which makes durations plain
subtraction; these helpers give the fiscal quarter (January start, as the contract's default)
and month boundaries of such days.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400


def _months(day: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of each day."""
    return (
        np.asarray(day, dtype="int64")
        .astype("datetime64[D]")
        .astype("datetime64[M]")
        .astype("int64")
    )


def _first_day_of_month(months: np.ndarray) -> np.ndarray:
    return months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")


def quarter_start_day(day: np.ndarray) -> np.ndarray:
    """First day of the fiscal quarter containing each day."""
    months = _months(day)
    return _first_day_of_month(months - months % 3)


def quarter_end_day(day: np.ndarray) -> np.ndarray:
    """Last day of the fiscal quarter containing each day."""
    months = _months(day)
    return _first_day_of_month(months - months % 3 + 3) - 1


def month_end_day(day: np.ndarray) -> np.ndarray:
    """Last day of the month containing each day."""
    return _first_day_of_month(_months(day) + 1) - 1


def quarter_index(day: np.ndarray) -> np.ndarray:
    """Quarters since 1970-Q1 of each day (a dense integer key for grouping)."""
    return _months(day) // 3


def quarter_labels(index: np.ndarray) -> np.ndarray:
    """`YYYY-Qn` labels of quarter indices from `quarter_index`."""
    index = np.asarray(index, dtype="int64")
    years = (1970 + index // 4).astype(str)
    quarters = (1 + index % 4).astype(str)
    return np.char.add(np.char.add(years, "-Q"), quarters)


def weekday(day: np.ndarray) -> np.ndarray:
    """0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday)."""
    return (np.floor(day).astype("int64") + 3) % 7


def to_days(timestamp: pd.Timestamp) -> float:
    """A UTC timestamp as float days since the epoch."""
    return timestamp.tz_convert("UTC").value / 1e9 / SECONDS_PER_DAY


def to_timestamps(days: np.ndarray) -> pd.Series:
    """Float days since the epoch as whole-second `datetime64[ns, UTC]` values."""
    seconds = np.floor(np.asarray(days, dtype="float64") * SECONDS_PER_DAY).astype("int64")
    return seconds_to_timestamps(seconds)


def seconds_to_timestamps(seconds: np.ndarray) -> pd.Series:
    """Integer seconds since the epoch as `datetime64[ns, UTC]`."""
    nanos = np.asarray(seconds, dtype="int64") * 1_000_000_000
    return pd.Series(nanos.view("datetime64[ns]")).dt.tz_localize("UTC")


def days_to_dates(day: np.ndarray) -> pd.Series:
    """Whole days since the epoch as UTC-midnight timestamps (the contract's dates)."""
    return seconds_to_timestamps(np.asarray(day, dtype="int64") * SECONDS_PER_DAY)
