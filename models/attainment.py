"""Attainment: the distribution of a rep's or team's closed-won revenue for a fiscal quarter.

Revenue = won to date + the open deals that are won in the period + new business (deals not
yet created that are created and won before the quarter ends). From that distribution come
P(revenue >= quota) with an interval, expected revenue, P10 / P50 / P90 and a gap analysis.

The model
- Open deal i is won in the period with its calibrated probability p_i. Deals move together
  through one shared factor Z ~ N(0, 1) per team-quarter: given Z, deal i is won with
  probability expit(c_i + dependence * Z), independently of the others. The centre c_i is
  chosen so that E[expit(c_i + dependence * Z)] = p_i: the factor spreads the distribution but
  leaves every deal's probability, and so the expected revenue, as calibrated. (Shifting
  logit(p_i) itself would turn a calibrated 10% deal into a 13% one at dependence 0.8 and bias
  expected revenue upward.) `dependence = 0` is independence.
- New business is compound Poisson: a count with rate lambda(team, days left) and amounts
  drawn from the team's past new-business deals (`NewBusinessModel`), independent of Z.

Methods
- Exact where the structure allows: when every uncertain open deal has the same amount and
  there is no new business, revenue is won to date + amount x K with K Poisson-binomial,
  whose PMF is computed by a product tree of polynomials (FFT convolutions). With a shared
  factor the conditional PMFs are mixed over Z on a uniform grid, halved until two successive
  grids agree to 1e-9 in every CDF value. A uniform grid (trapezoid rule) rather than
  Gauss-Hermite: for a big pipeline the conditional CDF is a near-step function of Z, which
  Gauss-Hermite resolves slowly while the trapezoid rule converges geometrically once its
  step is finer than the step's width. When that grid would be too fine for the pipeline's
  size (work beyond _EXACT_MAX_WORK), Monte Carlo is faster and is used instead.
- Otherwise Monte Carlo. Z is stratified (equal-probability strata, two independent draws of
  Z per stratum, a block of 32 revenue draws per Z), which removes most of the variance the
  shared factor would add; deals are drawn from 32-bit random integers compared with integer
  thresholds, one block at a time (memory ~ 8 bytes x 32 x deals x scenarios). Draws are
  added in rounds until the standard error of P(attain), estimated from the stratified
  design, is below 0.45 percentage points (the promise is 0.5). Fixed seeding: the same
  inputs and seed give the same result. Expected revenue is exact on both paths (won + sum
  of amount x probability + expected new business).

The interval on P(attain): [P_low - 1.96 SE_low, P_high + 1.96 SE_high], clipped to [0, 1],
where P_low and P_high are P(attain) with every deal at the lower and upper end of its
probability interval (a systematic model error: all deals wrong in the same direction) and
SE the Monte-Carlo standard error (0 when exact). The three are computed with the same
random numbers, so P_low <= P(attain) <= P_high draw by draw. Without probability intervals
the interval is the Monte-Carlo error alone (a single point when exact).

Gap analysis (the seeds' target decomposition): remaining quota = max(quota - won, 0);
coverage = pipeline closing in the period (the open deals whose close date is before the
period ends, overdue included; by default every open deal) / remaining quota, capped at
COVERAGE_CAP (also its value once the quota is met, when the ratio would be infinite): a
deal expected to close after the quarter covers none of it (models.team_quarter gives the
callers one rule); pipeline needed = remaining quota / win rate;
deals needed = remaining quota / (average deal size x win rate). The status thresholds are
GREEN_AT and RED_BELOW below.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy.interpolate import CubicHermiteSpline
from scipy.special import expit, logit, ndtri

from features.artifacts import ArtifactReader, ArtifactWriter, arrays_from_data, arrays_to_data
from features.deals import DAY_NS
from features.fiscal import quarter_bounds

logger = logging.getLogger(__name__)

# Status thresholds on P(attain), in one place. Green from 70%: the quota is likely enough for
# a manager to plan on it, and stays more likely than not even if the model is 10-20 points
# optimistic. Red below 40%: a miss is clearly more likely than a hit, even if the model is
# 10 points pessimistic, so the gap needs action now (new pipeline, deals pulled in). Yellow
# in between: reachable, but only if the open deals go well.
GREEN_AT = 0.70
RED_BELOW = 0.40

# Coverage reported at most this many times the remaining quota, and exactly this once the
# quota is met (the ratio would be infinite); beyond ~100x the number carries no information.
COVERAGE_CAP = 100.0

# Monte Carlo: the promise is a standard error of P(attain) under 0.5 points; rounds aim at
# 0.45 so that the noise in the estimate of the standard error does not break the promise.
MC_STANDARD_ERROR_PROMISE = 0.005
_MC_TARGET_SE = 0.0045
_MC_FIRST_ROUND = 8192
_MC_MAX_DRAWS = 1 << 19
_BLOCK = 32  # revenue draws sharing one value of Z (an even number: two deals per 64 bits)

# Exact path: Z grid on [-8.5, 8.5] (mass outside: 2e-17), halved from a step of 0.5 until
# successive CDFs agree to _EXACT_TOLERANCE; beyond _EXACT_MAX_WORK (grid nodes x deals) the
# Monte-Carlo path is faster.
_Z_RANGE = 8.5
_EXACT_TOLERANCE = 1e-9
_EXACT_MAX_NODES = 4353
_EXACT_MAX_WORK = 1_500_000
_NODE_BATCH = 64

MAX_DEPENDENCE = 5.0
DEFAULT_DEPENDENCE_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(31))


class AttainmentInputError(ValueError):
    """An input to the attainment model is invalid; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


# --------------------------------------------------------------------------- new business


