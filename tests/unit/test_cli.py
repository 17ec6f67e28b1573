"""The console script: subcommands, exit codes and what they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dealcast.cli import build_parser, main


def test_help_lists_the_subcommands() -> None:
    text = build_parser().format_help()
    for command in ("generate", "validate", "import"):
        assert command in text


def test_validate_prints_the_report(small_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(small_export)]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 1
    assert "a folder of table files" in capsys.readouterr().out


def test_generate_then_validate_through_the_console_script(tmp_path: Path) -> None:
    out = tmp_path / "world"
    script = Path(sys.executable).parent / "dealcast"
    generated = subprocess.run(
        [str(script), "generate", "--out", str(out), "--opportunities", "400", "--seed", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    assert (out / "opportunities.csv").exists() and (out / "stages.yaml").exists()
    assert (out / "ground_truth").is_dir()
    validated = subprocess.run(
        [str(script), "validate", str(out)], capture_output=True, text=True, check=False
    )
    assert validated.returncode == 0, validated.stdout


def test_import_salesforce_reports_what_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "sf"
    src.mkdir()
    (src / "Opportunity.csv").write_text(
        "Id,AccountId,OwnerId,CreatedDate,StageName,Amount,CloseDate,IsClosed,IsWon\r\n"
        "0061,0011,0051,2026-01-05T10:00:00.000Z,Prospecting,100,2026-03-31,false,false\r\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["import", "salesforce", str(src), "--out", str(out)]) == 0
    assert "Opportunity.csv" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0


def test_import_salesforce_bad_input_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "sf"
    src.mkdir()
    (src / "Opportunity.csv").write_text("Id,AccountId\r\n0061,0011\r\n", encoding="utf-8")
    assert main(["import", "salesforce", str(src), "--out", str(tmp_path / "out")]) == 1
    assert "Opportunity.csv" in capsys.readouterr().err
