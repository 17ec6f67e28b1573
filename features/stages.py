"""The stage model of a CRM: ordered open stages, won and lost stages, default probabilities.

Resolved in the contract's order of precedence: `stages.yaml` in the export, else inferred from
the history (won = stages that end deals marked won, lost likewise, open stages ordered by
their median position within deals), else Salesforce's standard picklist.

`stages.yaml` has this shape (probabilities in percent, the CRM's configured defaults)::

    open:
      - {name: Prospecting, probability: 10}
      - {name: Qualification, probability: 20}
    won:
      - {name: Closed Won, probability: 100}
    lost:
      - {name: Closed Lost, probability: 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

StageSource = Literal["stages.yaml", "inferred from history", "Salesforce standard picklist"]

SALESFORCE_STANDARD_OPEN: tuple[tuple[str, float], ...] = (
    ("Prospecting", 10.0),
    ("Qualification", 10.0),
    ("Needs Analysis", 20.0),
    ("Value Proposition", 50.0),
    ("Id. Decision Makers", 60.0),
    ("Perception Analysis", 70.0),
    ("Proposal/Price Quote", 75.0),
    ("Negotiation/Review", 90.0),
)


class StagesError(ValueError):
    """`stages.yaml` is malformed; the message names the entry and what was expected."""


@dataclass(frozen=True)
class StageConfig:
    """Ordered open stages plus terminal stages, with the CRM's default probability (percent).

    A probability is NaN when the CRM's default is unknown (inferred stages without a
    `probability` column in the history).
    """

    open_stages: tuple[str, ...]
    won_stages: tuple[str, ...]
    lost_stages: tuple[str, ...]
    probabilities: Mapping[str, float] = field(default_factory=dict)
    source: StageSource = "stages.yaml"

    @property
    def all_stages(self) -> tuple[str, ...]:
        return self.open_stages + self.won_stages + self.lost_stages

    def order(self) -> dict[str, int]:
        """Stage -> position: open stages 1..n in order, won stages n+1, lost stages 0."""
        positions = {stage: i + 1 for i, stage in enumerate(self.open_stages)}
        positions.update({stage: len(self.open_stages) + 1 for stage in self.won_stages})
        positions.update({stage: 0 for stage in self.lost_stages})
        return positions

    def probability(self, stage: str) -> float:
        return float(self.probabilities.get(stage, math.nan))

    def to_data(self) -> dict[str, Any]:
        """As a model bundle stores it (features.artifacts); NaN probabilities kept."""
        return {
            "open_stages": list(self.open_stages),
            "won_stages": list(self.won_stages),
            "lost_stages": list(self.lost_stages),
            "probabilities": {str(k): float(v) for k, v in self.probabilities.items()},
            "source": self.source,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StageConfig:
        return cls(
            open_stages=tuple(data["open_stages"]),
            won_stages=tuple(data["won_stages"]),
            lost_stages=tuple(data["lost_stages"]),
            probabilities=dict(data["probabilities"]),
            source=data["source"],
        )

    def to_yaml_dict(self) -> dict[str, list[dict[str, Any]]]:
        def entries(stages: tuple[str, ...]) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for stage in stages:
                entry: dict[str, Any] = {"name": stage}
                if not math.isnan(self.probability(stage)):
                    entry["probability"] = self.probability(stage)
                out.append(entry)
            return out

        return {
            "open": entries(self.open_stages),
            "won": entries(self.won_stages),
            "lost": entries(self.lost_stages),
        }

    @classmethod
    def from_yaml_dict(cls, document: object) -> StageConfig:
        if not isinstance(document, Mapping):
            raise StagesError("stages.yaml: expected a mapping with keys 'open', 'won', 'lost'")
        names: dict[str, list[str]] = {}
        probabilities: dict[str, float] = {}
        for group in ("open", "won", "lost"):
            entries = document.get(group)
            if not isinstance(entries, list) or not entries:
                raise StagesError(f"stages.yaml: '{group}' must be a non-empty list of stages")
            names[group] = []
            for i, entry in enumerate(entries):
                where = f"stages.yaml: {group}[{i}]"
                if isinstance(entry, str):
                    entry = {"name": entry}
                if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                    raise StagesError(f"{where}: expected a stage name or {{name, probability}}")
                name = entry["name"].strip()
                if not name or name in probabilities or any(name in v for v in names.values()):
                    raise StagesError(f"{where}: stage name {name!r} is empty or repeated")
                names[group].append(name)
                raw = entry.get("probability")
                if raw is None:
                    probabilities[name] = math.nan
                    continue
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    raise StagesError(f"{where}: probability {raw!r} is not a number") from None
                if not 0.0 <= value <= 100.0:
                    raise StagesError(f"{where}: probability {value:g} is not in [0, 100]")
                probabilities[name] = value
        return cls(
            open_stages=tuple(names["open"]),
            won_stages=tuple(names["won"]),
            lost_stages=tuple(names["lost"]),
            probabilities=probabilities,
            source="stages.yaml",
        )


def salesforce_standard() -> StageConfig:
    probabilities = dict(SALESFORCE_STANDARD_OPEN)
    probabilities.update({"Closed Won": 100.0, "Closed Lost": 0.0})
    return StageConfig(
        open_stages=tuple(name for name, _ in SALESFORCE_STANDARD_OPEN),
        won_stages=("Closed Won",),
        lost_stages=("Closed Lost",),
        probabilities=probabilities,
        source="Salesforce standard picklist",
    )


def infer_stages(history: pd.DataFrame, outcomes: pd.DataFrame) -> StageConfig | None:
    """Infer the stage model from history and the opportunities' `is_closed`/`is_won` flags.

    `history` needs opportunity_id, changed_at, stage (and optionally probability);
    `outcomes` needs opportunity_id, is_closed, is_won as booleans. Returns None when the
    outcomes name no won or no lost deal, since then terminal stages cannot be told apart.
    """
    ordered = history.sort_values(["opportunity_id", "changed_at"], kind="stable")
    last = ordered.groupby("opportunity_id", sort=False).tail(1)[["opportunity_id", "stage"]]
    last = last.merge(outcomes, on="opportunity_id", how="inner")
    closed = last[last["is_closed"].astype("boolean").fillna(False)]
    won_mask = closed["is_won"].astype("boolean").fillna(False).astype(bool)
    won = tuple(sorted(closed.loc[won_mask, "stage"].unique()))
    lost = tuple(sorted(set(closed.loc[~won_mask, "stage"].unique()) - set(won)))
    if not won or not lost:
        return None
    terminal = set(won) | set(lost)
    # Median position of each open stage within its deals (0 = first row, 1 = last row).
    rank = ordered.groupby("opportunity_id", sort=False).cumcount()
    size = ordered.groupby("opportunity_id", sort=False)["stage"].transform("size")
    relative: pd.Series = rank / np.maximum(size - 1, 1)
    open_rows = ~ordered["stage"].isin(terminal)
    medians: pd.Series = relative[open_rows].groupby(ordered.loc[open_rows, "stage"]).median()
    open_stages = tuple(medians.sort_values(kind="stable").index.astype(str))
    probabilities: dict[str, float] = {}
    if "probability" in ordered.columns:
        by_stage = ordered.groupby("stage")["probability"].median()
        probabilities = {str(k): float(v) for k, v in by_stage.items()}
    for stage in open_stages + won + lost:
        probabilities.setdefault(stage, math.nan)
    return StageConfig(
        open_stages=open_stages,
        won_stages=won,
        lost_stages=lost,
        probabilities=probabilities,
        source="inferred from history",
    )
