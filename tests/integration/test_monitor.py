"""`dealcast score --log` then `dealcast monitor`: a logged quarter judged against the export.

The session's trained model (tests/integration/conftest.py, trained for real into a tmp
MLflow store) scores its world weekly through the last completed quarter and once in the
current one, logging every score; the export it scores has every amount multiplied by 8 (a
currency slip on import), so `amount` must come out as drifted and the rest must not. Then
`dealcast monitor` judges the log against the same export. The model was trained to the
world's end, so its figures are in-sample: what is tested is the monitor's arithmetic,
against an oracle that labels each logged row from the export's history rows one by one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from dealcast.cli import main
from features.fiscal import completed_quarters, quarter_bounds
from features.labels import MIN_SURVIVAL
from features.loading import load_export
from features.timestamps import to_ns
from models.bundle import load_model
from models.monitor_summary import last_quarter, published_path
from models.prediction_log import FEATURE_PREFIX, feature_hash, read_prediction_log
from tests.integration.conftest import Registry
from training.monitor import EXPERIMENT, monitor_report

AMOUNT_FACTOR = 8.0


@dataclass(frozen=True)
class Monitored:
    export_dir: Path
    log: Path
    out: Path
    scores: pd.DataFrame  # every CSV `dealcast score` wrote, one after the other
    report: dict
    quarter: str
    label: str  # the model as the report names it


@pytest.fixture(scope="module")
def monitored(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("monitor")
    export_dir = root / "export"
    shutil.copytree(registry.root / "world", export_dir, ignore=shutil.ignore_patterns(".*"))
    for table in ("opportunity_history", "opportunities"):
        frame = pd.read_csv(export_dir / f"{table}.csv", dtype=str, keep_default_na=False)
        amount = pd.to_numeric(frame["amount"].replace("", None))
        frame["amount"] = (amount * AMOUNT_FACTOR).map(lambda a: "" if pd.isna(a) else repr(a))
        frame.to_csv(export_dir / f"{table}.csv", index=False)
    (label, start, _end) = completed_quarters(registry.end, 1)[0]
    as_of = [start + pd.Timedelta(days=d) for d in (0, 7, 35, 70)]
    as_of.append(registry.end - pd.Timedelta(days=3))  # the current quarter: outcomes pending
    log, out = root / "log", root / "report"
    model = f"models:/dealcast/{registry.version}"
    frames = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
        patch.chdir(registry.root)  # where the embedded store keeps its artifacts
        for k, when in enumerate(as_of):
            csv = root / f"scores-{k}.csv"
            argv = ["score", "--data", str(export_dir), "--out", str(csv), "--model", model]
            assert main([*argv, "--as-of", when.isoformat(), "--log", str(log)]) == 0
            frames.append(pd.read_csv(csv))
        argv = ["monitor", "--log", str(log), "--data", str(export_dir), "--out", str(out)]
        assert main([*argv, "--drift-days", "400"]) == 0
        yield Monitored(
            export_dir=export_dir,
            log=log,
            out=out,
            scores=pd.concat(frames, ignore_index=True),
            report=json.loads((out / "monitor.json").read_text()),
            quarter=label,
            label=f"dealcast/{registry.version}",
        )


def test_batch_scores_are_logged_in_the_service_columns(
    monitored: Monitored, registry: Registry
) -> None:
    rows = read_prediction_log(monitored.log)
    scores = monitored.scores
    assert len(rows) == len(scores) > 0
    assert rows["opportunity_id"].tolist() == scores["opportunity_id"].astype(str).tolist()
    np.testing.assert_array_equal(rows["win_probability"], scores["win_probability"])
    np.testing.assert_array_equal(rows["baseline_commit"], scores["commit"])
    assert set(rows["model_uri"]) == {f"models:/dealcast/{registry.version}"}
    assert set(rows["model_version"]) == {registry.version}
    for column in ("baseline_in_period_stage_weight_crm", "p_won_30d", "days_ever"):
        assert rows[column].notna().all(), column
    # The hash is the service's, of the features logged beside it.
    features = [c for c in rows.columns if c.startswith(FEATURE_PREFIX)]
    row = rows.iloc[0]
    plain = {c.removeprefix(FEATURE_PREFIX): row[c] for c in features}
    plain = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in plain.items()}
    assert row["feature_hash"] == feature_hash(plain)
    assert row[FEATURE_PREFIX + "amount"] == pytest.approx(scores["amount"].iloc[0], rel=1e-12)


def _oracle(
    rows: pd.DataFrame, export_dir: Path, end_ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(won before `end`, time to knowing it) as the export knows it, row by row from the
    deal's history rows: the last row stamped before the end (and by the export's last
    change) decides a closed deal, known from that row on; an open one is lost once the end
    has passed, known from the end on; else pending (NaN)."""
    export = load_export(export_dir)
    history = export.history.sort_values("changed_at", kind="stable")
    known = history["changed_at"].max().value
    won, lost = set(export.stages.won_stages), set(export.stages.lost_stages)
    by_deal = {k: g for k, g in history.groupby("opportunity_id")}
    as_of = to_ns(rows["as_of"])
    label, took = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for i, (deal, end) in enumerate(zip(rows["opportunity_id"], end_ns, strict=True)):
        stamps = to_ns(by_deal[deal]["changed_at"])
        before = stamps < min(end, known + 1)
        stage = by_deal[deal]["stage"].to_numpy()[before][-1]
        if stage in won or stage in lost:
            label[i], took[i] = float(stage in won), stamps[before][-1] - as_of[i]
        elif end <= known:
            label[i], took[i] = 0.0, end - as_of[i]
    return label, took


