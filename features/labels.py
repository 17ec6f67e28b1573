"""Labels of snapshots as known at a cut-off: a time-to-event problem, not a waiting game.

A snapshot is an open deal at time t. From t on, the deal is won, lost, or still open, and a
model trained at cut-off C has followed it for C - t only: a deal still open at C is
censored, not unlabelled. Won and lost are competing outcomes.

Targets are "won within a horizon": P(won by t + h) for h = 30, 90 and 180 days, by the end
of t's fiscal quarter (`won_in_period`) and of the next, and "ever" (`won`): the longest
horizon the data supports (below). For one horizon, a snapshot's label is known at C when
- the deal closed (won or lost) before the horizon's end and by C: the label is whether it
  was won, known from the close on; or
- the horizon ended by C with the deal still open: the label is 0, known from the end on.
Otherwise it is censored.

Method: inverse probability of censoring weights (Vock et al. 2016, "Adapting machine
learning techniques to censored time-to-event health record data"). A known label that
took e to become known is weighted by 1 / G(e), where G(s) is the share of the training
snapshots followed up for at least s (C - t >= s); a censored one weighs 0. Censoring here
is administrative (the cut-off), so G is known exactly rather than estimated, and the
weights undo the bias that dropping censored snapshots has: the deals that resolve fast
(mostly wins) are over-represented among the recent snapshots whose labels are known, and
each weighs in for the slow ones still open. Why this and not the alternatives:
- discrete-time competing-risk hazards need one row per snapshot and week of follow-up
  (tens of millions of rows for a large org) to reach a 180-day horizon;
- landmark models per horizon are what this is, with the weights making every snapshot
  count for what is known about it instead of only the fully followed ones.
Weights are capped at 1 / `MIN_SURVIVAL` so that a handful of long-horizon labels near the
edge of the follow-up cannot dominate a fit.

"Ever": the longest horizon at which at least `min_followup_share` of the training
snapshots have been followed up (half by default: with a quarter, the longest horizon's
labels rested on a few heavily weighted deals, and on a 12-month cut its model forecast
24.2% where 25.7% were won; with half, 24.1% against 24.1%), capped at `ever_max_days`. A
fixed horizon longer than that is cut to it (a 9-month org cannot learn a 180-day horizon
from its 4 to 5 months of follow-up: its P(won within 180 days) is its longest supported
one, and the training summary and the API's `days` say so).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.deals import DAY_NS, DealTables
from features.fiscal import quarter_bounds
from features.timestamps import from_ns, to_ns

LABEL_COLUMNS = ("won", "won_in_period", "outcome", "close_time")
# G below this is treated as this: no label weighs more than 20 snapshots.
MIN_SURVIVAL = 0.05


def horizon_name(days: int) -> str:
    return f"{days}d"


def target_name(horizon: str) -> str:
    """The training target of a horizon: `won` is "ever", `won_in_period` "this quarter"."""
    return {"ever": "won", "this_quarter": "won_in_period"}.get(horizon, f"won_{horizon}")


@dataclass(frozen=True)
class HorizonSpec:
    """Which horizons to forecast and how "ever" is chosen."""

    days: tuple[int, ...] = (30, 90, 180)
    ever_max_days: int = 730
    min_followup_share: float = 0.5
    fiscal_year_start_month: int = 1

    @property
    def names(self) -> tuple[str, ...]:
        return (*(horizon_name(d) for d in self.days), "this_quarter", "next_quarter", "ever")

    def to_data(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "ever_max_days": self.ever_max_days,
            "min_followup_share": self.min_followup_share,
            "fiscal_year_start_month": self.fiscal_year_start_month,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> HorizonSpec:
        return cls(
            days=tuple(int(d) for d in data["days"]),
            ever_max_days=int(data["ever_max_days"]),
            min_followup_share=float(data["min_followup_share"]),
            fiscal_year_start_month=int(data["fiscal_year_start_month"]),
        )

    def ends(self, as_of_ns: np.ndarray, *, ever_days: int) -> dict[str, np.ndarray]:
        """Each horizon's end per snapshot (exclusive), fixed ones cut at the "ever" one."""
        as_of_ns = np.asarray(as_of_ns, dtype=np.int64)
        longest = as_of_ns + ever_days * DAY_NS
        _, this_end = quarter_bounds(as_of_ns, start_month=self.fiscal_year_start_month)
        _, next_end = quarter_bounds(this_end, start_month=self.fiscal_year_start_month)
        out = {horizon_name(d): np.minimum(as_of_ns + d * DAY_NS, longest) for d in self.days}
        out["this_quarter"] = np.minimum(this_end, longest)
        out["next_quarter"] = np.minimum(next_end, longest)
        out["ever"] = longest
        return out


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


