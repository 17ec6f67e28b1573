"""A synthetic world written as a Pipedrive-like export: deals plus their deal flow (a long
history), for `dealcast import csv --mapping features/importers/mappings/pipedrive.toml`.

Files: `deals.csv` (one row per deal, Pipedrive's `Deal - ...` labels, the current state and a
`Deal - Status` of open/won/lost), `deal_flow.csv` (one row per change: the deal's stage,
value and expected close date after it), `users.csv`, `organizations.csv` and
`activities.csv`. The mess, recorded in `_mess.json`:

- times as a Berlin user's export writes them: naive local times (`2026-03-01 14:05:00`),
  daylight saving included; dates `2026-03-01`;
- a UTF-8 BOM and CRLF line ends on every file;
- a won or lost deal keeps its last pipeline stage in `Deal - Stage`, as in Pipedrive; the
  flow's closing row says `Won` or `Lost`, and the status column must agree;
- an empty `Value` on about 3% of flow rows (the validator carries the earlier value);
- one deal owner missing from users.csv.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic.crm_formats import local_times
from features.synthetic.parameters import LOST_STAGE, WON_STAGE
from features.synthetic.world import SyntheticWorld

MESS_FILE = "_mess.json"
ZONE = "Europe/Berlin"
TIME_PATTERN = "%Y-%m-%d %H:%M:%S"
BOM = "\ufeff"
WON_LABEL, LOST_LABEL = "Won", "Lost"
_ACTIVITY_TYPES = {
    "call": "Call",
    "email": "Email",
    "meeting": "Meeting",
    "demo": "Demo",
    "proposal": "Proposal",
    "other": "Task",
}


@dataclass(frozen=True)
class PipedriveMess:
    """What `write_pipedrive` injected, for the tests to check the import against."""

    deals: int
    flow_rows: int
    empty_values: int
    owner_missing: str
    zone: str


def write_pipedrive(
    world: SyntheticWorld, out: Path, *, empty_value_rate: float = 0.03
) -> list[Path]:
    """Write the world as a Pipedrive-like export into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(world.seed + 23)
    opportunities = world.tables["opportunities"].reset_index(drop=True)
    history = world.tables["opportunity_history"].sort_values(
        ["opportunity_id", "changed_at"], kind="stable"
    )
    closed_label = {WON_STAGE: WON_LABEL, LOST_STAGE: LOST_LABEL}
    # Pipedrive keeps a closed deal in the stage it closed from; the status says how it ended.
    last_open = (
        history[~history["stage"].isin(list(closed_label))]
        .drop_duplicates("opportunity_id", keep="last")
        .set_index("opportunity_id")["stage"]
    )
    first = history.drop_duplicates("opportunity_id").set_index("opportunity_id")["stage"]
    status = np.select(
        [opportunities["stage"].eq(WON_STAGE), opportunities["stage"].eq(LOST_STAGE)],
        ["won", "lost"],
        "open",
    )
    shown_stage = opportunities["stage"].where(
        status == "open",
        opportunities["opportunity_id"]
        .map(last_open)
        .fillna(opportunities["opportunity_id"].map(first)),
    )
    deals = pd.DataFrame(
        {
            "Deal - ID": opportunities["opportunity_id"],
            "Deal - Title": "Deal " + opportunities["opportunity_id"].astype(str),
            "Deal - Organization": opportunities["account_id"],
            "Deal - Owner": opportunities["owner_id"],
            "Deal - Value": opportunities["amount"].round(2),
            "Deal - Currency": "USD",
            "Deal - Stage": shown_stage,
            "Deal - Status": status,
            "Deal - Deal created": local_times(
                opportunities["created_at"], zone=ZONE, pattern=TIME_PATTERN
            ),
            "Deal - Expected close date": opportunities["close_date"].dt.strftime("%Y-%m-%d"),
            "Deal - Type": opportunities["type"],
            "Deal - Source": opportunities["lead_source"],
        }
    )
    flow = pd.DataFrame(
        {
            "Deal ID": history["opportunity_id"],
            "Update time": local_times(history["changed_at"], zone=ZONE, pattern=TIME_PATTERN),
            "Stage": history["stage"].replace(closed_label),
            "Value": history["amount"].round(2).astype(object),
            "Expected close date": history["close_date"].dt.strftime("%Y-%m-%d"),
        }
    )
    empty = rng.random(len(flow)) < empty_value_rate
    flow["Value"] = flow["Value"].where(~empty, "")
    owners = world.tables["owners"]
    missing = str(opportunities["owner_id"].iloc[-1])
    owners = owners[owners["owner_id"].ne(missing)]
    accounts = world.tables["accounts"]
    activities = world.tables["activities"]
    files = {
        "deals.csv": deals,
        "deal_flow.csv": flow,
        "users.csv": pd.DataFrame(
            {"User - Name": owners["owner_id"], "User - Team": owners["team"]}
        ),
        "organizations.csv": pd.DataFrame(
            {
                "Organization - Name": accounts["account_id"],
                "Organization - Industry": accounts["industry"],
                "Organization - Number of employees": accounts["employees"],
            }
        ),
        "activities.csv": pd.DataFrame(
            {
                "Activity - Deal ID": activities["opportunity_id"],
                "Activity - Type": activities["type"].map(_ACTIVITY_TYPES),
                "Activity - Due date": local_times(
                    activities["occurred_at"], zone=ZONE, pattern=TIME_PATTERN
                ),
            }
        ),
    }
    written = []
    for name, frame in files.items():
        path = out / name
        path.write_text(BOM + frame.to_csv(index=False, lineterminator="\r\n"), encoding="utf-8")
        written.append(path)
    mess = PipedriveMess(
        deals=len(deals),
        flow_rows=len(flow),
        empty_values=int(empty.sum()),
        owner_missing=missing,
        zone=ZONE,
    )
    (out / MESS_FILE).write_text(json.dumps(asdict(mess), indent=2), encoding="utf-8")
    return written
