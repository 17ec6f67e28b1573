"""A deal's state as of a time: its last history row stamped at or before it.

The contract's history rows are full states (stage, amount, close date after a change), so
the state at t is the last row with `changed_at <= t` (features.asof states the same rule
for the arrays). The backtest's outcomes, the team-quarter forecast (won to date, the open
pipeline, deal flow) and validation's current-state check all read states through here.
"""

from __future__ import annotations

import pandas as pd


def state_at(history: pd.DataFrame, when: pd.Timestamp | None = None) -> pd.DataFrame:
    """Each deal's last history row stamped <= `when` (every row when None), indexed by
    opportunity id as text; deals without a row by then are absent.

    `history` must be sorted by deal, then time, as a loaded export's is
    (`features.loading.CrmExport`): the last row of a deal is then its state.
    """
    rows = history if when is None else history[history["changed_at"] <= when]
    last = rows.groupby("opportunity_id", sort=False).tail(1)
    return last.set_index(last["opportunity_id"].astype(str))