def label_horizon(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    end: np.ndarray,
    *,
    known_at: pd.Timestamp,
) -> tuple[np.ndarray, np.ndarray]:
    """(label, time to knowing it) of "won before `end`" for snapshots (deal, as-of), from
    history rows stamped <= `known_at`. Label 1.0/0.0, or NaN where censored; the time (ns,
    from as-of) is NaN where censored."""
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    known = pd.Timestamp(known_at).value
    # The state just before the horizon's end, or at the cut-off if that comes first.
    horizon_over = end <= known
    closed, won, row = _state(tables, deals, np.minimum(end, known + 1), strict=True)
    label = np.where(closed, won.astype(np.float64), np.where(horizon_over, 0.0, np.nan))
    close_after = tables.history.time[row] - as_of
    took = np.where(closed, close_after, np.where(horizon_over, end - as_of, -1))
    return label, np.where(np.isnan(label), np.nan, np.maximum(took, 0).astype(np.float64))


class FollowUp:
    """G(s): the share of snapshots followed up for at least s, from their follow-up times."""

    def __init__(self, followup_ns: np.ndarray) -> None:
        self._sorted = np.sort(np.asarray(followup_ns, dtype=np.float64))

    def survival(self, s_ns: np.ndarray) -> np.ndarray:
        s = np.asarray(s_ns, dtype=np.float64)
        if self._sorted.size == 0:
            return np.zeros_like(s)
        at_least = self._sorted.size - np.searchsorted(self._sorted, s, side="left")
        return at_least / self._sorted.size

    def weights(self, took_ns: np.ndarray) -> np.ndarray:
        """1 / G(time to knowing) where the label is known, 0 where censored (NaN)."""
        took = np.asarray(took_ns, dtype=np.float64)
        known = ~np.isnan(took)
        g = np.maximum(self.survival(np.where(known, took, 0.0)), MIN_SURVIVAL)
        return np.where(known, 1.0 / g, 0.0)

    def supported_days(self, *, share: float, cap_days: int) -> int:
        """The longest whole number of days that at least `share` of snapshots reach."""
        if self._sorted.size == 0:
            return 1
        k = int(np.floor((1.0 - share) * self._sorted.size))
        reached = self._sorted[min(k, self._sorted.size - 1)] / DAY_NS
        return int(max(1, min(cap_days, np.floor(reached))))


def label_snapshots(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    known_at: pd.Timestamp,
    fiscal_year_start_month: int = 1,
) -> pd.DataFrame:
    """Final outcomes of (deal, as-of) snapshots as known at `known_at`: for judging
    forecasts against what happened, not for training (which uses `training_set`).

    `won`: the deal is closed won at `known_at` (NaN while open); `won_in_period`: won before
    the end of the as-of's quarter (NaN while that is unknown); `outcome` "won"/"lost"/None;
    `close_time` the time of the deal's latest row once closed.
    """
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    cutoff = np.full(deals.size, pd.Timestamp(known_at).value, dtype=np.int64)
    closed, won, row = _state(tables, deals, cutoff, strict=False)
    _, quarter_end = quarter_bounds(as_of, start_month=fiscal_year_start_month)
    in_period, _ = label_horizon(tables, deals, as_of, quarter_end, known_at=known_at)
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
class TargetLabels:
    """One target's labels (1/0, NaN where censored), IPCW weights (0 where censored) and
    each snapshot's horizon end (ns)."""

    label: np.ndarray
    weight: np.ndarray
    end: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return self.weight > 0


