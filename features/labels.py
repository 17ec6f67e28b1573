"""Labels of snapshots, as known at a cut-off, and the training set they allow.

- `won`: the deal ends won. Resolved at cut-off C once the deal is closed in its history up
  to C; its value is whether that closed state is won.
- `won_in_period`: the deal is won before the end of the fiscal quarter containing the
  snapshot. Resolved once that quarter has ended by C (value: the deal's state just before
  the quarter's end) or the deal is closed at C.

Censoring rule (stated here, measured by `censoring_effect`): deals still open at C have no
`won` label, and dropping them favours fast closers, which are mostly wins, in the snapshots
just before C. So `won` is trained only on snapshots at least `censoring_horizon_days`
before C, where most deals have resolved, and `won_in_period` only on snapshots of quarters
that ended by C, whose labels are all resolved, so it has no censoring bias at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.deals import DAY_NS, DealTables
from features.fiscal import quarter_bounds
from features.timestamps import from_ns, to_ns

LABEL_COLUMNS = ("won", "won_in_period", "outcome", "close_time")


def _state(
    tables: DealTables, deals: np.ndarray, time_ns: np.ndarray, *, strict: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(closed, won, row) of each deal from its rows stamped <= time (< when strict)."""
    history = tables.history
    position = history.index.count_until(deals, time_ns, strict=strict)
    has_state = position > history.index.starts[deals]
    row = np.maximum(position - 1, 0)
    closed = has_state & ~history.is_open[row]
    return closed, closed & history.is_won[row], row


def label_snapshots(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    known_at: pd.Timestamp,
    fiscal_year_start_month: int = 1,
) -> pd.DataFrame:
    """Labels of (deal, as-of) snapshots from history rows stamped <= `known_at`.

    `won` and `won_in_period` are 1.0, 0.0, or NaN where not yet resolved; `outcome` is
    "won"/"lost"/None and `close_time` the time of the deal's latest row once closed.
    """
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    cutoff = np.full(deals.size, pd.Timestamp(known_at).value, dtype=np.int64)
    closed, won, row = _state(tables, deals, cutoff, strict=False)
    _, quarter_end = quarter_bounds(as_of, start_month=fiscal_year_start_month)
    ended = quarter_end <= cutoff
    _, won_by_end, _ = _state(tables, deals, np.minimum(quarter_end, cutoff + 1), strict=True)
    in_period = np.where(ended | closed, won_by_end.astype(np.float64), np.nan)
    close_ns = tables.history.time[row]
    return pd.DataFrame(
        {
            "won": np.where(closed, won.astype(np.float64), np.nan),
            "won_in_period": in_period,
            "outcome": pd.Series(np.where(won, "won", "lost"), dtype=object).where(closed, None),
            "close_time": from_ns(np.where(closed, close_ns, np.iinfo(np.int64).min)),
        }
    )


@dataclass(frozen=True)
class TrainingSet:
    """Snapshots usable for training at a cut-off, with a mask per target."""

    frame: pd.DataFrame  # snapshot keys, features and labels (as known at the cut-off)
    use_won: np.ndarray
    use_won_in_period: np.ndarray
    cutoff: pd.Timestamp


def training_set(
    snapshots: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    cutoff: pd.Timestamp,
    horizon_days: int,
    fiscal_year_start_month: int = 1,
) -> TrainingSet:
    """Snapshots stamped <= `cutoff` and the targets each may train, per the censoring rule.

    `labels` must be computed with `known_at=cutoff` and aligned with `snapshots`.
    """
    cutoff = pd.Timestamp(cutoff)
    as_of = to_ns(snapshots["as_of"])
    seen = as_of <= cutoff.value
    old_enough = as_of <= cutoff.value - horizon_days * DAY_NS
    _, quarter_end = quarter_bounds(as_of, start_month=fiscal_year_start_month)
    frame = pd.concat([snapshots.reset_index(drop=True), labels.reset_index(drop=True)], axis=1)[
        seen
    ]
    use_won = (old_enough & labels["won"].notna().to_numpy())[seen]
    use_in_period = ((quarter_end <= cutoff.value) & labels["won_in_period"].notna().to_numpy())[
        seen
    ]
    return TrainingSet(
        frame=frame.reset_index(drop=True),
        use_won=use_won,
        use_won_in_period=use_in_period,
        cutoff=cutoff,
    )


@dataclass(frozen=True)
class CensoringEffect:
    """What the censoring rule costs and what it saves, on snapshots stamped <= the cut-off.

    `win_rate_*` are shares of `won` among the snapshots each policy trains on, as labelled
    at the cut-off, beside the rate those same snapshots truly have (labels known later).
    """

    n_snapshots: int
    share_dropped: float
    win_rate_rule: float
    win_rate_naive: float
    true_win_rate_rule: float
    true_win_rate_all: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def censoring_effect(training: TrainingSet, true_won: np.ndarray) -> CensoringEffect:
    """Compare the rule with the naive policy (every snapshot whose label is resolved).

    `true_won` holds the `won` labels of `training.frame` as known much later (NaN where
    still unresolved even then).
    """
    won = training.frame["won"].to_numpy(dtype=np.float64)
    resolved = ~np.isnan(won)
    rule = training.use_won
    true_known = ~np.isnan(true_won)
    n = len(won)
    return CensoringEffect(
        n_snapshots=n,
        share_dropped=float(1 - rule.mean()) if n else float("nan"),
        win_rate_rule=_mean(won[rule]),
        win_rate_naive=_mean(won[resolved]),
        true_win_rate_rule=_mean(true_won[rule & true_known]),
        true_win_rate_all=_mean(true_won[true_known]),
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")
