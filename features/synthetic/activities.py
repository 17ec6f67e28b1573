"""Logged buyer activity: its volume, recency and who was in the room follow the deal's fate.

Engaged buyers generate more calls, meetings and demos; deals heading for a win stay busy up
to signature (activity thickens towards the close), while deals heading for a loss go quiet
well before someone marks them lost. Decision makers show up in meetings of deals that are
going well; a deal whose decision maker never meets the rep rarely closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synthetic.calendar import SECONDS_PER_DAY
from features.synthetic.lifecycle import Timeline
from features.synthetic.parameters import ACTIVITY_TYPES, CONTACT_ROLES, WorldParameters
from features.synthetic.population import Deals

# Mix of activity types (ACTIVITY_TYPES order) for deals going well and going badly.
_TYPE_SHARE_WINNING = np.array([0.22, 0.36, 0.18, 0.09, 0.07, 0.08])
_TYPE_SHARE_LOSING = np.array([0.28, 0.42, 0.11, 0.06, 0.04, 0.09])
# Contact roles (CONTACT_ROLES order, then "none logged") of an ordinary touch.
_ROLE_SHARE = np.array([0.04, 0.12, 0.30, 0.24, 0.30])
_MEETING = ACTIVITY_TYPES.index("meeting")
_DECISION_MAKER = CONTACT_ROLES.index("decision_maker")
_CHAMPION = CONTACT_ROLES.index("champion")
_MAX_PER_DEAL = 400


@dataclass(frozen=True)
class Activities:
    """Activity rows sorted by deal and time; role -1 means no contact role logged."""

    deal: np.ndarray
    seconds: np.ndarray
    kind: np.ndarray  # index into ACTIVITY_TYPES
    role: np.ndarray  # index into CONTACT_ROLES, or -1


def activities(
    deals: Deals, tl: Timeline, *, end: float, rng: np.random.Generator, p: WorldParameters
) -> Activities:
    """Every logged touch of every deal between its creation and `end` (none after close)."""
    n = len(deals)
    span = tl.engaged_until - deals.created
    rate = np.asarray(p.activity_per_week)[deals.segment] * np.exp(
        p.activity_engagement * deals.engagement_z + p.activity_won_boost * tl.looks_won
    )
    counts = np.minimum(rng.poisson(rate * span / 7.0), _count_cap(span))
    deal = np.repeat(np.arange(n), counts)
    # Won deals: activity thickens towards signature; lost deals: spread until they go quiet.
    power = np.where(tl.looks_won, 1.0 / 1.6, 1.0)[deal]
    position = rng.random(len(deal)) ** power
    when = deals.created[deal] + span[deal] * position
    # Dark spells: buyers of deals going well and badly alike go quiet for weeks mid-deal
    # (budget cycles, holidays, a reorganisation), so a quiet week is a hint, not a verdict.
    dark = rng.random(n) < p.dark_spell_share
    dark_from = rng.uniform(0.1, 0.6, n)
    dark_to = dark_from + rng.uniform(*p.dark_spell_length, n)
    in_dark = dark[deal] & (position >= dark_from[deal]) & (position < dark_to[deal])
    keep = (when <= end) & ~in_dark
    deal, when = deal[keep], when[keep]
    seconds = np.floor(when * SECONDS_PER_DAY).astype(np.int64)
    relative = seconds - seconds.min() if len(seconds) else seconds
    shift = int(relative.max()).bit_length() if len(relative) else 0
    order = np.argsort((deal.astype(np.int64) << shift) | relative, kind="stable")
    deal, seconds = deal[order], seconds[order]

    winning = tl.looks_won[deal]
    u = rng.random(len(deal))
    kind = np.where(
        winning,
        np.searchsorted(np.cumsum(_TYPE_SHARE_WINNING), u, side="right"),
        np.searchsorted(np.cumsum(_TYPE_SHARE_LOSING), u, side="right"),
    )
    kind = np.minimum(kind, len(ACTIVITY_TYPES) - 1).astype(np.int8)
    role = np.searchsorted(np.cumsum(_ROLE_SHARE), rng.random(len(deal)), side="right")
    role = np.where(role >= len(CONTACT_ROLES), -1, role)
    dm_engaged = rng.random(n) < 1.0 / (
        1.0
        + np.exp(
            -(p.dm_engaged_logit + 0.7 * deals.engagement_z + p.dm_engaged_outcome * tl.looks_won)
        )
    )
    meeting = kind == _MEETING
    engaged = dm_engaged[deal]
    role = np.where(meeting & engaged & (rng.random(len(deal)) < p.dm_meeting_share), 0, role)
    role = np.where(meeting & ~engaged & (role == _DECISION_MAKER), _CHAMPION, role)
    return Activities(deal=deal, seconds=seconds, kind=kind, role=role.astype(np.int8))


def _count_cap(span: np.ndarray) -> np.ndarray:
    """At most a handful of logged touches per day of a deal's life, and never absurd totals."""
    return np.minimum(np.ceil(4.0 * np.maximum(span, 1.0)), _MAX_PER_DEAL).astype(np.int64)