def _weights(as_of_ns: np.ndarray, took_ns: np.ndarray, known_ns: int) -> np.ndarray:
    """1 / G(time to knowing), G the share of predictions followed up at least that long."""
    followup = known_ns - as_of_ns
    g = np.array([(followup >= t).mean() if np.isfinite(t) else 1.0 for t in took_ns])
    return np.where(np.isfinite(took_ns), 1.0 / np.maximum(g, MIN_SURVIVAL), 0.0)


def test_realised_metrics_are_those_of_the_joined_labels(monitored: Monitored) -> None:
    rows = read_prediction_log(monitored.log)
    export = load_export(monitored.export_dir)
    known = export.history["changed_at"].max().value
    as_of = to_ns(rows["as_of"])
    _, quarter_end = quarter_bounds(as_of)
    end = np.minimum(quarter_end, as_of + int(rows["days_ever"].iloc[0]) * 86_400 * 10**9)
    y, took = _oracle(rows, monitored.export_dir, end)
    block = monitored.report["versions"][monitored.label]["targets"]["won_in_period"]
    pending = np.isnan(y)
    assert block["n_pending"] == int(pending.sum()) > 0
    assert block["n_known"] == int((~pending).sum())
    assert block["n_known"] + block["n_pending"] == block["n_predictions"] == len(rows)
    w = _weights(as_of, took, known)
    for name, column in (
        ("model", "win_in_period_probability"),
        ("stage_weight_crm", "baseline_in_period_stage_weight_crm"),
        ("commit", "baseline_in_period_commit"),
    ):
        p = rows[column].to_numpy(dtype=np.float64)
        judged = block["forecasters"][name]["overall"]
        k = ~pending
        assert judged["n"] == k.sum()
        assert judged["brier"] == pytest.approx(np.average((p[k] - y[k]) ** 2, weights=w[k]))
        assert judged["auc"] == pytest.approx(roc_auc_score(y[k], p[k], sample_weight=w[k]))
        clipped = np.clip(p[k], 1e-6, 1 - 1e-6)
        loss = -(y[k] * np.log(clipped) + (1 - y[k]) * np.log(1 - clipped))
        assert judged["log_loss"] == pytest.approx(np.average(loss, weights=w[k]))
    # The completed quarter's week 1: every outcome known.
    first = block["forecasters"]["model"]["by_week"]["1"]
    assert first["n"] > 0 and block["pending_by_week"].get("1", 0) < first["n"]


def test_the_last_quarter_reaches_the_page(monitored: Monitored) -> None:
    block = monitored.report["last_quarter"]
    assert block["period"] == monitored.quarter and block["complete"]
    overall = block["overall"]
    assert overall["n_pending"] == 0 and overall["n_known"] == overall["n_predictions"] > 0
    team = sorted(block["by_team"])[0]
    outcome = last_quarter(monitored.export_dir, team)
    assert outcome is not None and outcome.team == team and outcome.period == monitored.quarter
    assert outcome.first_week == 1 and outcome.first_week_deals > 0
    assert set(outcome.brier) >= {"model", "stage_weight_crm", "commit"}
    published = json.loads(published_path(monitored.export_dir).read_text())
    assert published == monitored.report


def test_the_shifted_feature_is_named_and_the_others_are_stable(monitored: Monitored) -> None:
    drift = monitored.report["versions"][monitored.label]["drift"]
    assert drift["available"]
    features = drift["features"]
    by_name = {d["feature"]: d for d in features}
    assert by_name["amount"]["stability"] == "major" and "amount" in drift["shifted"]
    psi = [d["psi"] for d in features]
    assert psi == sorted(psi, reverse=True)
    assert drift["worst"] == [d["feature"] for d in features[:5]]
    # The deal's own activity and stage did not move (the rates of a handful of reps and
    # teams are a handful of values: they move with every closed deal, and are not judged).
    own = [n for n in by_name if n.startswith("activities_") or n.startswith("stage")]
    assert len(own) > 10
    assert max(by_name[n]["psi"] for n in own) < 0.1, {n: by_name[n]["psi"] for n in own}


def test_the_report_is_written_and_logged_to_mlflow(
    monitored: Monitored, registry: Registry
) -> None:
    html = (monitored.out / "monitor.html").read_text()
    assert "<svg" in html and "reliability of won_in_period" in html
    assert "<link" not in html and "src=" not in html  # self-contained
    client = MlflowClient(registry.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    run = next(r for r in runs if r.data.tags.get("models") == monitored.label)  # the newest
    assert run.data.tags["model_version.dealcast"] == registry.version
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"monitor.json", "monitor.html"} <= artifacts
    key = f"dealcast_{registry.version}.won_in_period.model.brier"
    brier = monitored.report["versions"][monitored.label]["targets"]["won_in_period"]
    assert run.data.metrics[key] == pytest.approx(brier["forecasters"]["model"]["overall"]["brier"])


def test_a_bundle_without_a_drift_reference_says_drift_is_unavailable(
    monitored: Monitored, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    mlflow.set_tracking_uri(registry.tracking_uri)
    bundle = load_model(f"models:/dealcast/{registry.version}").bundle
    rows = read_prediction_log(monitored.log)
    without = {monitored.label: replace(bundle, drift=None)}
    report = monitor_report(rows, load_export(monitored.export_dir), bundles=without)
    drift = report["versions"][monitored.label]["drift"]
    assert not drift["available"] and "retrain" in drift["reason"]
