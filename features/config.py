"""Feature configuration: the few choices that shape snapshots, features and labels.

Stored with every trained model, so that serving rebuilds exactly the features it was
trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from features.labels import HorizonSpec

# Static attributes used when the config lists none and the export has them: deal type and
# source, the account's segment, industry, region and size. Anything else (a loss reason, a
# field edited after the fact) must be listed explicitly, because it could leak the outcome.
DEFAULT_STATIC_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("opportunities", "type"),
    ("opportunities", "lead_source"),
    ("accounts", "segment"),
    ("accounts", "industry"),
    ("accounts", "region"),
    ("accounts", "employees"),
)


class FeatureConfigError(ValueError):
    """The configuration asks for something the export does not have."""


@dataclass(frozen=True)
class FeatureConfig:
    """Choices of the feature pipeline.

    - `snapshot_step_days`: grid step; the grid restarts at every fiscal quarter start.
    - `fiscal_year_start_month`: 1 = January.
    - `activity_windows_days`: windows for activity counts.
    - `amount_change_window_days`: window of the recent amount change.
    - `owner_prior_strength`: pseudo-deals pulling an owner's win rate toward the overall
      rate (an owner with that many closed deals sits halfway).
    - `static_attributes`: (table, column) pairs used as features; None means the defaults
      that the export has (see DEFAULT_STATIC_ATTRIBUTES). Resolved once per training set.
    - `horizons_days`: the fixed horizons of P(won within h days), besides this quarter, the
      next quarter and "ever" (see features.labels).
    - `ever_horizon_max_days`: the longest horizon "ever" may mean.
    - `ever_min_followup_share`: "ever" is the longest horizon this share of the training
      snapshots has been followed up for.
    - `unavailable_features`: numeric features the export cannot give, kept as columns but
      missing (NaN) on every snapshot, in training and in serving alike. An importer whose
      CRM exports no history of a field sets them (HubSpot's deal export has no amount or
      close-date history: `features.importers.hubspot`), so that they are never computed
      from a current value read back onto a deal's past.
    """

    snapshot_step_days: int = 7
    fiscal_year_start_month: int = 1
    activity_windows_days: tuple[int, ...] = (7, 30, 90)
    amount_change_window_days: int = 30
    owner_prior_strength: float = 20.0
    static_attributes: tuple[tuple[str, str], ...] | None = None
    horizons_days: tuple[int, ...] = (30, 90, 180)
    ever_horizon_max_days: int = 730
    ever_min_followup_share: float = 0.5
    unavailable_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.fiscal_year_start_month <= 12:
            raise FeatureConfigError("fiscal_year_start_month must be in 1..12")
        if self.snapshot_step_days < 1:
            raise FeatureConfigError("snapshot_step_days must be at least 1")
        if not self.activity_windows_days or min(self.activity_windows_days) < 1:
            raise FeatureConfigError("activity_windows_days must be positive")
        if not self.horizons_days or min(self.horizons_days) < 1:
            raise FeatureConfigError("horizons_days must be positive whole days")
        if tuple(sorted(set(self.horizons_days))) != tuple(self.horizons_days):
            raise FeatureConfigError("horizons_days must be increasing, without repeats")
        if self.ever_horizon_max_days < max(self.horizons_days):
            raise FeatureConfigError("ever_horizon_max_days must be at least the longest horizon")
        if not 0.0 < self.ever_min_followup_share <= 1.0:
            raise FeatureConfigError("ever_min_followup_share must be in (0, 1]")
        if self.unavailable_features:
            from features.catalog import feature_catalog  # the catalog reads this module

            numeric = {s.name for s in feature_catalog(self) if s.kind == "numeric"}
            unknown = sorted(set(self.unavailable_features) - numeric)
            if unknown:
                raise FeatureConfigError(
                    f"unavailable_features {unknown}: expected numeric features of the catalog"
                )
        for table, _ in self.static_attributes or ():
            if table not in ("opportunities", "accounts", "owners"):
                raise FeatureConfigError(
                    f"static attribute table {table!r}: expected opportunities, accounts or owners"
                )

    @property
    def horizons(self) -> HorizonSpec:
        from features.labels import HorizonSpec  # labels reads deals, which reads this module

        return HorizonSpec(
            days=self.horizons_days,
            ever_max_days=self.ever_horizon_max_days,
            min_followup_share=self.ever_min_followup_share,
            fiscal_year_start_month=self.fiscal_year_start_month,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        values = dict(values)
        values.pop("censoring_horizon_days", None)  # the rule these labels replaced
        for name in ("activity_windows_days", "horizons_days", "unavailable_features"):
            if name in values:
                values[name] = tuple(values[name])
        if values.get("static_attributes") is not None:
            values["static_attributes"] = tuple(tuple(p) for p in values["static_attributes"])
        return cls(**values)
