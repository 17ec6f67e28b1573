"""What the synthetic CRM-format exports share: the world's times as a CRM writes them (naive,
in the portal's zone, in its own pattern) and each deal's stage changes."""

from __future__ import annotations

import pandas as pd


def local_times(times: pd.Series, *, zone: str, pattern: str) -> pd.Series:
    """UTC times as a CRM writes them: converted to `zone`, without an offset, in `pattern`."""
    return times.dt.tz_convert(zone).dt.strftime(pattern)


def stage_changes(history: pd.DataFrame) -> pd.DataFrame:
    """The history rows whose stage differs from the deal's previous row (its first row too),
    in time order per deal."""
    ordered = history.sort_values(["opportunity_id", "changed_at"], kind="stable")
    same_deal = ordered["opportunity_id"].eq(ordered["opportunity_id"].shift())
    change = ~(same_deal & ordered["stage"].eq(ordered["stage"].shift()))
    return ordered[change].reset_index(drop=True)
