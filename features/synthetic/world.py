"""Generating and writing a synthetic world: the contract tables, the stages and ground truth.

`generate_world` is deterministic per seed: every draw comes, in a fixed order, from one
`numpy.random.default_rng(seed)`, so the same seed gives equal tables and byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.export_writer import ExportFormat, iso_strings, write_export
from features.stages import StageConfig
from features.synthetic import activities as activity_model
from features.synthetic import lifecycle, population
from features.synthetic.calendar import (
    days_to_dates,
    seconds_to_timestamps,
    to_days,
    to_timestamps,
)
from features.synthetic.managers import manual_probabilities
from features.synthetic.parameters import (
    ACTIVITY_TYPES,
    CONTACT_ROLES,
    DEAL_TYPES,
    FORECAST_CATEGORIES,
    INDUSTRIES,
    LEAD_SOURCES,
    LOST_STAGE,
    OPEN_STAGES,
    REGIONS,
    SEGMENTS,
    TEAM_REGIONS,
    WON_STAGE,
    WorldParameters,
)
from features.synthetic.quotas import quotas as quota_table

logger = logging.getLogger(__name__)

DEFAULT_END = pd.Timestamp("2026-11-15", tz="UTC")
_DEFAULT_SPAN_MONTHS = 36  # the span the parameters are tuned for
GROUND_TRUTH_DIR = "ground_truth"
GROUND_TRUTH_FILE = "propensity.csv"
STAGE_NAMES: tuple[str, ...] = (*(name for name, _ in OPEN_STAGES), WON_STAGE, LOST_STAGE)


@dataclass(frozen=True)
class SyntheticWorld:
    """A generated CRM export plus what a real export never has: each deal's true odds.

    `tables` holds the contract tables (opportunities, opportunity_history, activities,
    accounts, owners, quotas); `ground_truth` is kept apart so it can never leak into them.
    """

    tables: dict[str, pd.DataFrame]
    stages: StageConfig
    ground_truth: pd.DataFrame
    seed: int
    end: pd.Timestamp


def world_stages() -> StageConfig:
    """The world's CRM stage model: 7 open stages with untuned default probabilities."""
    probabilities = dict(OPEN_STAGES)
    probabilities.update({WON_STAGE: 100.0, LOST_STAGE: 0.0})
    return StageConfig(
        open_stages=tuple(name for name, _ in OPEN_STAGES),
        won_stages=(WON_STAGE,),
        lost_stages=(LOST_STAGE,),
        probabilities=probabilities,
        source="stages.yaml",
    )


def _labels(names: pa.Array | list[str] | tuple[str, ...], codes: np.ndarray) -> pd.Series:
    """Strings looked up by code (code < 0 gives a missing value), as pandas `str`.

    Arrow's take is an order of magnitude faster than building Python strings per row.
    """
    table = names if isinstance(names, pa.Array) else pa.array(list(names), type=pa.string())
    codes = np.asarray(codes, dtype=np.int64)
    indices = pa.array(codes, mask=codes < 0) if (codes < 0).any() else pa.array(codes)
    return pd.Series(pd.array(table.take(indices), dtype="str"))


def _ids(prefix: str, count: int) -> pa.Array:
    width = max(len(str(count)), 3)
    numbers = np.char.zfill(np.arange(1, count + 1).astype(str), width)
    return pa.array(np.char.add(prefix, numbers).tolist(), type=pa.string())


