"""The stylized facts of `synthetic-world.md`, measured from contract tables alone.

Nothing here reads ground truth or generator internals, so the same measurements run on any
export: on the synthetic world they check that it looks like a real CRM; on a real export they
show where it differs. Each `Fact` carries its headline value, a readable summary, the spec's
range, and whether the measurement falls inside it (None when the export cannot tell).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

from features.stages import StageConfig
from features.synthetic.calendar import quarter_end_day, quarter_index, quarter_labels

_NS_PER_DAY = 86_400 * 1_000_000_000
_MIN_DEALS = 30  # fewer closed deals than this make a rate too noisy to compare


@dataclass(frozen=True)
class Fact:
    """One measured stylized fact."""

    name: str
    value: float | None  # the headline number (see `summary` for what it is)
    summary: str
    expected: str  # the spec's range, in words
    holds: bool | None  # None: the export lacks what the measurement needs
    details: dict[str, float] = field(default_factory=dict)


def _times(column: pd.Series) -> np.ndarray:
    """A datetime column as int64 nanoseconds since the epoch (UTC)."""
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        column = pd.to_datetime(column, utc=True, format="ISO8601")
    return column.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").view("int64")


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _rate(won: np.ndarray, mask: np.ndarray) -> float:
    count = int(mask.sum())
    return float(won[mask].mean()) if count else float("nan")


def _strictly_decreasing(values: list[float]) -> bool:
    return all(a > b for a, b in pairwise(values)) and not any(np.isnan(values))


@dataclass(frozen=True)
class _Export:
    """Per-deal arrays (index = row of `opportunities`) and row-level arrays of the history."""

    n: int
    created: np.ndarray
    closed: np.ndarray
    won: np.ndarray
    close_time: np.ndarray
    owner: np.ndarray  # owner code
    owner_names: np.ndarray
    segment: pd.Series | None
    source: pd.Series | None
    amount: np.ndarray  # current amount
    h_deal: np.ndarray
    h_time: np.ndarray
    h_pos: np.ndarray  # stage position: open 1..n, won n+1, lost 0, unknown -1
    h_amount: np.ndarray
    h_close_day: np.ndarray
    h_category: np.ndarray
    n_open: int
    data_start: int
    data_end: int


def _prepare(tables: Mapping[str, pd.DataFrame], stages: StageConfig) -> _Export:
    opp = tables["opportunities"]
    hist = tables["opportunity_history"]
    ids = pd.Index(opp["opportunity_id"].astype(str))
    h_deal = ids.get_indexer(pd.Index(hist["opportunity_id"].astype(str)))
    h_time = _times(hist["changed_at"])
    known = h_deal >= 0
    order = np.lexsort((h_time[known], h_deal[known]))
    rows = np.flatnonzero(known)[order]
    h_deal, h_time = h_deal[rows], h_time[rows]
    positions = stages.order()
    h_pos = hist["stage"].astype(str).map(positions).fillna(-1).to_numpy(dtype=np.int64)[rows]
    h_amount = pd.to_numeric(hist["amount"], errors="coerce").to_numpy(dtype=float)[rows]
    h_close_day = _times(hist["close_date"])[rows] // _NS_PER_DAY
    if "forecast_category" in hist.columns:
        h_category = hist["forecast_category"].astype(str).to_numpy()[rows]
    else:
        h_category = np.full(len(rows), "", dtype=object)

    n = len(opp)
    last = np.full(n, -1)
    last[h_deal] = np.arange(len(h_deal))  # rows are sorted: the last write is the latest
    has_history = last >= 0
    last_pos = np.where(has_history, h_pos[np.maximum(last, 0)], -1)
    n_open = len(stages.open_stages)
    closed = (last_pos == 0) | (last_pos == n_open + 1)
    won = last_pos == n_open + 1
    created = _times(opp["created_at"])
    close_time = np.where(closed, h_time[np.maximum(last, 0)], 0)
    owner_codes, owner_names = pd.factorize(opp["owner_id"].astype(str))
    segment = None
    accounts = tables.get("accounts")
    if accounts is not None and "segment" in accounts.columns:
        lookup = accounts.set_index(accounts["account_id"].astype(str))["segment"]
        segment = opp["account_id"].astype(str).map(lookup).astype(str).reset_index(drop=True)
    source = (
        opp["lead_source"].astype(str).reset_index(drop=True)
        if "lead_source" in opp.columns
        else None
    )
    return _Export(
        n=n,
        created=created,
        closed=closed,
        won=won,
        close_time=close_time,
        owner=owner_codes,
        owner_names=np.asarray(owner_names),
        segment=segment,
        source=source,
        amount=np.where(has_history, h_amount[np.maximum(last, 0)], np.nan),
        h_deal=h_deal,
        h_time=h_time,
        h_pos=h_pos,
        h_amount=h_amount,
        h_close_day=h_close_day,
        h_category=h_category,
        n_open=n_open,
        data_start=int(created.min() // _NS_PER_DAY),
        data_end=int(max(h_time.max(), created.max()) // _NS_PER_DAY),
    )


def _by_group(x: _Export, labels: pd.Series | None) -> dict[str, float]:
    """Win rate of closed deals per label, for labels with enough closed deals."""
    if labels is None:
        return {}
    frame = pd.DataFrame({"label": labels[x.closed].to_numpy(), "won": x.won[x.closed]})
    grouped = frame.groupby("label")["won"].agg(["mean", "size"])
    grouped = grouped[grouped["size"] >= _MIN_DEALS]
    return {str(k): float(v) for k, v in grouped["mean"].items()}


def _rep_rates(x: _Export, mask: np.ndarray) -> np.ndarray:
    """Win rate per owner code over closed deals in `mask` (NaN below _MIN_DEALS)."""
    size = len(x.owner_names)
    counts = np.bincount(x.owner[mask], minlength=size)
    wins = np.bincount(x.owner[mask], weights=x.won[mask], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts >= _MIN_DEALS, wins / counts, np.nan)


def _win_rate(x: _Export) -> Fact:
    overall = _rate(x.won, x.closed)
    segments = _by_group(x, x.segment)
    sources = _by_group(x, x.source)
    reps = _rep_rates(x, x.closed)
    reps = reps[~np.isnan(reps)]
    rep_p10, rep_p90 = np.percentile(reps, [10, 90]) if reps.size else (np.nan, np.nan)

    def spread(rates: dict[str, float]) -> float:
        return max(rates.values()) - min(rates.values()) if rates else float("nan")

    details = {"overall": overall, "rep_p10": rep_p10, "rep_p90": rep_p90}
    details.update({f"segment:{k}": v for k, v in segments.items()})
    details.update({f"source:{k}": v for k, v in sources.items()})
    holds = (
        0.20 <= overall <= 0.35
        and spread(segments) >= 0.03
        and spread(sources) >= 0.03
        and rep_p90 - rep_p10 >= 0.05
    )
    text = ", ".join(f"{k} {v:.0%}" for k, v in segments.items())
    summary = (
        f"{overall:.1%} of {int(x.closed.sum())} closed deals; by segment {text}; "
        f"by source {min(sources.values(), default=np.nan):.0%}-"
        f"{max(sources.values(), default=np.nan):.0%}; reps p10-p90 {rep_p10:.0%}-{rep_p90:.0%}"
    )
    return Fact(
        "win_rate",
        overall,
        summary,
        "20%-35% overall, varying by segment, source and rep",
        bool(holds),
        details,
    )


def _cycle_days(x: _Export) -> np.ndarray:
    return (x.close_time - x.created) / _NS_PER_DAY


def _sales_cycle(x: _Export) -> tuple[Fact, Fact]:
    days = _cycle_days(x)
    closed = x.closed
    medians: dict[str, float] = {}
    won_lost: dict[str, tuple[float, float]] = {}
    groups = x.segment.to_numpy() if x.segment is not None else np.full(x.n, "all", dtype=object)
    present = set(pd.unique(groups[closed]))
    ordered = [s for s in ("SMB", "Mid-Market", "Enterprise") if s in present]
    for label in ordered + sorted(str(s) for s in present - set(ordered)):
        mask = closed & (groups == label)
        if mask.sum() < _MIN_DEALS:
            continue
        medians[str(label)] = _median(days[mask])
        won_lost[str(label)] = (
            _median(days[mask & x.won]) if (mask & x.won).any() else np.nan,
            _median(days[mask & ~x.won]) if (mask & ~x.won).any() else np.nan,
        )
    smb, ent = medians.get("SMB"), medians.get("Enterprise")
    holds_cycle = None if smb is None or ent is None else bool(20 <= smb <= 45 and ent >= 120)
    order = [medians[s] for s in ("SMB", "Mid-Market", "Enterprise") if s in medians]
    if holds_cycle is not None and len(order) == 3:
        holds_cycle = holds_cycle and order[0] < order[1] < order[2]
    cycle = Fact(
        "sales_cycle",
        smb,
        "median days created to closed: " + ", ".join(f"{k} {v:.0f}" for k, v in medians.items()),
        "about 30 days (SMB) to 120+ days (Enterprise)",
        holds_cycle,
        {f"median_days:{k}": v for k, v in medians.items()},
    )
    won_median = _median(days[closed & x.won]) if (closed & x.won).any() else np.nan
    lost_median = _median(days[closed & ~x.won]) if (closed & ~x.won).any() else np.nan
    details = {"won_median_days": won_median, "lost_median_days": lost_median}
    for label, (w, lo) in won_lost.items():
        details[f"won:{label}"], details[f"lost:{label}"] = w, lo
    faster = Fact(
        "won_faster_than_lost",
        lost_median - won_median,
        f"median days won {won_median:.0f} vs lost {lost_median:.0f}; per segment "
        + ", ".join(f"{k} {w:.0f}/{lo:.0f}" for k, (w, lo) in won_lost.items()),
        "won deals close faster than lost deals die (lost deals linger)",
        bool(won_median < lost_median and all(w < lo for w, lo in won_lost.values())),
        details,
    )
    return cycle, faster


def _same_deal_as_previous(x: _Export) -> np.ndarray:
    return np.r_[False, x.h_deal[1:] == x.h_deal[:-1]]


def _pushes(x: _Export) -> Fact:
    same = _same_deal_as_previous(x)
    pushed_row = same & (x.h_close_day > np.r_[0, x.h_close_day[:-1]])
    pushes = np.bincount(x.h_deal[pushed_row], minlength=x.n)
    closed = x.closed
    share = float((pushes[closed] > 0).mean())
    rates = [
        _rate(x.won, closed & (pushes == 0)),
        _rate(x.won, closed & (pushes == 1)),
        _rate(x.won, closed & (pushes >= 2)),
    ]
    holds = 0.30 <= share <= 0.50 and _strictly_decreasing(rates)
    return Fact(
        "close_date_pushes",
        share,
        f"{share:.0%} of closed deals pushed at least once; win rate with 0/1/2+ pushes "
        + "/".join(f"{r:.0%}" for r in rates),
        "30%-50% pushed at least once; pushed deals win less, more pushes less still",
        bool(holds),
        {"share_pushed": share, "win_0": rates[0], "win_1": rates[1], "win_2plus": rates[2]},
    )


def _standardised(won: np.ndarray, stratum: np.ndarray, bucket: np.ndarray) -> list[float]:
    """Win rate per bucket (0, 1, 2+), standardised over strata in which every bucket has
    enough deals: comparing like with like, since deals that get further have more stages
    to skip or revisit."""
    frame = pd.DataFrame({"stratum": stratum, "bucket": np.minimum(bucket, 2), "won": won})
    rates = frame.pivot_table(index="stratum", columns="bucket", values="won", aggfunc="mean")
    sizes = frame.pivot_table(index="stratum", columns="bucket", values="won", aggfunc="size")
    if rates.shape[1] < 3:
        return [float("nan")] * 3
    usable = (sizes.fillna(0) >= 10).to_numpy().all(axis=1)
    if not usable.any():
        return [float("nan")] * 3
    weight = sizes.to_numpy()[usable].sum(axis=1)
    standardised = (rates.to_numpy()[usable] * weight[:, None]).sum(axis=0) / weight.sum()
    return [float(r) for r in standardised]


def _stage_conversion(x: _Export) -> Fact:
    open_row = (x.h_pos >= 1) & (x.h_pos <= x.n_open)
    deal, pos = x.h_deal[open_row], x.h_pos[open_row]
    changed = np.r_[True, (deal[1:] != deal[:-1]) | (pos[1:] != pos[:-1])]
    deal, pos = deal[changed], pos[changed]
    same = np.r_[False, deal[1:] == deal[:-1]]
    delta = np.where(same, pos - np.r_[0, pos[:-1]], 1)
    skips = np.bincount(deal, weights=np.maximum(delta - 1, 0), minlength=x.n).astype(int)
    revisits = np.bincount(deal, weights=delta < 0, minlength=x.n).astype(int)
    deepest = np.zeros(x.n, dtype=np.int64)
    np.maximum.at(deepest, deal, pos)
    closed = x.closed & (deepest > 0)
    reached = [_rate(x.won, closed & (deepest >= s)) for s in range(1, x.n_open + 1)]
    by_skips = _standardised(x.won[closed], deepest[closed], skips[closed])
    by_revisits = _standardised(x.won[closed], deepest[closed], revisits[closed])
    rising = all(b >= a - 0.02 for a, b in pairwise(reached))
    measurable = not np.isnan([*reached, *by_skips, *by_revisits]).any()
    holds = (
        rising
        and reached[-1] - reached[0] >= 0.3
        and _strictly_decreasing(by_skips)
        and _strictly_decreasing(by_revisits)
    )
    details = {f"win_if_reached_{s + 1}": r for s, r in enumerate(reached)}
    details.update(
        {f"win_skips_{b}": r for b, r in zip(("0", "1", "2plus"), by_skips, strict=True)}
    )
    details.update(
        {f"win_revisits_{b}": r for b, r in zip(("0", "1", "2plus"), by_revisits, strict=True)}
    )
    return Fact(
        "stage_conversion",
        reached[-1] - reached[0],
        "win rate once a stage is reached "
        + "/".join(f"{r:.0%}" for r in reached)
        + "; with 0/1/2+ stages skipped "
        + "/".join(f"{r:.0%}" for r in by_skips)
        + "; revisited "
        + "/".join(f"{r:.0%}" for r in by_revisits),
        "falls with each stage skipped or revisited; later stages convert better",
        bool(holds) if measurable else None,
        details,
    )


def _activity(x: _Export, activities: pd.DataFrame | None) -> Fact:
    expected = (
        "won deals have more, and more recent, buyer activity; silence precedes loss; "
        "meetings with a decision maker raise the odds"
    )
    if activities is None or activities.empty:
        return Fact("activity", None, "no activities table", expected, None)
    ids = pd.Index(np.arange(x.n))
    deal = activities["_deal"].to_numpy()
    when = _times(activities["occurred_at"])
    valid = (deal >= 0) & x.closed[np.maximum(deal, 0)]
    valid &= when <= x.close_time[np.maximum(deal, 0)]
    deal, when = deal[valid], when[valid]
    kind = activities["type"].astype(str).to_numpy()[valid]
    role = (
        activities["contact_role"].astype(str).to_numpy()[valid]
        if "contact_role" in activities.columns
        else np.full(len(deal), "", dtype=object)
    )
    counts = np.bincount(deal, minlength=x.n)
    last = pd.Series(when).groupby(deal).max().reindex(ids).to_numpy()
    recency = (x.close_time - last) / _NS_PER_DAY
    dm = np.bincount(deal[(kind == "meeting") & (role == "decision_maker")], minlength=x.n).astype(
        bool
    )
    closed = x.closed
    won_mean = _mean(counts[closed & x.won])
    lost_mean = _mean(counts[closed & ~x.won])
    has = closed & ~np.isnan(recency)
    won_recency = _median(recency[has & x.won])
    lost_recency = _median(recency[has & ~x.won])
    silent = closed & (np.isnan(recency) | (recency > 21))
    win_silent, win_active = _rate(x.won, silent), _rate(x.won, closed & ~silent)
    win_dm, win_no_dm = _rate(x.won, closed & dm), _rate(x.won, closed & ~dm)
    holds = (
        won_mean > lost_mean
        and won_recency < lost_recency
        and win_silent < win_active
        and win_dm > win_no_dm
    )
    return Fact(
        "activity",
        won_mean / lost_mean if lost_mean else None,
        f"activities per deal won {won_mean:.1f} vs lost {lost_mean:.1f}; days from last "
        f"activity to close won {won_recency:.0f} vs lost {lost_recency:.0f}; win rate silent "
        f"21d+ before close {win_silent:.0%} vs {win_active:.0%}; with a decision-maker "
        f"meeting {win_dm:.0%} vs {win_no_dm:.0%}",
        expected,
        bool(holds),
        {
            "won_mean_activities": won_mean,
            "lost_mean_activities": lost_mean,
            "won_days_since_last": won_recency,
            "lost_days_since_last": lost_recency,
            "win_silent": win_silent,
            "win_active": win_active,
            "win_dm_meeting": win_dm,
            "win_no_dm_meeting": win_no_dm,
        },
    )


def _amounts(x: _Export) -> Fact:
    details: dict[str, float] = {}
    medians: list[float] = []
    tails_ok = True
    groups = x.segment.to_numpy() if x.segment is not None else np.full(x.n, "all", dtype=object)
    order = ("SMB", "Mid-Market", "Enterprise") if x.segment is not None else ("all",)
    parts = []
    for label in order:
        values = x.amount[(groups == label) & (x.amount > 0)]
        if values.size < _MIN_DEALS:
            continue
        logs = np.log(values)
        median = _median(values)
        ratio = float(values.mean() / median)
        p95 = float(np.percentile(values, 95) / median)
        centred = logs - logs.mean()
        skew = float((centred**3).mean() / (centred**2).mean() ** 1.5)
        medians.append(median)
        tails_ok = tails_ok and ratio >= 1.15 and p95 >= 3.0 and abs(skew) < 1.0
        details.update(
            {
                f"median:{label}": median,
                f"mean_over_median:{label}": ratio,
                f"p95_over_median:{label}": p95,
                f"log_skew:{label}": skew,
            }
        )
        parts.append(f"{label} median {median:,.0f} (p95 {p95:.1f}x)")
    same = _same_deal_as_previous(x)
    cut = same & (x.h_amount < np.r_[np.inf, x.h_amount[:-1]])
    late = x.n_open - 1  # the last two open stages: negotiation and its like
    open_row = (x.h_pos >= 1) & (x.h_pos <= x.n_open)
    late_cut = np.bincount(x.h_deal[cut & open_row & (x.h_pos >= late)], minlength=x.n) > 0
    early_cut = np.bincount(x.h_deal[cut & open_row & (x.h_pos < late)], minlength=x.n) > 0
    deepest = np.zeros(x.n, dtype=np.int64)
    np.maximum.at(deepest, x.h_deal[open_row], x.h_pos[open_row])
    reached_late = deepest >= late
    late_share = float(late_cut[reached_late].mean()) if reached_late.any() else np.nan
    early_share = float(early_cut.mean())
    details.update({"late_cut_share": late_share, "early_cut_share": early_share})
    rising = all(b > a for a, b in pairwise(medians))
    holds = rising and tails_ok and late_share >= 0.25 and late_share > early_share
    return Fact(
        "amounts",
        late_share,
        "; ".join(parts)
        + f"; cut in the last two stages for {late_share:.0%} of deals reaching them "
        f"(earlier cuts: {early_share:.0%} of deals)",
        "heavy-tailed (log-normal-like) by segment; amounts often cut late in negotiation",
        bool(holds),
        details,
    )


def _forecast_calls(x: _Export) -> Fact:
    open_row = (x.h_pos >= 1) & (x.h_pos <= x.n_open)
    commit = np.bincount(x.h_deal[open_row & (x.h_category == "Commit")], minlength=x.n).astype(
        bool
    )
    closed = x.closed
    commit_win = _rate(x.won, closed & commit)
    # A rep's call bias: how much more of their won deals they called Commit (recall) than
    # their Commit calls won (precision). Skill moves both together; bias pulls them apart.
    midpoint = (x.data_start + x.data_end) // 2 * _NS_PER_DAY

    def bias(mask: np.ndarray) -> np.ndarray:
        size = len(x.owner_names)
        won = mask & x.won
        called = mask & commit
        n_won = np.bincount(x.owner[won], minlength=size)
        n_called = np.bincount(x.owner[called], minlength=size)
        hits = np.bincount(x.owner[won & commit], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            index = hits / n_won - hits / n_called
        return np.where((n_won >= 10) & (n_called >= 10), index, np.nan)

    overall = bias(closed)
    spread_ok = ~np.isnan(overall)
    centre = float(np.nanmedian(overall)) if spread_ok.any() else np.nan
    over = int((overall[spread_ok] > centre + 0.1).sum())
    under = int((overall[spread_ok] < centre - 0.1).sum())
    first, second = (
        bias(closed & (x.close_time < midpoint)),
        bias(closed & (x.close_time >= midpoint)),
    )
    both = ~np.isnan(first) & ~np.isnan(second)
    corr = float(np.corrcoef(first[both], second[both])[0, 1]) if both.sum() >= 5 else np.nan
    holds: bool | None = 0.60 <= commit_win <= 0.85 and over >= 1 and under >= 1 and corr >= 0.3
    if np.isnan(corr) or np.isnan(commit_win):
        holds = None  # too few reps with enough Commit calls to tell bias from noise
    return Fact(
        "forecast_categories",
        commit_win,
        f"deals ever in Commit win {commit_win:.0%}; {over} reps over-call and {under} "
        f"sandbag (call bias 0.1 beyond the median rep); bias persists between halves of "
        f"history (r = {corr:.2f})",
        "set by reps with personal bias (some sandbag, some over-call); Commit wins 60%-85%",
        holds,
        {
            "commit_win_rate": commit_win,
            "over_callers": over,
            "sandbaggers": under,
            "bias_half_correlation": corr,
        },
    )


def _quarter_end(x: _Export) -> Fact:
    won_day = x.close_time[x.closed & x.won] // _NS_PER_DAY
    last_weeks = float((quarter_end_day(won_day) - won_day < 21).mean())
    open_row = (x.h_pos >= 1) & (x.h_pos <= x.n_open)
    dates = x.h_close_day[open_row]
    on_quarter_end = float((quarter_end_day(dates) == dates).mean())
    holds = last_weeks >= 0.32 and on_quarter_end >= 0.15
    return Fact(
        "quarter_end",
        last_weeks,
        f"{last_weeks:.0%} of wins close in a quarter's last 3 weeks (uniform: 23%); "
        f"{on_quarter_end:.0%} of open close dates are a quarter's last day (uniform: 1%)",
        "more deals close in the last weeks of a quarter; close dates cluster on quarter ends",
        bool(holds),
        {"won_in_last_3_weeks": last_weeks, "close_date_on_quarter_end": on_quarter_end},
    )


def _rep_skill(x: _Export) -> Fact:
    midpoint = (x.data_start + x.data_end) // 2 * _NS_PER_DAY
    first = _rep_rates(x, x.closed & (x.close_time < midpoint))
    second = _rep_rates(x, x.closed & (x.close_time >= midpoint))
    both = ~np.isnan(first) & ~np.isnan(second)
    corr = float(np.corrcoef(first[both], second[both])[0, 1]) if both.sum() >= 5 else np.nan
    return Fact(
        "rep_skill",
        corr,
        f"rep win rates, first vs second half of history: r = {corr:.2f} over "
        f"{int(both.sum())} reps",
        "win rates differ between reps in a way history can learn",
        None if np.isnan(corr) else bool(corr >= 0.3),
        {"half_correlation": corr, "reps": float(both.sum())},
    )


def _drift(x: _Export) -> Fact:
    """Win rate by year of history, on deals created at least 180 days before the data ends
    so that the slow deals of the last year have had time to close."""
    day = x.created // _NS_PER_DAY
    year = (day - x.data_start) // 365
    settled = x.closed & (day <= x.data_end - 180)
    rates = {
        int(y) + 1: _rate(x.won, settled & (year == y))
        for y in np.unique(year[settled])
        if (settled & (year == y)).sum() >= _MIN_DEALS
    }
    values = list(rates.values())
    shift = values[-1] - values[0] if len(values) >= 2 else np.nan
    return Fact(
        "drift",
        shift,
        "win rate by year of history (created): "
        + ", ".join(f"year {y} {r:.0%}" for y, r in rates.items()),
        "conversion shifts over the years",
        None if np.isnan(shift) else bool(abs(shift) >= 0.04),
        {f"year_{y}": r for y, r in rates.items()},
    )


def _quotas(x: _Export, quotas: pd.DataFrame | None) -> Fact:
    expected = "per rep and quarter, roughly 40%-65% of reps attain"
    if quotas is None or "owner_id" not in quotas.columns or quotas.empty:
        return Fact("quota_attainment", None, "no per-rep quotas", expected, None)
    won = x.closed & x.won
    won_day = x.close_time[won] // _NS_PER_DAY
    frame = pd.DataFrame(
        {
            "owner_id": x.owner_names[x.owner[won]],
            "period": quarter_labels(quarter_index(won_day)),
            "amount": x.amount[won],
        }
    )
    revenue = frame.groupby(["owner_id", "period"])["amount"].sum()
    q_first = int(quarter_index(np.array([x.data_start]))[0])
    if int(quarter_index(np.array([x.data_start - 1]))[0]) == q_first:
        q_first += 1
    q_last = int(quarter_index(np.array([x.data_end + 1]))[0]) - 1
    complete = set(quarter_labels(np.arange(q_first, q_last + 1)).tolist())
    targets = quotas[quotas["period"].astype(str).isin(complete)]
    keys = pd.MultiIndex.from_arrays(
        [targets["owner_id"].astype(str), targets["period"].astype(str)]
    )
    achieved = revenue.reindex(keys).fillna(0.0).to_numpy()
    share = float((achieved >= targets["quota"].astype(float).to_numpy()).mean())
    by_quarter = (
        pd.Series(achieved >= targets["quota"].astype(float).to_numpy())
        .groupby(targets["period"].astype(str).to_numpy())
        .mean()
    )
    return Fact(
        "quota_attainment",
        share,
        f"{share:.0%} of {len(targets)} rep-quarters attained over {len(by_quarter)} complete "
        f"quarters (per quarter {by_quarter.min():.0%}-{by_quarter.max():.0%})",
        expected,
        bool(0.40 <= share <= 0.65),
        {
            "share_attained": share,
            "quarter_min": float(by_quarter.min()),
            "quarter_max": float(by_quarter.max()),
        },
    )


def _shape(x: _Export, tables: Mapping[str, pd.DataFrame], stages: StageConfig) -> Fact:
    owners = tables.get("owners")
    reps = len(x.owner_names)
    teams = (
        int(owners["team"].nunique()) if owners is not None and "team" in owners.columns else reps
    )
    years = (x.data_end - x.data_start) / 365.25
    into_quarter = int(x.data_end - (quarter_end_day(np.array([x.data_end]))[0] - 91))
    mid_quarter = 14 <= into_quarter <= 77
    n_open = len(stages.open_stages)
    holds = 5 <= reps <= 60 and 2 <= teams <= 8 and 6 <= n_open <= 8 and mid_quarter
    return Fact(
        "shape",
        float(years),
        f"{x.n} deals over {years:.1f} years; {reps} reps in {teams} teams; {n_open} open "
        f"stages; data ends {into_quarter} days into a quarter",
        "5-60 reps in 2-8 teams; 6-8 open stages; data ends mid-quarter",
        bool(holds),
        {
            "reps": reps,
            "teams": teams,
            "open_stages": n_open,
            "years": years,
            "days_into_quarter": into_quarter,
        },
    )


def measure_facts(tables: Mapping[str, pd.DataFrame], stages: StageConfig) -> dict[str, Fact]:
    """Measure every stylized fact of the spec from contract tables (any export will do).

    Needs `opportunities` and `opportunity_history`; facts that need an optional table
    (accounts for segments, activities, quotas, owners) are reported as not measurable
    (`holds` None) when it is missing.
    """
    # A small export leaves some groups empty; their rates come out NaN and the fact is then
    # reported as failing or not measurable, so numpy's warnings about it are noise.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _measure(tables, stages)


def _measure(tables: Mapping[str, pd.DataFrame], stages: StageConfig) -> dict[str, Fact]:
    x = _prepare(tables, stages)
    activities = tables.get("activities")
    if activities is not None:
        ids = pd.Index(tables["opportunities"]["opportunity_id"].astype(str))
        activities = activities.assign(
            _deal=ids.get_indexer(pd.Index(activities["opportunity_id"].astype(str)))
        )
    cycle, faster = _sales_cycle(x)
    facts = [
        _win_rate(x),
        cycle,
        faster,
        _pushes(x),
        _stage_conversion(x),
        _activity(x, activities),
        _amounts(x),
        _forecast_calls(x),
        _quarter_end(x),
        _rep_skill(x),
        _drift(x),
        _quotas(x, tables.get("quotas")),
        _shape(x, tables, stages),
    ]
    return {fact.name: fact for fact in facts}


def format_facts(facts: Mapping[str, Fact]) -> str:
    """One line per fact: whether it holds, what was measured, and the spec's range."""
    marks = {True: "ok  ", False: "MISS", None: "n/a "}
    lines = []
    for fact in facts.values():
        lines.append(f"{marks[fact.holds]} {fact.name}: {fact.summary}  [spec: {fact.expected}]")
    return "\n".join(lines)
