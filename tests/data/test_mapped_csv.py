"""`dealcast import csv --mapping` (issue 17 item 2): a bad mapping named key by key before any
row is read; the three kinds of history (long, wide, current state) each knowing only what
the export can know; and each example mapping importing its synthetic CRM-format export as it
is, through the validator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dealcast.cli import main
from features.importers.hubspot import UNAVAILABLE_FEATURES, import_hubspot
from features.importers.mapped_csv import (
    AMOUNT_HISTORY,
    CLOSE_DATE_HISTORY,
    STAGE_PATH,
    CsvImportError,
    import_csv,
)
from features.importers.mapping import MappingError
from features.loading import load_export
from features.synthetic import SyntheticWorld, generate_world
from features.synthetic.crm_formats import stage_changes
from features.synthetic.fxiaoke import FOLLOW_UPS, write_fxiaoke
from features.synthetic.hubspot import MAIN_PIPELINE, write_hubspot
from features.synthetic.pipedrive import write_pipedrive

MAPPINGS = Path(__file__).resolve().parents[2] / "features" / "importers" / "mappings"

DEALS = (
    "编号,客户,负责人,创建时间,阶段,金额,预计成交日期,状态\n"
    "D1,Acme,张三,2026/01/05 09:00,赢单,1000,2026/02/10,won\n"
    "D2,Beta,李四,2026/01/06 10:30,方案,,2026/06/30,open\n"
    "D3,Acme,张三,2026/01/07 11:00,初步接洽,500,2026/07/31,open\n"
)
FLOW = (
    "编号,时间,阶段\n"
    "D1,2026/01/05 09:00,初步接洽\n"
    "D1,2026/02/10 16:00,赢单\n"
    "D2,2026/01/06 10:30,方案\n"
    "D3,2026/01/07 11:00,初步接洽\n"
)
MAPPING = """
[source]
timezone = "Asia/Shanghai"
datetime_format = "%Y/%m/%d %H:%M"
date_format = "%Y/%m/%d"
exported_at = "2026-03-01T12:00:00"

[currency]
code = "CNY"

[opportunities]
file = "deals.csv"
outcome = { column = "状态", won = ["won"], lost = ["lost"], open = ["open"] }

[opportunities.columns]
opportunity_id = "编号"
account_id = "客户"
owner_id = "负责人"
created_at = "创建时间"
stage = "阶段"
amount = "金额"
close_date = "预计成交日期"

[history]
kind = "long"
file = "flow.csv"
columns = { opportunity_id = "编号", changed_at = "时间", stage = "阶段" }