def generate_world(
    n_opportunities: int = 20_000,
    seed: int = 1,
    *,
    end: pd.Timestamp = DEFAULT_END,
    years: int = 3,
    months: int | None = None,
    signal_free: bool = False,
    parameters: WorldParameters | None = None,
) -> SyntheticWorld:
    """A complete CRM export of `n_opportunities` deals created over `years` before `end`.

    Nothing in any table is stamped after `end`; deals still open then keep an open stage as
    their last history row. `months` gives the span in months instead (a young org: its
    reps carry the same book per quarter, its drift is the share of three years' drift that
    fits). `signal_free` makes outcomes depend on the stage alone
    (`WorldParameters.signal_free`). `parameters` overrides the tuned defaults (experiments).
    """
    if n_opportunities < 1:
        raise ValueError(f"n_opportunities must be at least 1, got {n_opportunities}")
    if years < 1:
        raise ValueError(f"years must be at least 1, got {years}")
    if months is not None and months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    span_months = 12 * years if months is None else months
    p = parameters or WorldParameters()
    if span_months != _DEFAULT_SPAN_MONTHS:
        scale = span_months / _DEFAULT_SPAN_MONTHS
        p = replace(
            p,
            deals_per_rep=max(1, round(p.deals_per_rep * scale)),
            drift_amplitude=p.drift_amplitude * min(scale, 1.0),
        )
    if signal_free:
        p = p.signal_free()
    end = pd.Timestamp(end)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    start_ts = end - pd.DateOffset(months=span_months)
    start, end_days = to_days(start_ts), to_days(end)
    rng = np.random.default_rng(seed)

    org = population.sales_org(n_opportunities, rng, p)
    accts = population.accounts(n_opportunities, org, rng, p)
    deals = population.deals(n_opportunities, org, accts, start=start, end=end_days, rng=rng, p=p)
    logger.debug("population: %d reps, %d accounts", org.n_reps, len(accts.segment))
    tl = lifecycle.timeline(deals, rng, p)
    hist = lifecycle.history(deals, org, tl, end=end_days, rng=rng, p=p)
    acts = activity_model.activities(deals, tl, end=end_days, rng=rng, p=p)
    logger.debug("history: %d rows; activities: %d rows", len(hist.deal), len(acts.deal))

    opportunity_ids = _ids("OPP-", n_opportunities)
    account_ids = _ids("ACC-", len(accts.segment))
    owner_ids = _ids("REP-", org.n_reps)
    quotas = quota_table(
        org,
        accts,
        deals,
        hist,
        start=start,
        end=end_days,
        rng=rng,
        p=p,
        owner_ids=np.asarray(owner_ids.to_pylist()),
    )
    # Drawn last, so that manager weights leave every other draw of the world as it was.
    manual = manual_probabilities(hist, deals, org, rng, p)
    tables = {
        "opportunities": _opportunities(deals, hist, opportunity_ids, account_ids, owner_ids),
        "opportunity_history": _history(hist, manual, opportunity_ids),
        "activities": _activities(acts, opportunity_ids),
        "accounts": _accounts(accts, account_ids),
        "owners": _owners(org, owner_ids),
        "quotas": quotas,
    }
    truth = _ground_truth(deals, tl, opportunity_ids)
    return SyntheticWorld(
        tables=tables, stages=world_stages(), ground_truth=truth, seed=seed, end=end
    )


def _opportunities(
    deals: population.Deals,
    hist: lifecycle.History,
    opportunity_ids: pa.Array,
    account_ids: pa.Array,
    owner_ids: pa.Array,
) -> pd.DataFrame:
    """Static attributes plus current-state columns copied from each deal's last history row."""
    last = hist.last_row
    stage = hist.stage[last]
    return pd.DataFrame(
        {
            "opportunity_id": _labels(opportunity_ids, np.arange(len(deals))),
            "account_id": _labels(account_ids, deals.account),
            "owner_id": _labels(owner_ids, deals.owner),
            "created_at": to_timestamps(deals.created),
            "type": _labels(DEAL_TYPES, deals.deal_type),
            "lead_source": _labels(LEAD_SOURCES, deals.source),
            "stage": _labels(STAGE_NAMES, stage),
            "amount": hist.amount[last],
            "close_date": days_to_dates(hist.close_day[last]),
            "is_closed": stage >= lifecycle.WON_CODE,
            "is_won": stage == lifecycle.WON_CODE,
            "forecast_category": _labels(FORECAST_CATEGORIES, hist.category[last]),
        }
    )