@dataclass(frozen=True)
class TrainingSet:
    """Snapshots stamped <= the cut-off, with every target's labels and weights as known
    then; `frame` also holds each target's label as a column named after it."""

    frame: pd.DataFrame  # snapshot keys, features and labels (as known at the cut-off)
    targets: dict[str, TargetLabels]
    cutoff: pd.Timestamp
    horizons: HorizonSpec
    ever_days: int

    @property
    def use_won(self) -> np.ndarray:
        return self.targets["won"].known

    @property
    def use_won_in_period(self) -> np.ndarray:
        return self.targets["won_in_period"].known


def horizon_labels(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    known_at: pd.Timestamp,
    horizons: HorizonSpec,
    ever_days: int,
    followup: FollowUp,
) -> dict[str, TargetLabels]:
    """Every horizon's labels and weights, keyed by target name (`won`, `won_in_period`,
    `won_30d`, ...)."""
    out = {}
    for name, end in horizons.ends(as_of, ever_days=ever_days).items():
        label, took = label_horizon(tables, deals, as_of, end, known_at=known_at)
        out[target_name(name)] = TargetLabels(label, followup.weights(took), end)
    return out


def training_set(
    snapshots: pd.DataFrame,
    tables: DealTables,
    deal_codes: np.ndarray,
    *,
    cutoff: pd.Timestamp,
    horizons: HorizonSpec,
) -> TrainingSet:
    """Snapshots stamped <= `cutoff`, labelled and weighted as known at `cutoff`.

    `deal_codes` are the snapshots' deals as positions in `tables`.
    """
    cutoff = pd.Timestamp(cutoff)
    as_of_all = to_ns(snapshots["as_of"])
    seen = as_of_all <= cutoff.value
    as_of = as_of_all[seen]
    deals = np.asarray(deal_codes, dtype=np.int64)[seen]
    followup = FollowUp(cutoff.value - as_of)
    ever_days = followup.supported_days(
        share=horizons.min_followup_share, cap_days=horizons.ever_max_days
    )
    targets = horizon_labels(
        tables,
        deals,
        as_of,
        known_at=cutoff,
        horizons=horizons,
        ever_days=ever_days,
        followup=followup,
    )
    frame = snapshots[seen].reset_index(drop=True)
    frame = frame.assign(**{name: labels.label for name, labels in targets.items()})
    return TrainingSet(
        frame=frame, targets=targets, cutoff=cutoff, horizons=horizons, ever_days=ever_days
    )


@dataclass(frozen=True)
class CensoringEffect:
    """What censoring does to the `won` labels at a cut-off, and what the weights mend.

    On the snapshots stamped <= the cut-off: the share censored (label unknown then), the
    win rate of the known labels as they are (dropping the censored: biased toward fast
    closers), the same weighted by IPCW, and the rate those snapshots truly have (labels
    known at the end of the data, where resolved).
    """

    n_snapshots: int
    share_censored: float
    win_rate_naive: float
    win_rate_weighted: float
    true_win_rate: float
    ever_days: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def censoring_effect(training: TrainingSet, true_won: np.ndarray) -> CensoringEffect:
    """`true_won`: the `won` labels of `training.frame` known much later (NaN if still open)."""
    won = training.targets["won"]
    known = won.known
    true_known = ~np.isnan(true_won)
    n = len(won.label)
    return CensoringEffect(
        n_snapshots=n,
        share_censored=float(1 - known.mean()) if n else float("nan"),
        win_rate_naive=_mean(won.label[known]),
        win_rate_weighted=_weighted_mean(won.label[known], won.weight[known]),
        true_win_rate=_mean(true_won[true_known]),
        ever_days=training.ever_days,
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.average(values, weights=weights)) if weights.sum() > 0 else float("nan")
