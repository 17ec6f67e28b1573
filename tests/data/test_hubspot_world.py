"""HubSpot's deal export (issue 17 items 1 and 3): the stage history rebuilt from the
`Date entered`/`Date exited` columns, every bad input named, and the synthetic world written
as a HubSpot export read back through the importer, the validator and the feature pipeline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dealcast.cli import main
from dealcast.config import config_file, read_settings
from features.config import FeatureConfig, FeatureConfigError
from features.importers.hubspot import (
    UNAVAILABLE_FEATURES,
    HubSpotImportError,
    import_hubspot,
    stage_columns,
)
from features.loading import load_export, validate_export
from features.snapshots import FeaturePlan, build_snapshots
from features.synthetic import SyntheticWorld, generate_world
from features.synthetic.hubspot import MAIN_PIPELINE, MESS_FILE, SECOND_PIPELINE, write_hubspot
from models.baselines import BASELINE_NAMES, baselines_for
from training.dataset import prepare

PIPE = "Sales"
STAGES = ("Lead", "Qualified", "Demo", "Contract Sent", "Closed Won", "Closed Lost")
PROBABILITY = {
    "Lead": 0.1,
    "Qualified": 0.3,
    "Demo": 0.5,
    "Contract Sent": 0.8,
    "Closed Won": 1.0,
    "Closed Lost": 0.0,
}


def deal(record: str, stage: str, **dates: tuple[str, str]) -> dict[str, str]:
    """One deals.csv row; `dates` maps a stage (spaces as _) to (entered, exited)."""
    row = {
        "Record ID": record,
        "Deal Stage": stage,
        "Pipeline": PIPE,
        "Amount": "1000",
        "Close Date": "2026-06-30",
        "Create Date": "2026-01-05 09:00",
        "Deal owner": "Ada Lovelace",
        "Associated Company": "Acme",
        "Deal probability": str(PROBABILITY.get(stage, 0.5)),
    }
    for stage_name in STAGES:
        entered, exited = dates.get(stage_name.replace(" ", "_"), ("", ""))
        row[f'Date entered "{stage_name}" ({PIPE})'] = entered
        row[f'Date exited "{stage_name}" ({PIPE})'] = exited
    return row


def write(folder: Path, rows: list[dict[str, str]], **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "deals.csv", index=False)
    owners = files.pop("owners", "Owner,Email,Team\nAda Lovelace,ada@example.com,East\n")
    (folder / "owners.csv").write_text(owners, encoding="utf-8")
    for name, text in files.items():
        (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return folder


def history(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "opportunity_history.csv", dtype={"opportunity_id": str})


def problems(src: Path, tmp_path: Path, **kwargs: str) -> str:
    with pytest.raises(HubSpotImportError) as error:
        import_hubspot(src, tmp_path / "refused", **kwargs)
    assert not (tmp_path / "refused").exists()  # nothing is written
    return str(error.value)


def test_a_skip_and_a_return_to_an_earlier_stage_are_rebuilt_as_they_happened(
    tmp_path: Path,
) -> None:
    rows = [
        deal(
            "1",
            "Qualified",
            Lead=("2026-01-05 09:00", "2026-01-10 12:00"),
            # Demo skipped Qualified, then the deal went back to it: its current stage.
            Demo=("2026-01-10 12:00", "2026-02-01 08:30"),
            Qualified=("2026-02-01 08:30", ""),
        ),
        deal(
            "2",
            "Closed Won",
            Lead=("2026-01-06 10:00", "2026-01-20 10:00"),
            Contract_Sent=("2026-01-20 10:00", "2026-03-02 16:00"),
            Closed_Won=("2026-03-02 16:00", ""),
        ),
        deal("3", "Lead"),  # no stage dates: one row at creation, in its current stage
        deal("4", "Demo", Demo=("2026-01-07 09:00", "")),  # gives Demo its probability
    ]
    report = import_hubspot(write(tmp_path / "raw", rows), tmp_path / "out")
    rebuilt = history(tmp_path / "out")
    one = rebuilt[rebuilt["opportunity_id"] == "1"]
    assert list(one["stage"]) == ["Lead", "Demo", "Qualified"]
    assert list(pd.to_datetime(one["changed_at"])) == [
        pd.Timestamp("2026-01-05 09:00", tz="UTC"),
        pd.Timestamp("2026-01-10 12:00", tz="UTC"),
        pd.Timestamp("2026-02-01 08:30", tz="UTC"),
    ]
    assert list(rebuilt.loc[rebuilt["opportunity_id"] == "2", "stage"]) == [
        "Lead",
        "Contract Sent",
        "Closed Won",
    ]
    three = rebuilt[rebuilt["opportunity_id"] == "3"]
    assert list(three["stage"]) == ["Lead"]
    assert list(pd.to_datetime(three["changed_at"])) == [pd.Timestamp("2026-01-05 09:00", tz="UTC")]
    # Export-time amount and close date on every row; the stage's probability in percent.
    assert set(rebuilt["amount"]) == {1000.0}
    assert set(rebuilt["close_date"].str[:10]) == {"2026-06-30"}
    assert list(one["probability"]) == [10.0, 50.0, 30.0]
    # A stage no deal is in has no known probability (HubSpot writes it per deal only).
    assert np.isnan(report.stages.probability("Contract Sent"))
    assert report.stages.won_stages == ("Closed Won",)
    assert report.stages.lost_stages == ("Closed Lost",)
    assert report.stages.open_stages == ("Lead", "Qualified", "Demo", "Contract Sent")
    stages = yaml.safe_load((tmp_path / "out" / "stages.yaml").read_text())
    assert stages["won"] == [{"name": "Closed Won", "probability": 100.0}]
    assert stages["open"][2] == {"name": "Demo", "probability": 50.0}
    assert "export-time value" in report.format()
    # The validator reads the rebuilt deal 2 as won, closed when it entered Signed.
    export = load_export(tmp_path / "out")
    assert export.report.ok


def test_naive_times_are_read_in_the_portals_time_zone_and_close_dates_stay_days(
    tmp_path: Path,
) -> None:
    rows = [
        deal(
            "1",
            "Demo",
            Lead=("2026-01-05 09:00", "2026-03-29 01:30"),
            Demo=("2026-03-29 01:30", ""),
        )
    ]
    raw = write(tmp_path / "raw", rows)
    report = import_hubspot(raw, tmp_path / "out", timezone="Europe/Berlin")
    assert "naive times read in Europe/Berlin" in report.format()
    rebuilt = history(tmp_path / "out")
    # Berlin is UTC+1 in January and still UTC+1 at 01:30 on the day clocks go forward.
    assert list(pd.to_datetime(rebuilt["changed_at"])) == [
        pd.Timestamp("2026-01-05 08:00", tz="UTC"),
        pd.Timestamp("2026-03-29 00:30", tz="UTC"),
    ]
    opportunities = pd.read_csv(tmp_path / "out" / "opportunities.csv")
    assert list(opportunities["created_at"]) == ["2026-01-05T08:00:00Z"]
    assert set(rebuilt["close_date"].str[:10]) == {"2026-06-30"}  # a day, not shifted
    # 02:30 that Sunday never happened in Berlin: refused by row, not guessed.
    rows[0]['Date exited "Lead" (Sales)'] = "2026-03-29 02:30"
    rows[0]['Date entered "Demo" (Sales)'] = "2026-03-29 02:30"
    message = problems(write(tmp_path / "gap", rows), tmp_path, timezone="Europe/Berlin")
    assert (
        'deals.csv.Date entered "Demo" (Sales) row 1: expected a time that exists in '
        "Europe/Berlin (this one falls in a daylight-saving gap)" in message
    )
    assert "--timezone: expected an IANA time zone" in problems(raw, tmp_path, timezone="Mars/Base")
    # The same export read as UTC (the default) keeps the times as written.
    import_hubspot(raw, tmp_path / "utc")
    assert history(tmp_path / "utc")["changed_at"].iloc[0].startswith("2026-01-05T09:00")


def test_closed_stages_are_recognised_by_probability_else_by_name(tmp_path: Path) -> None:
    rows = [
        deal("1", "Closed Won", Closed_Won=("2026-01-05 09:00", "")),
        deal("2", "Closed Lost", Closed_Lost=("2026-01-05 09:00", "")),
    ]
    raw = write(tmp_path / "raw", rows)
    frame = pd.read_csv(raw / "deals.csv", dtype=str, keep_default_na=False)
    # Names that say nothing: Signed is won by its 100%, Dropped lost by its 0%.
    renamed = {
        c: c.replace('"Closed Won"', '"Signed"').replace('"Closed Lost"', '"Dropped"')
        for c in frame.columns
    }
    frame = frame.rename(columns=renamed)
    frame["Deal Stage"] = ["Signed", "Dropped"]
    frame.to_csv(raw / "deals.csv", index=False)
    report = import_hubspot(raw, tmp_path / "out")
    assert (report.stages.won_stages, report.stages.lost_stages) == (("Signed",), ("Dropped",))
    # Without probabilities, the names decide; without a won stage, the import is refused.
    rows = [deal("1", "Lead", Lead=("2026-01-05 09:00", ""))]
    del rows[0]["Deal probability"]
    report = import_hubspot(write(tmp_path / "names", rows), tmp_path / "out2")
    assert (report.stages.won_stages, report.stages.lost_stages) == (
        ("Closed Won",),
        ("Closed Lost",),
    )
    frame.drop(columns=["Deal probability"]).to_csv(raw / "deals.csv", index=False)
    message = problems(raw, tmp_path)
    assert "deals.csv.Deal Stage: expected a won stage and a lost stage" in message


def test_each_inconsistent_stage_date_is_named_with_its_file_column_and_row(
    tmp_path: Path,
) -> None:
    rows = [
        # Row 1: exits Lead before entering it.
        deal(
            "1",
            "Demo",
            Lead=("2026-01-09 09:00", "2026-01-08 09:00"),
            Demo=("2026-01-08 09:00", ""),
        ),
        # Row 2: its current stage has an exit.
        deal(
            "2",
            "Demo",
            Lead=("2026-01-05 09:00", "2026-01-06 09:00"),
            Demo=("2026-01-06 09:00", "2026-01-07 09:00"),
        ),
        # Row 3: a stage that is not the current one has no exit.
        deal("3", "Demo", Lead=("2026-01-05 09:00", ""), Demo=("2026-01-06 09:00", "")),
        # Row 4: a stage outside the pipeline; row 5: a date HubSpot would not write.
        deal("4", "Negotiation"),
        deal("5", "Lead", Lead=("31/01/2026", "")),
    ]
    message = problems(write(tmp_path / "raw", rows), tmp_path)
    assert 'deals.csv.Date exited "Lead" (Sales) row 1: expected an exit at or after' in message
    assert (
        'deals.csv.Date exited "Demo" (Sales) row 2: expected no exit from the deal\'s current'
        in message
    )
    assert 'deals.csv.Date exited "Lead" (Sales) row 3: expected an exit date' in message
    assert "deals.csv.Deal Stage row 4: expected a stage of pipeline 'Sales'" in message
    assert "'Negotiation'" in message
    assert (
        'deals.csv.Date entered "Lead" (Sales) row 5: expected an ISO 8601 date or time' in message
    )


def test_several_pipelines_need_one_chosen_and_the_others_are_counted(tmp_path: Path) -> None:
    rows = [deal(str(i), "Lead", Lead=("2026-01-05 09:00", "")) for i in range(3)]
    renewal = deal("9", "Lead")
    renewal["Pipeline"] = "Renewals"
    renewal["Create Date"] = ""  # not imported: none of the Sales deals' rules apply to it
    raw = write(tmp_path / "raw", [*rows, renewal])
    message = problems(raw, tmp_path)
    assert "deals.csv.Pipeline: expected one pipeline (choose one with --pipeline" in message
    assert "'Sales' (3 deals), 'Renewals' (1 deals)" in message
    message = problems(raw, tmp_path, pipeline="Upsell")
    assert "expected the pipeline 'Upsell'" in message
    report = import_hubspot(raw, tmp_path / "out", pipeline=PIPE)
    assert report.files[0].skipped == {"in another pipeline than 'Sales'": 1}
    assert report.files[0].rows_read == 4
    assert report.rows_written["opportunities.csv"] == 3
    # The Renewals pipeline has no stage columns here: choosing it is refused by name.
    message = problems(raw, tmp_path, pipeline="Renewals")
    assert 'deals.csv.Date entered "<stage>" (Renewals): expected the stage calculated' in message


def test_bad_values_are_named_and_stage_probabilities_must_agree(tmp_path: Path) -> None:
    rows = [deal(str(i), "Lead", Lead=("2026-01-05 09:00", "")) for i in range(1, 4)]
    rows[0]["Deal probability"] = "0.2"  # other Lead deals say 0.1
    rows[1]["Amount"] = "-5"
    rows[2]["Record ID"] = "1"
    rows[2]["Associated Company"] = ""
    message = problems(write(tmp_path / "raw", rows), tmp_path)
    assert (
        "deals.csv.Deal probability row 1: expected one probability for every deal in " in message
    )
    assert "deals.csv.Amount row 2: expected amount >= 0" in message
    assert "deals.csv.Record ID row 3: expected a unique Record ID" in message
    assert "deals.csv.Associated Company row 3: expected a non-empty value, found empty" in message


def test_owners_missing_from_owners_csv_are_added_and_counted(tmp_path: Path) -> None:
    rows = [deal("1", "Lead", Lead=("2026-01-05 09:00", "")), deal("2", "Lead")]
    rows[1]["Deal owner"] = "Grace Hopper"
    report = import_hubspot(write(tmp_path / "raw", rows), tmp_path / "out")
    assert report.owners_added == ("Grace Hopper",)
    assert "repair owner_added: 1 deal owners missing from owners.csv" in report.format()
    owners = pd.read_csv(tmp_path / "out" / "owners.csv")
    assert dict(zip(owners["owner_id"], owners["team"].fillna("none"), strict=True)) == {
        "Ada Lovelace": "East",
        "Grace Hopper": "none",
    }


def test_an_empty_amount_is_a_counted_repair_of_the_validator(tmp_path: Path) -> None:
    rows = [
        deal(
            "1",
            "Demo",
            Lead=("2026-01-05 09:00", "2026-01-07 09:00"),
            Demo=("2026-01-07 09:00", ""),
        )
    ]
    rows[0]["Amount"] = ""
    import_hubspot(write(tmp_path / "raw", rows), tmp_path / "out")
    report = validate_export(tmp_path / "out")
    assert report.ok
    assert report.repairs.counts() == {"amount_unknown": 2}


def test_engagements_become_activities_of_each_associated_deal(tmp_path: Path) -> None:
    rows = [deal(str(i), "Lead", Lead=("2026-01-05 09:00", "")) for i in (1, 2)]
    engagements = (
        "Activity type,Activity date,Associated Deal IDs\n"
        "CALL,2026-01-06 10:00,1;2\n"
        "Meeting,2026-01-07 11:00,2\n"
        "NOTE,2026-01-08 12:00,\n"
        "EMAIL,2026-01-09 12:00,77\n"
    )
    report = import_hubspot(
        write(tmp_path / "raw", rows, engagements=engagements), tmp_path / "out"
    )
    activities = pd.read_csv(tmp_path / "out" / "activities.csv", dtype=str)
    assert sorted(zip(activities["opportunity_id"], activities["type"], strict=True)) == [
        ("1", "call"),
        ("2", "call"),
        ("2", "meeting"),
    ]
    read = next(f for f in report.files if f.file == "engagements.csv")
    assert read.skipped == {
        "associated with no deal": 1,
        "associated only with deals not imported": 1,
    }
    assert read.rows_used == 2
    assert any("1 deal associations name deals not imported" in n for n in read.notes)
    # One file per engagement type, as HubSpot also exports them: the type is the file's.
    calls = "Activity date,Associated Deal IDs\n2026-01-10 10:00,1\n"
    meetings = "Activity date,Associated Deal IDs\n2026-01-11 10:00,2\n"
    import_hubspot(
        write(tmp_path / "per_type", rows, calls=calls, meetings=meetings), tmp_path / "out2"
    )
    activities = pd.read_csv(tmp_path / "out2" / "activities.csv", dtype=str)
    assert sorted(zip(activities["opportunity_id"], activities["type"], strict=True)) == [
        ("1", "call"),
        ("2", "meeting"),
    ]
    bad = "Activity type,Activity date,Associated Deal IDs\nSMS,2026-01-06 10:00,1\n"
    message = problems(write(tmp_path / "bad", rows, engagements=bad), tmp_path)
    assert "engagements.csv.Activity type row 1: expected an engagement type" in message


def test_an_output_folder_with_another_export_is_refused(tmp_path: Path) -> None:
    rows = [deal("1", "Lead", Lead=("2026-01-05 09:00", ""))]
    raw = write(tmp_path / "raw", rows)
    out = tmp_path / "out"
    out.mkdir()
    (out / "quotas.csv").write_text("period,owner_id,quota\n2026-Q1,x,1\n")
    (out / "dealcast.toml").write_text("[features]\nsnapshot_step_days = 3\n")
    with pytest.raises(HubSpotImportError) as error:
        import_hubspot(raw, out)
    assert "found quotas.csv" in str(error.value)
    assert "found dealcast.toml" in str(error.value)
    (out / "quotas.csv").unlink()
    (out / "dealcast.toml").unlink()
    import_hubspot(raw, out)
    import_hubspot(raw, out)  # its own dealcast.toml is rewritten


def test_unavailable_features_must_be_numeric_catalog_features() -> None:
    with pytest.raises(FeatureConfigError, match="close_date_shoves"):
        FeatureConfig(unavailable_features=("close_date_pushes", "close_date_shoves"))
    with pytest.raises(FeatureConfigError, match="stage"):
        FeatureConfig(unavailable_features=("stage",))


# --- the synthetic world as a HubSpot export ------------------------------------------------


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return generate_world(3_000, seed=5)


@pytest.fixture(scope="module")
def exported(world: SyntheticWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hubspot")
    write_hubspot(world, root / "raw")
    import_hubspot(root / "raw", root / "export", pipeline=MAIN_PIPELINE)
    return root


def test_the_written_export_carries_its_mess(exported: Path) -> None:
    mess = json.loads((exported / "raw" / MESS_FILE).read_text())
    data = (exported / "raw" / "deals.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    deals = pd.read_csv(exported / "raw" / "deals.csv", dtype=str, encoding="utf-8-sig")
    assert deals["Pipeline"].value_counts().to_dict() == mess["deals_per_pipeline"]
    assert set(mess["deals_per_pipeline"]) == {MAIN_PIPELINE, SECOND_PIPELINE}
    assert deals["Amount"].isna().sum() == mess["empty_amounts"] > 0
    assert mess["reentries_collapsed"] > 0
    assert deals["Create Date"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d").all()
    owners = pd.read_csv(exported / "raw" / "owners.csv", dtype=str)
    assert mess["owner_missing"] not in set(owners["Owner"])
    assert mess["owner_missing"] in set(deals["Deal owner"])


def test_the_import_rebuilds_each_deals_stage_path_of_the_world(
    world: SyntheticWorld, exported: Path
) -> None:
    """For each imported deal, the rebuilt stages are the world's stage changes with each
    stage at its last entry (HubSpot keeps one per stage), in time order."""
    mess = json.loads((exported / "raw" / MESS_FILE).read_text())
    opportunities = pd.read_csv(exported / "export" / "opportunities.csv", dtype=str)
    assert len(opportunities) == mess["deals_per_pipeline"][MAIN_PIPELINE]
    truth = world.tables["opportunity_history"].sort_values(["opportunity_id", "changed_at"])
    truth = truth[truth["opportunity_id"].isin(opportunities["opportunity_id"])]
    same = truth["opportunity_id"].eq(truth["opportunity_id"].shift())
    changes = truth[~(same & truth["stage"].eq(truth["stage"].shift()))]
    last_entries = changes.drop_duplicates(["opportunity_id", "stage"], keep="last")
    expected = last_entries.assign(
        changed_at=last_entries["changed_at"].dt.floor("min")
    ).sort_values(["opportunity_id", "changed_at"], kind="stable")
    rebuilt = history(exported / "export")
    assert len(rebuilt) == len(expected)
    got = rebuilt.groupby("opportunity_id")["stage"].apply(list)
    want = expected.groupby("opportunity_id")["stage"].apply(list)
    # Two entries in one minute may be ordered either way; every other path is identical.
    differ = [d for d in want.index if got[d] != want[d]]
    assert len(differ) <= 0.005 * len(want), differ[:5]
    times = pd.to_datetime(rebuilt["changed_at"], utc=True)
    assert times.sort_values().tolist() == sorted(expected["changed_at"].tolist())


def test_the_import_validates_and_its_history_features_are_missing(
    world: SyntheticWorld, exported: Path
) -> None:
    mess = json.loads((exported / "raw" / MESS_FILE).read_text())
    export = load_export(exported / "export")
    counts = export.report.repairs.counts()
    assert set(counts) <= {"amount_unknown", "same_instant_superseded"}, counts
    assert counts["amount_unknown"] > 0
    assert mess["owner_missing"] in set(export.owners["owner_id"])
    # The export's dealcast.toml is what train and score read from the export folder.
    path = config_file(None, data_dir=exported / "export")
    assert path is not None
    settings = read_settings(path)
    config = FeatureConfig(unavailable_features=tuple(settings["features"]["unavailable_features"]))
    assert config.unavailable_features == UNAVAILABLE_FEATURES
    frame = build_snapshots(export, plan=FeaturePlan.from_export(export, config))
    assert len(frame) > 1000
    for name in UNAVAILABLE_FEATURES:
        assert frame[name].isna().all(), name
    # Without the setting, the same columns would be numbers computed from the constant
    # export-time values: no push and no amount change ever.
    plain = build_snapshots(export, plan=FeaturePlan.from_export(export))
    assert (plain["close_date_pushes"] == 0).all()
    assert np.nanmax(np.abs(plain["amount_change_since_creation"])) == 0
    assert frame.drop(columns=list(UNAVAILABLE_FEATURES)).equals(
        plain.drop(columns=list(UNAVAILABLE_FEATURES))
    )


def test_no_snapshot_reads_the_export_time_close_date(exported: Path, tmp_path: Path) -> None:
    """A closed deal's export-time close date is the day it closed: its outcome. Moving every
    deal's close date in deals.csv by 400 days must change no snapshot feature and no
    in-period baseline, which count a deal by its stage's learned share instead."""
    shutil.copytree(exported / "raw", tmp_path / "raw")
    deals = pd.read_csv(tmp_path / "raw" / "deals.csv", dtype=str, encoding="utf-8-sig")
    moved = pd.to_datetime(deals["Close Date"]) + pd.Timedelta(days=400)
    deals["Close Date"] = moved.dt.strftime("%Y-%m-%d")
    deals.to_csv(tmp_path / "raw" / "deals.csv", index=False, encoding="utf-8-sig")
    import_hubspot(tmp_path / "raw", tmp_path / "export", pipeline=MAIN_PIPELINE)

    def snapshots_and_period_weights(folder: Path) -> tuple[pd.DataFrame, np.ndarray]:
        export = load_export(folder)
        data = prepare(export, config=FeatureConfig(unavailable_features=UNAVAILABLE_FEATURES))
        training = data.training_at(data.data_end)
        baselines = baselines_for(training, ("won_in_period",))["won_in_period"]
        weights = [baselines[name].period_weights(training.frame) for name in BASELINE_NAMES]
        return training.frame, np.vstack(weights)

    frame, weights = snapshots_and_period_weights(exported / "export")
    moved_frame, moved_weights = snapshots_and_period_weights(tmp_path / "export")
    assert len(frame) > 1000
    pd.testing.assert_frame_equal(frame, moved_frame)
    np.testing.assert_array_equal(weights, moved_weights)
    # The shares are real fractions that fall as the quarter runs out, not all 1 or 0.
    assert 0.05 < weights[0].mean() < 0.9
    late = frame["days_left_in_quarter"].to_numpy() < 14
    assert weights[1][late].mean() < weights[1][~late].mean()


def test_stage_columns_are_read_in_both_of_hubspots_labellings() -> None:
    columns = [
        "Record ID",
        'Date entered "Appointment Scheduled (Sales Pipeline)"',
        'Date exited "Appointment Scheduled (Sales Pipeline)"',
        'Date entered "Closed Won" (Renewals (EMEA))',
        "Date entered Closed Won",
    ]
    found = [(c.kind, c.stage, c.pipeline) for c in stage_columns(columns)]
    assert found == [
        ("entered", "Appointment Scheduled", "Sales Pipeline"),
        ("exited", "Appointment Scheduled", "Sales Pipeline"),
        ("entered", "Closed Won", "Renewals (EMEA)"),
    ]


def test_generate_refuses_two_formats_at_once(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    assert main(["generate", "--out", str(out), "--salesforce", "--format", "hubspot"]) == 2
    assert not out.exists()
