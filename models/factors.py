"""Factors a sales manager understands, which of them a rep can act on, and how a feature's
value reads in a sentence.

The feature catalog (features.catalog) gives every feature a `factor`. Managers read six:

| catalog factor       | manager factor       | actionable |
|----------------------|----------------------|------------|
| stage & momentum     | momentum             | no         |
| timing               | momentum             | no         |
| engagement           | engagement           | yes        |
| close-date hygiene   | close-date hygiene   | yes        |
| deal shape           | deal shape           | no         |
| rep track record     | rep track record     | no         |
| account history      | account history      | no         |

"timing" (days left in the fiscal quarter) joins momentum, not close-date hygiene: it is the
calendar, not the date the rep keeps, and close-date hygiene is actionable, so putting the
calendar there would make the end of the quarter look like something a rep can change.
Actionability is decided here once, by factor; the next-action levers (models.actions) are
checked against it, so industry, region, segment, deal type, the owner, the account's past
or the stage are never proposed as actions.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping

import numpy as np

from features.catalog import Factor, FeatureSpec, feature_catalog
from features.config import DEFAULT_STATIC_ATTRIBUTES, FeatureConfig
from features.deals import StaticAttribute

MANAGER_FACTORS: tuple[str, ...] = (
    "momentum",
    "engagement",
    "close-date hygiene",
    "deal shape",
    "rep track record",
    "account history",
)
MANAGER_FACTOR: Mapping[Factor, str] = {
    "stage & momentum": "momentum",
    "timing": "momentum",
    "engagement": "engagement",
    "close-date hygiene": "close-date hygiene",
    "deal shape": "deal shape",
    "rep track record": "rep track record",
    "account history": "account history",
}
ACTIONABLE_FACTORS: frozenset[Factor] = frozenset({"engagement", "close-date hygiene"})


class NonActionableLever(ValueError):
    """A lever would change a feature a rep cannot act on (or one the catalog does not know)."""

    def __init__(self, lever: str, features: Mapping[str, str]) -> None:
        self.lever = lever
        self.features = dict(features)
        listed = ", ".join(f"{name} ({why})" for name, why in self.features.items())
        super().__init__(
            f"lever {lever!r} touches features that are not actionable: {listed}; only "
            f"features of the factors {sorted(ACTIONABLE_FACTORS)} may be changed by a lever"
        )


def non_actionable(features: tuple[str, ...], catalog: tuple[FeatureSpec, ...]) -> dict[str, str]:
    """Of `features`, those a lever must not touch, each with the reason."""
    factor = {spec.name: spec.factor for spec in catalog}
    out: dict[str, str] = {}
    for name in features:
        if name not in factor:
            out[name] = "not in the feature catalog"
        elif factor[name] not in ACTIONABLE_FACTORS:
            out[name] = f"factor {factor[name]!r}"
    return out


@functools.cache
def reference_catalog() -> tuple[FeatureSpec, ...]:
    """The catalog of the default configuration with the default static attributes: what a
    lever is checked against when it is declared, before any model or export exists."""
    attributes = tuple(
        StaticAttribute(table, column, numeric=column == "employees")
        for table, column in DEFAULT_STATIC_ATTRIBUTES
    )
    return feature_catalog(FeatureConfig(), attributes)


_LAYOUTS: dict[int, tuple[tuple[FeatureSpec, ...], tuple[np.ndarray, tuple[str, ...]]]] = {}


def factor_layout(catalog: tuple[FeatureSpec, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(membership matrix features x manager factors, the factor names).

    Attributions (features in catalog order) times this matrix give the factor totals, so a
    factor total is exactly the sum of its features' attributions. Cached by the catalog's
    identity (a plan's catalog is one object): hashing 50-odd specs on every request would
    cost more than the grouping."""
    hit = _LAYOUTS.get(id(catalog))
    if hit is not None and hit[0] is catalog:
        return hit[1]
    membership = np.zeros((len(catalog), len(MANAGER_FACTORS)))
    for i, spec in enumerate(catalog):
        membership[i, MANAGER_FACTORS.index(MANAGER_FACTOR[spec.factor])] = 1.0
    membership.setflags(write=False)
    _LAYOUTS[id(catalog)] = (catalog, (membership, MANAGER_FACTORS))
    return membership, MANAGER_FACTORS