@dataclass(frozen=True, eq=False)
class NewBusinessModel:
    """Revenue from deals not yet created that are created and won before the quarter ends.

    For each team, `rates[team][k]` is the mean number of deals created with at most
    `days_grid[k]` days left in a quarter and won in that same quarter, over the team's
    complete past quarters, shrunk toward the all-team rate with `prior_quarters` pseudo
    quarters (a team with that many quarters sits halfway). Amounts are the empirical
    distribution of those deals' amounts: the team's deals created with at most the queried
    days left when it has `min_amounts` of them, else all teams' such deals, else the
    `min_amounts` all-team deals created closest to the quarter's end. Unseen teams get the
    all-team rate and amounts.
    """

    days_grid: np.ndarray
    global_rate: np.ndarray
    rates: Mapping[str, np.ndarray]
    quarters: Mapping[str, int]
    # New-business deals per team (and "" for all teams), sorted by days left at creation.
    created_days_left: Mapping[str, np.ndarray]
    deal_amounts: Mapping[str, np.ndarray]
    as_of: pd.Timestamp
    fiscal_year_start_month: int = 1
    prior_quarters: float = 2.0
    min_amounts: int = 20

    def to_data(self, out: ArtifactWriter, key: str) -> dict[str, Any]:
        return {
            "days_grid": out.array(f"{key}.days_grid", self.days_grid),
            "global_rate": out.array(f"{key}.global_rate", self.global_rate),
            "rates": arrays_to_data(self.rates, out, f"{key}.rates"),
            "quarters": {str(team): int(n) for team, n in self.quarters.items()},
            "created_days_left": arrays_to_data(self.created_days_left, out, f"{key}.created"),
            "deal_amounts": arrays_to_data(self.deal_amounts, out, f"{key}.amounts"),
            "as_of_ns": int(self.as_of.value),
            "as_of_tz": str(self.as_of.tz),
            "fiscal_year_start_month": self.fiscal_year_start_month,
            "prior_quarters": self.prior_quarters,
            "min_amounts": self.min_amounts,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: ArtifactReader) -> NewBusinessModel:
        return cls(
            days_grid=source.array(data["days_grid"]),
            global_rate=source.array(data["global_rate"]),
            rates=arrays_from_data(data["rates"], source),
            quarters={str(team): int(n) for team, n in data["quarters"].items()},
            created_days_left=arrays_from_data(data["created_days_left"], source),
            deal_amounts=arrays_from_data(data["deal_amounts"], source),
            as_of=pd.Timestamp(int(data["as_of_ns"]), tz=data["as_of_tz"]),
            fiscal_year_start_month=int(data["fiscal_year_start_month"]),
            prior_quarters=float(data["prior_quarters"]),
            min_amounts=int(data["min_amounts"]),
        )

    @classmethod
    def fit(
        cls,
        closed_deals: pd.DataFrame,
        *,
        fiscal_year_start_month: int = 1,
        as_of: pd.Timestamp,
        prior_quarters: float = 2.0,
        min_amounts: int = 20,
        step_days: int = 7,
    ) -> NewBusinessModel:
        """Learn rates and amounts from deals closed before `as_of` (never later rows).

        `closed_deals` has columns team, created_at, close_time (tz-aware UTC), won (bool) and
        amount. Only fiscal quarters that ended by `as_of` are used: in the current quarter a
        deal created late may still close after `as_of`, so its counts would be too low. A
        team is observed from the quarter of its first deal's creation; quarters without any
        new business count as zeros.
        """
        if not 1 <= fiscal_year_start_month <= 12:
            raise AttainmentInputError("fiscal_year_start_month", "must be in 1..12")
        if prior_quarters < 0 or not math.isfinite(prior_quarters):
            raise AttainmentInputError("prior_quarters", "must be a finite number >= 0")
        if min_amounts < 1:
            raise AttainmentInputError("min_amounts", "must be at least 1")
        if step_days < 1:
            raise AttainmentInputError("step_days", "must be at least 1")
        cutoff = _utc_timestamp(as_of, "as_of")
        deals = _closed_deals_before(closed_deals, cutoff)
        start = fiscal_year_start_month

        cutoff_ns = np.array([cutoff.value], dtype=np.int64)
        current_start, _ = quarter_bounds(cutoff_ns, start_month=start)
        created_ns = deals["created_at"].to_numpy(dtype=np.int64)
        close_ns = deals["close_time"].to_numpy(dtype=np.int64)
        quarter_start, quarter_end = quarter_bounds(created_ns, start_month=start)
        is_new_business = (
            deals["won"].to_numpy(dtype=bool)
            & (close_ns < quarter_end)
            & (quarter_end <= cutoff_ns[0])
        )
        teams = deals["team"].to_numpy(dtype=object)
        first_quarter = pd.Series(quarter_start).groupby(teams).min()
        quarters = {
            str(team): max(_quarters_between(int(first), int(current_start[0])), 0)
            for team, first in first_quarter.items()
        }

        days_left = (quarter_end - created_ns) / DAY_NS
        # Weekly points and the longest quarter (92 days), so a quarter's start is on the grid.
        grid = np.unique(np.append(np.arange(0.0, 92.0, float(step_days)), 92.0))
        created_days_left: dict[str, np.ndarray] = {}
        deal_amounts: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for team in quarters:
            mask = is_new_business & (teams == team)
            order = np.argsort(days_left[mask], kind="stable")
            created_days_left[team] = days_left[mask][order]
            deal_amounts[team] = deals["amount"].to_numpy(dtype=np.float64)[mask][order]
            counts[team] = np.searchsorted(created_days_left[team], grid, side="right")
        order = np.argsort(days_left[is_new_business], kind="stable")
        created_days_left[""] = days_left[is_new_business][order]
        deal_amounts[""] = deals["amount"].to_numpy(dtype=np.float64)[is_new_business][order]

        total_quarters = sum(quarters.values())
        if total_quarters > 0:
            global_rate = sum(counts.values(), np.zeros(grid.size)) / total_quarters
        else:
            global_rate = np.zeros(grid.size)
        rates = {
            team: (counts[team] + prior_quarters * global_rate) / (q + prior_quarters)
            if q + prior_quarters > 0
            else global_rate.copy()
            for team, q in quarters.items()
        }
        logger.debug(
            "new-business model: %d teams, %d team-quarters, %d deals",
            len(quarters),
            total_quarters,
            created_days_left[""].size,
        )
        return cls(
            days_grid=grid,
            global_rate=global_rate,
            rates=rates,
            quarters=quarters,
            created_days_left=created_days_left,
            deal_amounts=deal_amounts,
            as_of=cutoff,
            fiscal_year_start_month=start,
            prior_quarters=float(prior_quarters),
            min_amounts=int(min_amounts),
        )

    @property
    def teams(self) -> list[str]:
        """Teams seen in the history (others get the all-team rates)."""
        return sorted(self.quarters)

    def rate(self, team: str, days_left: float) -> float:
        """Expected number of new deals created from now and won this quarter."""
        days = _check_days_left(days_left)
        rates = self.rates.get(str(team), self.global_rate)
        return float(np.interp(days, self.days_grid, rates))

    def amounts(self, team: str, days_left: float) -> np.ndarray:
        """The empirical amounts of past new-business deals that match `days_left`."""
        days = _check_days_left(days_left)
        team_days = self.created_days_left.get(str(team))
        if team_days is not None:
            n = int(np.searchsorted(team_days, days, side="right"))
            if n >= self.min_amounts:
                return self.deal_amounts[str(team)][:n]
        all_days = self.created_days_left[""]
        n = int(np.searchsorted(all_days, days, side="right"))
        return self.deal_amounts[""][: max(n, min(self.min_amounts, all_days.size))]

    def expected(self, team: str, days_left: float) -> float:
        """Expected new-business revenue: rate x mean amount."""
        rate = self.rate(team, days_left)
        pool = self.amounts(team, days_left)
        return float(rate * pool.mean()) if rate > 0 and pool.size else 0.0

    def sample(
        self, team: str, days_left: float, *, size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """`size` draws of new-business revenue: a Poisson count of resampled amounts."""
        rate = self.rate(team, days_left)
        pool = self.amounts(team, days_left)
        if rate <= 0 or pool.size == 0:
            return np.zeros(size)
        counts = rng.poisson(rate, size)
        picks = pool[rng.integers(0, pool.size, int(counts.sum()))]
        return np.bincount(np.repeat(np.arange(size), counts), weights=picks, minlength=size)


def _utc_timestamp(value: Any, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise AttainmentInputError(name, f"not a time: {value!r}") from error
    if stamp is pd.NaT:
        raise AttainmentInputError(name, "is missing (NaT)")
    if stamp.tzinfo is None:
        raise AttainmentInputError(name, "must be timezone-aware (UTC)")
    return stamp.tz_convert("UTC")


def _closed_deals_before(closed_deals: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Validated columns of the deals closed strictly before `cutoff`, times as int64 ns."""
    required = ["team", "created_at", "close_time", "won", "amount"]
    missing = [c for c in required if c not in closed_deals.columns]
    if missing:
        raise AttainmentInputError("closed_deals", f"missing columns {missing}")
    times = {}
    for column in ("created_at", "close_time"):
        values = closed_deals[column]
        if not isinstance(values.dtype, pd.DatetimeTZDtype):
            raise AttainmentInputError(
                f"closed_deals.{column}", f"must be tz-aware datetimes, got {values.dtype}"
            )
        times[column] = pd.DatetimeIndex(values).tz_convert("UTC").as_unit("ns")
    close = times["close_time"]
    before = ~np.asarray(close.isna()) & np.asarray(close < cutoff)
    frame = pd.DataFrame(
        {
            "team": closed_deals["team"].astype(str).to_numpy()[before],
            "created_at": times["created_at"].asi8[before],
            "close_time": times["close_time"].asi8[before],
            "won": closed_deals["won"].to_numpy()[before],
            "amount": closed_deals["amount"].to_numpy()[before],
        }
    )
    if times["created_at"][before].isna().any():
        raise AttainmentInputError("closed_deals.created_at", "missing for a closed deal")
    try:
        won = frame["won"].astype(bool)
        amount = frame["amount"].astype(np.float64)
    except (TypeError, ValueError) as error:
        raise AttainmentInputError(
            "closed_deals", f"won/amount not boolean/numeric: {error}"
        ) from error
    if frame["won"].isna().any():
        raise AttainmentInputError("closed_deals.won", "missing for a closed deal")
    bad = ~np.isfinite(amount.to_numpy()) | (amount.to_numpy() < 0)
    if bad.any():
        raise AttainmentInputError(
            "closed_deals.amount", f"{int(bad.sum())} values are negative or not finite"
        )
    if (frame["created_at"] > frame["close_time"]).any():
        raise AttainmentInputError("closed_deals", "a deal closes before it is created")
    return frame.assign(won=won, amount=amount)


def _quarters_between(first_start_ns: int, current_start_ns: int) -> int:
    """Number of whole fiscal quarters from `first_start` up to (not including) `current_start`."""
    months = np.array([first_start_ns, current_start_ns], dtype="datetime64[ns]").astype(
        "datetime64[M]"
    )
    return int((months[1] - months[0]).astype(np.int64)) // 3


def _check_days_left(days_left: float) -> float:
    days = float(days_left)
    if not math.isfinite(days) or days < 0:
        raise AttainmentInputError("days_left", f"must be a finite number >= 0, got {days_left}")
    return days


# --------------------------------------------------------------------------- results


Status = Literal["green", "yellow", "red"]


@dataclass(frozen=True)
class AttainmentResult:
    """P(attain) with its interval, the revenue distribution and the gap analysis.

    `standard_error` is the Monte-Carlo standard error of `p_attain` (0 when exact) and
    `draws` the number of Monte-Carlo draws (0 when exact).
    """

    p_attain: float
    p_attain_low: float
    p_attain_high: float
    expected_revenue: float
    p10: float
    p50: float
    p90: float
    won_to_date: float
    quota: float
    remaining_quota: float
    open_pipeline: float
    coverage: float
    pipeline_needed: float
    deals_needed: float
    status: Status
    status_reason: str
    method: str
    standard_error: float = 0.0
    draws: int = 0
    # The open deals closing before the period ends (overdue included), what `coverage`
    # divides; NaN on results made before it was kept.
    pipeline_in_period: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class TeamQuarter:
    """One past team-quarter seen at one time: the inputs of a forecast and what happened.

    `actual_revenue` is the closed-won revenue of the quarter, including new business when
    `new_business` (model, team, days left) is given.
    """

    probabilities: np.ndarray
    amounts: np.ndarray
    won_to_date: float
    actual_revenue: float
    new_business: tuple[NewBusinessModel, str, float] | None = None
    # The forecast's probability interval, carried with the team-quarter for callers that
    # report it; the fit uses the point probabilities, as the P10-P90 interval does.
    probability_low: np.ndarray | None = None
    probability_high: np.ndarray | None = None


# --------------------------------------------------------------------------- validation


def _vector(values: Any, name: str, *, size: int | None = None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise AttainmentInputError(name, f"not numeric: {error}") from error
    if array.ndim != 1:
        raise AttainmentInputError(name, f"must be one-dimensional, got shape {array.shape}")
    if size is not None and array.size != size:
        raise AttainmentInputError(name, f"has {array.size} values, expected {size}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise AttainmentInputError(name, f"not finite at index {int(bad[0])}: {array[bad[0]]}")
    return array


def _probabilities(values: Any, name: str, *, size: int | None = None) -> np.ndarray:
    array = _vector(values, name, size=size)
    bad = np.flatnonzero((array < 0) | (array > 1))
    if bad.size:
        raise AttainmentInputError(name, f"outside [0, 1] at index {int(bad[0])}: {array[bad[0]]}")
    return array


def _number(value: Any, name: str, *, low: float, low_open: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise AttainmentInputError(name, f"not a number: {value!r}") from error
    if not math.isfinite(number):
        raise AttainmentInputError(name, f"must be finite, got {value}")
    if number < low or (low_open and number == low):
        sign = ">" if low_open else ">="
        raise AttainmentInputError(name, f"must be {sign} {low}, got {value}")
    return number


def _dependence(value: Any) -> float:
    number = _number(value, "dependence", low=0.0)
    if number > MAX_DEPENDENCE:
        raise AttainmentInputError(
            "dependence", f"must be at most {MAX_DEPENDENCE} (a logit shift SD), got {value}"
        )
    return number


def _new_business(value: Any) -> tuple[NewBusinessModel, str, float] | None:
    if value is None:
        return None
    if not (isinstance(value, tuple) and len(value) == 3):
        raise AttainmentInputError("new_business", "must be (model, team, days_left)")
    model, team, days_left = value
    if not isinstance(model, NewBusinessModel):
        raise AttainmentInputError("new_business", f"not a NewBusinessModel: {type(model)}")
    return model, str(team), _check_days_left(days_left)


# --------------------------------------------------------------------------- the distribution


def _z_nodes(dependence: float) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes and weights of E[f(Z)] for f(z) = expit(c + dependence * z).

    expit has poles at imaginary distance pi / dependence from the real line, so a step of
    0.5 / dependence keeps the trapezoid error near exp(-2 pi^2 / 0.5) ~ 1e-17. The range
    grows with the dependence: for a rare deal the integrand is a normal density centred at
    Z = dependence.
    """
    step = min(0.25, 0.5 / dependence) if dependence > 0 else 0.25
    reach = _Z_RANGE + dependence
    z = np.arange(-reach, reach + step / 2, step)
    weights = np.exp(-0.5 * z**2)
    return z, weights / weights.sum()


@functools.lru_cache(maxsize=64)
def _centre_table(dependence: float) -> CubicHermiteSpline:
    """c as a function of t = logit(p) <= 0, with E[expit(c + dependence * Z)] = p.

    Newton's method on logit(E[...]) - t at 2001 points of [-40, 0], to 1e-13; a cubic
    Hermite spline through them (with the exact slope dc/dt) is then accurate to ~1e-12.
    Cached: a service uses one fitted dependence for every request.
    """
    z, weights = _z_nodes(dependence)
    t = np.linspace(-40.0, 0.0, 2001)
    c = t * np.sqrt(1.0 + np.pi * dependence**2 / 8.0)
    for _ in range(100):
        q = expit(c[:, None] + dependence * z[None, :])
        mean = q @ weights
        slope = (q * (1.0 - q)) @ weights
        step = (logit(mean) - t) * mean * (1.0 - mean) / slope
        c = c - step
        if np.max(np.abs(step)) < 1e-13:
            break
    q = expit(c[:, None] + dependence * z[None, :])
    mean = q @ weights
    return CubicHermiteSpline(t, c, mean * (1.0 - mean) / ((q * (1.0 - q)) @ weights))


def _logit_centres(p: np.ndarray, dependence: float) -> np.ndarray:
    """Centres c with E[expit(c + dependence * Z)] = p, for p in (0, 1).

    Solved for min(p, 1 - p) and mirrored, which keeps the near-1 side accurate. Below
    p = 4e-18 the tail form E[expit(c + sZ)] ~ exp(c + s^2 / 2) gives c = logit(p) - s^2 / 2.
    """
    p = np.asarray(p, dtype=np.float64)
    target = logit(np.minimum(p, 1.0 - p))
    if dependence == 0:
        centre = target
    else:
        inside = target >= -40.0
        centre = target - 0.5 * dependence**2
        centre[inside] = _centre_table(float(dependence))(target[inside])
    return np.where(p > 0.5, -centre, centre)


def _poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """PMF of the number of successes for each row of `p` (rows x deals -> rows x deals+1).

    A product tree of the polynomials (1 - p_i + p_i x): pairs are multiplied level by level,
    directly while short and by FFT once long, so n deals cost O(n log^2 n) per row.
    """
    rows, n = p.shape
    polys = np.stack([1.0 - p, p], axis=-1)
    while polys.shape[1] > 1:
        if polys.shape[1] % 2:
            one = np.zeros((rows, 1, polys.shape[2]))
            one[:, :, 0] = 1.0
            polys = np.concatenate([polys, one], axis=1)
        left, right = polys[:, 0::2], polys[:, 1::2]
        length = polys.shape[2]
        if length <= 16:
            out = np.zeros((*left.shape[:2], 2 * length - 1))
            for j in range(length):
                out[..., j : j + length] += left * right[..., j : j + 1]
        else:
            size = sp_fft.next_fast_len(2 * length - 1, real=True)
            product = sp_fft.rfft(left, size, axis=-1) * sp_fft.rfft(right, size, axis=-1)
            out = sp_fft.irfft(product, size, axis=-1)[..., : 2 * length - 1]
        polys = out[..., : n + 1]
    pmf = np.zeros((rows, n + 1))
    width = min(polys.shape[2], n + 1)
    pmf[:, :width] = np.clip(polys[:, 0, :width], 0.0, None)
    return pmf / pmf.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class _Scenario:
    """One setting of the open deals: centres of the uncertain deals and the sure revenue."""

    probabilities: np.ndarray  # of the uncertain deals (0 < p < 1, amount > 0)
    centres: np.ndarray  # their logit centres
    uncertain: np.ndarray  # boolean mask over deals
    sure_revenue: float  # won to date + amounts of deals with p = 1
    dependence: float


def _scenario(
    p: np.ndarray, amounts: np.ndarray, *, won_to_date: float, dependence: float
) -> _Scenario:
    uncertain = (p > 0) & (p < 1) & (amounts > 0)
    sure = won_to_date + float(amounts[(p >= 1) & (amounts > 0)].sum())
    return _Scenario(
        p[uncertain], _logit_centres(p[uncertain], dependence), uncertain, sure, dependence
    )


def _exact_pmf(scenario: _Scenario) -> tuple[np.ndarray, bool]:
    """PMF of the number of uncertain deals won, mixed over Z; and whether it converged."""
    n = scenario.centres.size
    if n == 0:
        return np.ones(1), True
    if scenario.dependence == 0:
        return _poisson_binomial_pmf(scenario.probabilities[None, :])[0], True

    def mixture(z: np.ndarray) -> np.ndarray:
        total = np.zeros(n + 1)
        for first in range(0, z.size, _NODE_BATCH):
            zs = z[first : first + _NODE_BATCH]
            p = expit(scenario.centres[None, :] + scenario.dependence * zs[:, None])
            weights = np.exp(-0.5 * zs**2)
            total += weights @ _poisson_binomial_pmf(p)
        return total

    step = 0.5
    z = np.arange(-_Z_RANGE, _Z_RANGE + step / 2, step)
    weight_sum = float(np.exp(-0.5 * z**2).sum())
    mass = mixture(z)
    pmf = mass / weight_sum
    while z.size < _EXACT_MAX_NODES:
        mid = z[:-1] + step / 2
        mass = mass + mixture(mid)
        weight_sum += float(np.exp(-0.5 * mid**2).sum())
        z = np.sort(np.concatenate([z, mid]))
        step /= 2
        finer = mass / weight_sum
        change = float(np.max(np.abs(np.cumsum(finer) - np.cumsum(pmf))))
        pmf = finer
        if change < _EXACT_TOLERANCE:
            return pmf, True
    return pmf, False


def _exact_work(p: np.ndarray, dependence: float) -> float:
    """Grid nodes x deals the exact path would need: the step must resolve the width in Z,
    1 / (dependence x sd of K), of the conditional CDF's rise."""
    if dependence == 0:
        return float(p.size)
    sd = math.sqrt(float((p * (1 - p)).sum()) + 1.0)
    step = min(0.5, 1.0 / (4.0 * dependence * sd))
    return 2 * _Z_RANGE / step * p.size


def _inverse_cdf(values: np.ndarray, cdf: np.ndarray, q: float) -> float:
    """Smallest value whose CDF reaches q (the `inverted_cdf` quantile)."""
    index = int(np.searchsorted(cdf, q - 1e-12, side="left"))
    return float(values[min(index, values.size - 1)])


@dataclass(frozen=True)
class _Distribution:
    p_attain: np.ndarray  # per scenario
    standard_error: np.ndarray  # per scenario
    quantiles: np.ndarray  # P10, P50, P90 of scenario 0
    draws: int  # 0 when exact


def _exact_distribution(
    scenarios: Sequence[_Scenario], amount: float, *, quota: float
) -> _Distribution | None:
    """The exact path, or None when a Z grid did not converge within the node budget."""
    p_attain, quantiles = [], np.zeros(3)
    for index, scenario in enumerate(scenarios):
        pmf, converged = _exact_pmf(scenario)
        if not converged:
            return None
        revenue = scenario.sure_revenue + amount * np.arange(pmf.size)
        # The upper tail summed from the top keeps small probabilities exact.
        p_attain.append(float(pmf[revenue >= quota][::-1].sum()))
        cdf = np.cumsum(pmf)
        if index == 0:
            quantiles = np.array([_inverse_cdf(revenue, cdf, q) for q in (0.1, 0.5, 0.9)])
    return _Distribution(np.clip(p_attain, 0.0, 1.0), np.zeros(len(scenarios)), quantiles, 0)


def _monte_carlo_round(
    scenarios: Sequence[_Scenario],
    amounts: np.ndarray,
    *,
    new_business: tuple[NewBusinessModel, str, float] | None,
    draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Revenue draws (scenarios x draws) of one stratified round.

    Draws come in blocks of _BLOCK sharing one Z; blocks 2h and 2h+1 take independent Z
    from stratum h of K equal-probability strata. Every scenario uses the same random
    numbers (common random numbers), so scenarios compare draw by draw.
    """
    strata = draws // (2 * _BLOCK)
    u = rng.random((strata, 2))
    z = ndtri((np.arange(strata)[:, None] + u) / strata).ravel()
    extra = (
        new_business[0].sample(new_business[1], new_business[2], size=draws, rng=rng)
        if new_business is not None
        else np.zeros(draws)
    )
    revenue = np.empty((len(scenarios), draws))
    for s, scenario in enumerate(scenarios):
        revenue[s] = scenario.sure_revenue + extra
    # Scenarios may differ in which deals are uncertain; draw for the union, zero the rest.
    union = np.zeros(amounts.size, dtype=bool)
    for scenario in scenarios:
        union |= scenario.uncertain
    n = int(union.sum())
    if n == 0:
        return revenue
    union_amounts = amounts[union]
    centres = np.full((len(scenarios), n), -np.inf)
    fixed = np.zeros((len(scenarios), n))
    for s, scenario in enumerate(scenarios):
        centres[s, scenario.uncertain[union]] = scenario.centres
        fixed[s, scenario.uncertain[union]] = scenario.probabilities
    dependence = np.array([scenario.dependence for scenario in scenarios])[:, None]
    independent = dependence == 0
    full = 4294967296.0
    for block in range(2 * strata):
        p = np.where(independent, fixed, expit(centres + dependence * z[block]))
        thresholds = np.minimum(np.floor(p * full), full - 1).astype(np.uint32)
        u32 = rng.bit_generator.random_raw(_BLOCK * n // 2).view(np.uint32).reshape(_BLOCK, n)
        won = u32[None, :, :] < thresholds[:, None, :]
        sums = won.reshape(-1, n).astype(np.float64) @ union_amounts
        revenue[:, block * _BLOCK : (block + 1) * _BLOCK] += sums.reshape(len(scenarios), _BLOCK)
    return revenue


def _stratified_estimate(hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the mean of indicators (scenarios x draws) of one round."""
    blocks = hit.reshape(hit.shape[0], -1, 2, _BLOCK).mean(axis=-1)
    strata = blocks.shape[1]
    variance = ((blocks[:, :, 0] - blocks[:, :, 1]) ** 2 / 4.0).sum(axis=1) / strata**2
    return hit.mean(axis=1), variance


def _round_draws(draws: float) -> int:
    unit = 2 * _BLOCK
    return max(2 * unit, math.ceil(draws / unit) * unit)


def _monte_carlo_distribution(
    scenarios: Sequence[_Scenario],
    amounts: np.ndarray,
    *,
    quota: float,
    new_business: tuple[NewBusinessModel, str, float] | None,
    draws: int | None,
    seed: int,
) -> _Distribution:
    """Rounds of stratified draws until P(attain)'s standard error is under the target."""
    seeds = np.random.SeedSequence(seed)
    pieces: list[np.ndarray] = []
    weighted_means = np.zeros(len(scenarios))
    weighted_vars = np.zeros(len(scenarios))
    total = 0
    planned = _round_draws(draws) if draws is not None else _MC_FIRST_ROUND
    while True:
        rng = np.random.Generator(np.random.PCG64(seeds.spawn(1)[0]))
        revenue = _monte_carlo_round(
            scenarios, amounts, new_business=new_business, draws=planned, rng=rng
        )
        mean, variance = _stratified_estimate(revenue >= quota)
        pieces.append(revenue[0])
        weighted_means = weighted_means + planned * mean
        weighted_vars = weighted_vars + planned**2 * variance
        total += planned
        standard_error = np.sqrt(weighted_vars) / total
        if draws is not None or standard_error[0] < _MC_TARGET_SE or total >= _MC_MAX_DRAWS:
            break
        needed = total * (standard_error[0] / _MC_TARGET_SE) ** 2 * 1.1
        planned = _round_draws(min(needed, _MC_MAX_DRAWS) - total)
    if standard_error[0] >= MC_STANDARD_ERROR_PROMISE and draws is None:
        logger.warning(
            "attainment: standard error %.2f pp after %d draws", 100 * standard_error[0], total
        )
    samples = np.concatenate(pieces)
    quantiles = np.quantile(samples, [0.1, 0.5, 0.9], method="inverted_cdf")
    return _Distribution(
        np.clip(weighted_means / total, 0.0, 1.0), standard_error, quantiles, total
    )


# --------------------------------------------------------------------------- the API


def simulate_attainment(
    *,
    quota: float,
    won_to_date: float,
    probabilities: np.ndarray,
    amounts: np.ndarray,
    probability_low: np.ndarray | None = None,
    probability_high: np.ndarray | None = None,
    new_business: tuple[NewBusinessModel, str, float] | None = None,
    dependence: float = 0.0,
    win_rate: float | None = None,
    average_deal_size: float | None = None,
    draws: int | None = None,
    seed: int = 0,
    closes_in_period: np.ndarray | None = None,
) -> AttainmentResult:
    """The distribution of closed-won revenue this quarter against `quota` (see the module).

    - `probabilities`, `amounts`: the open deals' in-period win probabilities and amounts;
      `probability_low` / `probability_high` their interval (low <= p <= high), used for the
      interval on P(attain).
    - `new_business`: (model, team, days left in the quarter) adds deals not yet created.
    - `dependence`: SD of the shared factor's shift on every deal's logit (`fit_dependence`).
    - `win_rate`, `average_deal_size`: historical values for the gap analysis; by default the
      open pipeline's amount-weighted probability and mean amount.
    - `draws`: a fixed number of Monte-Carlo draws (rounded up to a multiple of 64) instead
      of drawing until the standard error is under 0.45 points; the exact path ignores it.
    - `closes_in_period`: per deal, whether its close date is before the period ends
      (overdue included): the pipeline coverage counts; by default every deal.
    """
    quota_value = _number(quota, "quota", low=0.0, low_open=True)
    won = _number(won_to_date, "won_to_date", low=0.0)
    p = _probabilities(probabilities, "probabilities")
    amount = _vector(amounts, "amounts", size=p.size)
    negative = np.flatnonzero(amount < 0)
    if negative.size:
        index = int(negative[0])
        raise AttainmentInputError("amounts", f"negative at index {index}: {amount[index]}")
    low = p if probability_low is None else _probabilities(probability_low, "probability_low")
    high = p if probability_high is None else _probabilities(probability_high, "probability_high")
    if low.size != p.size:
        raise AttainmentInputError("probability_low", f"has {low.size} values, expected {p.size}")
    if high.size != p.size:
        raise AttainmentInputError("probability_high", f"has {high.size} values, expected {p.size}")
    for name, wrong in (("probability_low", low > p), ("probability_high", high < p)):
        if wrong.any():
            index = int(np.flatnonzero(wrong)[0])
            raise AttainmentInputError(
                name, f"on the wrong side of the probability at index {index}"
            )
    shared = _dependence(dependence)
    business = _new_business(new_business)
    if win_rate is not None:
        win_rate = _number(win_rate, "win_rate", low=0.0, low_open=True)
        if win_rate > 1:
            raise AttainmentInputError("win_rate", f"must be at most 1, got {win_rate}")
    if average_deal_size is not None:
        average_deal_size = _number(average_deal_size, "average_deal_size", low=0.0, low_open=True)
    if draws is not None and (isinstance(draws, bool) or int(draws) != draws or draws < 1):
        raise AttainmentInputError("draws", f"must be a positive integer, got {draws}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise AttainmentInputError("seed", f"must be a non-negative integer, got {seed}")
    if closes_in_period is None:
        in_period = np.ones(p.size, dtype=bool)
    else:
        in_period = np.asarray(closes_in_period)
        if in_period.dtype != np.bool_ or in_period.shape != p.shape:
            raise AttainmentInputError(
                "closes_in_period",
                f"must be {p.size} booleans, got {in_period.dtype} of shape {in_period.shape}",
            )

    with_interval = probability_low is not None or probability_high is not None
    scenarios = [
        _scenario(q, amount, won_to_date=won, dependence=shared)
        for q in ((p, low, high) if with_interval else (p,))
    ]
    distribution = _distribution(
        scenarios, amount, quota=quota_value, new_business=business, draws=draws, seed=seed
    )
    nb_expected = business[0].expected(business[1], business[2]) if business else 0.0
    expected_revenue = won + float(amount @ p) + nb_expected
    return _result(
        distribution,
        quota=quota_value,
        won=won,
        p=p,
        amounts=amount,
        expected_revenue=expected_revenue,
        win_rate=win_rate,
        average_deal_size=average_deal_size,
        nb_size=_fallback_deal_size(business, remaining=max(quota_value - won, 0.0)),
        pipeline_in_period=float(amount[in_period].sum()),
    )


def _fallback_deal_size(
    business: tuple[NewBusinessModel, str, float] | None, *, remaining: float
) -> float:
    """Deal size when there are no open deals: new business's mean amount, else one deal."""
    if business is not None:
        pool = business[0].amounts(business[1], business[2])
        if pool.size and pool.mean() > 0:
            return float(pool.mean())
    return remaining


def _distribution(
    scenarios: Sequence[_Scenario],
    amounts: np.ndarray,
    *,
    quota: float,
    new_business: tuple[NewBusinessModel, str, float] | None,
    draws: int | None,
    seed: int,
) -> _Distribution:
    """Exact when the structure allows and the work is bounded, else Monte Carlo."""
    union = np.zeros(amounts.size, dtype=bool)
    for scenario in scenarios:
        union |= scenario.uncertain
    equal = np.unique(amounts[union])
    no_new_business = new_business is None or (
        new_business[0].rate(new_business[1], new_business[2]) == 0
    )
    if equal.size <= 1 and no_new_business:
        work = sum(_exact_work(s.probabilities, s.dependence) for s in scenarios)
        if work <= _EXACT_MAX_WORK:
            exact = _exact_distribution(
                scenarios, float(equal[0]) if equal.size else 0.0, quota=quota
            )
            if exact is not None:
                return exact
            logger.info("attainment: exact Z grid did not converge; using Monte Carlo")
    return _monte_carlo_distribution(
        scenarios, amounts, quota=quota, new_business=new_business, draws=draws, seed=seed
    )


def _result(
    distribution: _Distribution,
    *,
    quota: float,
    won: float,
    p: np.ndarray,
    amounts: np.ndarray,
    expected_revenue: float,
    win_rate: float | None,
    average_deal_size: float | None,
    nb_size: float,
    pipeline_in_period: float,
) -> AttainmentResult:
    p_attain = float(distribution.p_attain[0])
    se = distribution.standard_error
    low_index, high_index = (1, 2) if distribution.p_attain.size == 3 else (0, 0)
    p_low = max(0.0, float(distribution.p_attain[low_index] - 1.96 * se[low_index]))
    p_high = min(1.0, float(distribution.p_attain[high_index] + 1.96 * se[high_index]))
    remaining = max(quota - won, 0.0)
    open_pipeline = float(amounts.sum())
    coverage = COVERAGE_CAP if remaining == 0 else min(pipeline_in_period / remaining, COVERAGE_CAP)
    rate, size, lower_bound = _gap_rates(
        p, amounts, win_rate=win_rate, average_deal_size=average_deal_size, fallback_size=nb_size
    )
    pipeline_needed = remaining / rate
    deals_needed = pipeline_needed / size if size > 0 else 0.0
    status, reason = _status(
        p_attain,
        p_low=p_low,
        p_high=p_high,
        remaining=remaining,
        won=won,
        quota=quota,
        pipeline_in_period=pipeline_in_period,
        coverage=coverage,
        pipeline_needed=pipeline_needed,
        win_rate=rate,
        lower_bound=lower_bound,
    )
    if distribution.draws:
        method = (
            f"monte-carlo ({distribution.draws} draws, standard error {100 * float(se[0]):.2f} pp)"
        )
    else:
        method = "exact"
    return AttainmentResult(
        p_attain=p_attain,
        p_attain_low=min(p_low, p_attain),
        p_attain_high=max(p_high, p_attain),
        expected_revenue=expected_revenue,
        p10=float(distribution.quantiles[0]),
        p50=float(distribution.quantiles[1]),
        p90=float(distribution.quantiles[2]),
        won_to_date=won,
        quota=quota,
        remaining_quota=remaining,
        open_pipeline=open_pipeline,
        coverage=float(coverage),
        pipeline_needed=float(pipeline_needed),
        deals_needed=float(deals_needed),
        status=status,
        status_reason=reason,
        method=method,
        standard_error=float(se[0]),
        draws=int(distribution.draws),
        pipeline_in_period=pipeline_in_period,
    )


def _gap_rates(
    p: np.ndarray,
    amounts: np.ndarray,
    *,
    win_rate: float | None,
    average_deal_size: float | None,
    fallback_size: float,
) -> tuple[float, float, bool]:
    """Win rate and average deal size of the gap analysis, and whether they give a lower bound.

    Given values win. Else the open pipeline's: its amount-weighted probability (the share of
    a pipeline dollar expected to be won) and its mean amount. With no open pipeline to learn
    from, the win rate is taken as 1, so the pipeline needed is the remaining quota itself, a
    lower bound (said in the status sentence), and the deal size is the new-business deals'
    mean amount, else the remaining quota (one deal). An empty pipeline is an ordinary state
    of a rep, so it must not make the forecast fail.
    """
    open_pipeline = float(amounts.sum())
    rate, lower_bound = win_rate, False
    if rate is None:
        rate = float(amounts @ p) / open_pipeline if open_pipeline > 0 else 0.0
        if rate <= 0:
            rate, lower_bound = 1.0, True
    size = average_deal_size
    if size is None:
        positive = amounts[amounts > 0]
        size = float(positive.mean()) if positive.size else fallback_size
    return rate, size, lower_bound


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _status(
    p_attain: float,
    *,
    p_low: float,
    p_high: float,
    remaining: float,
    won: float,
    quota: float,
    pipeline_in_period: float,
    coverage: float,
    pipeline_needed: float,
    win_rate: float,
    lower_bound: bool,
) -> tuple[Status, str]:
    """Traffic light from P(attain) (GREEN_AT, RED_BELOW) and one sentence saying why."""
    if remaining == 0:
        return "green", f"Quota reached: {_money(won)} won against a quota of {_money(quota)}."
    chance = f"{100 * p_attain:.0f}% chance of reaching the quota"
    if f"{100 * p_low:.0f}" != f"{100 * p_high:.0f}":
        chance += f" (between {100 * p_low:.0f}% and {100 * p_high:.0f}%)"
    cover = (
        f"pipeline closing this quarter, {_money(pipeline_in_period)}, is {coverage:.1f}x the "
        f"remaining {_money(remaining)}"
    )
    if p_attain >= GREEN_AT:
        return "green", f"On track: {chance}; the {cover}."
    shortfall = pipeline_needed - pipeline_in_period
    if lower_bound:
        need = (
            f"no open deal is expected to win, so at least {_money(remaining)} of new pipeline "
            "is needed (more at a realistic win rate)"
        )
    else:
        need = (
            f"at a {100 * win_rate:.0f}% win rate the remaining {_money(remaining)} needs "
            f"{_money(pipeline_needed)} of pipeline"
            + (f", {_money(shortfall)} more than is open this quarter" if shortfall > 0 else "")
        )
    if p_attain >= RED_BELOW:
        return "yellow", f"At risk: {chance}; {need}."
    return "red", f"Off track: {chance}; {need}."


# --------------------------------------------------------------------------- calibration


def fit_dependence(
    team_quarters: Sequence[TeamQuarter],
    *,
    level: float = 0.8,
    grid: Sequence[float] = DEFAULT_DEPENDENCE_GRID,
    draws: int = 2048,
    seed: int = 0,
) -> float:
    """The smallest shared-factor scale whose P10-P90 intervals cover `level` of actuals.

    For each scale on `grid` (ascending), every team-quarter's P10 and P90 come from its
    forecast inputs (exactly, or from `draws` Monte-Carlo draws with the same random numbers
    for every scale, so coverage changes with the scale and not with the noise); the
    coverage is the share of actual revenues inside [P10, P90]. Returns the smallest scale
    reaching `level`, or the scale with the highest coverage when none does (logged).
    """
    if not team_quarters:
        raise AttainmentInputError("team_quarters", "is empty")
    if not 0 < level < 1:
        raise AttainmentInputError("level", f"must be in (0, 1), got {level}")
    scales = np.array(sorted({_dependence(s) for s in grid}))
    if scales.size == 0:
        raise AttainmentInputError("grid", "is empty")
    if draws < 1:
        raise AttainmentInputError("draws", f"must be positive, got {draws}")
    covered = np.zeros(scales.size)
    for index, quarter in enumerate(team_quarters):
        p10, p90 = _interval_by_scale(quarter, scales, draws=draws, seed=seed + index)
        actual = _number(quarter.actual_revenue, "actual_revenue", low=0.0)
        covered += (p10 <= actual) & (actual <= p90)
    coverage = covered / len(team_quarters)
    reaching = np.flatnonzero(coverage >= level)
    if reaching.size:
        chosen = int(reaching[0])
    else:
        chosen = int(np.argmax(coverage))
        logger.warning(
            "fit_dependence: no scale reaches %.0f%% coverage (best %.0f%% at %.2f)",
            100 * level,
            100 * coverage[chosen],
            scales[chosen],
        )
    logger.info(
        "fit_dependence: scale %.2f, coverage %.1f%% over %d team-quarters",
        scales[chosen],
        100 * coverage[chosen],
        len(team_quarters),
    )
    return float(scales[chosen])


def _interval_by_scale(
    quarter: TeamQuarter, scales: np.ndarray, *, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """P10 and P90 of one team-quarter's revenue for each shared-factor scale."""
    won = _number(quarter.won_to_date, "won_to_date", low=0.0)
    p = _probabilities(quarter.probabilities, "probabilities")
    amounts = _vector(quarter.amounts, "amounts", size=p.size)
    if (amounts < 0).any():
        raise AttainmentInputError("amounts", "negative")
    business = _new_business(quarter.new_business)
    scenarios = [_scenario(p, amounts, won_to_date=won, dependence=s) for s in scales]
    # Any positive quota: only the quantiles are used.
    quota = max(won, 1.0)
    p10, p90 = np.empty(scales.size), np.empty(scales.size)
    union = scenarios[0].uncertain
    exact_possible = np.unique(amounts[union]).size <= 1 and (
        business is None or business[0].rate(business[1], business[2]) == 0
    )
    if exact_possible:
        for k, scenario in enumerate(scenarios):
            one = _distribution(
                [scenario], amounts, quota=quota, new_business=business, draws=draws, seed=seed
            )
            p10[k], p90[k] = one.quantiles[0], one.quantiles[2]
        return p10, p90
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    revenue = _monte_carlo_round(
        scenarios, amounts, new_business=business, draws=_round_draws(draws), rng=rng
    )
    quantiles = np.quantile(revenue, [0.1, 0.9], axis=1, method="inverted_cdf")
    return quantiles[0], quantiles[1]
