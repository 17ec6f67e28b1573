"""A Fxiaoke-like export end to end with default settings (issue 17): the synthetic world
written with Chinese column names and stage labels, in GBK, with naive Beijing times, goes
through `dealcast import csv --mapping features/importers/mappings/fxiaoke.toml`, `validate`,
`train` and `score` as a user runs them (subprocesses, an embedded MLflow store in the
working directory).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from features.importers.mapped_csv import AMOUNT_HISTORY, CLOSE_DATE_HISTORY
from features.synthetic.fxiaoke import DEALS_FILE, ENCODING, STAGE_LABELS
from models.bundle import DealcastBundle
from tests.training.test_cli_end_to_end import dealcast, ok

MAPPING = (
    Path(__file__).resolve().parents[2] / "features" / "importers" / "mappings" / "fxiaoke.toml"
)


def test_a_fxiaoke_org_imports_validates_trains_and_scores(tmp_path: Path) -> None:
    root = tmp_path
    generated = ok(
        dealcast(
            "generate",
            "--format",
            "fxiaoke",
            "--out",
            "raw",
            # A young org's world, as the CLI's own end-to-end test uses: default training's
            # folds and tuning dominate the run, and they cost less on fewer months.
            "--months",
            "9",
            "--opportunities",
            "600",
            "--seed",
            "7",
            cwd=root,
        )
    )
    assert "wrote a Fxiaoke-like export (5 files) to raw" in generated
    mess = json.loads((root / "raw" / "_mess.json").read_text(encoding="utf-8"))

    imported = ok(
        dealcast("import", "csv", "raw", "--mapping", str(MAPPING), "--out", "export", cwd=root)
    )
    assert f"{DEALS_FILE}: gbk, {mess['deals']} rows read, {mess['deals']} used" in imported
    assert "naive times read in Asia/Shanghai" in imported
    assert "repair owner_added: 1 deal owners missing from the owners file added without a " in (
        imported
    )
    assert mess["owner_missing"] in imported
    toml = (root / "export" / "dealcast.toml").read_text()
    assert all(f'"{name}"' in toml for name in AMOUNT_HISTORY + CLOSE_DATE_HISTORY)

    validated = ok(dealcast("validate", "export", cwd=root))
    assert "amount_unknown" in validated

    trained = dealcast("train", "--data", "export", cwd=root)
    ok(trained)
    assert "settings from the export's export/dealcast.toml" in trained.stderr
    assert "registered dealcast version 1" in trained.stdout
    assert re.search(r"champion: version \d", trained.stdout), trained.stdout
    bundles = [path.parent for path in (root / "mlartifacts").rglob("manifest.json")]
    assert len(bundles) in (1, 2), trained.stdout
    for path in bundles:
        unavailable = DealcastBundle.load(path).plan.config.unavailable_features
        assert unavailable == AMOUNT_HISTORY + CLOSE_DATE_HISTORY

    scored = ok(dealcast("score", "--data", "export", "--out", "scores.csv", cwd=root))
    assert "models:/dealcast@champion" in scored
    scores = pd.read_csv(root / "scores.csv", dtype={"opportunity_id": str})
    deals = pd.read_csv(root / "raw" / DEALS_FILE, dtype=str, encoding=ENCODING)
    closed = {STAGE_LABELS["Closed Won"], STAGE_LABELS["Closed Lost"]}
    assert set(scores["opportunity_id"]) == set(deals.loc[~deals["阶段"].isin(closed), "商机ID"])
    assert scores["win_probability"].between(0, 1).all()
