"""Next actions: levers a rep can pull, ranked by what the model says they are worth.

A lever is something a rep can do this week (meet the decision maker, re-engage a silent
deal, send the proposal, ...), written as the change it makes to the deal's features. A
deal's actions are found by re-scoring it with each applicable lever applied, all levers of
all deals in one prediction with the same pipeline as `WinModel.predict` (stage offset
plus main booster, calibration), so an action's reported change in probability is exactly
what scoring the changed deal gives. Levers are ranked by expected value: change in the
won probability times the deal's amount; only levers that raise the probability are
proposed. The changes are not additive: each is measured against the deal as it is.

Levers may only change features of actionable factors (models.factors: engagement and
close-date hygiene); a lever that touches anything else (industry, region, segment, deal
type, the owner, the account's past, the stage) cannot be constructed. Multi-threading
(adding contacts) is not a lever: no feature counts a deal's contacts or their roles other
than the decision maker, so the model cannot say what adding one is worth, and a lever
without a feature would be an invented effect.

What the model learned are associations: deals where a decision maker was met were won
more often, which is not proof that meeting one wins the deal. `EFFECTS_DISCLAIMER` says so
and every answer carries it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from features.catalog import FeatureSpec
from features.config import FeatureConfig
from models.encoding import Columns
from models.explain import calibrated_in_period, calibrated_won, prediction_threads
from models.factors import NonActionableLever, non_actionable, reference_catalog
from models.win import WinModel

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


@dataclass(frozen=True)
class LeverContext:
    """What a lever needs to know about the feature plan."""

    windows: tuple[int, ...]
    open_stages: int

    def window(self, days: int) -> int:
        """The activity window closest to `days`."""
        return min(self.windows, key=lambda w: (abs(w - days), w))


@dataclass(frozen=True)
class Lever:
    """An action, the features it changes and when it applies.

    `applies` and `change` read the deals' numeric features (arrays, one value per deal) and
    may read any feature; `change` returns new values for exactly the features in `touches`,
    which must all belong to actionable factors (checked here and again against the model's
    catalog)."""

    key: str
    text: str  # shown to the rep
    condition: str  # when it applies, in words
    touches: tuple[str, ...]  # feature names; WINDOW stands for every activity window
    applies: Callable[[FeatureValues, LeverContext], np.ndarray] = field(repr=False)
    change: Callable[[FeatureValues, LeverContext], dict[str, np.ndarray]] = field(repr=False)

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


def _logged_activity(
    kind: str, *, decision_maker: bool
) -> tuple[tuple[str, ...], Callable[[FeatureValues, LeverContext], dict[str, np.ndarray]]]:
    """The features a new activity of `kind` logged now changes, and the change: one more in
    every window and in total, the latest activity today (and the same for decision-maker
    contact when it is with the decision maker)."""
    touches: tuple[str, ...] = (
        f"activities_{kind}_{WINDOW}d",
        f"activities_{WINDOW}d",
        "activities_total",
        "days_since_last_activity",
    )
    if decision_maker:
        touches += ("decision_maker_contacts", "days_since_decision_maker_contact")

    def change(values: FeatureValues, context: LeverContext) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for window in context.windows:
            for name in (f"activities_{kind}_{window}d", f"activities_{window}d"):
                out[name] = values[name] + 1.0
        out["activities_total"] = values["activities_total"] + 1.0
        out["days_since_last_activity"] = np.zeros_like(values["activities_total"])
        if decision_maker:
            out["decision_maker_contacts"] = values["decision_maker_contacts"] + 1.0
            out["days_since_decision_maker_contact"] = np.zeros_like(values["activities_total"])
        return out

    return touches, change


def _remaining_stages(values: FeatureValues, context: LeverContext) -> np.ndarray:
    return np.maximum(context.open_stages - values["stage_order"], 0.0)


def _close_date_implausible(values: FeatureValues, context: LeverContext) -> np.ndarray:
    days = values["days_to_close"]
    too_near = days < MIN_DAYS_PER_REMAINING_STAGE * _remaining_stages(values, context)
    return (values["close_date_past"] >= 0.5) | too_near


def _reset_close_date(values: FeatureValues, context: LeverContext) -> dict[str, np.ndarray]:
    """Move the close date (whole days) to two weeks per stage still to go. That is a push,
    and the features say so: one more push and more days pushed. The model judges whether an
    honest date is worth the push."""
    days = values["days_to_close"]
    target = RESET_DAYS_PER_STAGE * (_remaining_stages(values, context) + 1.0)
    pushed = np.ceil(target - days)
    new_days = days + pushed
    return {
        "close_date_pushes": values["close_date_pushes"] + 1.0,
        "close_date_days_pushed": values["close_date_days_pushed"] + pushed,
        "days_to_close": new_days,
        "close_date_past": np.zeros_like(days),
        "close_date_in_quarter": (new_days < values["days_left_in_quarter"]).astype(np.float64),
    }


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


_DM_TOUCHES, _DM_CHANGE = _logged_activity("meeting", decision_maker=True)
_CALL_TOUCHES, _CALL_CHANGE = _logged_activity("call", decision_maker=False)
_MEETING_TOUCHES, _MEETING_CHANGE = _logged_activity("meeting", decision_maker=False)
_DEMO_TOUCHES, _DEMO_CHANGE = _logged_activity("demo", decision_maker=False)
_PROPOSAL_TOUCHES, _PROPOSAL_CHANGE = _logged_activity("proposal", decision_maker=False)

LEVERS: tuple[Lever, ...] = (
    Lever(
        key="meet_decision_maker",
        text="Meet the decision maker: book a meeting with the person who signs.",
        condition=f"no decision-maker contact in the last {DECISION_MAKER_RECENT_DAYS:.0f} days",
        touches=_DM_TOUCHES,
        applies=_no_recent_dm,
        change=_DM_CHANGE,
    ),
    Lever(
        key="re_engage",
        text="Re-engage the deal: call your main contact, it has gone quiet.",
        condition=f"no activity in the last {QUIET_DAYS:.0f} days, or none at all",
        touches=_CALL_TOUCHES,
        applies=_quiet,
        change=_CALL_CHANGE,
    ),
    Lever(
        key="hold_meeting",
        text="Hold a working meeting with the buying team.",
        condition=f"no meeting in the activity window closest to {MEETING_GAP_DAYS} days",
        touches=_MEETING_TOUCHES,
        applies=_none_of("meeting", MEETING_GAP_DAYS),
        change=_MEETING_CHANGE,
    ),
    Lever(
        key="book_demo",
        text="Book a demo for the buying team.",
        condition="no demo in the longest activity window",
        touches=_DEMO_TOUCHES,
        applies=_none_of("demo"),
        change=_DEMO_CHANGE,
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
        change=_PROPOSAL_CHANGE,
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
        touches=(
            "close_date_pushes",
            "close_date_days_pushed",
            "days_to_close",
            "close_date_past",
            "close_date_in_quarter",
        ),
        applies=_close_date_implausible,
        change=_reset_close_date,
    ),
)


@dataclass(frozen=True)
class Action:
    """A lever worth pulling on one deal, and what re-scoring the changed deal gave."""

    lever: str
    text: str
    delta_probability: float  # won probability with the lever - now
    delta_in_period: float  # the same for the in-period probability
    expected_value: float  # delta_probability * amount (NaN when the amount is unknown)
    changes: Mapping[str, float]  # feature -> value with the lever applied


@dataclass(frozen=True)
class DealActions:
    probability: float  # won probability now, from the same pipeline
    in_period: float
    actions: tuple[Action, ...]  # by expected value, best first; only positive deltas
    disclaimer: str = EFFECTS_DISCLAIMER


@dataclass(frozen=True)
class _Bound:
    lever: Lever
    index: Mapping[str, int]  # feature -> matrix column, for the features it changes


_BOUND: dict[tuple[int, int], tuple[object, object, tuple[_Bound, ...]]] = {}


def _bind(
    levers: tuple[Lever, ...],
    catalog: tuple[FeatureSpec, ...],
    names: list[str],
    windows: tuple[int, ...],
) -> tuple[_Bound, ...]:
    """Levers checked against the model's own catalog and mapped to matrix columns; cached
    by the identity of the lever tuple and the plan's catalog (checked once per model)."""
    key = (id(levers), id(catalog))
    hit = _BOUND.get(key)
    if hit is not None and hit[0] is levers and hit[1] is catalog:
        return hit[2]
    column = {name: j for j, name in enumerate(names)}
    bound = []
    for lever in levers:
        check_lever(lever, catalog, windows)
        features = lever.features(windows)
        missing = [name for name in features if name not in column]
        if missing:
            raise NonActionableLever(lever.key, dict.fromkeys(missing, "not a model feature"))
        bound.append(_Bound(lever, {name: column[name] for name in features}))
    _BOUND[key] = (levers, catalog, tuple(bound))
    return tuple(bound)


