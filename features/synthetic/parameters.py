"""The knobs of the synthetic world, in one place, with the reason for each value.

The values are tuned so that a 20,000-deal world shows every stylized fact of
`synthetic-world.md` inside its range (the tests measure them); change one and rerun
`tests/data/test_synthetic_world.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

SEGMENTS: tuple[str, ...] = ("SMB", "Mid-Market", "Enterprise")
DEAL_TYPES: tuple[str, ...] = ("New Business", "Renewal", "Upsell")
LEAD_SOURCES: tuple[str, ...] = ("Web", "Outbound", "Partner", "Event", "Referral")
REGIONS: tuple[str, ...] = ("North America", "EMEA", "APAC", "LATAM")
# Team i sits in region TEAM_REGIONS[i]: North America and EMEA get teams first, as they
# carry most of the book in a typical B2B company.
TEAM_REGIONS: tuple[str, ...] = (
    "North America",
    "EMEA",
    "North America",
    "APAC",
    "EMEA",
    "North America",
    "LATAM",
    "APAC",
)
INDUSTRIES: tuple[str, ...] = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Media",
    "Logistics",
    "Energy",
    "Public Sector",
)
# Open stages in order, with the CRM's configured probability (percent). Like most CRMs'
# untouched defaults these are guesses: the true conversion rates come out of the simulation
# (early stages convert far better than 10%, late ones a little worse than configured).
OPEN_STAGES: tuple[tuple[str, float], ...] = (
    ("Prospecting", 10.0),
    ("Qualification", 20.0),
    ("Discovery", 30.0),
    ("Solution Design", 40.0),
    ("Proposal", 60.0),
    ("Negotiation", 80.0),
    ("Verbal Commit", 90.0),
)
WON_STAGE = "Closed Won"
LOST_STAGE = "Closed Lost"
NEGOTIATION = 5  # position of "Negotiation" in OPEN_STAGES: amounts get cut from here on
FORECAST_CATEGORIES: tuple[str, ...] = ("Pipeline", "Best Case", "Commit", "Closed", "Omitted")
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "demo", "proposal", "other")
CONTACT_ROLES: tuple[str, ...] = ("decision_maker", "economic_buyer", "champion", "user")


@dataclass(frozen=True)
class WorldParameters:
    """Every number the generator draws from; segment-indexed tuples follow SEGMENTS."""

    # --- organisation -------------------------------------------------------------------
    deals_per_rep: int = 400  # about 35 deals a quarter: a realistic B2B book
    reps_per_team: int = 7
    accounts_per_deal: float = 0.22  # an account buys several times over three years
    segment_share: tuple[float, ...] = (0.55, 0.30, 0.15)  # of accounts
    segment_deal_weight: tuple[float, ...] = (1.0, 1.5, 2.5)  # bigger accounts buy more often
    region_weight: dict[str, float] = field(
        default_factory=lambda: {"North America": 0.45, "EMEA": 0.3, "APAC": 0.15, "LATAM": 0.1}
    )
    employees_median: tuple[float, ...] = (60.0, 600.0, 8000.0)
    type_share: tuple[float, ...] = (0.6, 0.2, 0.2)
    source_share: tuple[float, ...] = (0.3, 0.25, 0.15, 0.15, 0.15)
    volume_growth: float = 0.35  # deal creation rate at the end vs the start, minus one

    # --- latent propensity (logit components) -------------------------------------------
    intercept: float = -1.35
    segment_effect: tuple[float, ...] = (0.15, 0.0, -0.3)
    type_effect: tuple[float, ...] = (-0.35, 1.1, 0.45)
    source_effect: tuple[float, ...] = (0.0, -0.55, 0.25, -0.2, 0.5)
    industry_sd: float = 0.15
    rep_skill_sd: float = 0.45
    drift_amplitude: float = 0.5  # logit +0.5 three years ago, -0.5 now: conversion declines
    size_effect: float = -0.2  # per standard deviation of log amount within the segment
    qualification_sd: float = 0.85  # shows in the stage path (skips, revisits)
    engagement_sd: float = 0.55  # shows in buyer activity
    idiosyncratic_sd: float = 0.8  # never observable: keeps the world from being too easy
    # Deals that do not look like their outcome. Behaviour (activity, silence, calls, cuts,
    # the stage path's wobbles) follows how a deal *looks*, which is its outcome except for
    # these shares: lost deals that look healthy to the end (a competitor wins at the
    # decision, a budget is pulled) and won deals that look stuck (procurement drags, the
    # buyer goes dark and comes back). All behaviours share this one look, so combining them
    # cannot see through it: that caps what a model learns from them, as in a real org.
    lost_looks_won_share: float = 0.2
    won_looks_lost_share: float = 0.2

    # --- amounts ------------------------------------------------------------------------
    amount_median: tuple[float, ...] = (9_000.0, 40_000.0, 160_000.0)
    amount_sigma: tuple[float, ...] = (0.7, 0.8, 0.95)
    type_amount_factor: tuple[float, ...] = (1.0, 0.8, 0.5)
    rescope_share: tuple[float, ...] = (0.15, 0.25, 0.35)
    late_cut_share_won: float = 0.55
    late_cut_share_lost: float = 0.4

    # --- timing (days) ------------------------------------------------------------------
    cycle_median_won: tuple[float, ...] = (24.0, 58.0, 122.0)
    lost_cycle_factor: float = 1.3  # lost deals linger before someone closes them out
    cycle_sigma: float = 0.65
    type_cycle_factor: tuple[float, ...] = (1.0, 0.75, 0.85)
    quarter_end_pull_won: float = 0.45
    quarter_end_scrub_lost: float = 0.25
    silence_fraction: tuple[float, float] = (0.5, 0.95)  # engagement ends this far into a loss
    abrupt_loss_share: float = 0.35  # losses with no quiet spell (lost at the decision)
    signing_quiet: float = 0.25  # won deals: up to this fraction of the cycle is paperwork
    estimate_bias: float = 0.2  # log factor of the rep's expected cycle over the won median
    estimate_sigma: float = 0.35
    optimism_sd: float = 0.15  # per rep, log factor on the expected cycle
    push_gap_mean: tuple[float, ...] = (14.0, 25.0, 40.0)
    max_pushes: int = 8

    # --- stage path ---------------------------------------------------------------------
    entry_share_new: tuple[float, ...] = (0.85, 0.12, 0.03)
    entry_share_existing: tuple[float, ...] = (0.4, 0.45, 0.15)
    won_final_share: tuple[float, ...] = (0.1, 0.25, 0.65)  # Proposal, Negotiation, Verbal
    lost_advance_logit: float = 1.0  # how far lost deals get before dying
    decision_loss_share: float = 0.5  # lost deals looking won that die only at the decision
    skip_logit: float = -2.4
    back_logit: float = -2.7
    skip_signal: float = 1.4  # how strongly skipping stages reflects a poorly qualified deal
    back_signal: float = 1.0  # ... and going back a stage
    path_outcome: float = 0.25  # ... and a deal already heading for a loss
    max_steps: int = 12
    entry_dwell: float = 3.0  # time in the entry stage, in ordinary steps

    # --- forecast categories ------------------------------------------------------------
    call_bias_sd: float = 1.0  # per rep: > 0 over-calls, < 0 sandbags
    read_signal: float = 0.45  # how well a rep's read tracks the deal's true odds
    read_noise: float = 0.45
    best_case_threshold: float = 2.5
    commit_threshold: float = 4.5
    lost_downgrade_share: float = 0.55
    won_upgrade_share: float = 0.3

    # --- activity -----------------------------------------------------------------------
    activity_per_week: tuple[float, ...] = (1.0, 1.2, 1.5)
    activity_won_boost: float = 0.8  # log factor: won deals see more buyer activity
    activity_engagement: float = 0.35
    dm_engaged_logit: float = -0.9
    dm_engaged_outcome: float = 0.6  # decision makers show up in deals that are going well
    dm_meeting_share: float = 0.45
    dark_spell_share: float = 0.7  # deals whose buyer goes dark for a while mid-deal
    dark_spell_length: tuple[float, float] = (0.1, 0.3)  # share of the engaged span

    # --- manager weights ----------------------------------------------------------------
    manual_team_share: float = 0.4  # teams whose manager types a probability on each deal
    manual_bias_sd: float = 0.6  # per manager, logit: some are rosy, some are stern
    manual_read: float = 0.3  # how much of the deal's true odds the manager sees
    manual_noise_sd: float = 0.35

    # --- quotas -------------------------------------------------------------------------
    quota_attainment_target: float = 0.52
    quota_noise_sd: float = 0.1

    def signal_free(self) -> WorldParameters:
        """The same world in which outcomes depend on the stage alone.

        Every deal has the same odds (no segment, type, source, industry, rep, drift, size,
        qualification or engagement effect), and nothing the CRM records afterwards follows
        the outcome except the stage path itself: a deal looks won or lost independently of
        how it ends, won and lost deals take equally long and are cut alike. A model can then
        beat the stage weight only by overfitting, which is what the variant is for.
        """
        return replace(
            self,
            intercept=-0.9,  # about 29% of closed deals won, as in the default world
            segment_effect=(0.0,) * len(self.segment_effect),
            type_effect=(0.0,) * len(self.type_effect),
            source_effect=(0.0,) * len(self.source_effect),
            industry_sd=0.0,
            rep_skill_sd=0.0,
            drift_amplitude=0.0,
            size_effect=0.0,
            qualification_sd=0.0,
            engagement_sd=0.0,
            idiosyncratic_sd=0.0,
            lost_looks_won_share=0.5,
            won_looks_lost_share=0.5,
            lost_cycle_factor=1.0,
            # Won deals are pulled into quarter ends and lost ones scrubbed there on different
            # schedules; either would let the close's timing hint at the outcome.
            quarter_end_pull_won=0.0,
            quarter_end_scrub_lost=0.0,
            path_outcome=0.0,
            late_cut_share_lost=self.late_cut_share_won,
            read_signal=0.0,
            manual_read=0.0,
        )
