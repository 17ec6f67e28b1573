"""The world written as a Salesforce export, clean and messy (issue 11 item 5).

The files are read back as bytes: every injected problem is counted from the files alone and
must equal the ground truth in `_mess.json`; then the export goes through the importer and the
validator, whose repair counts must equal it too.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from dealcast.cli import main
from features.importers.salesforce import import_salesforce
from features.loading import validate_export
from features.synthetic import SyntheticWorld, generate_world
from features.synthetic.salesforce import BOM, MESS_FILE, write_salesforce

OBJECTS = {
    "Opportunity.csv",
    "OpportunityHistory.csv",
    "Task.csv",
    "Event.csv",
    "OpportunityContactRole.csv",
    "User.csv",
    "UserRole.csv",
    "Account.csv",
    "ForecastingQuota.csv",
    "OpportunityStage.csv",
}
HEADER_ONLY = {"Contract.csv", "Case.csv", "ForecastingAdjustment.csv"}


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return generate_world(3_000, seed=5)


@pytest.fixture(scope="module")
def messy(world: SyntheticWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("salesforce") / "messy"
    write_salesforce(world, out, messy=True)
    return out


@pytest.fixture(scope="module")
def mess(messy: Path) -> dict:
    return json.loads((messy / MESS_FILE).read_text())


def read(folder: Path, name: str) -> pd.DataFrame:
    """A file as text cells, decoded per line the way a careful reader would."""
    data = (folder / name).read_bytes().removeprefix(BOM)
    lines = [_decode(line) for line in data.split(b"\r\n")]
    return pd.read_csv(StringIO("\n".join(lines)), dtype=str, keep_default_na=False)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("cp1252")


def test_writes_every_object_the_importer_reads_and_header_only_objects(
    messy: Path, mess: dict
) -> None:
    names = {p.name for p in messy.iterdir() if p.suffix == ".csv"}
    assert names == OBJECTS | HEADER_ONLY
    assert set(mess["header_only_files"]) == HEADER_ONLY
    for name in HEADER_ONLY:
        assert (messy / name).read_bytes().count(b"\r\n") == 1  # a header, no rows
    assert not (messy / "propensity.csv").exists()  # ground truth stays out of the objects


def test_crlf_line_ends_and_a_bom_on_some_files(messy: Path, mess: dict) -> None:
    for path in messy.glob("*.csv"):
        data = path.read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n"), path.name
        assert data.startswith(BOM) == (path.name in mess["bom_files"]), path.name
    assert 1 <= len(mess["bom_files"]) < len(OBJECTS)


def test_nul_bytes_sit_inside_the_description_field(messy: Path, mess: dict) -> None:
    data = (messy / "Opportunity.csv").read_bytes()
    assert data.count(b"\x00") == mess["nul_bytes"] > 0
    frame = read(messy, "Opportunity.csv")
    with_nul = frame["Description"].str.contains("\x00", regex=False)
    assert int(with_nul.sum()) == mess["nul_fields"]
    assert 0.01 <= mess["nul_fields"] / len(frame) <= 0.06
    assert not frame.drop(columns="Description").apply(lambda c: c.str.contains("\x00")).any().any()


def test_account_file_mixes_windows_1252_and_utf8_lines(messy: Path, mess: dict) -> None:
    lines = (messy / "Account.csv").read_bytes().removeprefix(BOM).split(b"\r\n")
    counts = {"ascii": 0, "utf-8": 0, "cp1252": 0}
    for line in filter(None, lines):
        if line.isascii():
            counts["ascii"] += 1
            continue
        try:
            line.decode("utf-8")
            counts["utf-8"] += 1
        except UnicodeDecodeError:
            counts["cp1252"] += 1
    assert counts == mess["account_lines"]
    assert counts["utf-8"] > 0 and counts["cp1252"] > 0
    names = read(messy, "Account.csv")["Name"]
    assert names.str.startswith("Société").any()
    assert names.str.startswith("BOGOTÁ").any()
    assert not names.str.contains("Ã").any()  # decoded per line: no mojibake


def test_history_carries_empty_early_amounts_and_same_second_pairs(messy: Path, mess: dict) -> None:
    history = read(messy, "OpportunityHistory.csv")
    empty = history["Amount"] == ""
    assert int(empty.sum()) == mess["empty_amount_rows"]
    deals = history.groupby("OpportunityId", sort=False)
    assert int(empty.groupby(history["OpportunityId"]).any().sum()) == mess["empty_amount_deals"]
    assert 0.07 <= mess["empty_amount_deals"] / mess["opportunities"] <= 0.13
    # Empty amounts come first: once a deal has an amount it keeps one.
    known_before = empty.groupby(history["OpportunityId"]).transform(
        lambda e: (~e).cumsum().shift(fill_value=0) > 0
    )
    assert not (empty & known_before).any()
    last = deals.tail(1)
    assert (last["Amount"] != "").all()
    pairs = history.duplicated(["OpportunityId", "CreatedDate"], keep="first")
    assert int(pairs.sum()) == mess["same_second_pairs"] > 0
    assert mess["same_second_pairs"] / mess["opportunities"] <= 0.01
    twin = history[history.duplicated(["OpportunityId", "CreatedDate"], keep=False)]
    assert not twin.duplicated(["OpportunityId", "CreatedDate", "Amount"], keep=False).any()


def test_some_deals_were_entered_after_they_closed(messy: Path, mess: dict) -> None:
    frame = read(messy, "Opportunity.csv")
    created = pd.to_datetime(frame["CreatedDate"], utc=True)
    close = pd.to_datetime(frame["CloseDate"], utc=True)
    closed = frame["IsClosed"] == "true"
    after = closed & (close < created.dt.normalize())
    assert int(after.sum()) == mess["entered_after_close"] > 0
    assert mess["entered_after_close"] / int(closed.sum()) <= 0.03
    history = read(messy, "OpportunityHistory.csv")
    late = history[history["OpportunityId"].isin(frame.loc[after, "Id"])]
    assert late.groupby("OpportunityId").size().eq(1).all()  # created already closed
    assert late["StageName"].isin(["Closed Won", "Closed Lost"]).all()


def test_the_same_world_gives_the_same_bytes(world: SyntheticWorld, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_salesforce(world, a, messy=True)
    write_salesforce(world, b, messy=True)
    for path in sorted(a.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path.name


def test_a_clean_export_has_none_of_the_mess(world: SyntheticWorld, tmp_path: Path) -> None:
    write_salesforce(world, tmp_path, messy=False)
    assert not (tmp_path / MESS_FILE).exists()
    for path in tmp_path.glob("*.csv"):
        data = path.read_bytes()
        assert not data.startswith(BOM) and b"\x00" not in data, path.name
        data.decode("utf-8")
    history = read(tmp_path, "OpportunityHistory.csv")
    assert (history["Amount"] != "").all()
    assert not history.duplicated(["OpportunityId", "CreatedDate"]).any()


def test_the_messy_export_imports_and_validates_with_every_repair_counted(
    messy: Path, mess: dict, world: SyntheticWorld, tmp_path: Path
) -> None:
    report = import_salesforce(messy, tmp_path / "export")
    assert report.rows_written["opportunities.csv"] == len(world.tables["opportunities"])
    validation = validate_export(tmp_path / "export")
    assert validation.ok
    repairs = validation.repairs.counts()
    assert repairs.get("amount_unknown") == mess["empty_amount_rows"]
    assert repairs.get("same_instant_superseded") == mess["same_second_pairs"]
    assert repairs.get("created_closed") == mess["entered_after_close"]
    opportunity = report.file("Opportunity.csv").decoding
    assert opportunity.nul_removed == mess["nul_bytes"]
    assert opportunity.bom
    account = report.file("Account.csv").decoding
    assert dict(account.lines) == mess["account_lines"]


def test_cli_writes_a_messy_salesforce_export(tmp_path: Path) -> None:
    out = tmp_path / "sf"
    argv = ["generate", "--salesforce", "--messy", "--opportunities", "400", "--out", str(out)]
    assert main(argv) == 0
    assert (out / MESS_FILE).exists() and (out / "Opportunity.csv").exists()
    assert main(["generate", "--messy", "--out", str(tmp_path / "contract")]) == 2
