"""The last monitor report, as the manager's page reads it: last quarter's forecasts of a team
against what happened.

`dealcast monitor` writes its full report to the folder it is given, and publishes a copy
beside the export it judged against, `DATA_DIR/.dealcast/monitor.json` (next to the forecast
store, models.forecast_store): the service and `dealcast report` read the export in
`DATA_DIR`, so they find the latest report there. Its `last_quarter` block holds, for all
teams and per team, the in-period forecasts of the last quarter the log covers (the latest
one over by the export's last change, else the current one, marked incomplete).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.forecast_store import FOLDER

logger = logging.getLogger(__name__)

FILE_NAME = "monitor.json"


def published_path(data_dir: Path) -> Path:
    """Where the service and `dealcast report` look for the latest monitor report."""
    return Path(data_dir) / FOLDER / FILE_NAME


@dataclass(frozen=True)
class QuarterOutcome:
    """One team's (or all teams') in-period forecasts of a quarter against the outcomes."""

    period: str
    complete: bool  # the quarter was over by the export the report judged against
    team: str | None  # None: every team (the report had none of this team's deals)
    n_predictions: int
    n_deals: int
    n_known: int
    n_pending: int
    first_week: int | None  # the earliest week of the quarter with logged forecasts
    first_week_deals: int
    first_week_expected: float  # the deals' summed in-period probabilities then
    first_week_won: int  # of those deals, won within the quarter
    brier: Mapping[str, float | None]  # over the quarter's known outcomes, by forecaster
    generated_at: str
    versions: tuple[str, ...]

    @classmethod
    def from_dict(
        cls, block: Mapping[str, Any], *, period: str, complete: bool, team: str | None, **meta: Any
    ) -> QuarterOutcome:
        return cls(
            period=period,
            complete=complete,
            team=team,
            n_predictions=int(block["n_predictions"]),
            n_deals=int(block["n_deals"]),
            n_known=int(block["n_known"]),
            n_pending=int(block["n_pending"]),
            first_week=block["first_week"],
            first_week_deals=int(block["first_week_deals"]),
            first_week_expected=float(block["first_week_expected"]),
            first_week_won=int(block["first_week_won"]),
            brier=dict(block["brier"]),
            **meta,
        )


def last_quarter(data_dir: Path | None, team: str) -> QuarterOutcome | None:
    """The team's block of the published report (all teams' when it has none of the team's
    deals); None without a report. A report that cannot be read is logged and left out: the
    page shows everything else."""
    if data_dir is None:
        return None
    path = published_path(data_dir)
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        block = report["last_quarter"]
        if block is None:
            return None
        teams = block["by_team"]
        meta = {
            "generated_at": str(report["generated_at"]),
            "versions": tuple(block["versions"]),
        }
        return QuarterOutcome.from_dict(
            teams[team] if team in teams else block["overall"],
            period=str(block["period"]),
            complete=bool(block["complete"]),
            team=team if team in teams else None,
            **meta,
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("monitor report %s unreadable, left off the page: %s", path, error)
        return None
