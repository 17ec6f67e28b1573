"""Quotas per rep and quarter, set the way sales finance sets them: from a plan, not results.

A rep's quota is the company's planned closed-won revenue for the quarter times the rep's
share of territory (the potential of the accounts they own), with some negotiation noise.
The plan is the revenue the pipeline is expected to bring (propensity times amount of each
deal, in the quarter it would typically close if won), so it knows volume, growth and ramp-up,
as a finance team's pipeline model would, but not which deals will win or when. One
company-wide stretch factor is then chosen so that about `quota_attainment_target` of
rep-quarters attain, as the spec asks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.synthetic.calendar import SECONDS_PER_DAY, quarter_index, quarter_labels
from features.synthetic.lifecycle import WON_CODE, History
from features.synthetic.parameters import WorldParameters
from features.synthetic.population import Accounts, Deals, SalesOrg


def complete_quarters(start: float, end: float) -> tuple[int, int]:
    """First and last quarter index lying wholly inside [start, end] (days since the epoch)."""
    first = int(quarter_index(np.array([np.ceil(start)]))[0])
    if int(quarter_index(np.array([np.ceil(start) - 1]))[0]) == first:
        first += 1  # `start` falls inside a quarter: that quarter is partial
    last = int(quarter_index(np.array([np.floor(end) + 1]))[0]) - 1
    return first, last


def quotas(
    org: SalesOrg,
    accts: Accounts,
    deals: Deals,
    hist: History,
    *,
    start: float,
    end: float,
    rng: np.random.Generator,
    p: WorldParameters,
    owner_ids: np.ndarray,
) -> pd.DataFrame:
    """One row per rep and quarter from the first (partial) quarter to the one in progress."""
    q_first = int(quarter_index(np.array([np.floor(start)]))[0])
    q_last = int(quarter_index(np.array([np.floor(end)]))[0])
    n_quarters = q_last - q_first + 1

    # A deal's revenue is planned for when it would typically close if won: its creation plus
    # the median won cycle of its segment and type. (Planning on actual close dates would
    # leak outcomes: wins close sooner, so early quarters would look rich in wins.)
    typical_win = (
        deals.created
        + np.asarray(p.cycle_median_won)[deals.segment]
        * np.asarray(p.type_cycle_factor)[deals.deal_type]
    )
    due = quarter_index(np.floor(typical_win)) - q_first
    inside = (due >= 0) & (due < n_quarters)
    plan = np.bincount(
        due[inside], weights=(deals.probability * deals.amount)[inside], minlength=n_quarters
    )

    potential = accts.deal_weight * np.asarray(p.amount_median)[accts.segment]
    territory = np.bincount(accts.owner, weights=potential, minlength=org.n_reps)
    territory = np.maximum(territory, 0.2 * territory.mean()) / territory.sum()
    base = (
        plan[:, None]
        * territory[None, :]
        * rng.lognormal(0.0, p.quota_noise_sd, (n_quarters, org.n_reps))
    )
    base = np.maximum(base, 1.0)

    last = hist.last_row
    won = hist.stage[last] == WON_CODE
    closed_day = np.floor(hist.seconds[last][won] / SECONDS_PER_DAY)
    won_quarter = quarter_index(closed_day) - q_first
    attained = np.zeros((n_quarters, org.n_reps))
    np.add.at(attained, (won_quarter, deals.owner[won]), hist.amount[last][won])

    first_full, last_full = complete_quarters(start, end)
    rows = slice(first_full - q_first, last_full - q_first + 1)
    ratio = (attained[rows] / base[rows]).ravel()
    stretch = float(np.quantile(ratio, 1.0 - p.quota_attainment_target)) if ratio.size else 1.0
    quota = np.maximum(np.round(stretch * base, -3), 1000.0)
    periods = quarter_labels(np.arange(q_first, q_last + 1))
    return pd.DataFrame(
        {
            "period": pd.array(np.repeat(periods, org.n_reps), dtype="str"),
            "owner_id": pd.array(np.tile(owner_ids, n_quarters), dtype="str"),
            "quota": quota.ravel(),
        }
    )