# --- how a feature's value reads ---------------------------------------------------------

_KIND_NOUN = {
    "call": ("call", "calls"),
    "email": ("email", "emails"),
    "meeting": ("meeting", "meetings"),
    "demo": ("demo", "demos"),
    "proposal": ("proposal sent", "proposals sent"),
    "other": ("other activity", "other activities"),
}
_WINDOWED = re.compile(r"^activities_(?:(?P<kind>[a-z]+)_)?(?P<window>\d+)d$")


def _count(value: float, singular: str, plural: str) -> str:
    n = round(value)
    if n == 0:
        return f"no {plural}"
    return f"{n:,} {singular if n == 1 else plural}"


def _days(value: float) -> str:
    n = round(value)
    return "1 day" if n == 1 else f"{n:,} days"


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _change(value: float, since: str) -> str:
    if abs(value) < 0.005:
        return f"the amount is unchanged {since}"
    return f"the amount is {'up' if value > 0 else 'down'} {_percent(abs(value))} {since}"


def _days_to_close(value: float) -> str:
    if value < 0:
        return f"the close date passed {_days(-value)} ago"
    if value < 1:
        return "the close date is today"
    return f"the close date is {_days(value)} away"


def _last_activity(value: float) -> str:
    if value < 1:
        return "activity logged within the last day"
    return f"no activity logged for {_days(value)}"


def _last_dm(value: float) -> str:
    if value < 1:
        return "a decision maker was contacted within the last day"
    return f"the last decision-maker contact was {_days(value)} ago"


def _pushes(value: float) -> str:
    n = round(value)
    if n == 0:
        return "the close date was never pushed"
    return f"the close date was pushed {'once' if n == 1 else f'{n} times'}"


