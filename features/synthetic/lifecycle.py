"""A deal's life: its outcome, when it closes, the stages it walks, pushes, cuts and calls.

The outcome is drawn from the latent propensity first; everything a CRM records afterwards is a
noisy consequence of the deal's odds, of how it is going (its eventual outcome) and of time:
lost deals linger and go quiet, poorly qualified deals skip and revisit stages, reps push
close dates they set too optimistically and call the forecast with their own bias. Each change
becomes one history row carrying the full state after it, as in Salesforce's
OpportunityHistory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synthetic.calendar import (
    SECONDS_PER_DAY,
    month_end_day,
    quarter_end_day,
    quarter_start_day,
    weekday,
)
from features.synthetic.parameters import NEGOTIATION, OPEN_STAGES, WorldParameters
from features.synthetic.population import Deals, SalesOrg

N_OPEN = len(OPEN_STAGES)
WON_CODE = N_OPEN  # stage codes: 0..N_OPEN-1 open, then won, then lost
LOST_CODE = N_OPEN + 1
PIPELINE, BEST_CASE, COMMIT, CLOSED, OMITTED = range(5)  # indices into FORECAST_CATEGORIES

# Event kinds, also the tie-break order of events in the same second.
_CREATED, _STAGE, _AMOUNT, _PUSH, _CALL, _CLOSE = range(6)


@dataclass(frozen=True)
class Timeline:
    """When each deal closes (or would, after the data ends) and when its buyer goes quiet."""

    won: np.ndarray  # the drawn outcome, realised only if the deal closes before the end
    looks_won: np.ndarray  # how the deal behaves: its outcome, except for the deals that fool
    closes: np.ndarray  # float days since the epoch
    engaged_until: np.ndarray  # end of buyer engagement: well before a loss, near a win


@dataclass(frozen=True)
class History:
    """History rows sorted by deal and time, plus where each deal's rows start."""

    deal: np.ndarray
    seconds: np.ndarray  # whole seconds since the epoch, strictly increasing per deal
    stage: np.ndarray  # stage code
    amount: np.ndarray
    close_day: np.ndarray  # days since the epoch
    category: np.ndarray  # index into FORECAST_CATEGORIES
    last_row: np.ndarray  # per deal: index of its last row (its current state)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, shares: np.ndarray) -> np.ndarray:
    """One draw per row of `shares` (rows sum to one): the index of the chosen column."""
    u = rng.random(len(shares))
    return np.minimum((u[:, None] > np.cumsum(shares, axis=1)).sum(axis=1), shares.shape[1] - 1)


