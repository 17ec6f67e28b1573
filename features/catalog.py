"""The feature catalog: every feature's name, meaning, source, window, kind and factor.

This is the one place features are described; the pipeline's output columns are checked
against it in the tests, the README's feature table is rendered from it
(`python -m features.catalog`), and the explanations group attributions by its `factor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from features.config import FeatureConfig
from features.deals import ACTIVITY_KINDS, StaticAttribute
from features.reliability import COMMIT_PRIOR_STRENGTH

Kind = Literal["numeric", "categorical"]
Factor = Literal[
    "stage & momentum",
    "engagement",
    "close-date hygiene",
    "deal shape",
    "rep track record",
    "account history",
    "timing",
]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    meaning: str
    source: str
    window: str
    kind: Kind
    factor: Factor


def _spec(
    name: str, meaning: str, source: str, window: str, factor: Factor, kind: Kind = "numeric"
) -> FeatureSpec:
    return FeatureSpec(name, meaning, source, window, kind, factor)


_AS_OF = "state at as_of"
_HISTORY = "opportunity_history"
_TO_DATE = "creation to as_of"
_OTHERS = "other deals closed before as_of"


def feature_catalog(
    config: FeatureConfig, attributes: tuple[StaticAttribute, ...] = ()
) -> tuple[FeatureSpec, ...]:
    """The features, in the column order of the feature frame."""
    specs: list[FeatureSpec] = [
        _spec("stage", "the deal's stage", _HISTORY, _AS_OF, "stage & momentum", "categorical"),
        _spec(
            "stage_order",
            "position of the stage among open stages (1 = first)",
            _HISTORY,
            _AS_OF,
            "stage & momentum",
        ),
        _spec(
            "stage_probability",
            "the CRM's configured probability of the stage, percent",
            _HISTORY,
            _AS_OF,
            "stage & momentum",
        ),
        _spec(
            "days_in_stage",
            "days since the deal entered its current stage",
            _HISTORY,
            _AS_OF,
            "stage & momentum",
        ),
        _spec(
            "stage_duration_percentile",
            "share of stage visits by won deals that were no longer than the current one "
            "(high = slower than deals that were won)",
            f"{_HISTORY} of {_OTHERS} as won",
            _OTHERS,
            "stage & momentum",
        ),
        _spec(
            "deal_age_days",
            "days since the deal was created",
            "opportunities",
            _TO_DATE,
            "stage & momentum",
        ),
        _spec("stage_changes", "number of stage changes", _HISTORY, _TO_DATE, "stage & momentum"),
        _spec(
            "stage_regressions",
            "moves back to an earlier open stage",
            _HISTORY,
            _TO_DATE,
            "stage & momentum",
        ),
        _spec(
            "stage_skips",
            "open stages jumped over by forward moves",
            _HISTORY,
            _TO_DATE,
            "stage & momentum",
        ),
        _spec(
            "amount",
            "the deal's amount in the corporate currency (missing: not known yet)",
            _HISTORY,
            _AS_OF,
            "deal shape",
        ),
        _spec(
            "amount_change_since_creation",
            "amount / amount at creation (or when first known) - 1",
            _HISTORY,
            _TO_DATE,
            "deal shape",
        ),
        _spec(
            "amount_change_recent",
            f"amount / amount {config.amount_change_window_days} days earlier (or when first "
            "known) - 1",
            _HISTORY,
            f"last {config.amount_change_window_days} days",
            "deal shape",
        ),
        _spec(
            "close_date_pushes",
            "times the expected close date moved later",
            _HISTORY,
            _TO_DATE,
            "close-date hygiene",
        ),
        _spec(
            "close_date_days_pushed",
            "total days the close date moved later",
            _HISTORY,
            _TO_DATE,
            "close-date hygiene",
        ),
        _spec(
            "days_to_close",
            "days from as_of to the expected close date (negative: past)",
            _HISTORY,
            _AS_OF,
            "close-date hygiene",
        ),
        _spec(
            "close_date_past",
            "1 when the expected close date is already past",
            _HISTORY,
            _AS_OF,
            "close-date hygiene",
        ),
        _spec(
            "close_date_in_quarter",
            "1 when the expected close date falls in as_of's quarter",
            _HISTORY,
            _AS_OF,
            "close-date hygiene",
        ),
        _spec(
            "days_left_in_quarter",
            "days from as_of to the end of its fiscal quarter",
            "calendar",
            _AS_OF,
            "timing",
        ),
        _spec(
            "forecast_category",
            "the rep's forecast category",
            _HISTORY,
            _AS_OF,
            "stage & momentum",
            "categorical",
        ),
        _spec(
            "forecast_category_changes",
            "changes of forecast category",
            _HISTORY,
            _TO_DATE,
            "stage & momentum",
        ),
    ]
    for window in config.activity_windows_days:
        for kind in ACTIVITY_KINDS:
            specs.append(
                _spec(
                    f"activities_{kind}_{window}d",
                    f"{kind} activities logged (other types count as 'other')",
                    "activities",
                    f"last {window} days",
                    "engagement",
                )
            )
        specs.append(
            _spec(
                f"activities_{window}d",
                "activities of any type",
                "activities",
                f"last {window} days",
                "engagement",
            )
        )
    specs += [
        _spec("activities_total", "activities of any type", "activities", _TO_DATE, "engagement"),
        _spec(
            "days_since_last_activity",
            "days since the latest activity (missing: none)",
            "activities",
            _TO_DATE,
            "engagement",
        ),
        _spec(
            "decision_maker_contacts",
            "activities with a decision maker",
            "activities",
            _TO_DATE,
            "engagement",
        ),
        _spec(
            "days_since_decision_maker_contact",
            "days since the latest decision-maker activity (missing: none)",
            "activities",
            _TO_DATE,
            "engagement",
        ),
        _spec(
            "owner_win_rate",
            f"the owner's win rate, shrunk toward the overall rate with "
            f"{config.owner_prior_strength:g} pseudo-deals",
            "opportunity_history, owners",
            _OTHERS,
            "rep track record",
        ),
        _spec(
            "owner_closed_deals",
            "deals the owner has closed",
            "opportunity_history",
            _OTHERS,
            "rep track record",
        ),
        _spec(
            "owner_commit_hit_rate",
            "share of the owner's Commit deals (called Commit while open) that were won, "
            f"shrunk toward the team's rate with {COMMIT_PRIOR_STRENGTH:g} pseudo-deals",
            "opportunity_history, owners",
            _OTHERS,
            "rep track record",
        ),
        _spec(
            "team_commit_hit_rate",
            "share of the owner's team's Commit deals that were won, shrunk toward the overall "
            f"rate with {COMMIT_PRIOR_STRENGTH:g} pseudo-deals",
            "opportunity_history, owners",
            _OTHERS,
            "rep track record",
        ),
        _spec(
            "account_won_deals",
            "deals of the account that were won",
            "opportunity_history",
            _OTHERS,
            "account history",
        ),
        _spec(
            "account_closed_deals",
            "deals of the account that were closed",
            "opportunity_history",
            _OTHERS,
            "account history",
        ),
    ]
    for attribute in attributes:
        specs.append(
            _spec(
                attribute.feature,
                f"static attribute {attribute.table}.{attribute.column}",
                attribute.table,
                "static",
                "deal shape",
                "numeric" if attribute.numeric else "categorical",
            )
        )
    return tuple(specs)


def render_markdown(specs: tuple[FeatureSpec, ...]) -> str:
    lines = ["| feature | meaning | source | window | kind | factor |", "|---|---|---|---|---|---|"]
    lines += [
        f"| `{s.name}` | {s.meaning} | {s.source} | {s.window} | {s.kind} | {s.factor} |"
        for s in specs
    ]
    return "\n".join(lines)


README_START = "<!-- feature-catalog:start -->"
README_END = "<!-- feature-catalog:end -->"


def with_catalog(readme: str, table: str) -> str:
    """The README text with the table between its catalog markers replaced."""
    head, _, rest = readme.partition(README_START)
    _, _, tail = rest.partition(README_END)
    if not rest:
        raise ValueError(f"the README has no {README_START} marker")
    return f"{head}{README_START}\n{table}\n{README_END}{tail}"


def main(argv: list[str] | None = None) -> None:
    """`python -m features.catalog [README]`: print the table, or write it into the README."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    table = render_markdown(feature_catalog(FeatureConfig()))
    if not args:
        print(table)
        return
    path = Path(args[0])
    path.write_text(with_catalog(path.read_text(encoding="utf-8"), table), encoding="utf-8")


if __name__ == "__main__":
    main()
