"""What other deals' outcomes say, as known at a time: owners' and accounts' records, how
long won deals spent in each stage and how often reps' Commit calls were won
(features.reliability).

A deal counts at time T by its state from its history rows stamped strictly before T, so a
deal closed (or won) after T, or reopened after T, never informs a feature at T.

The reference keeps aggregates, not deals: no opportunity id, no history. Built from the
training tables (`OutcomeReference(tables)`), it keeps

- *closing events*: each history row that changes a deal's standing (closed, won, a closed
  Commit deal, a won one) as +1/-1 changes at the row's time, with the deal's owner,
  account and team; the standing at T is the sum of the changes stamped before T, which is
  the deal's state at its last row before T, for any sequence of closes and reopenings;
- *won-stage visits*: each open-stage visit's length with the span of times at which it
  counts (its deal won, the visit ended before T);
- *closed rows* (owner, time, until the next row, won, amount) and deals' *creation times*
  by owner, for the team quarter's records (models.team_quarter);
- owners' teams, and account ids hashed (sha256 with a salt of the reference's own, stored
  with it) so that a request's account still finds its record but the bundle names no
  customer.

The context at T depends only on how many of these events' distinct times precede T: times
between two consecutive ones share one context. Contexts are cached under that count (the
last `CACHE_SIZE` used), which lets a live service, whose requests ask for now, 7 and 30 days
ago, compute each once until time passes the next event, and keeps the cache bounded.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.artifacts import ArtifactReader, ArtifactWriter
from features.deals import DAY_NS, DealTables, Vocabulary
from features.reliability import CommitRecord, TeamCodes, ever_committed, team_of_owner

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


INF_NS = np.iinfo(np.int64).max
_FEW_IDS = 64


def hash_ids(values: np.ndarray, salt: str) -> np.ndarray:
    """Each id's salted sha256 (hex), as an object array; each distinct id hashed once."""
    values = np.asarray(values, dtype=object)
    if values.size <= _FEW_IDS:  # a request's few deals: factorizing costs more than hashing
        return np.array([_hash(v, salt) for v in values.tolist()], dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    digests = np.array([_hash(v, salt) for v in uniques.tolist()], dtype=object)
    return digests[codes] if codes.size else np.array([], dtype=object)


def _hash(value: object, salt: str) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return hashlib.sha256(f"{salt}\x00{text}".encode()).hexdigest()


class OutcomeReference:
    """The deals whose outcomes inform other deals' features (the training export, in
    serving), as the aggregates their features need (see the module)."""

    def __init__(self, tables: DealTables, *, salt: str | None = None) -> None:
        self._set(_aggregate(tables, salt if salt is not None else secrets.token_hex(16)))

    @classmethod
    def of_data(cls, data: ReferenceData) -> OutcomeReference:
        reference = cls.__new__(cls)
        reference._set(data)
        return reference

    def _set(self, data: ReferenceData) -> None:
        self.data = data
        self.owner_team: Mapping[str, str] = data.owner_team
        self._owners = Vocabulary(pd.Index(data.owners, dtype=object))
        self._accounts = Vocabulary(pd.Index(data.accounts, dtype=object))
        self._teams = Vocabulary(pd.Index(data.teams, dtype=object))
        self._times = np.unique(
            np.concatenate([data.event_time, data.visit_from, data.visit_until])
        )
        self._cache: OrderedDict[int, Context] = OrderedDict()

    def account_keys(self, account_ids: np.ndarray) -> np.ndarray:
        """Account ids as this reference knows them (hashed with its salt)."""
        return hash_ids(account_ids, self.data.salt)

    def owner_names(self, codes: np.ndarray) -> np.ndarray:
        """Owner ids of owner codes (the reference's owner vocabulary)."""
        return np.asarray(self.data.owners, dtype=object)[codes]

    def context_at(self, time_ns: int) -> Context:
        """Aggregates over deals as their history stood strictly before `time_ns`."""
        key = int(np.searchsorted(self._times, time_ns, side="left"))  # event times < time_ns
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        cached = self._cache[key] = self._compute(int(time_ns))
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return cached

    def _compute(self, time_ns: int) -> Context:
        data = self.data
        k = int(np.searchsorted(data.event_time, time_ns, side="left"))  # events before T
        owner, account = data.event_owner[:k], data.event_account[:k]
        closed, won = data.event_closed[:k], data.event_won[:k]
        n_owners, n_accounts = len(self._owners), len(self._accounts)
        counts = (data.visit_from < time_ns) & (time_ns <= data.visit_until)
        stage_days = {
            int(stage): np.sort(data.visit_days[counts & (data.visit_stage == stage)])
            for stage in data.visit_stages
        }
        return Context(
            owners=self._owners,
            owner_closed=np.bincount(owner, weights=closed, minlength=n_owners),
            owner_won=np.bincount(owner, weights=won, minlength=n_owners),
            accounts=self._accounts,
            account_closed=np.bincount(account, weights=closed, minlength=n_accounts),
            account_won=np.bincount(account, weights=won, minlength=n_accounts),
            closed=int(closed.sum()),
            won=int(won.sum()),
            won_stage_days=stage_days,
            commit=CommitRecord.count(
                committed=data.event_commit[:k],
                hit=data.event_hit[:k],
                owner_codes=owner,
                n_owners=n_owners,
                team_codes=data.event_team[:k],
                teams=self._teams,
            ),
        )

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return self.data.to_data(out, key)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> OutcomeReference:
        return cls.of_data(ReferenceData.from_data(data, source))


_EVENT_ARRAYS = (
    "event_time",
    "event_owner",
    "event_account",
    "event_team",
    "event_closed",
    "event_won",
    "event_commit",
    "event_hit",
)
_VISIT_ARRAYS = ("visit_stage", "visit_days", "visit_from", "visit_until", "visit_stages")
_RECORD_ARRAYS = (
    "closed_time",
    "closed_until",
    "closed_owner",
    "closed_won",
    "closed_amount",
    "created_time",
    "created_owner",
)


@dataclass(frozen=True)
class ReferenceData:
    """The reference's aggregates (see the module); codes index `owners`, `accounts`
    (hashed) and `teams`."""

    salt: str
    owners: tuple[str, ...]
    accounts: np.ndarray  # salted sha256 hex of each account id
    teams: tuple[str, ...]
    owner_team: dict[str, str]
    # Closing events, by time: +1/-1 changes of a deal's closed, won, closed-Commit and
    # won-Commit standing, with its owner, account and team codes.
    event_time: np.ndarray
    event_owner: np.ndarray
    event_account: np.ndarray
    event_team: np.ndarray
    event_closed: np.ndarray
    event_won: np.ndarray
    event_commit: np.ndarray
    event_hit: np.ndarray
    # Won-stage visits: a visit's stage and length count at T when from < T <= until.
    visit_stage: np.ndarray
    visit_days: np.ndarray
    visit_from: np.ndarray
    visit_until: np.ndarray
    visit_stages: np.ndarray  # every stage any deal visited (its won lengths may be none)
    # Closed rows (the last row before T when time < T <= until) and creation times.
    closed_time: np.ndarray
    closed_until: np.ndarray
    closed_owner: np.ndarray
    closed_won: np.ndarray
    closed_amount: np.ndarray
    created_time: np.ndarray
    created_owner: np.ndarray

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "salt": self.salt,
            "owners": list(self.owners),
            "teams": list(self.teams),
            "owner_team": dict(self.owner_team),
            "accounts": out.array(f"{key}.accounts", self.accounts.astype(str)),
            **{
                name: out.array(f"{key}.{name}", getattr(self, name))
                for name in (*_EVENT_ARRAYS, *_VISIT_ARRAYS, *_RECORD_ARRAYS)
            },
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> ReferenceData:
        return cls(
            salt=str(data["salt"]),
            owners=tuple(data["owners"]),
            accounts=source.array(data["accounts"]).astype(object),
            teams=tuple(data["teams"]),
            owner_team=dict(data["owner_team"]),
            **{
                name: source.array(data[name])
                for name in (*_EVENT_ARRAYS, *_VISIT_ARRAYS, *_RECORD_ARRAYS)
            },
        )


def _aggregate(tables: DealTables, salt: str) -> ReferenceData:
    history = tables.history
    rows = history.deal.size
    owners, owner_codes = _codes(tables.owner_id)
    accounts, account_codes = _codes(hash_ids(tables.account_id, salt))
    team_codes = TeamCodes.of(tables)
    # Each row's standing: the deal's state if this row were its last before T.
    closed = ~history.is_open & (history.stage >= 0)
    won = closed & history.is_won
    commit = closed & ever_committed(history)
    hit = commit & won
    standing = np.stack([closed, won, commit, hit]).astype(np.int8)
    first = np.ones(rows, dtype=bool)
    first[1:] = history.deal[1:] != history.deal[:-1]
    before = np.roll(standing, 1, axis=1)
    before[:, first] = 0
    change = standing - before
    changed = np.flatnonzero(change.any(axis=0))
    order = changed[np.argsort(history.time[changed], kind="stable")]
    deal = history.deal[order]
    # Visits: runs of consecutive rows in one open stage, ended by the next stage change.
    starts_run = first | (history.stage != np.roll(history.stage, 1))
    run_rows = np.flatnonzero(starts_run)
    next_row = np.append(run_rows[1:], rows)
    ends_in_deal = next_row < rows
    ends_in_deal[ends_in_deal] = (
        history.deal[next_row[ends_in_deal]] == history.deal[run_rows[ends_in_deal]]
    )
    keep = ends_in_deal & history.is_open[run_rows]
    runs, ends = run_rows[keep], next_row[keep]
    visit_deal = history.deal[runs]
    visit_stage = history.stage[runs]
    visit_end = history.time[ends]
    visit_days = (history.time[ends] - history.time[runs]) / DAY_NS
    # The spans in which each deal is won: from a row that wins it to the next that does not.
    won_rows = np.flatnonzero(change[1] != 0)  # (deal, time) order: +1 and -1 alternate
    gained = won_rows[change[1, won_rows] > 0]
    nxt = np.searchsorted(won_rows, gained, side="right")
    has_end = nxt < won_rows.size
    has_end[has_end] = history.deal[won_rows[nxt[has_end]]] == history.deal[gained[has_end]]
    span_deal = history.deal[gained]
    span_start = history.time[gained]
    span_end = np.full(gained.size, INF_NS, dtype=np.int64)
    span_end[has_end] = history.time[won_rows[nxt[has_end]]]
    lo = np.searchsorted(span_deal, visit_deal, side="left")
    n_spans = np.searchsorted(span_deal, visit_deal, side="right") - lo
    visit = np.repeat(np.arange(visit_deal.size), n_spans)
    span = np.repeat(lo, n_spans) + (
        np.arange(visit.size) - np.repeat(np.cumsum(n_spans) - n_spans, n_spans)
    )
    visit_from = np.maximum(visit_end[visit], span_start[span])
    visit_until = span_end[span]
    counts = visit_from < visit_until
    visit, visit_from, visit_until = visit[counts], visit_from[counts], visit_until[counts]
    # Closed rows, each the last row before T when its time < T <= the next row's time.
    closed_rows = np.flatnonzero(closed)
    following = closed_rows + 1
    until = np.full(closed_rows.size, INF_NS, dtype=np.int64)
    inside = following < rows
    inside[inside] = history.deal[following[inside]] == history.deal[closed_rows[inside]]
    until[inside] = history.time[following[inside]]
    closed_deal = history.deal[closed_rows]
    return ReferenceData(
        salt=salt,
        owners=tuple(str(o) for o in owners.index),
        accounts=np.asarray(accounts.index, dtype=object),
        teams=tuple(str(t) for t in team_codes.teams.index),
        owner_team={str(k): str(v) for k, v in team_of_owner(tables).items()},
        event_time=history.time[order].astype(np.int64),
        event_owner=owner_codes[deal].astype(np.int64),
        event_account=account_codes[deal].astype(np.int64),
        event_team=team_codes.deal_team[deal],
        event_closed=change[0, order],
        event_won=change[1, order],
        event_commit=change[2, order],
        event_hit=change[3, order],
        visit_stage=visit_stage[visit].astype(np.int64),
        visit_days=visit_days[visit].astype(np.float64),
        visit_from=visit_from.astype(np.int64),
        visit_until=visit_until.astype(np.int64),
        visit_stages=np.unique(visit_stage).astype(np.int64),
        closed_time=history.time[closed_rows].astype(np.int64),
        closed_until=until,
        closed_owner=owner_codes[closed_deal].astype(np.int64),
        closed_won=history.is_won[closed_rows].astype(bool),
        closed_amount=history.amount[closed_rows].astype(np.float64),
        created_time=np.asarray(tables.created, dtype=np.int64),
        created_owner=owner_codes.astype(np.int64),
    )


def _codes(values: np.ndarray) -> tuple[Vocabulary, np.ndarray]:
    codes, uniques = pd.factorize(values)
    return Vocabulary(uniques), codes