def _history(
    hist: lifecycle.History, manual: np.ndarray, opportunity_ids: pa.Array
) -> pd.DataFrame:
    probability = np.array([*(prob for _, prob in OPEN_STAGES), 100.0, 0.0])
    return pd.DataFrame(
        {
            "opportunity_id": _labels(opportunity_ids, hist.deal),
            "changed_at": seconds_to_timestamps(hist.seconds),
            "stage": _labels(STAGE_NAMES, hist.stage),
            "amount": hist.amount,
            "close_date": days_to_dates(hist.close_day),
            "forecast_category": _labels(FORECAST_CATEGORIES, hist.category),
            "probability": probability[hist.stage],
            "manual_probability": manual,
            "currency": _labels(("USD",), np.zeros(len(hist.deal), dtype=np.int64)),
        }
    )


def _activities(acts: activity_model.Activities, opportunity_ids: pa.Array) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": _labels(opportunity_ids, acts.deal),
            "occurred_at": seconds_to_timestamps(acts.seconds),
            "type": _labels(ACTIVITY_TYPES, acts.kind),
            "contact_role": _labels(CONTACT_ROLES, acts.role),
        }
    )


def _accounts(accts: population.Accounts, account_ids: pa.Array) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": _labels(account_ids, np.arange(len(accts.segment))),
            "segment": _labels(SEGMENTS, accts.segment),
            "industry": _labels(INDUSTRIES, accts.industry),
            "employees": accts.employees,
            "annual_revenue": accts.annual_revenue,
            "region": _labels(REGIONS, accts.region),
        }
    )


def _owners(org: population.SalesOrg, owner_ids: pa.Array) -> pd.DataFrame:
    managers = [f"MGR-{t + 1:02d}" for t in range(org.n_teams)]
    teams = [f"{TEAM_REGIONS[t]} {t + 1}" for t in range(org.n_teams)]
    return pd.DataFrame(
        {
            "owner_id": _labels(owner_ids, np.arange(org.n_reps)),
            "team": _labels(teams, org.rep_team),
            "manager_id": _labels(managers, org.rep_team),
            "region": _labels(REGIONS, org.rep_region),
        }
    )


def _ground_truth(
    deals: population.Deals, tl: lifecycle.Timeline, opportunity_ids: pa.Array
) -> pd.DataFrame:
    """Each deal's latent odds and their drivers; `won` and `closes_at` are the drawn future,
    realised in the tables only when the deal closed before the data's end."""
    frame = pd.DataFrame(
        {
            "opportunity_id": _labels(opportunity_ids, np.arange(len(deals))),
            "logit": deals.logit,
            "probability": deals.probability,
        }
    )
    for name, values in deals.components.items():
        frame[f"driver_{name}"] = values
    frame["won"] = tl.won
    frame["closes_at"] = to_timestamps(tl.closes)
    return frame


def write_world(world: SyntheticWorld, out_dir: Path, fmt: ExportFormat = "csv") -> list[Path]:
    """Write the export (tables and stages.yaml) and, apart from it, the ground truth.

    Ground truth goes to `out_dir/ground_truth/propensity.csv`, a folder the contract does not
    read, so no loader can mistake it for a table.
    """
    out_dir = Path(out_dir)
    paths = write_export(world.tables, out_dir, stages=world.stages.to_yaml_dict(), fmt=fmt)
    truth_dir = out_dir / GROUND_TRUTH_DIR
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth_path = truth_dir / GROUND_TRUTH_FILE
    truth = world.ground_truth
    arrays = [
        iso_strings(truth[name], as_date=False)
        if name == "closes_at"
        else pa.Array.from_pandas(truth[name])
        for name in truth.columns
    ]
    pa_csv.write_csv(
        pa.Table.from_arrays(arrays, names=list(truth.columns)),
        truth_path,
        pa_csv.WriteOptions(quoting_style="needed"),
    )
    paths.append(truth_path)
    logger.info("wrote %d files to %s", len(paths), out_dir)
    return paths
