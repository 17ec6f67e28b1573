"""Rep commit reliability: how often a rep's Commit calls were won, as known at a time.

A *Commit deal* is a deal the rep called Commit on at least one open history row (at their
last Commit call, not "in Commit when it closed"): reps downgrade losing deals while they go
quiet, so the category on the last open row hides exactly the over-calls this measures (the
synthetic world's fact counts "deals ever in Commit" for the same reason). A Commit deal
counts once it is closed by its rows stamped strictly before the time, the one rule of
`features.reference`: a deal closed (or first called Commit) after T, or reopened after T,
never informs a feature at T.

The rate is shrunk twice, each time with `COMMIT_PRIOR_STRENGTH` pseudo-deals: the team's
Commit hit rate toward the overall one, and the rep's toward their team's, so

    team = (team_won + k * overall) / (team_closed + k)
    rep  = (rep_won + k * team) / (rep_closed + k)

A rep without closed Commit deals gets the team's rate, a team without any the overall rate;
before any Commit deal has closed both are missing. A rep's team is the one the scored deals
name (a request's owner row, the export's owners table), else the reference's, else the rep
is a team of one (the contract's rule for owners without a team).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import FORECAST_CATEGORIES
from features.deals import DealTables, History, Vocabulary

COMMIT = FORECAST_CATEGORIES.index("Commit")
# Pseudo-deals behind each shrinkage step: a rep with 10 closed Commit deals sits halfway
# between their own rate and the team's. Commit deals are about a third of a rep's closed
# deals, so this weighs a rep's record about as the owner win rate's 20 pseudo-deals do.
COMMIT_PRIOR_STRENGTH = 10.0


def ever_committed(history: History) -> np.ndarray:
    """Per history row: the deal was called Commit on an open row at or before this row."""
    flag = ((history.category == COMMIT) & history.is_open).astype(np.int64)
    if flag.size == 0:
        return flag.astype(bool)
    index = history.index
    row_start = np.repeat(index.starts, index.ends - index.starts)
    total = np.cumsum(flag)
    return (total - (total[row_start] - flag[row_start])) > 0


def team_of_owner(tables: DealTables) -> Mapping[str, str]:
    """owner_id -> team of the tables (empty for tables pickled before they carried teams)."""
    return getattr(tables, "owner_team", None) or {}


@dataclass(frozen=True)
class TeamCodes:
    """Each deal's team as a code into `teams`, fixed for a reference's tables."""

    teams: Vocabulary
    deal_team: np.ndarray

    @classmethod
    def of(cls, tables: DealTables) -> TeamCodes:
        codes, uniques = pd.factorize(teams_of(tables.owner_id, team_of_owner(tables), {}))
        return cls(Vocabulary(uniques), codes.astype(np.int64))


@dataclass(frozen=True)
class CommitRecord:
    """Closed Commit deals and the won among them at one time, by owner (the context's owner
    codes) and by team."""

    owner_closed: np.ndarray
    owner_won: np.ndarray
    teams: Vocabulary
    team_closed: np.ndarray
    team_won: np.ndarray
    closed: int
    won: int

    @classmethod
    def count(
        cls,
        *,
        committed: np.ndarray,
        hit: np.ndarray,
        owner_codes: np.ndarray,
        n_owners: int,
        team_codes: np.ndarray,
        teams: Vocabulary,
    ) -> CommitRecord:
        """Summed per owner (`owner_codes`, of the context's owners) and team (`team_codes`
        into `teams`): `committed` counts closed Commit deals, `hit` the won among them
        (per deal, or the reference's +1/-1 changes, features.reference)."""
        n_teams = len(teams)
        return cls(
            owner_closed=np.bincount(owner_codes, weights=committed, minlength=n_owners),
            owner_won=np.bincount(owner_codes, weights=hit, minlength=n_owners),
            teams=teams,
            team_closed=np.bincount(team_codes, weights=committed, minlength=n_teams),
            team_won=np.bincount(team_codes, weights=hit, minlength=n_teams),
            closed=int(committed.sum()),
            won=int(hit.sum()),
        )

    @property
    def overall_rate(self) -> float:
        return self.won / self.closed if self.closed else float("nan")

    def team_rates(self, teams: np.ndarray) -> np.ndarray:
        """Each team's rate shrunk toward the overall rate (the overall rate when unknown)."""
        code = self.teams.codes(np.asarray(teams, dtype=object))
        known = code >= 0
        closed = np.where(known, self.team_closed[np.maximum(code, 0)], 0.0)
        won = np.where(known, self.team_won[np.maximum(code, 0)], 0.0)
        return shrunk(won, closed, self.overall_rate)


_FEW_OWNERS = 64


def teams_of(
    owner_ids: np.ndarray, named: Mapping[str, str], reference: Mapping[str, str]
) -> np.ndarray:
    """Each owner's team: as `named` (the scored deals' tables) says, else as `reference`
    (the outcome reference's tables) says, else the owner alone."""
    owner_ids = np.asarray(owner_ids, dtype=object)
    if owner_ids.size <= _FEW_OWNERS:
        # A request's few deals: a lookup each beats factorizing (tens of microseconds).
        return np.array(
            [named.get(o) or reference.get(o, o) for o in owner_ids.tolist()], dtype=object
        )
    codes, uniques = pd.factorize(owner_ids)
    names = [named.get(o) or reference.get(o, o) for o in uniques.tolist()]
    return np.asarray(names, dtype=object)[codes] if codes.size else np.array([], dtype=object)


def shrunk(
    won: np.ndarray | float,
    closed: np.ndarray | float,
    prior: np.ndarray | float,
    strength: float = COMMIT_PRIOR_STRENGTH,
) -> np.ndarray:
    """(won + strength * prior) / (closed + strength): a beta prior of mean `prior` worth
    `strength` deals, updated with the record."""
    return (np.asarray(won, dtype=np.float64) + strength * np.asarray(prior)) / (
        np.asarray(closed, dtype=np.float64) + strength
    )


@dataclass(frozen=True)
class CommitReliability:
    """Per queried owner at one time: shrunk rep and team rates and the record behind them."""

    rep_rate: np.ndarray
    team_rate: np.ndarray
    rep_closed: np.ndarray
    rep_won: np.ndarray
    teams: np.ndarray


def commit_reliability(
    record: CommitRecord,
    owners: Vocabulary,
    owner_ids: np.ndarray,
    teams: np.ndarray,
) -> CommitReliability:
    """Rates of `owner_ids` (with their `teams`) from a context's record; `owners` is the
    context's owner vocabulary."""
    code = owners.codes(np.asarray(owner_ids, dtype=object))
    known = code >= 0
    closed = np.where(known, record.owner_closed[np.maximum(code, 0)], 0.0)
    won = np.where(known, record.owner_won[np.maximum(code, 0)], 0.0)
    team_rate = record.team_rates(teams)
    return CommitReliability(
        rep_rate=shrunk(won, closed, team_rate),
        team_rate=team_rate,
        rep_closed=closed,
        rep_won=won,
        teams=np.asarray(teams, dtype=object),
    )
