"""Manager weights: in some teams the manager types a probability over the stage default.

The seeds' fourth forecast method. A manager's number is a judgement, not a formula: it starts
from what the stage usually converts at, moves with the rep's call, sees a little of the deal's
true odds, and carries the manager's own lean (some are rosy, some stern), in steps of 5 percent
as people type them. Closed rows carry 100 or 0, as Salesforce sets them.
"""

from __future__ import annotations

import numpy as np

from features.synthetic.lifecycle import (
    BEST_CASE,
    COMMIT,
    OMITTED,
    WON_CODE,
    History,
)
from features.synthetic.parameters import WorldParameters
from features.synthetic.population import Deals, SalesOrg

# Logit of what a manager expects a deal in each open stage to convert at, before the call:
# roughly the world's true snapshot rates (Prospecting about 10%, Verbal Commit about 70%).
_STAGE_LOGIT = np.array([-2.2, -1.9, -1.5, -1.1, -0.6, 0.0, 0.8])
_CALL_SHIFT = {COMMIT: 0.8, BEST_CASE: 0.3, OMITTED: -1.5}


def manual_probabilities(
    hist: History, deals: Deals, org: SalesOrg, rng: np.random.Generator, p: WorldParameters
) -> np.ndarray:
    """Percent per history row, NaN where no manager typed one (teams that do not)."""
    n_manual = max(round(p.manual_team_share * org.n_teams), 1 if p.manual_team_share else 0)
    manual_teams = rng.permutation(org.n_teams)[:n_manual]
    team_bias = rng.normal(0.0, p.manual_bias_sd, org.n_teams)
    typed_team = np.zeros(org.n_teams, dtype=bool)
    typed_team[manual_teams] = True

    team = org.rep_team[deals.owner[hist.deal]]
    logit = deals.logit
    spread = max(float(logit.std()), 1e-9)
    read = p.manual_read * (logit - logit.mean()) / spread
    open_row = hist.stage < WON_CODE
    shift = np.zeros(len(hist.deal))
    for call, value in _CALL_SHIFT.items():
        shift[hist.category == call] = value
    judged = (
        _STAGE_LOGIT[np.minimum(hist.stage, len(_STAGE_LOGIT) - 1)]
        + shift
        + team_bias[team]
        + read[hist.deal]
        + rng.normal(0.0, p.manual_noise_sd, len(hist.deal))
    )
    percent = np.round(100.0 / (1.0 + np.exp(-judged)) / 5.0) * 5.0
    closed = np.where(hist.stage == WON_CODE, 100.0, 0.0)
    percent = np.where(open_row, np.clip(percent, 5.0, 95.0), closed)
    return np.where(typed_team[team], percent, np.nan)