def _working_hours(day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same day at a random time between 12:00 and 20:00 UTC (Europe to US Pacific)."""
    return np.floor(day) + rng.uniform(0.5, 0.84, len(day))


def timeline(deals: Deals, rng: np.random.Generator, p: WorldParameters) -> Timeline:
    """Draw outcomes and close times; won deals bunch into quarter ends, losses linger."""
    n = len(deals)
    won = rng.random(n) < deals.probability
    fooled = rng.random(n) < np.where(won, p.won_looks_lost_share, p.lost_looks_won_share)
    looks_won = won ^ fooled
    c = deals.created
    median = (
        np.asarray(p.cycle_median_won)[deals.segment]
        * np.asarray(p.type_cycle_factor)[deals.deal_type]
        * np.where(won, 1.0, p.lost_cycle_factor)
    )
    natural = c + np.maximum(median * rng.lognormal(0.0, p.cycle_sigma, n), 1.0)
    natural_day = np.floor(natural)

    # Quarter-end effect: reps pull signatures into the quarter's last two weeks (or slip
    # them there), and managers scrub dead deals out of the pipeline before the quarter ends.
    next_quarter = quarter_end_day(natural_day) + 1.0
    this_quarter = quarter_start_day(natural_day).astype("float64")
    pulled = won & (rng.random(n) < p.quarter_end_pull_won)
    late_target = next_quarter - rng.uniform(0.3, 14.0, n)
    slip = pulled & (late_target >= natural) & (late_target - natural <= 35.0)
    early_target = this_quarter - rng.uniform(0.3, 10.0, n)
    pull_in = pulled & ~slip & (natural - this_quarter < 21.0) & (early_target > c + 2.0)
    scrubbed = ~won & (rng.random(n) < p.quarter_end_scrub_lost)
    scrub_target = next_quarter - rng.uniform(0.3, 7.0, n)
    scrub = scrubbed & (scrub_target >= natural) & (scrub_target - natural <= 45.0)
    closes = np.where(slip, late_target, np.where(pull_in, early_target, natural))
    closes = np.where(scrub, scrub_target, closes)

    day = np.floor(closes)
    day = day - (weekday(day) == 5) - 2 * (weekday(day) == 6)  # weekend -> Friday
    closes = np.maximum(_working_hours(day, rng), c + 0.1)
    # Lost deals usually go quiet long before someone marks them lost; some are lost at the
    # decision itself. Won deals can go quiet too while contracts go through legal.
    quiet_lost = np.where(
        rng.random(n) < p.abrupt_loss_share,
        rng.uniform(0.85, 1.0, n),
        rng.uniform(*p.silence_fraction, n),
    )
    quiet_won = 1.0 - rng.uniform(0.0, p.signing_quiet, n)
    engaged_until = c + (closes - c) * np.where(looks_won, quiet_won, quiet_lost)
    return Timeline(won=won, looks_won=looks_won, closes=closes, engaged_until=engaged_until)


def stage_paths(
    deals: Deals, tl: Timeline, rng: np.random.Generator, p: WorldParameters
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry stage, and the open stages each deal moves into (row-wise, -1 past the end).

    Won deals walk to Proposal, Negotiation or Verbal Commit; lost deals die on the way, the
    better qualified further along. Every step moves one stage on, or skips one or two, or
    goes back one; poorly qualified deals, and deals heading for a loss, skip and go back more.
    Returns (entry, path, n_changes).
    """
    n = len(deals)
    existing = deals.deal_type != 0
    entry_shares = np.where(
        existing[:, None], np.asarray(p.entry_share_existing), np.asarray(p.entry_share_new)
    )
    entry = _categorical(rng, entry_shares)
    won_final = 4 + _categorical(rng, np.broadcast_to(np.asarray(p.won_final_share), (n, 3)))
    # Lost deals: a geometric number of advances, truncated at the last open stage.
    r = _sigmoid(p.lost_advance_logit + 0.5 * deals.qualification_z)
    room = N_OPEN - 1 - entry
    u = rng.random(n)
    advances = np.floor(np.log1p(-u * (1.0 - r ** (room + 1))) / np.log(r))
    lost_final = entry + np.clip(advances, 0, room).astype(np.int64)
    # Some lost deals that look won walk like winners, to the decision, and lose there.
    to_decision = tl.looks_won & (rng.random(n) < p.decision_loss_share)
    final = np.where(tl.won | to_decision, won_final, lost_final)

    heading = p.path_outcome * np.where(tl.looks_won, 1.0, -1.0)
    p_skip = _sigmoid(p.skip_logit - p.skip_signal * deals.qualification_z - heading)
    p_back = _sigmoid(p.back_logit - p.back_signal * deals.qualification_z - heading)
    position = entry.copy()
    done = position == final
    path = np.full((n, p.max_steps), -1, dtype=np.int8)
    for step in range(p.max_steps):
        u = rng.random(n)
        move = np.where(
            u < p_back,
            -1,
            np.where(u < p_back + 0.25 * p_skip, 3, np.where(u < p_back + p_skip, 2, 1)),
        )
        move = np.where((position == 0) & (move < 0), 1, move)
        target = np.minimum(position + move, final)
        if step == p.max_steps - 1:
            target = final
        path[~done, step] = target[~done]
        position = np.where(done, position, target)
        done = done | (position == final)
    n_changes = (path >= 0).sum(axis=1)
    return entry, path, n_changes


def _stage_times(
    deals: Deals, tl: Timeline, n_changes: np.ndarray, rng: np.random.Generator, p: WorldParameters
) -> np.ndarray:
    """Times of the stage changes: spread over the engaged part of the deal's life.

    Deals dwell longest in their entry stage (`entry_dwell` times an ordinary step): winners
    too spend weeks in qualification before they move, so an early stage is no verdict.
    """
    steps = p.max_steps
    gaps = rng.exponential(1.0, size=(len(deals), steps + 1))
    gaps[:, 0] *= p.entry_dwell
    gaps[np.arange(steps + 1)[None, :] > n_changes[:, None]] = 0.0
    cumulative = np.cumsum(gaps, axis=1)
    total = cumulative[np.arange(len(deals)), n_changes]
    span = tl.engaged_until - deals.created
    return deals.created[:, None] + span[:, None] * cumulative[:, :steps] / total[:, None]


def _snap(
    day: np.ndarray, rng: np.random.Generator, *, to_quarter: float, window: float, to_month: float
) -> np.ndarray:
    """Reps round close dates to the quarter's (or month's) last day: dates cluster there."""
    u = rng.random(len(day))
    quarter_end = quarter_end_day(day)
    use_quarter = (u < to_quarter) & (quarter_end - day <= window)
    use_month = ~use_quarter & (u < to_quarter + to_month)
    return np.where(use_quarter, quarter_end, np.where(use_month, month_end_day(day), day))


def _close_date_pushes(
    deals: Deals,
    org: SalesOrg,
    tl: Timeline,
    rng: np.random.Generator,
    p: WorldParameters,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The expected close date at creation, and each push: (initial, deal, time, new date).

    Reps expect deals to close sooner than they do; whenever a deal is still open on its
    expected close day, the rep pushes the date out. Lost deals linger, so they get pushed
    more: pushes are a consequence of the deal going badly, not a cause.
    """
    n = len(deals)
    c = deals.created
    expected_cycle = (
        np.asarray(p.cycle_median_won)[deals.segment]
        * np.asarray(p.type_cycle_factor)[deals.deal_type]
        * np.exp(p.estimate_bias + org.rep_optimism[deals.owner])
        * rng.lognormal(0.0, p.estimate_sigma, n)
    )
    initial = np.floor(c + np.maximum(expected_cycle, 3.0)).astype(np.int64)
    initial = _snap(initial, rng, to_quarter=0.55, window=30.0, to_month=0.35)
    close_day = np.floor(tl.closes).astype(np.int64)
    gap_mean = np.asarray(p.push_gap_mean)[deals.segment]
    expected = initial.copy()
    previous = c.copy()
    active = np.ones(n, dtype=bool)
    deal_parts: list[np.ndarray] = []
    time_parts: list[np.ndarray] = []
    date_parts: list[np.ndarray] = []
    for _ in range(p.max_pushes):
        due = active & (expected < close_day)
        when = _working_hours(expected + rng.uniform(-6.0, 2.0, n), rng)
        when = np.maximum(when, previous + 0.02)
        pushed = due & (when < tl.closes - 0.01)
        active = pushed
        new_date = np.floor(np.maximum(expected, np.floor(when)) + 7.0 + rng.exponential(gap_mean))
        new_date = _snap(new_date.astype(np.int64), rng, to_quarter=0.45, window=35.0, to_month=0.3)
        rows = np.flatnonzero(pushed)
        deal_parts.append(rows)
        time_parts.append(when[rows])
        date_parts.append(new_date[rows])
        expected = np.where(pushed, new_date, expected)
        previous = np.where(pushed, when, previous)
        if not active.any():
            break
    return (
        initial,
        np.concatenate(deal_parts),
        np.concatenate(time_parts),
        np.concatenate(date_parts),
    )


def _categories(
    stage: np.ndarray, owner: np.ndarray, read: np.ndarray, org: SalesOrg, p: WorldParameters
) -> np.ndarray:
    """The rep's call for a deal in `stage`: later stages, a rosier read, an over-caller."""
    score = stage + org.rep_call_bias[owner] + read
    return np.where(
        score >= p.commit_threshold,
        COMMIT,
        np.where(score >= p.best_case_threshold, BEST_CASE, PIPELINE),
    ).astype(np.int8)


def history(
    deals: Deals,
    org: SalesOrg,
    tl: Timeline,
    *,
    end: float,
    rng: np.random.Generator,
    p: WorldParameters,
) -> History:
    """Every history row of every deal up to `end`, state after each change."""
    n = len(deals)
    c = deals.created
    entry, path, n_changes = stage_paths(deals, tl, rng, p)
    times = _stage_times(deals, tl, n_changes, rng, p)
    logit = deals.logit
    spread = max(float(logit.std()), 1e-9)  # a one-deal world has no spread
    read = p.read_signal * (logit - logit.mean()) / spread + rng.normal(0.0, p.read_noise, n)
    initial_date, push_deal, push_time, push_date = _close_date_pushes(deals, org, tl, rng, p)

    kinds: list[np.ndarray] = []
    deal_ids: list[np.ndarray] = []
    at: list[np.ndarray] = []
    stages: list[np.ndarray] = []
    dates: list[np.ndarray] = []
    calls: list[np.ndarray] = []
    log_factor: list[np.ndarray] = []

    def add(
        kind: int,
        rows: np.ndarray,
        when: np.ndarray,
        *,
        stage: np.ndarray | None = None,
        date: np.ndarray | None = None,
        call: np.ndarray | None = None,
        factor: np.ndarray | None = None,
    ) -> None:
        size = len(rows)
        kinds.append(np.full(size, kind, dtype=np.int8))
        deal_ids.append(rows)
        at.append(when)
        stages.append(np.full(size, -1, np.int8) if stage is None else stage.astype(np.int8))
        dates.append(np.full(size, -1, np.int64) if date is None else date.astype(np.int64))
        calls.append(np.full(size, -1, np.int8) if call is None else call.astype(np.int8))
        log_factor.append(np.zeros(size) if factor is None else factor)

    everyone = np.arange(n)
    add(
        _CREATED,
        everyone,
        c,
        stage=entry,
        date=initial_date,
        call=_categories(entry, deals.owner, read, org, p),
    )
    moved = path >= 0
    change_deal = np.nonzero(moved)[0]
    change_stage = path[moved].astype(np.int64)
    add(
        _STAGE,
        change_deal,
        times[moved],
        stage=change_stage,
        call=_categories(change_stage, deals.owner[change_deal], read[change_deal], org, p),
    )
    add(_PUSH, push_deal, push_time, date=push_date)

    # Amounts: an early rescope now and then; a discount once the deal is in negotiation.
    rescoped = np.flatnonzero(rng.random(n) < np.asarray(p.rescope_share)[deals.segment])
    span = tl.engaged_until - c
    sign = np.where(rng.random(len(rescoped)) < 0.55, 1.0, -1.0)
    add(
        _AMOUNT,
        rescoped,
        c[rescoped] + span[rescoped] * rng.uniform(0.05, 0.5, len(rescoped)),
        factor=sign * rng.uniform(0.05, 0.35, len(rescoped)),
    )
    reaches = (path >= NEGOTIATION).any(axis=1)
    first = np.argmax(path >= NEGOTIATION, axis=1)
    cut_share = np.where(tl.looks_won, p.late_cut_share_won, p.late_cut_share_lost)
    cut = np.flatnonzero(reaches & (rng.random(n) < cut_share))
    entered = times[cut, first[cut]]
    has_next = first[cut] + 1 < n_changes[cut]
    following = np.where(
        has_next,
        times[cut, np.minimum(first[cut] + 1, p.max_steps - 1)],
        tl.engaged_until[cut],
    )
    add(
        _AMOUNT,
        cut,
        entered + (following - entered) * rng.uniform(0.2, 0.8, len(cut)),
        factor=np.log(rng.uniform(0.7, 0.95, len(cut))),
    )

    # Calls outside stage changes: lost deals get downgraded while they go quiet; won deals
    # get committed shortly before they sign.
    final_stage = np.where(n_changes > 0, path[everyone, np.maximum(n_changes - 1, 0)], entry)
    final_call = _categories(final_stage, deals.owner, read, org, p)
    last_change = np.where(n_changes > 0, times[everyone, np.maximum(n_changes - 1, 0)], c)
    downgrade = np.flatnonzero(~tl.looks_won & (rng.random(n) < p.lost_downgrade_share))
    quiet = tl.closes[downgrade] - tl.engaged_until[downgrade]
    add(
        _CALL,
        downgrade,
        tl.engaged_until[downgrade] + quiet * rng.uniform(0.2, 0.9, len(downgrade)),
        call=np.where(final_call[downgrade] == PIPELINE, OMITTED, PIPELINE),
    )
    upgrade = np.flatnonzero(
        tl.looks_won & (final_call != COMMIT) & (rng.random(n) < p.won_upgrade_share)
    )
    add(
        _CALL,
        upgrade,
        last_change[upgrade]
        + (tl.closes[upgrade] - last_change[upgrade]) * rng.uniform(0.5, 0.95, len(upgrade)),
        call=np.full(len(upgrade), COMMIT),
    )
    add(
        _CLOSE,
        everyone,
        tl.closes,
        stage=np.where(tl.won, WON_CODE, LOST_CODE),
        date=np.floor(tl.closes),
        call=np.where(tl.won, CLOSED, OMITTED),
    )
    return _assemble(
        np.concatenate(deal_ids),
        np.concatenate(at),
        np.concatenate(kinds),
        np.concatenate(stages),
        np.concatenate(dates),
        np.concatenate(calls),
        np.concatenate(log_factor),
        amount=deals.amount,
        end=end,
    )


def _forward_fill(values: np.ndarray, missing: int) -> np.ndarray:
    """Carry the last present value forward (the first row of every deal is complete)."""
    index = np.where(values != missing, np.arange(len(values)), 0)
    return values[np.maximum.accumulate(index)]


def _assemble(
    deal: np.ndarray,
    when: np.ndarray,
    kind: np.ndarray,
    stage: np.ndarray,
    date: np.ndarray,
    call: np.ndarray,
    log_factor: np.ndarray,
    *,
    amount: np.ndarray,
    end: float,
) -> History:
    """Sort events into rows, keep those up to `end`, fill the state and make times unique."""
    keep = when <= end - 1.0 / 24.0  # an hour's margin for the tie-breaking below
    deal, when, kind = deal[keep], when[keep], kind[keep]
    stage, date, call, log_factor = stage[keep], date[keep], call[keep], log_factor[keep]
    seconds = np.floor(when * SECONDS_PER_DAY).astype(np.int64)
    relative = seconds - seconds.min()
    shift = int(relative.max()).bit_length() + 3
    order = np.argsort((deal.astype(np.int64) << shift) | (relative << 3) | kind, kind="stable")
    deal, seconds = deal[order], seconds[order]
    stage, date, call, log_factor = stage[order], date[order], call[order], log_factor[order]

    starts = np.flatnonzero(np.r_[True, deal[1:] != deal[:-1]])
    first_row = np.repeat(starts, np.diff(np.r_[starts, len(deal)]))
    stage = _forward_fill(stage, -1)
    date = _forward_fill(date, -1)
    call = _forward_fill(call, -1)
    growth = np.cumsum(log_factor)
    amounts = np.round(amount[deal] * np.exp(growth - growth[first_row]), -1)

    # Two changes in the same second become one second apart: no deal has two rows stamped
    # alike. cummax over (seconds - rank) per deal, offset so deals never mix.
    rank = np.arange(len(deal)) - first_row
    origin = int(seconds.min())
    offset = deal.astype(np.int64) << 40
    lifted = seconds - origin - rank + offset
    seconds = np.maximum.accumulate(lifted) - offset + rank + origin
    last_row = np.r_[starts[1:], len(deal)] - 1
    return History(
        deal=deal,
        seconds=seconds,
        stage=stage,
        amount=amounts,
        close_day=date,
        category=call,
        last_row=last_row,
    )
