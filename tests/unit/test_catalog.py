"""The feature catalog is the one description of the features: code, README and output agree."""

from __future__ import annotations

from pathlib import Path

from features.catalog import README_END, README_START, feature_catalog, render_markdown
from features.config import FeatureConfig
from features.loading import load_export
from features.snapshots import FeaturePlan, build_snapshots

README = Path(__file__).resolve().parents[2] / "README.md"


def test_snapshot_columns_are_the_catalog_in_order(small_export: Path) -> None:
    export = load_export(small_export)
    plan = FeaturePlan.from_export(export)
    snapshots = build_snapshots(export, plan=plan)
    assert list(snapshots.columns) == [
        "opportunity_id",
        "as_of",
        "manual_probability",  # the manual_weight baseline's input, not a feature
        *plan.feature_names,
    ]
    catalog = {spec.name: spec for spec in plan.catalog}
    for name in plan.categorical_features:
        assert catalog[name].kind == "categorical"
    # The small export has `type`, `lead_source` and the account's `industry`: the default
    # static attributes it can give.
    assert [a.feature for a in plan.attributes] == ["type", "lead_source", "account_industry"]


def test_every_feature_is_documented() -> None:
    for spec in feature_catalog(FeatureConfig()):
        assert spec.meaning and spec.source and spec.window, spec


def test_readme_table_is_the_catalog() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split(README_START)[1].split(README_END)[0].strip()
    assert table == render_markdown(feature_catalog(FeatureConfig())), "run `make docs`"


def test_windows_follow_the_config() -> None:
    names = [s.name for s in feature_catalog(FeatureConfig(activity_windows_days=(14,)))]
    assert "activities_call_14d" in names and "activities_call_30d" not in names
