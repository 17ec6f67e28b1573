"""Point-in-time snapshots and their features.

A snapshot is one open deal seen at one as-of time t. Its state is the deal's last history
row stamped `<= t` (rows at the same time cannot conflict: the loader keeps the file's last,
features.repairs); an amount may be unknown (NaN, a missing feature) until known; its
activity counts use activities stamped `<= t`; aggregates over other deals use their rows
stamped `< t` (features.reference). Nothing here looks past t, and the future-perturbation
tests prove it.

`compute_features` is the single implementation: the snapshot grid of an export and a live
scoring request both call it, with different (deal, as-of) queries.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import FeatureSpec, feature_catalog
from features.config import DEFAULT_STATIC_ATTRIBUTES, FeatureConfig
from features.contract import FORECAST_CATEGORIES
from features.deals import (
    ACTIVITY_KINDS,
    DAY_NS,
    DealTables,
    StaticAttribute,
    resolve_static_attributes,
)
from features.fiscal import quarter_bounds, snapshot_grid
from features.loading import CrmExport
from features.reference import OutcomeReference
from features.reliability import commit_reliability, team_of_owner, teams_of
from features.stages import StageConfig
from features.timestamps import from_ns, to_ns


@dataclass(frozen=True)
class FeaturePlan:
    """Everything that fixes the features: config, stage model and resolved static attributes.

    Built once from a training export and stored with the model, so serving computes the
    same columns with the same meaning.
    """

    config: FeatureConfig
    stages: StageConfig
    attributes: tuple[StaticAttribute, ...]

    @classmethod
    def from_export(cls, export: CrmExport, config: FeatureConfig | None = None) -> FeaturePlan:
        config = config or FeatureConfig()
        attributes = resolve_static_attributes(
            export, config.static_attributes, DEFAULT_STATIC_ATTRIBUTES
        )
        return cls(config=config, stages=export.stages, attributes=attributes)

    def to_data(self) -> dict[str, Any]:
        """As a model bundle stores it (features.artifacts)."""
        return {
            "config": self.config.to_dict(),
            "stages": self.stages.to_data(),
            "attributes": [attribute.to_data() for attribute in self.attributes],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> FeaturePlan:
        return cls(
            config=FeatureConfig.from_dict(data["config"]),
            stages=StageConfig.from_data(data["stages"]),
            attributes=tuple(StaticAttribute.from_data(a) for a in data["attributes"]),
        )

    @functools.cached_property
    def catalog(self) -> tuple[FeatureSpec, ...]:
        return feature_catalog(self.config, self.attributes)

    @functools.cached_property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.catalog]

    @functools.cached_property
    def categorical_features(self) -> list[str]:
        return [spec.name for spec in self.catalog if spec.kind == "categorical"]


def open_deal_queries(tables: DealTables, grid: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(deal code, as-of ns) of every deal open at every grid time from its creation on.

    A deal is open at t only when it was created at or before t, has a history row at or
    before t, and that row's stage is open: a deal entered after the fact (created already
    closed, or closing before its creation) is never an open snapshot before it existed."""
    times = to_ns(grid)
    history = tables.history
    index = history.index
    has_rows = index.ends > index.starts
    last = np.maximum(index.ends - 1, 0)
    # A deal closed for good is no longer a candidate once closed; reopenings are handled
    # below by checking the state at each time.
    finished = has_rows & ~history.is_open[last]
    until = np.where(finished, history.time[last], np.iinfo(np.int64).max)
    first = np.searchsorted(times, tables.created, side="left")
    stop = np.searchsorted(times, until, side="left")
    counts = np.maximum(stop - first, 0)
    deals = np.repeat(np.arange(tables.n_deals), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    as_of = times[np.repeat(first, counts) + offsets]
    position = index.count_until(deals, as_of)
    state = position - 1
    is_open = (position > index.starts[deals]) & history.is_open[np.maximum(state, 0)]
    return deals[is_open], as_of[is_open]


def compute_features(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    plan: FeaturePlan,
    reference: OutcomeReference,
) -> pd.DataFrame:
    """Feature frame (one row per query, catalog column order) of deals at as-of times (ns).

    Each query's deal must have a history row at or before its as-of time.
    """
    return _snapshot_frame(
        tables,
        np.asarray(deals, dtype=np.int64),
        np.asarray(as_of, dtype=np.int64),
        plan=plan,
        reference=reference,
        keys={},
        chunk_rows=SNAPSHOT_CHUNK_ROWS,
    )


def feature_columns(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    plan: FeaturePlan,
    reference: OutcomeReference,
) -> dict[str, np.ndarray]:
    """The features as arrays (numbers as float64, categories as objects), catalog order.

    The frame-free form of `compute_features`, for the service's hot path.
    """
    config = plan.config
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    history = tables.history
    row = history.index.count_until(deals, as_of) - 1
    if np.any(row < history.index.starts[deals]):
        raise ValueError("a queried deal has no history row at or before its as-of time")
    columns: dict[str, np.ndarray] = {}
    stage_names = np.array([*plan.stages.all_stages, None], dtype=object)
    columns["stage"] = stage_names[history.stage[row]]
    order = plan.stages.order()
    stage_order = np.array([*(order[s] for s in plan.stages.all_stages), 0])
    columns["stage_order"] = stage_order[history.stage[row]]
    columns["stage_probability"] = history.probability[row]
    days_in_stage = _days(as_of - history.stage_entered[row])
    columns["days_in_stage"] = days_in_stage
    columns["stage_duration_percentile"] = np.full(deals.size, np.nan)
    columns["deal_age_days"] = _days(as_of - tables.created[deals])
    columns["stage_changes"] = history.stage_changes[row]
    columns["stage_regressions"] = history.regressions[row]
    columns["stage_skips"] = history.skips[row]
    amount = history.amount[row]
    columns["amount"] = amount
    columns["amount_change_since_creation"] = _ratio_change(amount, history.first_amount[row])
    window = config.amount_change_window_days * DAY_NS
    earlier = history.index.count_until(deals, as_of - window) - 1
    # The amount a window ago, else (no row then, or its amount still unknown) the first
    # amount known by now: the same baseline as the change since creation.
    amount_then = history.amount[np.maximum(earlier, 0)]
    amount_before = np.where(
        (earlier >= history.index.starts[deals]) & ~np.isnan(amount_then),
        amount_then,
        history.first_amount[row],
    )
    columns["amount_change_recent"] = _ratio_change(amount, amount_before)
    columns["close_date_pushes"] = history.pushes[row]
    columns["close_date_days_pushed"] = history.days_pushed[row]
    close = history.close_ns[row]
    day_start = as_of - as_of % DAY_NS
    columns["days_to_close"] = _days(close - as_of)
    columns["close_date_past"] = (close < day_start).astype(np.float64)
    _, quarter_end = quarter_bounds(as_of, start_month=config.fiscal_year_start_month)
    columns["close_date_in_quarter"] = (close < quarter_end).astype(np.float64)
    columns["days_left_in_quarter"] = _days(quarter_end - as_of)
    categories = np.array([*FORECAST_CATEGORIES, None], dtype=object)
    columns["forecast_category"] = categories[history.category[row]]
    columns["forecast_category_changes"] = history.category_changes[row]
    columns.update(_activity_features(tables, deals, as_of, config))
    columns.update(
        _context_features(
            tables, deals, as_of, days_in_stage, history.stage[row], plan=plan, reference=reference
        )
    )
    for attribute in plan.attributes:
        columns[attribute.feature] = np.asarray(tables.static[attribute.feature])[deals]
    for name in config.unavailable_features:  # the export has no history to compute them from
        columns[name] = np.full(deals.size, np.nan)
    categorical = set(plan.categorical_features)
    return {
        name: columns[name] if name in categorical else columns[name].astype(np.float64)
        for name in plan.feature_names
    }


def manual_probability_at(tables: DealTables, deals: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """The manager's typed probability (percent) of each queried deal in its state as of its
    as-of time (the same last row at or before it that `stage_probability` is read from), NaN
    where that row has none. Not a model feature: the manual_weight baseline's input
    (models.baselines), carried beside the features."""
    deals = np.asarray(deals, dtype=np.int64)
    history = tables.history
    row = history.index.count_until(deals, np.asarray(as_of, dtype=np.int64)) - 1
    if history.manual_probability.size == 0:
        return np.full(deals.size, np.nan)
    typed = history.manual_probability[np.maximum(row, 0)]
    return np.where(row >= history.index.starts[deals], typed, np.nan)


# Queries per `feature_columns` pass when an export's snapshots are built: bounds the pass's
# fifty-odd intermediate arrays whatever the export's size (1,000,000 deals give 11 million
# snapshots; built in one pass they peaked at 17 GB).
SNAPSHOT_CHUNK_ROWS = 500_000


def _snapshot_frame(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    *,
    plan: FeaturePlan,
    reference: OutcomeReference,
    keys: dict[str, Any],
    chunk_rows: int,
) -> pd.DataFrame:
    """`keys` then the features (catalog order) of the queries, one row per query in query
    order, written pass by pass into one float block: no full-size copy is ever made.

    Passes take the queries in time order, so that each as-of time's reference context is
    built once; a feature depends only on its own query, so the passes change no value."""
    n = deals.size
    names = plan.feature_names
    categorical = set(plan.categorical_features)
    numeric = [name for name in names if name not in categorical]
    # Column-major: each feature contiguous, which is how pandas holds a float block.
    block = np.empty((n, len(numeric)), dtype=np.float64, order="F")
    objects = {name: np.empty(n, dtype=object) for name in names if name in categorical}
    order = np.argsort(as_of, kind="stable") if n > chunk_rows else np.arange(n)
    for start in range(0, n, chunk_rows):
        rows = order[start : start + chunk_rows]
        columns = feature_columns(tables, deals[rows], as_of[rows], plan=plan, reference=reference)
        for j, name in enumerate(numeric):
            block[rows, j] = columns[name]
        for name, values in objects.items():
            values[rows] = columns[name]
        del columns
    frame = pd.DataFrame(block, columns=numeric, copy=False)
    for position, name in enumerate(names):
        if name in objects:
            frame.insert(position, name, pd.Series(objects[name], dtype=object, copy=False))
    for position, (name, values) in enumerate(keys.items()):
        frame.insert(position, name, values)
    return frame


def _days(delta_ns: np.ndarray) -> np.ndarray:
    return np.asarray(delta_ns, dtype=np.float64) / DAY_NS


def _ratio_change(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, now / before - 1.0, np.nan)


def _activity_features(
    tables: DealTables, deals: np.ndarray, as_of: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    acts = tables.activities
    starts = acts.index.starts[deals]
    upto = acts.index.count_until(deals, as_of)
    out: dict[str, np.ndarray] = {}
    for window in config.activity_windows_days:
        since = acts.index.count_until(deals, as_of - window * DAY_NS)
        counts = acts.kind_prefix[:, upto] - acts.kind_prefix[:, since]  # (kinds, deals)
        for k, kind in enumerate(ACTIVITY_KINDS):
            out[f"activities_{kind}_{window}d"] = counts[k]
        out[f"activities_{window}d"] = counts.sum(axis=0).astype(np.float64)
    out["activities_total"] = upto - starts
    has_any = upto > starts
    last = np.maximum(upto - 1, 0)
    out["days_since_last_activity"] = np.where(
        has_any, _days(as_of - acts.time[last]) if acts.time.size else np.nan, np.nan
    )
    dm_contacts = acts.decision_maker_prefix[upto] - acts.decision_maker_prefix[starts]
    out["decision_maker_contacts"] = dm_contacts
    dm_time = acts.decision_maker_time[last] if acts.time.size else np.zeros(deals.size, np.int64)
    out["days_since_decision_maker_contact"] = np.where(
        dm_contacts > 0, _days(as_of - dm_time), np.nan
    )
    return out


def _context_features(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    days_in_stage: np.ndarray,
    stage: np.ndarray,
    *,
    plan: FeaturePlan,
    reference: OutcomeReference,
) -> dict[str, np.ndarray]:
    n = deals.size
    out = {
        name: np.full(n, np.nan)
        for name in (
            "stage_duration_percentile",
            "owner_win_rate",
            "owner_closed_deals",
            "account_won_deals",
            "account_closed_deals",
            "owner_commit_hit_rate",
            "team_commit_hit_rate",
        )
    }
    owners = tables.owner_id[deals]
    teams = teams_of(owners, team_of_owner(tables), reference.owner_team)
    accounts = reference.account_keys(tables.account_id[deals])  # hashed as the reference's
    prior = plan.config.owner_prior_strength
    distinct, inverse = np.unique(as_of, return_inverse=True)
    for i, time_ns in enumerate(distinct):
        at = np.flatnonzero(inverse == i)
        context = reference.context_at(int(time_ns))
        owner = context.owners.codes(owners[at])
        known = owner >= 0
        closed = np.where(known, context.owner_closed[np.maximum(owner, 0)], 0.0)
        won = np.where(known, context.owner_won[np.maximum(owner, 0)], 0.0)
        overall = context.win_rate
        out["owner_closed_deals"][at] = closed
        out["owner_win_rate"][at] = (won + prior * overall) / (closed + prior)
        commit = commit_reliability(context.commit, context.owners, owners[at], teams[at])
        out["owner_commit_hit_rate"][at] = commit.rep_rate
        out["team_commit_hit_rate"][at] = commit.team_rate
        account = context.accounts.codes(accounts[at])
        known = account >= 0
        out["account_closed_deals"][at] = np.where(
            known, context.account_closed[np.maximum(account, 0)], 0.0
        )
        out["account_won_deals"][at] = np.where(
            known, context.account_won[np.maximum(account, 0)], 0.0
        )
        for code, lengths in context.won_stage_days.items():
            here = at[stage[at] == code]
            if here.size and lengths.size:
                rank = np.searchsorted(lengths, days_in_stage[here], side="right")
                out["stage_duration_percentile"][here] = rank / lengths.size
    return out


def build_snapshots(
    export: CrmExport,
    *,
    plan: FeaturePlan | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    chunk_rows: int = SNAPSHOT_CHUNK_ROWS,
) -> pd.DataFrame:
    """Features of every deal open at every grid time between `start` and `end`
    (default: the export's first and last history times), keyed by opportunity_id and as_of,
    with the deal's `manual_probability` then (percent, NaN where none is typed) beside them."""
    plan = plan or FeaturePlan.from_export(export)
    tables = DealTables.from_export(export, plan.attributes)
    reference = OutcomeReference(tables)
    times = export.history["changed_at"]
    grid = snapshot_grid(
        start if start is not None else times.min(),
        end if end is not None else times.max(),
        step_days=plan.config.snapshot_step_days,
        start_month=plan.config.fiscal_year_start_month,
    )
    deals, as_of = open_deal_queries(tables, grid)
    keys = {
        "opportunity_id": tables.opportunity_id[deals],
        "as_of": from_ns(as_of),
        "manual_probability": manual_probability_at(tables, deals, as_of),
    }
    return _snapshot_frame(
        tables,
        deals,
        as_of,
        plan=plan,
        reference=reference,
        keys=keys,
        chunk_rows=chunk_rows,
    )
