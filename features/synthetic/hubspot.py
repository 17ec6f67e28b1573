"""A synthetic world written as a HubSpot export, with a HubSpot export's own mess.

`write_hubspot(world, out)` writes what `dealcast import hubspot` reads: `deals.csv` (one row
per deal, HubSpot's labels, the stage calculated properties `Date entered "<stage>"
(<pipeline>)` / `Date exited ...` of every stage), `owners.csv`, `companies.csv` and
`engagements.csv`. The mess, recorded in `_mess.json` (the importer reads `.csv` files only):

- a second pipeline, "Renewals", holding the world's renewal deals, with the same stage names
  (HubSpot exports one pair of stage columns per pipeline and stage);
- HubSpot's one entry per stage: a deal that re-entered a stage keeps its last entry only,
  counted as re-entries;
- an empty Amount on about 3% of deals;
- dates as HubSpot writes them (`2026-03-15 14:05`, minutes only; close dates `2026-03-15`);
- a UTF-8 BOM on deals.csv;
- one deal owner missing from owners.csv.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic.world import SyntheticWorld

MESS_FILE = "_mess.json"
MAIN_PIPELINE = "Sales Pipeline"
SECOND_PIPELINE = "Renewals"
BOM = "\ufeff"
_ENGAGEMENT_TYPES = {
    "call": "CALL",
    "email": "EMAIL",
    "meeting": "MEETING",
    "demo": "MEETING",
    "proposal": "EMAIL",
    "other": "NOTE",
}


@dataclass(frozen=True)
class HubSpotMess:
    """What `write_hubspot` injected, for the tests to check the import against."""

    deals_per_pipeline: dict[str, int]
    reentries_collapsed: int
    empty_amounts: int
    owner_missing: str


def _minutes(times: pd.Series) -> pd.Series:
    return times.dt.tz_convert("UTC").dt.floor("min").dt.strftime("%Y-%m-%d %H:%M")


def write_hubspot(
    world: SyntheticWorld, out: Path, *, empty_amount_rate: float = 0.03
) -> list[Path]:
    """Write the world as a HubSpot export into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(world.seed + 17)
    opportunities = world.tables["opportunities"].reset_index(drop=True)
    history = world.tables["opportunity_history"].sort_values(
        ["opportunity_id", "changed_at"], kind="stable"
    )
    pipeline = np.where(opportunities["type"].eq("Renewal"), SECOND_PIPELINE, MAIN_PIPELINE)
    pipeline_of = pd.Series(pipeline, index=opportunities["opportunity_id"].to_numpy())

    # Stage entries: rows whose stage differs from the deal's previous row; exit = next entry.
    same_deal = history["opportunity_id"].eq(history["opportunity_id"].shift())
    change = ~(same_deal & history["stage"].eq(history["stage"].shift()))
    entries = history.loc[change, ["opportunity_id", "changed_at", "stage"]].reset_index(drop=True)
    next_deal = entries["opportunity_id"].shift(-1)
    entries["exited"] = (
        entries["changed_at"].shift(-1).where(next_deal.eq(entries["opportunity_id"]))
    )
    last = ~entries.duplicated(["opportunity_id", "stage"], keep="last")
    reentries = int((~last).sum())
    entries = entries[last]
    entries["pipeline"] = entries["opportunity_id"].map(pipeline_of)

    deals = pd.DataFrame(
        {
            "Record ID": opportunities["opportunity_id"],
            "Deal Name": "Deal " + opportunities["opportunity_id"].astype(str),
            "Deal Stage": opportunities["stage"],
            "Pipeline": pipeline,
            "Amount": opportunities["amount"].round(2),
            "Close Date": opportunities["close_date"].dt.strftime("%Y-%m-%d"),
            "Create Date": _minutes(opportunities["created_at"]),
            "Deal owner": opportunities["owner_id"],
            "Associated Company": opportunities["account_id"],
            "Deal Type": opportunities["type"],
            "Forecast category": opportunities["forecast_category"],
            "Deal probability": opportunities["stage"].map(world.stages.probabilities) / 100.0,
        }
    )
    empty = rng.random(len(deals)) < empty_amount_rate
    deals["Amount"] = deals["Amount"].astype(object).where(~empty, "")
    for name in (MAIN_PIPELINE, SECOND_PIPELINE):
        ours = entries[entries["pipeline"].eq(name)].set_index("opportunity_id")
        for stage in world.stages.all_stages:
            rows = ours[ours["stage"].eq(stage)]
            for kind, column in (("entered", "changed_at"), ("exited", "exited")):
                times = rows[column].dropna()
                values = _minutes(times) if len(times) else pd.Series(dtype=str)
                label = f'Date {kind} "{stage}" ({name})'
                deals[label] = deals["Record ID"].map(values).astype(object).fillna("")

    owners = world.tables["owners"]
    missing = str(opportunities["owner_id"].iloc[0])
    owners = owners[owners["owner_id"].ne(missing)]
    accounts = world.tables["accounts"]
    activities = world.tables["activities"]
    files = {
        "deals.csv": deals,
        "owners.csv": pd.DataFrame(
            {
                "Owner": owners["owner_id"],
                "Email": owners["owner_id"] + "@example.com",
                "Team": owners["team"],
            }
        ),
        "companies.csv": pd.DataFrame(
            {
                "Record ID": np.arange(1, len(accounts) + 1),
                "Company name": accounts["account_id"],
                "Industry": accounts["industry"],
                "Number of Employees": accounts["employees"],
            }
        ),
        "engagements.csv": pd.DataFrame(
            {
                "Activity type": activities["type"].map(_ENGAGEMENT_TYPES),
                "Activity date": _minutes(activities["occurred_at"]),
                "Associated Deal IDs": activities["opportunity_id"],
            }
        ),
    }
    written = []
    for name, frame in files.items():
        path = out / name
        text = frame.to_csv(index=False, lineterminator="\r\n")
        path.write_text((BOM if name == "deals.csv" else "") + text, encoding="utf-8")
        written.append(path)
    counts = pd.Series(pipeline).value_counts()
    mess = HubSpotMess(
        deals_per_pipeline={str(k): int(v) for k, v in counts.items()},
        reentries_collapsed=reentries,
        empty_amounts=int(empty.sum()),
        owner_missing=missing,
    )
    (out / MESS_FILE).write_text(json.dumps(asdict(mess), indent=2), encoding="utf-8")
    return written
