"""Next actions: levers a rep can pull, ranked by what the model says they are worth.

A lever is something a rep can do this week (meet the decision maker, re-engage a silent
deal, send the proposal, reset an implausible close date), written as the row doing it adds
to the deal's tables: an activity (a meeting with the decision maker, a call, the proposal
sent) or an opportunity-history row (the same state with a new close date), stamped at the
deal's `as_of`. Stamped at as_of, not after it, the row is visible to the features at as_of
(the as-of rule is `event_ts <= as_of`, features.asof), and a history row at as_of sorts
after one already there, so it is the deal's state then (the loader's "last row wins").

A deal's actions are found by adding each applicable lever's row to a copy of the deal (its
rows up to as_of), building those variant deals with `DealTables.build` (where exports and
request payloads end too) and computing their features with `feature_columns`, the code
that builds the served features; all variants of all deals of a request are one table, one
feature pass and one prediction per booster (`won` and `won_in_period`: stage offset plus
main booster, calibration, as `WinModel.predict`). So an action's reported change in
probability is what scoring the deal with that row added gives, and no lever can claim an
effect the features would not see. Levers are ranked by expected value: change in the won
probability times the deal's amount; only levers that raise the probability are proposed,
and a lever whose row changes no feature is not re-scored at all. The changes are not
additive: each is measured against the deal as it is.

Levers may only change features of actionable factors (models.factors: engagement and
close-date hygiene). A lever declares the features its row may change (`touches`), checked
when it is constructed; a lever touching anything else (industry, region, segment, deal
type, the owner, the account's past, the stage) cannot be constructed, and a row that
changes an undeclared feature of any deal is refused when it is scored. Multi-threading
(adding contacts) is not a lever: no feature counts a deal's contacts or their roles other
than the decision maker, so the model cannot say what adding one is worth, and a lever
without a feature would be an invented effect.

What the model learned are associations: deals where a decision maker was met were won
more often, which is not proof that meeting one wins the deal. `EFFECTS_DISCLAIMER` says so
and every answer carries it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from features.catalog import FeatureSpec
from features.config import FeatureConfig
from features.contract import FORECAST_CATEGORIES
from features.deals import ACTIVITY_KINDS, DAY_NS, DECISION_MAKER, DealTables
from features.reference import OutcomeReference
from features.snapshots import FeaturePlan, feature_columns
from models.encoding import Columns
from models.explain import calibrated_in_period, calibrated_won, prediction_threads
from models.factors import NonActionableLever, non_actionable, reference_catalog
from models.win import INTERVAL_TARGETS, WinModel

EFFECTS_DISCLAIMER = (
    "Effects are associations learned from past deals, not guarantees: they show how the win "
    "probability of deals like this one differed when this was done, not what doing it will "
    "cause."
)

# When levers apply (days). A lever's text says the same in words.
DECISION_MAKER_RECENT_DAYS = 30.0  # a decision maker met more recently needs no new meeting
QUIET_DAYS = 14.0  # no activity for this long: re-engage
MEETING_GAP_DAYS = 30  # no meeting in (the activity window closest to) this many days
PROPOSAL_FROM_STAGE_ORDER = 3  # a proposal before discovery is premature
# A close date is implausibly near when fewer than this many days per open stage still to go
# remain; a reset moves it to RESET_DAYS_PER_STAGE days per stage still to go, counting the
# close itself (about the median time to close of won deals in the synthetic world).
MIN_DAYS_PER_REMAINING_STAGE = 7.0
RESET_DAYS_PER_STAGE = 14.0

WINDOW = "{window}"  # in a lever's feature names: every activity window of the plan

FeatureValues = Mapping[str, np.ndarray]
Table = Literal["activities", "history"]
# The columns of an added row, in `DealTables.build`'s words (deal and time are set here).
ROW_COLUMNS: Mapping[Table, tuple[str, ...]] = {
    "activities": ("type", "contact_role"),
    "history": ("stage", "amount", "close_ns", "category", "probability"),
}


@dataclass(frozen=True)
class LeverContext:
    """What a lever needs to know about the feature plan."""

    windows: tuple[int, ...]
    open_stages: int

    def window(self, days: int) -> int:
        """The activity window closest to `days`."""
        return min(self.windows, key=lambda w: (abs(w - days), w))


@dataclass(frozen=True)
class DealsNow:
    """The deals a lever applies to, as they stand at their as-of times: their numeric
    features and their latest history row (the columns of ROW_COLUMNS["history"]; stage
    and category as names, None when missing)."""

    features: FeatureValues
    state: Mapping[str, np.ndarray]
    as_of: np.ndarray  # ns


@dataclass(frozen=True)
class AddedRows:
    """One row per deal of a `DealsNow`, added to `table` at the deal's as_of;
    `columns` are exactly ROW_COLUMNS[table]."""

    table: Table
    columns: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Lever:
    """An action, the row doing it adds, the features that row may change and when it applies.

    `applies` reads the deals' numeric features (arrays, one value per deal) and may read
    any feature; `adds` gives the row per deal. `touches` are the features the row may
    change, which must all belong to actionable factors (checked here and again against the
    model's catalog); a row that changes any other feature is refused when scored."""

    key: str
    text: str  # shown to the rep
    condition: str  # when it applies, in words
    touches: tuple[str, ...]  # feature names; WINDOW stands for every activity window
    applies: Callable[[FeatureValues, LeverContext], np.ndarray] = field(repr=False)
    adds: Callable[[DealsNow, LeverContext], AddedRows] = field(repr=False)

    def __post_init__(self) -> None:
        check_lever(self, reference_catalog(), FeatureConfig().activity_windows_days)

    def features(self, windows: tuple[int, ...]) -> tuple[str, ...]:
        """`touches` with WINDOW expanded to each activity window."""
        names: list[str] = []
        for name in self.touches:
            if WINDOW in name:
                names += [name.replace(WINDOW, str(w)) for w in windows]
            else:
                names.append(name)
        return tuple(names)


def check_lever(lever: Lever, catalog: tuple[FeatureSpec, ...], windows: tuple[int, ...]) -> None:
    """Raise NonActionableLever when the lever touches a feature a rep cannot act on."""
    bad = non_actionable(lever.features(windows), catalog)
    if bad:
        raise NonActionableLever(lever.key, bad)


def log_activity(
    kind: str, *, contact_role: str | None = None
) -> tuple[tuple[str, ...], Callable[[DealsNow, LeverContext], AddedRows]]:
    """The features an activity of `kind` logged at as_of may change, and the row: counts of
    the kind and of all activities in every window and in total, the days since the last
    activity (and decision-maker contact when it is with the decision maker)."""
    touches: tuple[str, ...] = (
        f"activities_{kind}_{WINDOW}d",
        f"activities_{WINDOW}d",
        "activities_total",
        "days_since_last_activity",
    )
    if contact_role == DECISION_MAKER:
        touches += ("decision_maker_contacts", "days_since_decision_maker_contact")

    def adds(now: DealsNow, context: LeverContext) -> AddedRows:
        n = now.as_of.size
        return AddedRows(
            "activities",
            {
                "type": np.full(n, kind, dtype=object),
                "contact_role": np.full(n, contact_role, dtype=object),
            },
        )

    return touches, adds


CLOSE_DATE_FEATURES = (
    "close_date_pushes",
    "close_date_days_pushed",
    "days_to_close",
    "close_date_past",
    "close_date_in_quarter",
)


def _remaining_stages(values: FeatureValues, context: LeverContext) -> np.ndarray:
    return np.maximum(context.open_stages - values["stage_order"], 0.0)


def _close_date_implausible(values: FeatureValues, context: LeverContext) -> np.ndarray:
    days = values["days_to_close"]
    too_near = days < MIN_DAYS_PER_REMAINING_STAGE * _remaining_stages(values, context)
    return (values["close_date_past"] >= 0.5) | too_near


def _reset_close_date(now: DealsNow, context: LeverContext) -> AddedRows:
    """The deal's state with the close date moved (whole days) to two weeks per stage still
    to go. That is a push, and the features say so: one more push and more days pushed. The
    model judges whether an honest date is worth the push."""
    days = now.features["days_to_close"]
    target = RESET_DAYS_PER_STAGE * (_remaining_stages(now.features, context) + 1.0)
    pushed = np.ceil(target - days).astype(np.int64)
    return AddedRows("history", {**now.state, "close_ns": now.state["close_ns"] + pushed * DAY_NS})


def _no_recent_dm(values: FeatureValues, context: LeverContext) -> np.ndarray:
    days = values["days_since_decision_maker_contact"]
    return np.isnan(days) | (days > DECISION_MAKER_RECENT_DAYS)


def _quiet(values: FeatureValues, context: LeverContext) -> np.ndarray:
    days = values["days_since_last_activity"]
    return np.isnan(days) | (days >= QUIET_DAYS)


def _none_of(
    kind: str, days: int | None = None
) -> Callable[[FeatureValues, LeverContext], np.ndarray]:
    def applies(values: FeatureValues, context: LeverContext) -> np.ndarray:
        window = context.window(days) if days is not None else max(context.windows)
        return values[f"activities_{kind}_{window}d"] == 0

    return applies


def _proposal_due(values: FeatureValues, context: LeverContext) -> np.ndarray:
    return _none_of("proposal")(values, context) & (
        values["stage_order"] >= PROPOSAL_FROM_STAGE_ORDER
    )


_DM_TOUCHES, _DM_ADDS = log_activity("meeting", contact_role=DECISION_MAKER)
_CALL_TOUCHES, _CALL_ADDS = log_activity("call")
_MEETING_TOUCHES, _MEETING_ADDS = log_activity("meeting")
_DEMO_TOUCHES, _DEMO_ADDS = log_activity("demo")
_PROPOSAL_TOUCHES, _PROPOSAL_ADDS = log_activity("proposal")

LEVERS: tuple[Lever, ...] = (
    Lever(
        key="meet_decision_maker",
        text="Meet the decision maker: book a meeting with the person who signs.",
        condition=f"no decision-maker contact in the last {DECISION_MAKER_RECENT_DAYS:.0f} days",
        touches=_DM_TOUCHES,
        applies=_no_recent_dm,
        adds=_DM_ADDS,
    ),
    Lever(
        key="re_engage",
        text="Re-engage the deal: call your main contact, it has gone quiet.",
        condition=f"no activity in the last {QUIET_DAYS:.0f} days, or none at all",
        touches=_CALL_TOUCHES,
        applies=_quiet,
        adds=_CALL_ADDS,
    ),
    Lever(
        key="hold_meeting",
        text="Hold a working meeting with the buying team.",
        condition=f"no meeting in the activity window closest to {MEETING_GAP_DAYS} days",
        touches=_MEETING_TOUCHES,
        applies=_none_of("meeting", MEETING_GAP_DAYS),
        adds=_MEETING_ADDS,
    ),
    Lever(
        key="book_demo",
        text="Book a demo for the buying team.",
        condition="no demo in the longest activity window",
        touches=_DEMO_TOUCHES,
        applies=_none_of("demo"),
        adds=_DEMO_ADDS,
    ),
    Lever(
        key="send_proposal",
        text="Send the proposal.",
        condition=(
            "no proposal in the longest activity window and the deal at open stage "
            f"{PROPOSAL_FROM_STAGE_ORDER} or later"
        ),
        touches=_PROPOSAL_TOUCHES,
        applies=_proposal_due,
        adds=_PROPOSAL_ADDS,
    ),
    Lever(
        key="reset_close_date",
        text=(
            "Reset the close date to a realistic one (about two weeks per stage still to go): "
            "the current one is past or too near for the stage."
        ),
        condition=(
            "the close date is past, or less than "
            f"{MIN_DAYS_PER_REMAINING_STAGE:.0f} days per open stage still to go away"
        ),
        touches=CLOSE_DATE_FEATURES,
        applies=_close_date_implausible,
        adds=_reset_close_date,
    ),
)


@dataclass(frozen=True)
class Action:
    """A lever worth pulling on one deal, and what re-scoring the deal with its row gave."""

    lever: str
    text: str
    delta_probability: float  # won probability with the lever - now
    delta_in_period: float  # the same for the in-period probability
    expected_value: float  # delta_probability * amount (NaN when the amount is unknown)
    changes: Mapping[str, float]  # feature -> value with the row added, the features it changed
    # The row the lever adds, as a request payload gives it: `table` is the deal's list it
    # joins ("activities" or "history"), `row` its fields in the data contract's words.
    table: Table = "activities"
    row: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DealActions:
    probability: float  # won probability now, from the same pipeline
    in_period: float
    actions: tuple[Action, ...]  # by expected value, best first; only positive deltas
    disclaimer: str = EFFECTS_DISCLAIMER


@dataclass(frozen=True)
class LeverVariants:
    """The deals with a lever's row added, one variant per (query, applicable lever), lever
    by lever in the order of `added`, then in query order: what `rank_actions` scores."""

    added: tuple[tuple[int, np.ndarray, AddedRows], ...]  # (lever position, queries, rows)
    query: np.ndarray  # per variant: the query (deal, as_of) it varies
    columns: dict[str, np.ndarray]  # the variants' features, as feature_columns gives them
    changed: np.ndarray  # (variants, features) bool: the feature differs from the deal's
    names: tuple[str, ...]  # the features, in column order of `changed`


_CHECKED: dict[tuple[int, int], tuple[object, object, tuple[frozenset[str], ...]]] = {}


def _allowed(levers: tuple[Lever, ...], plan: FeaturePlan) -> tuple[frozenset[str], ...]:
    """Each lever's declared features, checked against the model's own catalog; cached by
    the identity of the lever tuple and the plan's catalog (checked once per model)."""
    catalog = plan.catalog
    key = (id(levers), id(catalog))
    hit = _CHECKED.get(key)
    if hit is not None and hit[0] is levers and hit[1] is catalog:
        return hit[2]
    windows = plan.config.activity_windows_days
    known = set(plan.feature_names)
    allowed = []
    for lever in levers:
        check_lever(lever, catalog, windows)
        features = lever.features(windows)
        missing = [name for name in features if name not in known]
        if missing:
            raise NonActionableLever(lever.key, dict.fromkeys(missing, "not a model feature"))
        allowed.append(frozenset(features))
    _CHECKED[key] = (levers, catalog, tuple(allowed))
    return tuple(allowed)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions starts[i]:ends[i] for every i, concatenated, and each range's length."""
    counts = np.maximum(ends - starts, 0)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + offsets, counts


def _history_rows(tables: DealTables, rows: np.ndarray) -> dict[str, np.ndarray]:
    """History rows as `DealTables.build` takes them (codes back to names). The probability
    is the one in force at the row, which is the given one or the stage's default: copied,
    it gives the same."""
    history = tables.history
    stages = np.array([*tables.stages.all_stages, None], dtype=object)
    categories = np.array([*FORECAST_CATEGORIES, None], dtype=object)
    return {
        "stage": stages[history.stage[rows]],
        "amount": history.amount[rows],
        "close_ns": history.close_ns[rows],
        "category": categories[history.category[rows]],
        "probability": history.probability[rows],
    }


def _activity_rows(tables: DealTables, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Activity rows as `DealTables.build` takes them, recovered from the running counts: the
    kind (a type outside the contract's was counted as "other" and comes back so) and
    whether the contact was the decision maker, which is all the features read of a row."""
    acts = tables.activities
    kinds = np.array(ACTIVITY_KINDS, dtype=object)
    kind = np.argmax(acts.kind_prefix[:, rows + 1] - acts.kind_prefix[:, rows], axis=0)
    decision_maker = acts.decision_maker_prefix[rows + 1] > acts.decision_maker_prefix[rows]
    roles = np.full(rows.size, None, dtype=object)
    roles[decision_maker] = DECISION_MAKER
    return {"type": kinds[kind], "contact_role": roles}


def _variant_tables(
    tables: DealTables,
    deals: np.ndarray,
    as_of: np.ndarray,
    added: list[tuple[np.ndarray, AddedRows]],
) -> DealTables:
    """One deal per variant: deal `deals[q]`'s rows stamped up to `as_of[q]` plus its
    lever's row at `as_of[q]`, for each (queries q, rows) of `added`; variant codes follow
    the order of `added`. Appended after the copied rows, a row at the same time as one of
    them sorts after it (the sort is stable)."""
    query = np.concatenate([q for q, _ in added])
    owner, until = deals[query], as_of[query]
    variant = np.arange(query.size)
    raw: dict[Table, dict[str, list[np.ndarray]]] = {}
    copies: tuple[tuple[Table, Callable[[DealTables, np.ndarray], dict[str, np.ndarray]]], ...] = (
        ("history", _history_rows),
        ("activities", _activity_rows),
    )
    for table, copy in copies:
        index = tables.history.index if table == "history" else tables.activities.index
        positions, counts = _ranges(index.starts[owner], index.count_until(owner, until))
        raw[table] = {
            "deal": [np.repeat(variant, counts)],
            "time": [index.times[positions]],
            **{name: [values] for name, values in copy(tables, positions).items()},
        }
    start = 0
    for queries, rows in added:
        parts = raw[rows.table]
        parts["deal"].append(np.arange(start, start + queries.size))
        parts["time"].append(as_of[queries])
        for name in ROW_COLUMNS[rows.table]:
            parts[name].append(np.asarray(rows.columns[name]))
        start += queries.size
    opportunity_id, created = tables.opportunity_id[owner], tables.created[owner]
    owner_id, account_id = tables.owner_id[owner], tables.account_id[owner]
    static = {name: np.asarray(values)[owner] for name, values in tables.static.items()}
    built = DealTables.build(
        stages=tables.stages,
        opportunity_id=opportunity_id,
        created=created,
        owner_id=owner_id,
        account_id=account_id,
        static=static,
        history={name: np.concatenate(parts) for name, parts in raw["history"].items()},
        activities={name: np.concatenate(parts) for name, parts in raw["activities"].items()},
    )
    # What is not per deal (the stage model, anything known of the owners) stays the tables'.
    return dataclasses.replace(
        tables,
        opportunity_id=opportunity_id,
        created=built.created,
        owner_id=owner_id,
        account_id=account_id,
        static=built.static,
        history=built.history,
        activities=built.activities,
    )


def _differs(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Elementwise: not the same value (two missing values are the same)."""
    if new.dtype == object or old.dtype == object:
        missing_new, missing_old = pd.isna(new), pd.isna(old)
        return np.where(missing_new | missing_old, missing_new != missing_old, new != old)
    return (new != old) & ~(np.isnan(new) & np.isnan(old))


def _changed(
    new: Mapping[str, np.ndarray],
    old: Mapping[str, np.ndarray],
    query: np.ndarray,
    names: tuple[str, ...],
    categorical: set[str],
) -> np.ndarray:
    """(variants, features) bool: variant v's feature differs from query[v]'s; the numbers
    compared as one block (one comparison beats fifty on a request's few rows)."""
    numeric = [j for j, name in enumerate(names) if name not in categorical]
    out = np.empty((query.size, len(names)), dtype=bool)
    out[:, numeric] = _differs(
        np.column_stack([new[names[j]] for j in numeric]),
        np.column_stack([old[names[j]] for j in numeric])[query],
    )
    for j, name in enumerate(names):
        if name in categorical:
            out[:, j] = _differs(
                np.asarray(new[name], dtype=object), np.asarray(old[name], dtype=object)[query]
            )
    return out


class _Selected(Mapping[str, np.ndarray]):
    """Some rows of every column, indexed only when a column is read: a lever reads a few of
    the fifty-odd features."""

    def __init__(self, columns: Mapping[str, np.ndarray], rows: np.ndarray) -> None:
        self._columns = columns
        self._rows = rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name][self._rows]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def apply_levers(
    tables: DealTables,
    *,
    deals: np.ndarray,
    as_of: np.ndarray,
    plan: FeaturePlan,
    reference: OutcomeReference,
    levers: tuple[Lever, ...] = LEVERS,
    columns: Mapping[str, np.ndarray] | None = None,
) -> LeverVariants:
    """Every applicable lever's row added to the deals (queries `deals` at `as_of`, ns) and
    the features of the variants, in one `feature_columns` pass. `columns`, when given, are
    the queries' features (`feature_columns` of the same queries). Raises NonActionableLever
    when a row changes a feature its lever does not declare."""
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    allowed = _allowed(levers, plan)
    if columns is None:
        columns = feature_columns(tables, deals, as_of, plan=plan, reference=reference)
    context = LeverContext(
        windows=plan.config.activity_windows_days, open_stages=len(plan.stages.open_stages)
    )
    categorical = set(plan.categorical_features)
    values = {name: v for name, v in columns.items() if name not in categorical}
    history = tables.history
    state = _history_rows(tables, history.index.count_until(deals, as_of) - 1)
    added: list[tuple[np.ndarray, AddedRows]] = []
    which: list[int] = []
    for k, lever in enumerate(levers):
        queries = np.flatnonzero(lever.applies(values, context))
        if queries.size == 0:
            continue
        now = DealsNow(
            features=_Selected(values, queries),
            state=_Selected(state, queries),
            as_of=as_of[queries],
        )
        rows = lever.adds(now, context)
        if set(rows.columns) != set(ROW_COLUMNS[rows.table]):
            raise ValueError(
                f"lever {lever.key!r} adds a {rows.table} row with columns "
                f"{sorted(rows.columns)}; expected {list(ROW_COLUMNS[rows.table])}"
            )
        added.append((queries, rows))
        which.append(k)
    names = tuple(plan.feature_names)
    if not added:
        return LeverVariants(
            added=(),
            query=np.zeros(0, dtype=np.int64),
            columns={name: np.asarray(columns[name])[:0] for name in names},
            changed=np.zeros((0, len(names)), dtype=bool),
            names=names,
        )
    query = np.concatenate([q for q, _ in added])
    lever_of = np.repeat(np.array(which), [q.size for q, _ in added])
    variants = _variant_tables(tables, deals, as_of, added)
    new = feature_columns(
        variants, np.arange(query.size), as_of[query], plan=plan, reference=reference
    )
    changed = _changed(new, columns, query, names, categorical)
    for k in which:
        touched = {names[j] for j in np.flatnonzero(changed[lever_of == k].any(axis=0))}
        undeclared = sorted(touched - allowed[k])
        if undeclared:
            raise NonActionableLever(
                levers[k].key, dict.fromkeys(undeclared, "changed by its row but not declared")
            )
    return LeverVariants(
        added=tuple((k, q, rows) for k, (q, rows) in zip(which, added, strict=True)),
        query=query,
        columns=new,
        changed=changed,
        names=names,
    )


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").isoformat()


def _contract_row(rows: AddedRows, position: int, as_of: int) -> dict[str, object]:
    """One added row in the data contract's words, as a request payload would carry it."""

    def value(name: str) -> object:
        v = rows.columns[name][position]
        if v is None or (isinstance(v, float | np.floating) and np.isnan(v)):
            return None
        return v.item() if isinstance(v, np.generic) else v

    if rows.table == "activities":
        return {
            "occurred_at": _iso(as_of),
            "type": value("type"),
            "contact_role": value("contact_role"),
        }
    return {
        "changed_at": _iso(as_of),
        "stage": value("stage"),
        "amount": value("amount"),
        "close_date": _iso(int(rows.columns["close_ns"][position])),
        "forecast_category": value("category"),
        "probability": value("probability"),
    }


def rank_actions(
    model: WinModel,
    tables: DealTables,
    *,
    deals: np.ndarray,
    as_of: np.ndarray,
    reference: OutcomeReference,
    levers: tuple[Lever, ...] = LEVERS,
    top_k: int | None = None,
    columns: Columns | None = None,
    matrix: np.ndarray | None = None,
) -> list[DealActions]:
    """Each query's levers that raise its win probability, best expected value first.

    Queries are deals of `tables` (codes) at `as_of` (ns). Every applicable lever's row is
    added (`apply_levers`), and the deals and all their variants whose features changed are
    scored in one prediction per booster (`won` and `won_in_period`). `columns` and
    `matrix`, when given, are the queries' features and their encoding."""
    plan = model.plan
    deals = np.asarray(deals, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    if columns is None:
        columns = feature_columns(tables, deals, as_of, plan=plan, reference=reference)
    if matrix is None:
        matrix = model.encoder_.transform(columns)
    features = {name: np.asarray(columns[name]) for name in plan.feature_names}
    variants = apply_levers(
        tables,
        deals=deals,
        as_of=as_of,
        plan=plan,
        reference=reference,
        levers=levers,
        columns=features,
    )
    n = len(matrix)
    scored = np.flatnonzero(variants.changed.any(axis=1))  # a row changing nothing: no lever
    stacked = np.concatenate([matrix, model.encoder_.transform(variants.columns)[scored]])
    owner = np.concatenate([np.arange(n), variants.query[scored]])
    stage = features["stage"][owner]
    threads = prediction_threads(model, len(stacked), work="raw")
    margins = model.margins(stacked, INTERVAL_TARGETS, threads=threads)
    won = calibrated_won(model, margins["won"], stage=stage)
    in_period = calibrated_in_period(model, margins["won_in_period"], stage=stage, won=won)
    delta = won[n:] - won[owner[n:]]
    delta_in_period = in_period[n:] - in_period[owner[n:]]
    group = np.repeat(
        np.arange(len(variants.added)), [q.size for _, q, _ in variants.added]
    ).astype(np.int64)
    first = np.concatenate([[0], np.cumsum([q.size for _, q, _ in variants.added])])
    amount = features["amount"].astype(np.float64)
    per_deal: list[list[Action]] = [[] for _ in range(n)]
    for i in np.flatnonzero(delta > 0):
        v = int(scored[i])
        k, _, added = variants.added[group[v]]
        deal = int(variants.query[v])
        lever = levers[k]
        per_deal[deal].append(
            Action(
                lever=lever.key,
                text=lever.text,
                delta_probability=float(delta[i]),
                delta_in_period=float(delta_in_period[i]),
                expected_value=float(delta[i] * amount[deal]),
                changes={
                    variants.names[j]: float(variants.columns[variants.names[j]][v])
                    for j in np.flatnonzero(variants.changed[v])
                },
                table=added.table,
                row=_contract_row(added, v - int(first[group[v]]), int(as_of[deal])),
            )
        )
    order = {lever.key: i for i, lever in enumerate(levers)}
    return [
        DealActions(
            probability=float(won[i]),
            in_period=float(in_period[i]),
            actions=tuple(
                sorted(
                    per_deal[i],
                    key=lambda a: (
                        -(a.expected_value if np.isfinite(a.expected_value) else 0.0),
                        -a.delta_probability,
                        order[a.lever],
                    ),
                )[:top_k]
            ),
        )
        for i in range(n)
    ]
