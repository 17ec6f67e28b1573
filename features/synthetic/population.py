"""Who sells to whom: reps and teams, accounts, and each deal's static attributes and odds.

Every deal gets a latent win propensity (a logit) built from named components, some visible
in the export (segment, type, lead source, the rep) and some that only show indirectly
(qualification in the stage path, engagement in activity) or not at all (idiosyncratic luck).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synthetic.calendar import weekday
from features.synthetic.parameters import (
    INDUSTRIES,
    REGIONS,
    TEAM_REGIONS,
    WorldParameters,
)


@dataclass(frozen=True)
class SalesOrg:
    """Reps (index r) and teams (index t); managers are not reps and carry no quota."""

    rep_team: np.ndarray
    rep_region: np.ndarray  # index into REGIONS
    rep_skill: np.ndarray  # logit offset of the rep's deals
    rep_call_bias: np.ndarray  # > 0 over-calls the forecast, < 0 sandbags
    rep_optimism: np.ndarray  # log factor on the rep's expected cycle length
    n_teams: int

    @property
    def n_reps(self) -> int:
        return len(self.rep_team)


@dataclass(frozen=True)
class Accounts:
    segment: np.ndarray  # index into SEGMENTS
    industry: np.ndarray  # index into INDUSTRIES
    region: np.ndarray  # index into REGIONS
    employees: np.ndarray
    annual_revenue: np.ndarray
    owner: np.ndarray  # rep index
    deal_weight: np.ndarray  # relative rate at which the account buys


@dataclass(frozen=True)
class Deals:
    """Static attributes and latent odds of each deal, sorted by creation time."""

    account: np.ndarray
    owner: np.ndarray
    segment: np.ndarray
    deal_type: np.ndarray  # index into DEAL_TYPES
    source: np.ndarray  # index into LEAD_SOURCES
    created: np.ndarray  # float days since the epoch
    amount: np.ndarray  # amount at creation
    components: dict[str, np.ndarray]  # logit components, summing to `logit`
    qualification_z: np.ndarray  # standardised qualification (drives the stage path)
    engagement_z: np.ndarray  # standardised engagement (drives buyer activity)

    @property
    def logit(self) -> np.ndarray:
        return np.sum(list(self.components.values()), axis=0)

    @property
    def probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit))

    def __len__(self) -> int:
        return len(self.created)


def sales_org(n_opportunities: int, rng: np.random.Generator, p: WorldParameters) -> SalesOrg:
    """5 to 60 reps in 2 to 8 teams, scaled to the number of deals."""
    n_reps = int(np.clip(n_opportunities // p.deals_per_rep, 5, 60))
    n_teams = int(np.clip(n_reps // p.reps_per_team, 2, 8))
    rep_team = np.sort(np.arange(n_reps) % n_teams)
    team_region = np.array([REGIONS.index(TEAM_REGIONS[t]) for t in range(n_teams)])
    return SalesOrg(
        rep_team=rep_team,
        rep_region=team_region[rep_team],
        rep_skill=rng.normal(0.0, p.rep_skill_sd, n_reps),
        rep_call_bias=rng.normal(0.0, p.call_bias_sd, n_reps),
        rep_optimism=rng.normal(0.0, p.optimism_sd, n_reps),
        n_teams=n_teams,
    )


def accounts(
    n_opportunities: int, org: SalesOrg, rng: np.random.Generator, p: WorldParameters
) -> Accounts:
    """Accounts in the regions the teams cover, each owned by a rep of its region."""
    n = max(20, round(n_opportunities * p.accounts_per_deal))
    segment = rng.choice(len(p.segment_share), size=n, p=np.asarray(p.segment_share))
    covered = np.unique(org.rep_region)
    reps_per_region = np.bincount(org.rep_region, minlength=len(REGIONS))[covered]
    region_weight = np.array([p.region_weight[REGIONS[r]] for r in covered]) * reps_per_region
    region = covered[rng.choice(len(covered), size=n, p=region_weight / region_weight.sum())]
    owner = np.empty(n, dtype=np.int64)
    for r in covered:
        mine = np.flatnonzero(region == r)
        reps = np.flatnonzero(org.rep_region == r)
        owner[mine] = reps[rng.integers(0, len(reps), size=len(mine))]
    employees = np.asarray(p.employees_median)[segment] * rng.lognormal(0.0, 0.6, n)
    employees = np.maximum(np.round(employees), 2)
    revenue_per_employee = 180_000.0 * rng.lognormal(0.0, 0.5, n)
    weight = np.asarray(p.segment_deal_weight)[segment] * rng.lognormal(0.0, 0.6, n)
    return Accounts(
        segment=segment,
        industry=rng.integers(0, len(INDUSTRIES), size=n),
        region=region,
        employees=employees.astype(np.int64),
        annual_revenue=np.round(employees * revenue_per_employee, -3),
        owner=owner,
        deal_weight=weight,
    )


def _creation_days(
    n: int, start: float, end: float, rng: np.random.Generator, p: WorldParameters
) -> np.ndarray:
    """Creation times growing linearly in volume, on weekdays in working hours, sorted."""
    g = p.volume_growth
    u = rng.random(n)
    fraction = (np.sqrt(1.0 + g * (2.0 + g) * u) - 1.0) / g  # inverse CDF of 1 + g x
    day = np.floor(start + fraction * (end - start - 1.0))
    day = day - (weekday(day) == 5) + (weekday(day) == 6)  # weekend -> Friday / Monday
    created = np.clip(day, np.floor(start) + 1, np.floor(end) - 2) + rng.uniform(8 / 24, 18 / 24, n)
    return np.sort(created)


def deals(
    n: int,
    org: SalesOrg,
    accts: Accounts,
    *,
    start: float,
    end: float,
    rng: np.random.Generator,
    p: WorldParameters,
) -> Deals:
    """The deals' static attributes and their latent win propensity, by component."""
    account = rng.choice(len(accts.segment), size=n, p=accts.deal_weight / accts.deal_weight.sum())
    created = _creation_days(n, start, end, rng, p)
    segment = accts.segment[account]
    # Mostly the account's owner; sometimes a colleague in the same region picks it up.
    owner = accts.owner[account].copy()
    reassigned = np.flatnonzero(rng.random(n) < 0.1)
    for r in np.unique(org.rep_region):
        reps = np.flatnonzero(org.rep_region == r)
        mine = reassigned[org.rep_region[owner[reassigned]] == r]
        owner[mine] = reps[rng.integers(0, len(reps), size=len(mine))]
    deal_type = rng.choice(len(p.type_share), size=n, p=np.asarray(p.type_share))
    source = rng.choice(len(p.source_share), size=n, p=np.asarray(p.source_share))

    size_z = rng.standard_normal(n)
    account_scale = (accts.employees[account] / np.asarray(p.employees_median)[segment]) ** 0.3
    amount = (
        np.asarray(p.amount_median)[segment]
        * np.asarray(p.type_amount_factor)[deal_type]
        * account_scale
        * np.exp(np.asarray(p.amount_sigma)[segment] * size_z)
    )
    amount = np.maximum(np.round(amount, -2), 500.0)

    industry_effect = rng.normal(0.0, p.industry_sd, len(INDUSTRIES))
    qualification_z = rng.standard_normal(n)
    engagement_z = rng.standard_normal(n)
    elapsed = (created - start) / (end - start)
    components = {
        "intercept": np.full(n, p.intercept),
        "segment": np.asarray(p.segment_effect)[segment],
        "deal_type": np.asarray(p.type_effect)[deal_type],
        "lead_source": np.asarray(p.source_effect)[source],
        "industry": industry_effect[accts.industry[account]],
        "rep_skill": org.rep_skill[owner],
        "drift": p.drift_amplitude * (1.0 - 2.0 * elapsed),
        "size": p.size_effect * size_z,
        "qualification": p.qualification_sd * qualification_z,
        "engagement": p.engagement_sd * engagement_z,
        "idiosyncratic": rng.normal(0.0, p.idiosyncratic_sd, n),
    }
    return Deals(
        account=account,
        owner=owner,
        segment=segment,
        deal_type=deal_type,
        source=source,
        created=created,
        amount=amount,
        components=components,
        qualification_z=qualification_z,
        engagement_z=engagement_z,
    )
