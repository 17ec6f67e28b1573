"""Deals as sorted numeric arrays: the single input of every feature.

`DealTables` is built either from a validated export (`from_export`) or from the deals of a
scoring request (`features.payload`); both end in `DealTables.build`, so the arrays (and so
the features) cannot differ between training and serving. History and activities are sorted
by (deal, time) and carry per-row running totals (stage regressions, close-date pushes, ...)
that are known at that row's time, so an as-of lookup of the last row gives the state and
the history of the deal up to that time and nothing later.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.asof import GroupedTimes
from features.config import FeatureConfigError
from features.contract import ACTIVITY_TYPES, FORECAST_CATEGORIES
from features.loading import CrmExport
from features.stages import StageConfig
from features.timestamps import to_ns

DAY_NS = 86_400 * 10**9
DECISION_MAKER = "decision_maker"
# Activity kinds counted by the features; any other logged type is counted as "other".
ACTIVITY_KINDS: tuple[str, ...] = ACTIVITY_TYPES
_OTHER_KIND = ACTIVITY_KINDS.index("other")


@dataclass(frozen=True)
class StaticAttribute:
    """A static attribute used as a feature: where it comes from and how it is typed."""

    table: str  # opportunities, accounts or owners
    column: str
    numeric: bool

    @property
    def feature(self) -> str:
        prefix = {"opportunities": "", "accounts": "account_", "owners": "owner_"}[self.table]
        return prefix + self.column

    def to_data(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "numeric": self.numeric}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StaticAttribute:
        return cls(table=data["table"], column=data["column"], numeric=bool(data["numeric"]))


@dataclass(frozen=True)
class History:
    """History rows sorted by (deal, time), with running totals known at each row."""

    deal: np.ndarray
    time: np.ndarray  # ns
    stage: np.ndarray  # code into StageConfig.all_stages
    amount: np.ndarray
    close_ns: np.ndarray
    category: np.ndarray  # code into FORECAST_CATEGORIES, -1 when missing
    probability: np.ndarray  # the CRM's stage probability (percent) in force at the row
    # The manager's typed probability (percent) in force at the row, NaN where none is typed
    # (the export's optional `manual_probability`: the manual_weight baseline reads it).
    manual_probability: np.ndarray
    is_open: np.ndarray
    is_won: np.ndarray
    stage_changes: np.ndarray
    regressions: np.ndarray
    skips: np.ndarray
    pushes: np.ndarray
    days_pushed: np.ndarray
    category_changes: np.ndarray
    stage_entered: np.ndarray  # ns: start of the row's run of consecutive rows in this stage
    first_amount: np.ndarray  # the deal's first known amount up to the row (NaN: none yet)
    index: GroupedTimes


@dataclass(frozen=True)
class Activities:
    """Activity rows sorted by (deal, time), with prefix sums by kind for window counts."""

    deal: np.ndarray
    time: np.ndarray
    kind_prefix: np.ndarray  # (n_kinds, n + 1): rows of each kind before position i
    decision_maker_prefix: np.ndarray  # (n + 1,)
    decision_maker_time: np.ndarray  # ns of the latest decision-maker touch up to each row
    index: GroupedTimes


@dataclass(frozen=True)
class DealTables:
    stages: StageConfig
    opportunity_id: np.ndarray  # object; position = deal code
    created: np.ndarray  # ns
    owner_id: np.ndarray  # object
    account_id: np.ndarray  # object
    static: Mapping[str, np.ndarray]  # feature name -> value per deal
    history: History
    activities: Activities
    owner_team: Mapping[str, str] = field(default_factory=dict)  # owners' teams, when known

    @property
    def n_deals(self) -> int:
        return int(self.opportunity_id.size)

    @classmethod
    def build(
        cls,
        *,
        stages: StageConfig,
        opportunity_id: np.ndarray,
        created: np.ndarray,
        owner_id: np.ndarray,
        account_id: np.ndarray,
        static: Mapping[str, np.ndarray],
        history: Mapping[str, np.ndarray],
        activities: Mapping[str, np.ndarray],
        owner_team: Mapping[str, str] | None = None,
    ) -> DealTables:
        """Sort and derive. `history` has deal (code), time, stage (name), amount, close_ns,
        category (name or None), probability (percent or NaN), optionally manual_probability
        (percent or NaN); `activities` has deal, time,
        type (name), contact_role (name or None)."""
        n = int(opportunity_id.size)
        return cls(
            stages=stages,
            opportunity_id=opportunity_id,
            created=np.asarray(created, dtype=np.int64),
            owner_id=owner_id,
            account_id=account_id,
            static=dict(static),
            history=_derive_history(history, stages, n),
            activities=_derive_activities(activities, n),
            owner_team=dict(owner_team or {}),
        )

    @classmethod
    def from_export(
        cls,
        export: CrmExport,
        attributes: tuple[StaticAttribute, ...] = (),
        *,
        stages: StageConfig | None = None,
    ) -> DealTables:
        """`stages`: the stage model to code stages by (a trained model's), default the
        export's own."""
        opportunities = export.opportunities
        ids = pd.Index(opportunities["opportunity_id"].astype(str))
        history = export.history
        activities = export.activities
        return cls.build(
            stages=stages or export.stages,
            opportunity_id=ids.to_numpy(dtype=object),
            created=to_ns(opportunities["created_at"]),
            owner_id=opportunities["owner_id"].astype(str).to_numpy(dtype=object),
            account_id=opportunities["account_id"].astype(str).to_numpy(dtype=object),
            static=static_values(export, attributes),
            history={
                "deal": ids.get_indexer(pd.Index(history["opportunity_id"].astype(str))),
                "time": to_ns(history["changed_at"]),
                "stage": history["stage"].astype(str).to_numpy(dtype=object),
                "amount": history["amount"].to_numpy(dtype=np.float64),
                "close_ns": to_ns(history["close_date"]),
                "category": _optional(history, "forecast_category"),
                "probability": (
                    history["probability"].to_numpy(dtype=np.float64, na_value=np.nan)
                    if "probability" in history.columns
                    else np.full(len(history), np.nan)
                ),
                "manual_probability": (
                    history["manual_probability"].to_numpy(dtype=np.float64, na_value=np.nan)
                    if "manual_probability" in history.columns
                    else np.full(len(history), np.nan)
                ),
            },
            activities={
                "deal": ids.get_indexer(pd.Index(activities["opportunity_id"].astype(str))),
                "time": to_ns(activities["occurred_at"]),
                "type": activities["type"].astype(str).to_numpy(dtype=object),
                "contact_role": _optional(activities, "contact_role"),
            },
            owner_team=_owner_teams(export.owners),
        )


def _owner_teams(owners: pd.DataFrame) -> dict[str, str]:
    """owner_id -> team of an export's owners table (the loader gives every owner one)."""
    if "team" not in owners.columns or owners.empty:
        return {}
    known = owners[owners["team"].notna()]
    return dict(zip(known["owner_id"].astype(str), known["team"].astype(str), strict=True))


def _optional(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    return frame[column].astype(object).where(frame[column].notna(), None).to_numpy(dtype=object)


class Vocabulary:
    """Names and their codes (positions), looked up fast at any size.

    A request has a handful of values, for which a dict lookup is far cheaper than building a
    pandas index; an export has millions, for which the index is the fast way.
    """

    _SMALL = 256

    def __init__(self, names: pd.Index | tuple[str, ...] | np.ndarray) -> None:
        self.index = pd.Index(names, dtype=object)

    def __len__(self) -> int:
        return len(self.index)

    @functools.cached_property
    def positions(self) -> dict[object, int]:
        return {name: i for i, name in enumerate(self.index)}

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Code of each value, -1 when it is not in the vocabulary."""
        values = np.asarray(values, dtype=object)
        if values.size > self._SMALL:
            return self.index.get_indexer(pd.Index(values, dtype=object)).astype(np.int64)
        lookup = self.positions
        return np.fromiter((lookup.get(v, -1) for v in values), dtype=np.int64, count=values.size)


@functools.cache
def _vocabulary(names: tuple[str, ...]) -> Vocabulary:
    return Vocabulary(names)


def _codes(values: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return _vocabulary(names).codes(values)


def _kind_codes(types: np.ndarray) -> np.ndarray:
    """The activity kind of each logged type, case-insensitively; any other type is "other"."""
    if types.size > Vocabulary._SMALL:
        kind = _codes(np.char.lower(types.astype(str)).astype(object), ACTIVITY_KINDS)
        return np.where(kind < 0, _OTHER_KIND, kind)
    # A request's few rows: one cached lookup per distinct spelling, not numpy's string
    # functions (np.char.lower on 50 rows cost a tenth of a millisecond).
    return np.fromiter((_kind_code(t) for t in types), dtype=np.int64, count=types.size)


@functools.lru_cache(maxsize=4096)
def _kind_code(value: object) -> int:
    code = _vocabulary(ACTIVITY_KINDS).positions.get(str(value).lower(), -1)
    return _OTHER_KIND if code < 0 else code


def _group_cumsum(values: np.ndarray, row_start: np.ndarray) -> np.ndarray:
    """Running sum of `values` within each group (rows of a group are contiguous)."""
    total = np.cumsum(values)
    return total - (total[row_start] - values[row_start])


def _derive_history(raw: Mapping[str, np.ndarray], stages: StageConfig, n_deals: int) -> History:
    deal = np.asarray(raw["deal"], dtype=np.int64)
    time = np.asarray(raw["time"], dtype=np.int64)
    order = np.lexsort((time, deal))
    deal, time = deal[order], time[order]
    stage = _codes(np.asarray(raw["stage"], dtype=object)[order], stages.all_stages)
    amount = np.asarray(raw["amount"], dtype=np.float64)[order]
    close_ns = np.asarray(raw["close_ns"], dtype=np.int64)[order]
    category = _codes(np.asarray(raw["category"], dtype=object)[order], FORECAST_CATEGORIES)
    defaults = np.array([stages.probability(s) for s in stages.all_stages] + [np.nan])
    probability = np.asarray(raw["probability"], dtype=np.float64)[order]
    probability = np.where(np.isnan(probability), defaults[stage], probability)
    typed = raw.get("manual_probability")
    manual_probability = (
        np.full(deal.size, np.nan) if typed is None else np.asarray(typed, dtype=np.float64)[order]
    )

    positions = stages.order()
    stage_order = np.array([positions[s] for s in stages.all_stages] + [0])[stage]
    n_open = len(stages.open_stages)
    is_open = (stage >= 0) & (stage < n_open)
    is_won = (stage >= n_open) & (stage < n_open + len(stages.won_stages))

    index = GroupedTimes.from_sorted(deal, time, n_deals)
    row_start = np.repeat(index.starts, index.ends - index.starts)
    same = np.zeros(deal.size, dtype=bool)
    same[1:] = deal[1:] == deal[:-1]
    prev = np.maximum(np.arange(deal.size) - 1, 0)

    changed_stage = same & (stage != stage[prev])
    open_step = changed_stage & is_open & is_open[prev]
    step = stage_order - stage_order[prev]
    regressions = _group_cumsum((open_step & (step < 0)).astype(np.int64), row_start)
    skips = _group_cumsum(np.where(open_step & (step > 1), step - 1, 0), row_start)
    moved = np.where(same & is_open & is_open[prev], (close_ns - close_ns[prev]) / DAY_NS, 0.0)
    pushes = _group_cumsum((moved > 0).astype(np.int64), row_start)
    days_pushed = _group_cumsum(np.where(moved > 0, moved, 0.0), row_start)
    category_changes = _group_cumsum(
        (same & (category != category[prev])).astype(np.int64), row_start
    )
    run_start = ~same | changed_stage
    stage_entered = time[np.maximum.accumulate(np.where(run_start, np.arange(deal.size), 0))]
    # An amount may be unknown (NaN) until a later row gives one (features.repairs): the
    # baseline of amount changes is the first amount known by the row, never a later one.
    known = ~np.isnan(amount)
    first_known = np.full(n_deals, deal.size, dtype=np.int64)
    np.minimum.at(first_known, deal[known], np.flatnonzero(known))
    first_position = first_known[deal]
    seen = first_position <= np.arange(deal.size)
    first_amount = np.full(deal.size, np.nan)
    first_amount[seen] = amount[first_position[seen]]
    return History(
        deal=deal,
        time=time,
        stage=stage,
        amount=amount,
        close_ns=close_ns,
        category=category,
        probability=probability,
        manual_probability=manual_probability,
        is_open=is_open,
        is_won=is_won,
        stage_changes=_group_cumsum(changed_stage.astype(np.int64), row_start),
        regressions=regressions,
        skips=skips,
        pushes=pushes,
        days_pushed=days_pushed,
        category_changes=category_changes,
        stage_entered=stage_entered,
        first_amount=first_amount,
        index=index,
    )


def _derive_activities(raw: Mapping[str, np.ndarray], n_deals: int) -> Activities:
    deal = np.asarray(raw["deal"], dtype=np.int64)
    time = np.asarray(raw["time"], dtype=np.int64)
    order = np.lexsort((time, deal))
    deal, time = deal[order], time[order]
    kind = _kind_codes(np.asarray(raw["type"], dtype=object)[order])
    roles = np.asarray(raw["contact_role"], dtype=object)[order]
    is_dm = roles == DECISION_MAKER
    kind_prefix = np.zeros((len(ACTIVITY_KINDS), deal.size + 1), dtype=np.int64)
    for k in range(len(ACTIVITY_KINDS)):
        kind_prefix[k, 1:] = np.cumsum(kind == k)
    dm_prefix = np.zeros(deal.size + 1, dtype=np.int64)
    dm_prefix[1:] = np.cumsum(is_dm)
    # Latest decision-maker touch at or before each row, within the row's deal.
    index = GroupedTimes.from_sorted(deal, time, n_deals)
    last_dm = np.maximum.accumulate(np.where(is_dm, np.arange(deal.size), -1))
    row_start = np.repeat(index.starts, index.ends - index.starts)
    has_dm = last_dm >= row_start
    dm_time = np.where(has_dm, time[np.maximum(last_dm, 0)], np.iinfo(np.int64).min)
    return Activities(
        deal=deal,
        time=time,
        kind_prefix=kind_prefix,
        decision_maker_prefix=dm_prefix,
        decision_maker_time=dm_time,
        index=index,
    )


def resolve_static_attributes(
    export: CrmExport,
    listed: tuple[tuple[str, str], ...] | None,
    defaults: tuple[tuple[str, str], ...],
) -> tuple[StaticAttribute, ...]:
    """The static attributes to use, typed from the export.

    Listed attributes must exist (a config naming a missing column is an error); with none
    listed, the defaults that the export has are used. A column is numeric when every
    present value parses as a number.
    """
    frames = {
        "opportunities": export.opportunities,
        "accounts": export.accounts,
        "owners": export.owners,
    }
    wanted = listed if listed is not None else defaults
    resolved: list[StaticAttribute] = []
    for table, column in wanted:
        frame = frames[table]
        if column not in frame.columns:
            if listed is not None:
                raise FeatureConfigError(
                    f"static attribute {table}.{column} is listed but the export has no such column"
                )
            continue
        values = frame[column]
        parsed = pd.to_numeric(values, errors="coerce")
        numeric = bool(values.notna().any()) and bool((parsed.notna() == values.notna()).all())
        resolved.append(StaticAttribute(table, column, numeric))
    return tuple(resolved)


def static_values(
    export: CrmExport, attributes: tuple[StaticAttribute, ...]
) -> dict[str, np.ndarray]:
    """Each attribute's value per deal, in the order of `export.opportunities`."""
    opportunities = export.opportunities
    keys = {"opportunities": None, "accounts": "account_id", "owners": "owner_id"}
    frames = {"accounts": export.accounts, "owners": export.owners}
    out: dict[str, np.ndarray] = {}
    for attribute in attributes:
        key = keys[attribute.table]
        if key is None:
            values = opportunities[attribute.column]
        else:
            lookup = frames[attribute.table].drop_duplicates(key).set_index(key)[attribute.column]
            values = opportunities[key].map(lookup)
        out[attribute.feature] = typed_attribute(values.to_numpy(dtype=object), attribute)
    return out


def typed_attribute(values: np.ndarray, attribute: StaticAttribute) -> np.ndarray:
    """Numbers as float64 (missing or unparsable: NaN); categories as strings (missing: None)."""
    values = np.asarray(values, dtype=object)
    missing = pd.isna(values)
    if attribute.numeric:
        try:
            return np.where(missing, np.nan, values).astype(np.float64)
        except (TypeError, ValueError):
            return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    text = values.astype(str).astype(object)
    text[missing] = None
    return text
