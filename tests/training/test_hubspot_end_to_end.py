"""A HubSpot export end to end with default settings (issue 17 item 3): the synthetic world
written as a HubSpot export (two pipelines, a BOM, empty amounts, an owner missing from
owners.csv) goes through `dealcast import hubspot`, `validate`, `train` and `score` as a user
runs them (a subprocess, its own embedded MLflow store in the working directory).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from features.importers.hubspot import UNAVAILABLE_FEATURES
from features.synthetic.hubspot import MAIN_PIPELINE, MESS_FILE
from models.bundle import DealcastBundle
from tests.training.test_cli_end_to_end import dealcast, ok


@pytest.fixture(scope="module")
def hubspot_org(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hubspot")
    generated = ok(
        dealcast(
            "generate",
            "--format",
            "hubspot",
            "--out",
            "raw",
            "--opportunities",
            "3000",
            "--seed",
            "7",
            cwd=root,
        )
    )
    assert "wrote a HubSpot export (4 files) to raw" in generated
    return root


def test_a_hubspot_org_imports_validates_trains_and_scores(hubspot_org: Path) -> None:
    root = hubspot_org
    mess = json.loads((root / "raw" / MESS_FILE).read_text())
    # Two pipelines and none chosen: refused, naming each with its deals; nothing written.
    refused = dealcast("import", "hubspot", "raw", "--out", "export", cwd=root)
    assert refused.returncode == 1
    for name, count in mess["deals_per_pipeline"].items():
        assert f"'{name}' ({count} deals)" in refused.stderr, refused.stderr
    assert not (root / "export").exists()

    imported = ok(
        dealcast(
            "import", "hubspot", "raw", "--out", "export", "--pipeline", MAIN_PIPELINE, cwd=root
        )
    )
    assert "UTF-8 BOM" in imported
    assert "repair owner_added: 1 deal owners missing from owners.csv" in imported
    assert mess["owner_missing"] in imported
    assert "export-time value" in imported
    toml = (root / "export" / "dealcast.toml").read_text()
    assert all(f'"{name}"' in toml for name in UNAVAILABLE_FEATURES)

    validated = ok(dealcast("validate", "export", "--report", "repairs.csv", cwd=root))
    assert "amount_unknown" in validated
    repairs = pd.read_csv(root / "repairs.csv")
    # Every empty amount is unknown on each rebuilt row of its deal, never filled from later.
    unknown = repairs[repairs["kind"] == "amount_unknown"]
    deals = pd.read_csv(root / "raw" / "deals.csv", dtype=str, encoding="utf-8-sig")
    empty = deals[deals["Amount"].isna() & deals["Pipeline"].eq(MAIN_PIPELINE)]["Record ID"]
    assert set(unknown["key"]) == set(empty)

    trained = dealcast("train", "--data", "export", cwd=root)
    ok(trained)
    assert "settings from the export's export/dealcast.toml" in trained.stderr
    assert "registered dealcast version 1" in trained.stdout
    assert re.search(r"champion: version \d", trained.stdout), trained.stdout
    # The model (and the baseline forecaster, when the model failed the gate and it was
    # registered too) carry the setting in their feature plan, so the service computes the
    # same missing columns the training saw.
    bundles = [path.parent for path in (root / "mlartifacts").rglob("manifest.json")]
    assert len(bundles) in (1, 2), trained.stdout
    for path in bundles:
        assert DealcastBundle.load(path).plan.config.unavailable_features == UNAVAILABLE_FEATURES

    scored = ok(dealcast("score", "--data", "export", "--out", "scores.csv", cwd=root))
    assert "models:/dealcast@champion" in scored
    scores = pd.read_csv(root / "scores.csv", dtype={"opportunity_id": str})
    main = deals[deals["Pipeline"].eq(MAIN_PIPELINE)]
    open_deals = main[~main["Deal Stage"].isin(["Closed Won", "Closed Lost"])]["Record ID"]
    assert set(scores["opportunity_id"]) == set(open_deals)
    assert scores["win_probability"].between(0, 1).all()