_NUMERIC_PHRASES: dict[str, Callable[[float], str]] = {
    "stage_order": lambda v: f"the deal is at open stage {round(v)}",
    "stage_probability": lambda v: f"the stage's CRM probability is {v:.0f}%",
    "days_in_stage": lambda v: f"{_days(v)} in the current stage",
    "stage_duration_percentile": lambda v: (
        f"longer in this stage than {_percent(v)} of won deals were"
    ),
    "deal_age_days": lambda v: f"the deal is {_days(v)} old",
    "stage_changes": lambda v: _count(v, "stage change", "stage changes"),
    "stage_regressions": lambda v: _count(v, "move back a stage", "moves back a stage"),
    "stage_skips": lambda v: _count(v, "stage skipped", "stages skipped"),
    "amount": lambda v: f"an amount of {v:,.0f}",
    "amount_change_since_creation": lambda v: _change(v, "since creation"),
    "close_date_pushes": _pushes,
    "close_date_days_pushed": lambda v: (
        "no days added to the close date" if round(v) == 0 else f"{_days(v)} of close-date pushes"
    ),
    "days_to_close": _days_to_close,
    "close_date_past": lambda v: (
        "the close date is already past" if v >= 0.5 else "the close date is not past"
    ),
    "close_date_in_quarter": lambda v: (
        "the close date falls in this quarter"
        if v >= 0.5
        else "the close date falls after this quarter"
    ),
    "days_left_in_quarter": lambda v: f"{_days(v)} left in the quarter",
    "forecast_category_changes": lambda v: _count(
        v, "forecast category change", "forecast category changes"
    ),
    "activities_total": lambda v: _count(v, "activity logged", "activities logged"),
    "days_since_last_activity": _last_activity,
    "decision_maker_contacts": lambda v: _count(
        v, "decision-maker contact", "decision-maker contacts"
    ),
    "days_since_decision_maker_contact": _last_dm,
    "owner_win_rate": lambda v: f"the rep wins {_percent(v)} of closed deals",
    "owner_closed_deals": lambda v: f"the rep has closed {v:,.0f} deals",
    "owner_commit_hit_rate": lambda v: (
        f"the rep's Commit calls are won about {_percent(v)} of the time"
    ),
    "team_commit_hit_rate": lambda v: (
        f"the team's Commit calls are won about {_percent(v)} of the time"
    ),
    "account_won_deals": lambda v: (
        _count(v, "earlier deal won", "earlier deals won") + " with this account"
    ),
    "account_closed_deals": lambda v: (
        _count(v, "earlier deal closed", "earlier deals closed") + " with this account"
    ),
    "account_employees": lambda v: f"the account has {v:,.0f} employees",
}
_MISSING_PHRASES = {
    "days_since_last_activity": "no activity logged at all",
    "days_since_decision_maker_contact": "no decision-maker contact yet",
    "stage_duration_percentile": "no won deals to compare the time in this stage with",
    "amount": "no amount entered",
    "owner_commit_hit_rate": "no Commit deals closed yet to judge the rep's calls by",
    "team_commit_hit_rate": "no Commit deals closed yet to judge the team's calls by",
}
# A feature whose sentence quotes another feature of the same deal beside its value:
# feature -> (the other feature, how the other's value reads in parentheses).
COMPANIONS: Mapping[str, tuple[str, Callable[[float], str]]] = {
    "owner_commit_hit_rate": ("team_commit_hit_rate", lambda v: f"team {_percent(v)}"),
}
_CATEGORY_PHRASES = {
    "stage": "the stage is {}",
    "forecast_category": "the forecast category is {}",
}


def describe(spec: FeatureSpec, value: object, companion: object = None) -> str:
    """The feature's value as a phrase a sales manager reads without a glossary,
    e.g. "no activity logged for 34 days" or "the account's industry is Retail".

    `companion`: for a feature in `COMPANIONS`, the deal's value of the feature it quotes,
    e.g. "the rep's Commit calls are won about 52% of the time (team 71%)"."""
    phrase = _describe(spec, value)
    pair = COMPANIONS.get(spec.name)
    if pair is None or _missing(value) or _missing(companion):
        return phrase
    if not isinstance(companion, int | float | np.number):
        return phrase
    return f"{phrase} ({pair[1](float(companion))})"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _describe(spec: FeatureSpec, value: object) -> str:
    missing = _missing(value)
    name = spec.name
    if name in _CATEGORY_PHRASES:
        return _CATEGORY_PHRASES[name].format("not set" if missing else value)
    if missing:
        return _MISSING_PHRASES.get(name, f"{_label(spec)} is unknown")
    if spec.kind == "categorical" or not isinstance(value, int | float | np.number):
        return f"{_label(spec)} is {value}"
    number = float(value)
    if name in _NUMERIC_PHRASES:
        return _NUMERIC_PHRASES[name](number)
    windowed = _WINDOWED.match(name)
    if windowed:
        kind = windowed["kind"]
        singular, plural = _KIND_NOUN.get(kind, ("activity", "activities"))
        return f"{_count(number, singular, plural)} in the last {windowed['window']} days"
    if name == "amount_change_recent":
        return _change(number, f"over the {spec.window}")
    return f"{_label(spec)} is {number:,.4g}"


def _label(spec: FeatureSpec) -> str:
    """A static attribute's name as words: "account_industry" -> "the account's industry"."""
    name = spec.name
    for prefix, owner in (("account_", "the account's "), ("owner_", "the rep's ")):
        if name.startswith(prefix):
            return owner + name.removeprefix(prefix).replace("_", " ")
    return "the deal's " + name.replace("_", " ")