[stages]
open = [
  { label = "初步接洽", probability = 10 },
  { label = "方案", name = "Proposal", probability = 50 },
]
won = [{ label = "赢单", name = "Won" }]
lost = [{ label = "输单", name = "Lost" }]
"""


def export(folder: Path, mapping: str = MAPPING, *, deals: str = DEALS, flow: str = FLOW) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deals.csv").write_text(deals, encoding="utf-8")
    (folder / "flow.csv").write_text(flow, encoding="utf-8")
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    return folder


def mapping_problems(folder: Path) -> str:
    with pytest.raises(MappingError) as error:
        import_csv(folder, folder / "mapping.toml", folder / "out")
    assert not (folder / "out").exists()  # stopped before any work
    return str(error.value)


def history(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "opportunity_history.csv", dtype={"opportunity_id": str})


def test_a_long_history_is_read_in_its_zone_with_its_value_maps(tmp_path: Path) -> None:
    src = export(tmp_path / "raw")
    report = import_csv(src, src / "mapping.toml", tmp_path / "out")
    rebuilt = history(tmp_path / "out")
    one = rebuilt[rebuilt["opportunity_id"] == "D1"]
    assert list(one["stage"]) == ["初步接洽", "Won"]
    # Beijing is UTC+8: 09:00 there is 01:00 UTC; the close date stays the day written.
    assert list(one["changed_at"]) == ["2026-01-05T01:00:00Z", "2026-02-10T08:00:00Z"]
    assert set(one["close_date"]) == {"2026-02-10"}
    assert list(one["probability"]) == [10.0, 100.0]
    assert set(rebuilt["currency"]) == {"CNY"}
    # The flow has no amount or close date: the export-time values, their features unavailable.
    assert report.unavailable_features == AMOUNT_HISTORY + CLOSE_DATE_HISTORY
    toml = (tmp_path / "out" / "dealcast.toml").read_text()
    assert all(f'"{name}"' in toml for name in report.unavailable_features)
    assert "export-time value" in report.format()
    loaded = load_export(tmp_path / "out")
    assert loaded.report.ok
    assert loaded.report.repairs.counts() == {"amount_unknown": 1}  # D2's empty 金额


def test_each_bad_key_of_a_mapping_is_named_before_any_row_is_read(tmp_path: Path) -> None:
    bad = (
        MAPPING.replace('timezone = "Asia/Shanghai"', 'timezone = "Asia/Shangai"\nzone = 8')
        .replace('code = "CNY"', 'code = "yuan"')
        .replace('kind = "long"', 'kind = "longest"')
        .replace("probability = 50", "probability = 150")
        .replace('owner_id = "负责人"\n', "")
        .replace('date_format = "%Y/%m/%d"', 'date_format = "YYYY/MM/DD"')
    )
    message = mapping_problems(export(tmp_path / "keys", bad))
    assert "mapping.toml: source.zone: unknown key (known here: encoding, timezone," in message
    assert "mapping.toml: source.timezone: 'Asia/Shangai' is not an IANA time zone" in message
    assert "mapping.toml: source.date_format: expected a strftime pattern" in message
    assert "mapping.toml: currency.code: expected an ISO 4217 code (EUR), found 'yuan'" in message
    assert "mapping.toml: history.kind: expected one of long, wide, current, found 'longest'" in (
        message
    )
    assert "mapping.toml: stages.open[1].probability: expected a percent in 0-100, found 150" in (
        message
    )
    assert "mapping.toml: opportunities.columns.owner_id: a required key is missing" in message
    # A column the file lacks is named with the file's own columns, once the headers are read.
    missing = MAPPING.replace('amount = "金额"', 'amount = "金额x"')
    message = mapping_problems(export(tmp_path / "column", missing))
    assert (
        'mapping.toml: opportunities.columns.amount: column "金额x" is not in deals.csv (its '
        "columns: 编号, 客户, 负责人, 创建时间, 阶段, 金额, 预计成交日期, 状态)"
    ).replace('"金额x"', "'金额x'") in message
    message = mapping_problems(export(tmp_path / "file", MAPPING.replace("flow.csv", "log.csv")))
    assert "mapping.toml: history.file: no file 'log.csv' in" in message
    with pytest.raises(CsvImportError, match="expected a folder of CSV files, found no such"):
        import_csv(tmp_path / "nowhere", tmp_path / "file" / "mapping.toml", tmp_path / "out")
    message = mapping_problems(export(tmp_path / "current", MAPPING + "\n[accounts]\nfile = 'a'\n"))
    assert "mapping.toml: accounts.columns: a required section is missing" in message
    current = MAPPING.replace('kind = "long"\nfile = "flow.csv"', 'kind = "current"').replace(
        'exported_at = "2026-03-01T12:00:00"\n', ""
    )
    message = mapping_problems(export(tmp_path / "no_time", current))
    assert "mapping.toml: history.columns: unknown key (known here: kind, stage_at_creation)" in (
        message
    )
    assert "mapping.toml: history.stage_at_creation: a required key is missing" in message
    assert "mapping.toml: source.exported_at: a required key when history.kind is current" in (
        message
    )
    (tmp_path / "toml").mkdir()
    (tmp_path / "toml" / "mapping.toml").write_text("[source\n")
    assert "mapping.toml: not a TOML file" in mapping_problems(tmp_path / "toml")


def test_the_command_says_what_it_imported_or_which_key_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = export(tmp_path / "raw")
    args = ["import", "csv", str(src), "--mapping", str(src / "mapping.toml")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert "CSV export" in capsys.readouterr().out
    (src / "mapping.toml").write_text(MAPPING.replace("[history]", "[history]\nkinds = 1"))
    assert main([*args, "--out", str(tmp_path / "out2")]) == 1
    error = capsys.readouterr().err
    assert "dealcast import: mapping.toml: history.kinds: unknown key (known here: " in error
    assert not (tmp_path / "out2").exists()


def test_bad_values_stage_labels_and_outcomes_are_named_by_file_column_and_row(
    tmp_path: Path,
) -> None:
    deals = DEALS.replace("D3,Acme,张三,2026/01/07 11:00,初步接洽", "D3,Acme,张三,2026-01-07,谈判")
    deals = deals.replace("赢单,1000,2026/02/10,won", "赢单,1000,2026/02/10,lost")
    flow = FLOW.replace("D2,2026/01/06 10:30,方案", "D2,2026/01/06 10:30,报价")
    src = export(tmp_path / "raw", deals=deals, flow=flow)
    with pytest.raises(CsvImportError) as error:
        import_csv(src, src / "mapping.toml", tmp_path / "out")
    message = str(error.value)
    assert "deals.csv.创建时间 row 3: expected a time written as '%Y/%m/%d %H:%M' or" in message
    assert (
        "deals.csv.阶段 row 3: expected a stage label of [stages] ('初步接洽', '方案'," in message
    )
    assert "flow.csv.阶段 row 3: expected a stage label of [stages]" in message
    assert "'报价'" in message
    assert "deals.csv.状态 row 1: expected an outcome that agrees with the deal's last stage, " in (
        message
    )
    assert "found 'lost (last stage Won)'" in message
    assert not (tmp_path / "out").exists()


def test_a_deal_without_history_rows_is_refused_not_back_dated(tmp_path: Path) -> None:
    flow = "\n".join(FLOW.splitlines()[:-1]) + "\n"  # D3 has no row
    src = export(tmp_path / "raw", flow=flow)
    with pytest.raises(CsvImportError, match=r"deals.csv.编号 row 3: expected a history row"):
        import_csv(src, src / "mapping.toml", tmp_path / "out")


def test_current_state_only_never_back_dates_the_current_stage(tmp_path: Path) -> None:
    current = MAPPING.replace(
        'kind = "long"\nfile = "flow.csv"\ncolumns = { opportunity_id = "编号", '
        'changed_at = "时间", stage = "阶段" }',
        'kind = "current"\nstage_at_creation = "初步接洽"',
    )
    src = export(tmp_path / "raw", current)
    report = import_csv(src, src / "mapping.toml", tmp_path / "out")
    rebuilt = history(tmp_path / "out").set_index(["opportunity_id", "stage"])["changed_at"]
    # Closed D1: created in the first stage, won at the end of its close day in Beijing.
    assert rebuilt[("D1", "初步接洽")] == "2026-01-05T01:00:00Z"
    assert rebuilt[("D1", "Won")] == "2026-02-10T16:00:00Z"
    # Open D2 is known to be in Proposal from the export on, not from its creation.
    assert rebuilt[("D2", "初步接洽")] == "2026-01-06T02:30:00Z"
    assert rebuilt[("D2", "Proposal")] == "2026-03-01T04:00:00Z"
    assert list(rebuilt.loc["D3"].index) == ["初步接洽"]  # still where it started
    assert set(STAGE_PATH) <= set(report.unavailable_features)
    assert "the stage path in between is unknown" in report.format()
    assert load_export(tmp_path / "out").report.ok
    # A deal created after the export time means the mapping's exported_at is wrong.
    late = current.replace("2026-03-01T12:00:00", "2026-01-06T12:00:00")
    src = export(tmp_path / "late", late)
    with pytest.raises(CsvImportError) as error:
        import_csv(src, src / "mapping.toml", tmp_path / "out2")
    assert "deals.csv.创建时间 row 3: expected a creation before source.exported_at" in str(
        error.value
    )


def test_a_currency_column_with_exchange_rates_is_converted_by_the_loader(tmp_path: Path) -> None:
    mapping = MAPPING.replace('code = "CNY"', 'column = "币种"') + (
        '\n[exchange_rates]\nfile = "rates.csv"\ncolumns = { currency = "币种", rate = "汇率" }\n'
    )
    deals = DEALS.replace("状态\n", "状态,币种\n").replace("won\n", "won,USD\n")
    deals = deals.replace("open\n", "open,CNY\n")
    src = export(tmp_path / "raw", mapping, deals=deals)
    (src / "rates.csv").write_text("币种,汇率\nCNY,1\nUSD,0.14\n", encoding="utf-8")
    report = import_csv(src, src / "mapping.toml", tmp_path / "out")
    assert report.rows_written["exchange_rates.csv"] == 2
    loaded = load_export(tmp_path / "out")
    assert loaded.report.ok
    won = loaded.history[loaded.history["opportunity_id"] == "D1"]["amount"]
    assert won.round(2).tolist() == [round(1000 / 0.14, 2)] * 2  # USD 1000 in CNY
    (src / "rates.csv").write_text("币种,汇率\nCNY,1\nUSD,0\n", encoding="utf-8")
    with pytest.raises(CsvImportError, match=r"rates.csv.汇率 row 2: expected a rate > 0"):
        import_csv(src, src / "mapping.toml", tmp_path / "out2")


def test_a_declared_encoding_is_read_strictly(tmp_path: Path) -> None:
    src = export(tmp_path / "raw", MAPPING.replace("[source]", '[source]\nencoding = "gbk"'))
    (src / "deals.csv").write_bytes(DEALS.encode("gbk"))
    (src / "flow.csv").write_bytes(FLOW.encode("gbk"))
    report = import_csv(src, src / "mapping.toml", tmp_path / "out")
    assert report.files[0].encoding == "gbk"
    (src / "flow.csv").write_bytes(FLOW.encode("gbk") + "D9,2026/01/05 09:00,方案\n".encode())
    with pytest.raises(CsvImportError, match=r"flow.csv: expected a gbk CSV file, found line 6"):
        import_csv(src, src / "mapping.toml", tmp_path / "out3")
    bad = MAPPING.replace("[source]", '[source]\nencoding = "gbkk"')
    assert "source.encoding: 'gbkk' is not an encoding" in mapping_problems(
        export(tmp_path / "enc", bad)
    )


# --- the example mappings on the synthetic CRM-format exports ---------------------------------


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return generate_world(1_200, seed=11)


def test_the_pipedrive_mapping_imports_its_export_with_the_full_history(
    world: SyntheticWorld, tmp_path: Path
) -> None:
    write_pipedrive(world, tmp_path / "raw")
    mess = json.loads((tmp_path / "raw" / "_mess.json").read_text())
    report = import_csv(tmp_path / "raw", MAPPINGS / "pipedrive.toml", tmp_path / "out")
    assert report.unavailable_features == ()  # the flow carries amounts and close dates
    assert report.owners_added == (mess["owner_missing"],)
    rebuilt = history(tmp_path / "out")
    truth = world.tables["opportunity_history"].sort_values(["opportunity_id", "changed_at"])
    assert len(rebuilt) == len(truth) == mess["flow_rows"]
    assert list(rebuilt["stage"]) == list(truth["stage"])
    # Berlin's naive times back to UTC: equal, but for the repeated daylight-saving hour.
    times = pd.to_datetime(rebuilt["changed_at"], utc=True).to_numpy()
    shifted = int((times != truth["changed_at"].dt.floor("s").to_numpy()).sum())
    assert shifted <= 3
    loaded = load_export(tmp_path / "out")
    assert loaded.report.ok
    counts = loaded.report.repairs.counts()
    assert (
        counts.get("amount_carried_forward", 0) + counts.get("amount_unknown", 0)
        == (mess["empty_values"])
    )


def test_the_fxiaoke_mapping_imports_its_gbk_export(world: SyntheticWorld, tmp_path: Path) -> None:
    write_fxiaoke(world, tmp_path / "raw")
    mess = json.loads((tmp_path / "raw" / "_mess.json").read_text(encoding="utf-8"))
    report = import_csv(tmp_path / "raw", MAPPINGS / "fxiaoke.toml", tmp_path / "out")
    assert {f.encoding for f in report.files} == {"gbk"}
    assert report.unavailable_features == AMOUNT_HISTORY + CLOSE_DATE_HISTORY
    rebuilt = history(tmp_path / "out")
    changes = stage_changes(world.tables["opportunity_history"])
    assert len(rebuilt) == mess["stage_changes"] == len(changes)
    assert list(rebuilt["stage"]) == list(changes["stage"])  # English names through the map
    times = pd.to_datetime(rebuilt["changed_at"], utc=True).to_numpy()
    assert (times == changes["changed_at"].dt.floor("min").to_numpy()).all()
    activities = pd.read_csv(tmp_path / "out" / "activities.csv")
    assert set(activities["type"]) == set(FOLLOW_UPS)
    loaded = load_export(tmp_path / "out")
    assert loaded.report.ok
    # A kept attribute of numbers is written as numbers (the account's size), text as text.
    lines = (tmp_path / "out" / "accounts.csv").read_text(encoding="utf-8").splitlines()
    employees = [line.rsplit(",", 1)[1] for line in lines[1:]]
    assert employees == [str(n) for n in world.tables["accounts"]["employees"]]  # unquoted
    # Each empty 金额 is unknown on every row of its deal, never filled from anywhere.
    repairs = loaded.report.repairs.to_frame()
    assert set(repairs["kind"]) == {"amount_unknown"}
    deals = pd.read_csv(tmp_path / "raw" / "商机.csv", dtype=str, encoding="gbk")
    empty = set(deals.loc[deals["金额"].isna(), "商机ID"])
    assert set(repairs["key"]) == empty
    assert len(empty) == mess["empty_amounts"]


def test_the_hubspot_like_mapping_rebuilds_what_the_hubspot_importer_does(
    world: SyntheticWorld, tmp_path: Path
) -> None:
    write_hubspot(world, tmp_path / "raw")
    report = import_csv(tmp_path / "raw", MAPPINGS / "hubspot.toml", tmp_path / "mapped")
    import_hubspot(tmp_path / "raw", tmp_path / "native", pipeline=MAIN_PIPELINE)
    mapped, native = history(tmp_path / "mapped"), history(tmp_path / "native")
    pd.testing.assert_frame_equal(mapped.drop(columns="currency"), native)
    assert report.unavailable_features == UNAVAILABLE_FEATURES  # the same export, the same loss
    mess = json.loads((tmp_path / "raw" / "_mess.json").read_text())
    others = sum(n for name, n in mess["deals_per_pipeline"].items() if name != MAIN_PIPELINE)
    assert report.files[0].skipped == {"Pipeline not one of 'Sales Pipeline'": others}
    assert any(d.column == "Forecast category" and d.leaky for d in report.files[0].dropped_columns)
    assert load_export(tmp_path / "mapped").report.ok


def test_generate_writes_each_crm_format_and_refuses_two_at_once(tmp_path: Path) -> None:
    for fmt in ("pipedrive", "fxiaoke"):
        out = tmp_path / fmt
        assert main(["generate", "--out", str(out), "--salesforce", "--format", fmt]) == 2
        assert not out.exists()
