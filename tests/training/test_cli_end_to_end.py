"""The console script end to end on the two kinds of data real users bring, with default
settings: a young org (9 months, 600 deals) and a messy Salesforce export.

Each runs `dealcast` as a user does (a subprocess, its own embedded MLflow store in the
working directory) and reads what it printed and wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(sys.executable).parent / "dealcast"


def dealcast(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    return run.stdout


@pytest.fixture(scope="module")
def young_org(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("young")
    ok(
        dealcast(
            "generate",
            "--out",
            "world",
            "--months",
            "9",
            "--opportunities",
            "600",
            "--seed",
            "4",
            cwd=root,
        )
    )
    return root


def test_a_young_org_backtests_by_month_with_default_settings(young_org: Path) -> None:
    out = ok(dealcast("backtest", "--data", "world", "--out", "backtest", cwd=young_org))
    metrics = json.loads((young_org / "backtest" / "metrics.json").read_text())
    assert metrics["data"]["step"] == "month"
    assert len(metrics["data"]["folds"]) >= 2
    assert "deal level" in out
    model = metrics["deal"]["model"]["overall"]
    stage_weight = metrics["deal"]["stage_weight_empirical"]["overall"]
    # Boosted from the stage weight and stopped early on fully followed snapshots: never
    # worse than it beyond noise (measured 0.98x; 1.012x when the trees stopped on the most
    # recent, mostly unresolved snapshots).
    assert model["brier"] <= stage_weight["brier"] * 1.01, (model, stage_weight)
    in_period = metrics["deal_in_period"]
    assert (
        in_period["model"]["overall"]["brier"]
        <= in_period["stage_weight_empirical"]["overall"]["brier"] * 1.01
    )
    for horizon in ("30d", "90d", "180d", "this_quarter", "next_quarter", "ever"):
        assert metrics["deal_by_horizon"][horizon]["model"]["overall"]["n"] > 0, horizon


def test_a_young_org_trains_registers_and_scores_by_horizon(young_org: Path) -> None:
    out = ok(dealcast("train", "--data", "world", cwd=young_org))
    assert "registered dealcast version 1 as challenger" in out
    scored = ok(
        dealcast(
            "score",
            "--data",
            "world",
            "--out",
            "scores.csv",
            "--model",
            "models:/dealcast@challenger",
            cwd=young_org,
        )
    )
    assert "open deals" in scored
    scores = pd.read_csv(young_org / "scores.csv")
    assert len(scores) > 0
    names = ["30d", "90d", "180d", "this_quarter", "next_quarter", "ever"]
    for name in names:
        assert scores[f"p_won_{name}"].between(0, 1).all()
    assert (scores["p_won_ever"] == scores["win_probability"]).all()
    # Default settings give the org a champion from the first training: the model when it
    # passes the gate, else the baseline forecaster (which answers with the stage weight).
    assert re.search(r"champion: version \d", out), out
    ok(dealcast("score", "--data", "world", "--out", "champion.csv", cwd=young_org))
    answers = pd.read_csv(young_org / "champion.csv")
    if "the baseline forecaster" in out:
        assert (answers["mode"] == "baseline").all()
        gap = (answers["win_probability"] - answers["stage_weight_empirical"]).abs()
        assert (gap < 1e-12).all()
    else:
        assert "champion: version 1" in out
        assert (answers["mode"] != "baseline").all()
        assert set(answers["opportunity_id"]) == set(scores["opportunity_id"])


@pytest.fixture(scope="module")
def messy_salesforce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("messy")
    ok(
        dealcast(
            "generate",
            "--out",
            "raw",
            "--salesforce",
            "--messy",
            "--opportunities",
            "3000",
            "--seed",
            "7",
            cwd=root,
        )
    )
    return root


def test_a_messy_salesforce_org_imports_validates_trains_and_scores(messy_salesforce: Path) -> None:
    root = messy_salesforce
    imported = ok(dealcast("import", "salesforce", "raw", "--out", "export", cwd=root))
    assert "cp1252" in imported and "NUL" in imported
    assert "Ã" not in (root / "export" / "accounts.csv").read_text(encoding="utf-8")
    validated = ok(dealcast("validate", "export", "--report", "repairs.csv", cwd=root))
    # Deals get an amount only later: early rows stay unknown, never filled from later ones.
    for kind in ("amount_unknown", "same_instant_superseded", "created_closed"):
        assert kind in validated, validated
    repairs = pd.read_csv(root / "repairs.csv")
    assert {"kind", "table", "row", "key", "column", "before", "after"} <= set(repairs.columns)
    assert len(repairs) > 0
    strict = dealcast("validate", "export", "--strict", cwd=root)
    assert strict.returncode == 1
    trained = ok(dealcast("train", "--data", "export", cwd=root))
    assert "registered dealcast version 1" in trained
    # The model beats every baseline on every deal-level score here, but its week-8 revenue
    # forecast loses to the stage weight's (0.326 against 0.161 median APE), so the gate
    # keeps the baseline forecaster as champion: the export is served from day one anyway.
    assert "week-8 revenue median APE" in trained
    assert re.search(r"champion: version \d", trained), trained
    scored = ok(dealcast("score", "--data", "export", "--out", "scores.csv", cwd=root))
    assert "models:/dealcast@champion" in scored  # default settings: the champion scores
    assert len(pd.read_csv(root / "scores.csv")) > 0
