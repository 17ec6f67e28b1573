"""The Salesforce importer on exports as messy as real orgs write them.

Every file is written as bytes, exactly as an org's export holds them: encodings mixed line by
line, with and without BOM, NUL bytes in rich text, CRLF, quoted newlines, header-only objects,
malformed records, repairable history, and the fiscal year settings. No mocks.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pytest

from dealcast.cli import main
from features.importers.salesforce import (
    SalesforceImportError,
    SalesforceImportReport,
    import_salesforce,
)
from features.importers.source_files import decode

DEAL_A = "006000000000001AAA"
DEAL_B = "006000000000002AAA"
DEAL_C = "006000000000003AAA"

OPPORTUNITY_HEADER = (
    '"Id","AccountId","OwnerId","CreatedDate","StageName","Amount","CloseDate","IsClosed",'
    '"IsWon","ForecastCategoryName","Type","Notes__c"'
)
HISTORY_HEADER = '"OpportunityId","CreatedDate","StageName","Amount","CloseDate","ForecastCategory"'


def crlf(*lines: str) -> str:
    return "".join(f"{line}\r\n" for line in lines)


def opportunity_rows() -> list[str]:
    # fmt: off
    return [
        f'"{DEAL_A}","001A","005U1","2026-01-05T10:00:00.000Z","Closed Won","900.00",'
        '"2026-03-20","true","true","Closed","New Business","plain"',
        f'"{DEAL_B}","001B","005U2","2026-02-01T08:30:00.000Z","Prospecting","500.00",'
        '"2026-06-30","false","false","Pipeline","Renewal",""',
        f'"{DEAL_C}","001A","005U1","2026-03-02T09:30:00.000Z","Closed Lost","",'
        '"2026-03-01","true","false","Omitted","Upsell",""',
    ]
    # fmt: on


def history_rows() -> list[str]:
    return [
        f'"{DEAL_A}","2026-01-05T10:00:00.000Z","Prospecting","1000.00","2026-03-31","Pipeline"',
        f'"{DEAL_A}","2026-03-20T09:00:00.000Z","Closed Won","900.00","2026-03-20","Closed"',
        f'"{DEAL_B}","2026-02-01T08:30:00.000Z","Prospecting","500.00","2026-06-30","Pipeline"',
    ]


def write_org(
    folder: Path,
    *,
    opportunities: list[str] | None = None,
    history: list[str] | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A small org: three deals (won, open, lost) and their history, plus any other files."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = opportunity_rows() if opportunities is None else opportunities
    (folder / "Opportunity.csv").write_bytes(crlf(OPPORTUNITY_HEADER, *rows).encode("utf-8"))
    rows = history_rows() if history is None else history
    (folder / "OpportunityHistory.csv").write_bytes(crlf(HISTORY_HEADER, *rows).encode("utf-8"))
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    return folder


def read_table(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False)


def refused(src: Path, out: Path) -> list[tuple[str, str | None, int | None, str, str | None]]:
    with pytest.raises(SalesforceImportError) as raised:
        import_salesforce(src, out)
    assert not out.exists()
    return [(v.table, v.column, v.row, v.expected, v.found) for v in raised.value.report.violations]


# Decoding


def test_decode_takes_each_line_in_its_own_encoding() -> None:
    data = (
        codecs.BOM_UTF8
        + b'"Id","Name"\r\n'
        + '"1","Société Générale"\r\n'.encode("cp1252")
        + '"2","BOGOTÁ"\r\n'.encode()
        + b'"3","rich\x00 text \x81"\r\n'
        + '"4","“quoted” – Müller"'.encode("cp1252")
    )
    text, decoding = decode(data)
    assert text == (
        '"Id","Name"\r\n"1","Société Générale"\r\n"2","BOGOTÁ"\r\n'
        '"3","rich text \x81"\r\n"4","“quoted” – Müller"'
    )
    assert decoding.lines == {"ascii": 1, "utf-8": 1, "cp1252": 3}
    assert (decoding.bom, decoding.nul_removed, decoding.undefined_bytes) == (True, 1, 1)
    assert decoding.line_ends == "CRLF"
    assert decoding.encoding == "utf-8 + cp1252"


def test_decode_keeps_a_clean_utf8_file_whole() -> None:
    text, decoding = decode('a,b\nSociété,"x\r\ny"\n'.encode())
    assert text == 'a,b\nSociété,"x\r\ny"\n'
    assert decoding.lines == {"ascii": 2, "utf-8": 1, "cp1252": 0}
    assert decoding.line_ends == "mixed (1 CRLF, 2 LF)"


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8], ids=["no BOM", "BOM"])
def test_a_file_mixing_encodings_round_trips_without_mojibake(tmp_path: Path, bom: bytes) -> None:
    names = {
        "001A": ("Société Générale", "cp1252"),
        "001B": ("BOGOTÁ Ltda", "utf-8"),
        "001C": ("Müller GmbH", "cp1252"),
        "001D": ("Łódź Sp. z o.o.", "utf-8"),  # not representable in cp1252 at all
        "001E": ("Café “Le Zinc” – Paris", "cp1252"),
        "001F": ("Ärzte & Söhne", "utf-8"),
    }
    account = bom + b'"Id","Name","Industry"\r\n'
    for account_id, (name, encoding) in names.items():
        account += f'"{account_id}","{name}","Banking"\r\n'.encode(encoding)
    out = tmp_path / "out"
    report = import_salesforce(write_org(tmp_path / "sf", extra={"Account.csv": account}), out)
    written = (out / "accounts.csv").read_bytes().decode("utf-8")
    assert "Ã" not in written and "â€" not in written
    accounts = read_table(out, "accounts").set_index("account_id")
    assert {i: accounts.loc[i, "name"] for i in names} == {i: n for i, (n, _) in names.items()}
    decoding = report.file("Account.csv").decoding
    assert decoding.lines == {"ascii": 1, "utf-8": 3, "cp1252": 3}
    assert decoding.bom is bool(bom)
    text = report.format()
    assert "Account.csv: utf-8 + cp1252, booleans none, 6 rows read, 6 used" in text
    assert "decoded: lines 1 ascii, 3 utf-8, 3 cp1252; CRLF line ends" in text


def test_nul_bytes_are_removed_and_quoted_newlines_kept(tmp_path: Path) -> None:
    rows = opportunity_rows()
    rows[0] = rows[0].replace('"plain"', '"<p>first\x00</p>\r\nsecond\rthird\x00"')
    rows[1] = rows[1].replace('"Renewal",""', '"Renewal","Ünïcode\x00"')
    src = write_org(tmp_path / "sf", opportunities=rows)
    out = tmp_path / "out"
    report = import_salesforce(src, out)
    notes = read_table(out, "opportunities").set_index("opportunity_id")["notes"]
    assert notes[DEAL_A] == "<p>first</p>\r\nsecond\rthird"
    assert notes[DEAL_B] == "Ünïcode"
    decoding = report.file("Opportunity.csv").decoding
    assert decoding.nul_removed == 3
    assert report.file("Opportunity.csv").rows_read == 3
    assert "3 NUL bytes removed" in report.format()


def test_utf16_is_a_clear_error(tmp_path: Path) -> None:
    src = write_org(tmp_path / "sf")
    text = (src / "Opportunity.csv").read_text(encoding="utf-8")
    (src / "Opportunity.csv").write_bytes(text.encode("utf-16"))
    (src / "OpportunityHistory.csv").write_bytes(
        (src / "OpportunityHistory.csv").read_text(encoding="utf-8").encode("utf-16-le")
    )
    problems = refused(src, tmp_path / "out")
    assert [(t, e) for t, _, _, e, _ in problems] == [
        ("Opportunity.csv", "a UTF-8 or Windows-1252 CSV file"),
        ("OpportunityHistory.csv", "a UTF-8 or Windows-1252 CSV file"),
    ]
    assert "UTF-16" in str(problems[0][4]) and "UTF-16 without a BOM" in str(problems[1][4])


# Empty objects


def test_header_only_objects_are_absent_tables(tmp_path: Path) -> None:
    src = write_org(
        tmp_path / "sf",
        extra={
            # Another layout than the importer reads: no QuotaOwnerId, no StartDate.
            "ForecastingQuota.csv": b'"Id","ForecastingTypeId","QuotaQuantity","PeriodId"\r\n',
            "Task.csv": codecs.BOM_UTF8 + b'"Id","WhatId","ActivityDate","Type"\r\n',
            "Event.csv": b"",
            "OpportunityFieldHistory.csv": b"Id,OpportunityId,CreatedDate,Field,NewValue\n",
        },
    )
    out = tmp_path / "out"
    report = import_salesforce(src, out)
    for name in ("ForecastingQuota.csv", "Task.csv", "Event.csv", "OpportunityFieldHistory.csv"):
        assert report.file(name).header_only
        assert f"  {name}: header only: treated as absent" in report.format()
    assert set(report.rows_written) == {"opportunities.csv", "opportunity_history.csv"}
    assert not (out / "quotas.csv").exists() and not (out / "activities.csv").exists()


def test_a_header_only_history_reads_deals_from_their_current_state(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = import_salesforce(write_org(tmp_path / "sf", history=[]), out)
    assert report.file("OpportunityHistory.csv").header_only
    assert report.rows_written["opportunity_history.csv"] == 0
    assert any("no OpportunityHistory rows" in note for note in report.notes)


def test_a_header_only_opportunity_file_is_an_error(tmp_path: Path) -> None:
    assert refused(write_org(tmp_path / "sf", opportunities=[]), tmp_path / "out") == [
        (
            "Opportunity.csv",
            None,
            None,
            "at least one opportunity (the contract requires the table)",
            "a header only",
        )
    ]


def test_a_quota_file_of_another_layout_is_skipped_and_reported(tmp_path: Path) -> None:
    quotas = b'"Id","ForecastingTypeId","QuotaQuantity"\r\n"0J91","0Db1","40"\r\n'
    src = write_org(tmp_path / "sf", extra={"ForecastingQuota.csv": quotas})
    out = tmp_path / "out"
    report = import_salesforce(src, out)
    quota = report.file("ForecastingQuota.csv")
    assert quota.skipped == {
        "the file has no QuotaOwnerId, StartDate, QuotaAmount column: no revenue quotas": 1
    }
    assert quota.rows_used == 0
    assert not (out / "quotas.csv").exists()


# Fatal problems: one each, named by file, row, column and expectation


def test_a_short_row_is_one_error_naming_its_row_and_field_counts(tmp_path: Path) -> None:
    rows = opportunity_rows()
    rows[1] = f'"{DEAL_B}","001B","005U2","2026-02-01T08:30:00.000Z"'
    assert refused(write_org(tmp_path / "sf", opportunities=rows), tmp_path / "out") == [
        ("Opportunity.csv", None, 2, "a row of 12 fields, as many as the header has", "4 fields")
    ]


def test_an_extra_field_on_the_first_row_is_one_error_not_a_shifted_table(tmp_path: Path) -> None:
    many = [
        f'"006{i:012d}AAA","001A","005U1","2026-01-05T10:00:00.000Z","Prospecting","1",'
        '"2026-06-30","false","false","Pipeline","New Business",""'
        for i in range(10, 2010)
    ]
    many[0] += ',"stray"'
    problems = refused(write_org(tmp_path / "sf", opportunities=many), tmp_path / "out")
    assert problems == [
        ("Opportunity.csv", None, 1, "a row of 12 fields, as many as the header has", "13 fields")
    ]


def test_rows_are_counted_as_records_across_quoted_newlines(tmp_path: Path) -> None:
    rows = opportunity_rows()
    rows[0] = rows[0].replace('"plain"', '"two\r\nlines"')
    rows[2] += ',""'
    assert refused(write_org(tmp_path / "sf", opportunities=rows), tmp_path / "out") == [
        ("Opportunity.csv", None, 3, "a row of 12 fields, as many as the header has", "13 fields")
    ]


def test_a_time_outside_the_representable_range_is_a_named_error(tmp_path: Path) -> None:
    rows = opportunity_rows()
    rows[1] = rows[1].replace("2026-02-01T08:30:00.000Z", "2500-02-01T08:30:00.000Z")
    history = history_rows()
    history[2] = history[2].replace('"2026-06-30"', '"0001-06-30"')
    src = write_org(tmp_path / "sf", opportunities=rows, history=history)
    problems = refused(src, tmp_path / "out")
    expected = "a time dealcast can represent (from 1677-09-22 to 2262-04-11)"
    assert ("Opportunity.csv", "CreatedDate", 2, expected, "'2500-02-01T08:30:00.000Z'") in (
        problems
    )
    assert ("OpportunityHistory.csv", "CloseDate", 3, expected, "'0001-06-30'") in problems


def test_the_cli_reports_fatal_problems_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = opportunity_rows()
    rows[0] = rows[0][:40]
    src = write_org(tmp_path / "sf", opportunities=rows)
    assert main(["import", "salesforce", str(src), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "Opportunity.csv row 1: expected a row of 12 fields" in error
    assert "Traceback" not in error


# Repairable problems pass through, as they are, for the validator


def test_repairable_history_is_written_as_it_is_in_source_order(tmp_path: Path) -> None:
    history = [
        # Before CreatedDate (2026-01-05T10:00): stamped before the deal existed.
        f'"{DEAL_A}","2026-01-04T09:00:00.000Z","Prospecting","","2026-03-31","Pipeline"',
        # An empty Amount: deals get one later.
        f'"{DEAL_A}","2026-01-05T10:00:00.000Z","Prospecting","","2026-03-31","Pipeline"',
        # Two rows in the same second with different values: an automation fired.
        f'"{DEAL_A}","2026-02-01T12:00:00.000Z","Qualification","800.00","2026-03-31","Pipeline"',
        f'"{DEAL_A}","2026-02-01T12:00:00.000Z","Qualification","850.00","2026-03-31","BestCase"',
        f'"{DEAL_A}","2026-03-20T09:00:00.000Z","Closed Won","900.00","2026-03-20","Closed"',
        # Created already closed, closing before its creation (CloseDate 2026-03-01).
        f'"{DEAL_C}","2026-03-02T09:30:00.000Z","Closed Lost","","2026-03-01","Omitted"',
    ]
    src = write_org(tmp_path / "sf", history=history)
    out = tmp_path / "out"
    report = import_salesforce(src, out)
    written = read_table(out, "opportunity_history")
    assert [
        (r["opportunity_id"], r["changed_at"], r["stage"], r["amount"], r["forecast_category"])
        for r in written.to_dict("records")
    ] == [
        (DEAL_A, "2026-01-04T09:00:00Z", "Prospecting", "", "Pipeline"),
        (DEAL_A, "2026-01-05T10:00:00Z", "Prospecting", "", "Pipeline"),
        (DEAL_A, "2026-02-01T12:00:00Z", "Qualification", "800", "Pipeline"),
        (DEAL_A, "2026-02-01T12:00:00Z", "Qualification", "850", "Best Case"),
        (DEAL_A, "2026-03-20T09:00:00Z", "Closed Won", "900", "Closed"),
        (DEAL_C, "2026-03-02T09:30:00Z", "Closed Lost", "", "Omitted"),
    ]
    deals = read_table(out, "opportunities").set_index("opportunity_id")
    assert (deals.loc[DEAL_C, "created_at"], deals.loc[DEAL_C, "close_date"]) == (
        "2026-03-02T09:30:00Z",
        "2026-03-01",
    )
    assert any(
        "3 rows have an empty Amount" in n for n in report.file("OpportunityHistory.csv").notes
    )


# What an org also holds


def fiscal_year_settings(*starts: str) -> bytes:
    rows = [f'"022{i}","{start[:4]}","{start}","Standard","true"' for i, start in enumerate(starts)]
    return crlf('"Id","Name","StartDate","YearType","IsStandardYear"', *rows).encode()


QUOTAS = crlf(
    '"Id","QuotaOwnerId","StartDate","QuotaAmount"',
    '"0J91","005U1","2026-03-01","1000"',
    '"0J92","005U1","2026-04-01","2000"',
).encode()


def test_fiscal_year_from_fiscal_year_settings_labels_quotas_and_is_written(
    tmp_path: Path,
) -> None:
    settings = fiscal_year_settings("2025-04-01", "2026-04-01")
    src = write_org(
        tmp_path / "sf",
        extra={"FiscalYearSettings.csv": settings, "ForecastingQuota.csv": QUOTAS},
    )
    out = tmp_path / "out"
    report = import_salesforce(src, out)
    assert (out / "dealcast.toml").read_text(encoding="utf-8") == (
        "# written by dealcast import salesforce: from FiscalYearSettings\n"
        "[features]\n"
        "fiscal_year_start_month = 4\n"
    )
    assert report.fiscal_year_start_month == 4
    quotas = read_table(out, "quotas")
    # April start, named by the year it ends in: March 2026 closes FY2026, April opens FY2027.
    assert list(quotas["period"]) == ["2026-Q4", "2027-Q1"]
    text = report.format()
    assert "fiscal year starts in month 4 (from FiscalYearSettings); written to dealcast.toml" in (
        text
    )
    assert "dealcast names it 2027" in text


def test_fiscal_year_from_period_rows_of_type_year(tmp_path: Path) -> None:
    periods = crlf(
        '"Id","Type","StartDate","EndDate","Number"',
        '"0261","Month","2026-02-01","2026-02-28","1"',
        '"0262","Quarter","2026-02-01","2026-04-30","1"',
        '"0263","Year","2026-02-01","2027-01-31",""',
    ).encode()
    out = tmp_path / "out"
    report = import_salesforce(write_org(tmp_path / "sf", extra={"Period.csv": periods}), out)
    assert report.fiscal_year_start_month == 2
    assert "from Period" in (out / "dealcast.toml").read_text(encoding="utf-8")
    assert report.file("Period.csv").rows_used == 1


def test_the_cli_flag_overrides_the_export_and_without_a_setting_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {
        "FiscalYearSettings.csv": fiscal_year_settings("2026-04-01"),
        "ForecastingQuota.csv": QUOTAS,
    }
    src = write_org(tmp_path / "sf", extra=extra)
    out = tmp_path / "out"
    argv = ["import", "salesforce", str(src), "--out", str(out), "--fiscal-year-start-month", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "fiscal year starts in month 2 (from --fiscal-year-start-month)" in printed
    assert "overrides FiscalYearSettings, which starts the fiscal year in month 4" in printed
    assert list(read_table(out, "quotas")["period"]) == ["2027-Q1"]
    assert "fiscal_year_start_month = 2" in (out / "dealcast.toml").read_text(encoding="utf-8")

    plain = tmp_path / "plain"
    report = import_salesforce(
        write_org(tmp_path / "sf2", extra={"ForecastingQuota.csv": QUOTAS}), plain
    )
    assert report.fiscal_year_start_month == 1 and not (plain / "dealcast.toml").exists()
    assert list(read_table(plain, "quotas")["period"]) == ["2026-Q1", "2026-Q2"]


def test_a_stale_dealcast_toml_of_an_earlier_import_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = {"FiscalYearSettings.csv": fiscal_year_settings("2026-04-01")}
    import_salesforce(write_org(tmp_path / "sf", extra=extra), out)
    for name in ("opportunities.csv", "opportunity_history.csv"):
        (out / name).unlink()
    with pytest.raises(SalesforceImportError, match=r"dealcast\.toml"):
        import_salesforce(write_org(tmp_path / "plain"), out)


def test_teams_are_role_names_unless_the_user_gives_one(tmp_path: Path) -> None:
    users = crlf(
        '"Id","Name","UserRoleId","ManagerId"',
        '"005U1","Ann","00E1","005M1"',
        '"005U2","Bo","00E200000000000AAA","005M1"',
        '"005M1","Cy","",""',
    ).encode("cp1252")
    roles = crlf('"Id","Name"', '"00E1","AE Bogotá"', '"00E200000000000","AE West"').encode()
    out = tmp_path / "out"
    extra = {"User.csv": users, "UserRole.csv": roles}
    report = import_salesforce(write_org(tmp_path / "sf", extra=extra), out)
    owners = read_table(out, "owners").set_index("owner_id")
    assert owners["team"].to_dict() == {"005U1": "AE Bogotá", "005U2": "AE West", "005M1": ""}
    assert "team from the role's name in UserRole.csv" in report.file("User.csv").notes


def test_field_history_becomes_the_contract_table(tmp_path: Path) -> None:
    field_history = crlf(
        '"Id","OpportunityId","CreatedDate","Field","OldValue","NewValue","DataType","IsDeleted"',
        f'"0171","{DEAL_A}","2026-01-06T10:00:00.000Z","Budget_Confirmed__c","false","true",'
        '"Checkbox","false"',
        f'"0172","{DEAL_A}","2026-01-07T10:00:00.000Z","NextStep","","Send\r\nproposal",'
        '"Text","false"',
        '"0173","006000000000099AAA","2026-01-07T10:00:00.000Z","NextStep","","x","Text","false"',
        f'"0174","{DEAL_B}","2026-02-07T10:00:00.000Z","NextStep","","gone","Text","true"',
    ).encode()
    out = tmp_path / "out"
    extra = {"OpportunityFieldHistory.csv": field_history}
    report = import_salesforce(write_org(tmp_path / "sf", extra=extra), out)
    written = read_table(out, "opportunity_field_history")
    assert list(written.columns) == [
        "opportunity_id",
        "changed_at",
        "field",
        "new_value",
        "old_value",
    ]
    assert written.values.tolist() == [
        [DEAL_A, "2026-01-06T10:00:00Z", "Budget_Confirmed__c", "true", "false"],
        [DEAL_A, "2026-01-07T10:00:00Z", "NextStep", "Send\r\nproposal", ""],
    ]
    assert report.file("OpportunityFieldHistory.csv").skipped == {
        "IsDeleted is true (a deleted record)": 1,
        "OpportunityId is not an opportunity in Opportunity.csv": 1,
    }
    assert report.rows_written["opportunity_field_history.csv"] == 2


def test_unread_objects_are_listed_in_one_note(tmp_path: Path) -> None:
    extra = {"Case.csv": b"Id\n1\n", "Lead.csv": b"Id\n2\n"}
    report: SalesforceImportReport = import_salesforce(
        write_org(tmp_path / "sf", extra=extra), tmp_path / "out"
    )
    assert [n for n in report.notes if "not Salesforce objects" in n] == [
        "2 files are not Salesforce objects this importer reads, left as they are: "
        "Case.csv, Lead.csv"
    ]