def rank_actions(
    model: WinModel,
    columns: Columns,
    *,
    levers: tuple[Lever, ...] = LEVERS,
    top_k: int | None = None,
    matrix: np.ndarray | None = None,
) -> list[DealActions]:
    """Each deal's levers that raise its win probability, best expected value first.

    All applicable levers of all deals are re-scored in one prediction per booster (`won`
    and `won_in_period`). `matrix`, when given, is the encoding of `columns`."""
    plan = model.plan
    names = model.encoder_.names
    bound = _bind(levers, plan.catalog, names, plan.config.activity_windows_days)
    context = LeverContext(
        windows=plan.config.activity_windows_days, open_stages=len(plan.stages.open_stages)
    )
    if matrix is None:
        matrix = model.encoder_.transform(columns)
    n = len(matrix)
    categorical = set(model.encoder_.categorical)
    values = {name: matrix[:, j] for j, name in enumerate(names) if name not in categorical}
    applied: list[tuple[_Bound, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
    for item in bound:
        deals = np.flatnonzero(item.lever.applies(values, context))
        if deals.size == 0:
            continue
        new = item.lever.change({name: v[deals] for name, v in values.items()}, context)
        if set(new) != set(item.index):
            raise NonActionableLever(
                item.lever.key,
                dict.fromkeys(sorted(set(new) ^ set(item.index)), "changed but not declared"),
            )
        rows = matrix[deals].copy()
        for name, value in new.items():
            rows[:, item.index[name]] = value
        applied.append((item, deals, rows, new))
    stacked = np.concatenate([matrix, *(rows for _, _, rows, _ in applied)])
    owner = np.concatenate([np.arange(n), *(deals for _, deals, _, _ in applied)])
    stage = np.asarray(columns["stage"], dtype=object)[owner]
    threads = prediction_threads(model, len(stacked), work="raw")
    won = calibrated_won(
        model,
        model.won_.margin(stacked, threads=threads),
        stage=stage,
    )
    in_period = calibrated_in_period(
        model,
        model.in_period_.margin(stacked, threads=threads),
        stage=stage,
        won=won,
    )
    amount = np.asarray(columns["amount"], dtype=np.float64)
    per_deal: list[list[Action]] = [[] for _ in range(n)]
    start = n
    for item, deals, _, new in applied:
        here = slice(start, start + deals.size)
        delta = won[here] - won[deals]
        delta_in_period = in_period[here] - in_period[deals]
        for position in np.flatnonzero(delta > 0):
            deal = int(deals[position])
            per_deal[deal].append(
                Action(
                    lever=item.lever.key,
                    text=item.lever.text,
                    delta_probability=float(delta[position]),
                    delta_in_period=float(delta_in_period[position]),
                    expected_value=float(delta[position] * amount[deal]),
                    changes={name: float(v[position]) for name, v in new.items()},
                )
            )
        start += deals.size
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
