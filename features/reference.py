"""What other deals' outcomes say, as known at a time: owners' and accounts' records, how
long won deals spent in each stage and how often reps' Commit calls were won
(features.reliability).

A deal counts at time T by its state from its history rows stamped strictly before T, so a
deal closed (or won) after T, or reopened after T, never informs a feature at T. So the
context at T depends only on how many of the reference's distinct row times precede T: times
between two consecutive rows share one context. Contexts are cached under that count (the
last `CACHE_SIZE` used), which lets a live service, whose requests ask for now, 7 and 30 days
ago, compute each once until time passes the next row, and keeps the cache bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.deals import DAY_NS, DealTables, Vocabulary
from features.reliability import CommitRecord, TeamCodes, ever_committed

# Contexts kept: a snapshot build asks for each as-of time once, in order; a service for a
# handful (now, 7 and 30 days ago) again and again.
CACHE_SIZE = 64


@dataclass(frozen=True)
class Context:
    """Outcome aggregates at one time."""

    owners: Vocabulary
    owner_closed: np.ndarray
    owner_won: np.ndarray
    accounts: Vocabulary
    account_closed: np.ndarray
    account_won: np.ndarray
    closed: int
    won: int
    won_stage_days: dict[int, np.ndarray]  # stage code -> sorted visit lengths of won deals
    commit: CommitRecord  # closed Commit deals and their wins (features.reliability)

    @property
    def win_rate(self) -> float:
        return self.won / self.closed if self.closed else float("nan")


@dataclass
class OutcomeReference:
    """The deals whose outcomes inform other deals' features (the training export, in serving)."""

    tables: DealTables
    _cache: OrderedDict[int, Context] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        history = self.tables.history
        self._times = np.unique(history.time)
        # Visits: runs of consecutive rows in one open stage, ended by the next stage change.
        same = np.zeros(history.deal.size, dtype=bool)
        same[1:] = history.deal[1:] == history.deal[:-1]
        starts_run = ~same | (history.stage != np.roll(history.stage, 1))
        run_rows = np.flatnonzero(starts_run)
        next_row = np.append(run_rows[1:], history.deal.size)
        ends_in_deal = next_row < history.deal.size
        ends_in_deal[ends_in_deal] = (
            history.deal[next_row[ends_in_deal]] == history.deal[run_rows[ends_in_deal]]
        )
        keep = ends_in_deal & history.is_open[run_rows]
        runs, ends = run_rows[keep], next_row[keep]
        self._visit_deal = history.deal[runs]
        self._visit_stage = history.stage[runs]
        self._visit_end = history.time[ends]
        self._visit_days = (history.time[ends] - history.time[runs]) / DAY_NS
        self._derive_commit()

    def _derive_commit(self) -> None:
        self._ever_commit = ever_committed(self.tables.history)
        self._team_codes = TeamCodes.of(self.tables)

    def __getstate__(self) -> dict[str, object]:
        """Pickled (in a model bundle) without the cache: it is rebuilt on use."""
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._cache = OrderedDict()
        if "_times" not in state:  # a bundle pickled before contexts were keyed by row count
            self._times = np.unique(self.tables.history.time)
        if "_ever_commit" not in state:  # a bundle pickled before commit reliability
            self._derive_commit()

    def context_at(self, time_ns: int) -> Context:
        """Aggregates over deals as their history stood strictly before `time_ns`."""
        key = int(np.searchsorted(self._times, time_ns, side="left"))  # row times < time_ns
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        cached = self._cache[key] = self._compute(int(time_ns))
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return cached

    def _compute(self, time_ns: int) -> Context:
        tables = self.tables
        history = tables.history
        n = tables.n_deals
        deals = np.arange(n)
        position = history.index.count_until(deals, np.full(n, time_ns), strict=True)
        has_state = position > history.index.starts
        last = np.maximum(position - 1, 0)
        closed = has_state & ~history.is_open[last] & (history.stage[last] >= 0)
        won = closed & history.is_won[last]
        owners, owner_codes = _codes(tables.owner_id)
        accounts, account_codes = _codes(tables.account_id)
        visit_ok = won[self._visit_deal] & (self._visit_end < time_ns)
        stage_days = {
            int(stage): np.sort(self._visit_days[visit_ok & (self._visit_stage == stage)])
            for stage in np.unique(self._visit_stage)
        }
        return Context(
            owners=owners,
            owner_closed=np.bincount(owner_codes, weights=closed, minlength=len(owners)),
            owner_won=np.bincount(owner_codes, weights=won, minlength=len(owners)),
            accounts=accounts,
            account_closed=np.bincount(account_codes, weights=closed, minlength=len(accounts)),
            account_won=np.bincount(account_codes, weights=won, minlength=len(accounts)),
            closed=int(closed.sum()),
            won=int(won.sum()),
            won_stage_days=stage_days,
            commit=CommitRecord.count(
                committed=closed & self._ever_commit[last],
                won=won,
                owner_codes=owner_codes,
                n_owners=len(owners),
                team_codes=self._team_codes,
            ),
        )


def _codes(values: np.ndarray) -> tuple[Vocabulary, np.ndarray]:
    codes, uniques = pd.factorize(values)
    return Vocabulary(uniques), codes
