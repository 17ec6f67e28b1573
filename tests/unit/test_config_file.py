"""dealcast.toml: the schema read from the dataclasses, errors that name the key, precedence,
the committed example, and the CLI's one-line report of a bad file."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Literal, get_type_hints

import pytest

from dealcast.cli import _run_config, build_parser, main
from dealcast.config import (
    FILE_NAME,
    SECTIONS,
    ConfigError,
    config_to_toml,
    differing_settings,
    load_config,
    read_config,
    resolved_config,
    schema,
    section_schema,
    with_settings,
)
from features.config import FeatureConfig
from training.train import TrainConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "dealcast.example.toml"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path / "bad.toml", text))
    return str(raised.value)


def a_changed_config() -> TrainConfig:
    """A value other than the default in every section, of every kind of type."""
    defaults = TrainConfig()
    return replace(
        defaults,
        feature=replace(
            defaults.feature,
            fiscal_year_start_month=4,
            activity_windows_days=(14, 60),
            owner_prior_strength=7.5,
            static_attributes=(("opportunities", "type"), ("accounts", "segment")),
        ),
        backtest=replace(
            defaults.backtest,
            step="month",
            folds=6,
            weeks=(2, 6),
            model=replace(defaults.backtest.model, learning_rate=0.05, seed=7),
        ),
        tolerance=0.02,
    )


# --- the schema -------------------------------------------------------------------------


def test_every_field_of_the_configuration_is_a_key_or_a_section() -> None:
    """A field the lead adds to any configuration dataclass is covered, or this fails."""
    paths = set(SECTIONS.values())
    keys = schema()

    def walk(cls: type, path: tuple[str, ...]) -> None:
        section = next(s for s, p in SECTIONS.items() if p == path)
        hints = get_type_hints(cls)
        for f in fields(cls):
            inner = hints[f.name]
            if isinstance(inner, type) and is_dataclass(inner):
                assert (*path, f.name) in paths, f"{cls.__name__}.{f.name} has no section"
                walk(inner, (*path, f.name))
            else:
                assert f.name in keys[section], f"{section}.{f.name} missing"

    walk(TrainConfig, ())


def test_the_settings_named_in_the_issue_are_keys() -> None:
    keys = schema()
    assert {"fiscal_year_start_month", "static_attributes"} <= set(keys["features"])
    assert "horizons_days" in set(keys["features"]) | set(keys["model"])
    assert "learning_rate" in keys["model"]
    assert {"step", "folds", "weeks"} <= set(keys["backtest"]) and "model" not in keys["backtest"]
    assert set(keys["train"]) == {"tolerance", "team_history_days"}


def test_reading_the_module_does_not_import_training() -> None:
    """training.train may import dealcast.config (to log the file with its run)."""
    code = "import sys, dealcast.config; assert 'training.train' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    subprocess.run(
        [sys.executable, "-c", "import dealcast.config, training.train, dealcast.config"],
        check=True,
    )


# --- round trip and the resolved configuration ------------------------------------------


@pytest.mark.parametrize("config", [TrainConfig(), a_changed_config()], ids=["defaults", "set"])
def test_round_trip(tmp_path: Path, config: TrainConfig) -> None:
    path = write(tmp_path / "run.toml", config_to_toml(config))
    assert load_config(path) == config


def test_resolved_config_has_every_field_as_plain_data() -> None:
    resolved = resolved_config(a_changed_config())
    assert list(resolved) == list(SECTIONS)
    for section, keys in schema().items():
        assert list(resolved[section]) == list(keys)
    assert resolved["features"]["static_attributes"] == [
        ["opportunities", "type"],
        ["accounts", "segment"],
    ]
    assert resolved["model"]["learning_rate"] == 0.05
    assert resolved_config(TrainConfig())["features"]["static_attributes"] is None
    json.dumps(resolved)  # what mlflow.log_dict writes


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "empty.toml", "")) == TrainConfig()
    assert load_config(None) == TrainConfig()


def test_a_partial_file_changes_only_what_it_sets(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path / "c.toml",
            "[features]\nfiscal_year_start_month = 4\n"
            'static_attributes = [["accounts", "industry"]]\n'
            "[model]\nlearning_rate = 1\n"  # an integer is a number
            '[backtest]\nstep = "month"\n[train]\ntolerance = 0.05\n',
        )
    )
    defaults = TrainConfig()
    assert config.feature == replace(
        defaults.feature,
        fiscal_year_start_month=4,
        static_attributes=(("accounts", "industry"),),
    )
    assert config.backtest.model == replace(defaults.backtest.model, learning_rate=1.0)
    assert isinstance(config.backtest.model.learning_rate, float)
    assert config.backtest.step == "month" and config.backtest.folds is None
    assert config.tolerance == 0.05


# --- errors that name the key -----------------------------------------------------------


def test_unknown_key_named_with_a_suggestion_and_the_known_keys(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[model]\nlearnig_rate = 0.2\n")
    assert "model.learnig_rate: unknown key (did you mean learning_rate?)" in message
    assert "known keys of [model]: " in message and "num_leaves" in message


def test_unknown_section_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[modle]\nseed = 1\n")
    assert "[modle]: unknown section (did you mean [model]?)" in message
    assert "known sections: [features], [model], [backtest], [train]" in message


def test_a_key_in_the_wrong_place_says_where_it_belongs(tmp_path: Path) -> None:
    assert "features.folds: unknown key; folds is a key of [backtest]" in error_of(
        tmp_path, "[features]\nfolds = 2\n"
    )
    assert "folds: a setting outside any section; it belongs in [backtest]" in error_of(
        tmp_path, "folds = 2\n"
    )
    assert "backtest.model: unknown key; the model settings are the [model] section" in error_of(
        tmp_path, "[backtest.model]\nseed = 1\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[model]\nlearning_rate = "fast"', 'model.learning_rate: expected a number, got "fast"'),
        ("[model]\nseed = 1.5", "model.seed: expected an integer, got 1.5"),
        ("[model]\nseed = true", "model.seed: expected an integer, got true"),
        ("[model]\nlearning_rate = false", "model.learning_rate: expected a number, got false"),
        (
            '[features]\nactivity_windows_days = [7, "30"]',
            'features.activity_windows_days: expected a list of integers, got [7, "30"]',
        ),
        (
            "[features]\nactivity_windows_days = 7",
            "features.activity_windows_days: expected a list of integers, got 7",
        ),
        (
            '[features]\nstatic_attributes = [["accounts"]]',
            "features.static_attributes: expected a list of [string, string] pairs"
            ' or "none", got [["accounts"]]',
        ),
        ("[train]\ntolerance = [0.1]", "train.tolerance: expected a number, got [0.1]"),
        ("features = 3", "features: expected a [features] section, got 3"),
    ],
)
def test_a_bad_value_names_key_value_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, text + "\n")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[model]\nseed = "x"\nlearning_rate = "y"\n[train]\nnope = 1\n')
    assert message.count(";") >= 2
    assert "model.seed" in message and "model.learning_rate" in message
    assert "train.nope" in message


def test_the_dataclass_checks_are_reported_with_the_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[features]\nfiscal_year_start_month = 13\n")
    assert message.endswith(
        "features.fiscal_year_start_month = 13: fiscal_year_start_month must be in 1..12"
    )
    message = error_of(tmp_path, '[features]\nstatic_attributes = [["deals", "type"]]\n')
    assert 'features.static_attributes = [["deals", "type"]]: static attribute table' in message


def test_a_file_that_is_not_toml_or_not_there(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, "[features\n")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_choices_and_optional_values() -> None:
    """Literal[...] and `X | None`, on a dataclass of the shape the lead may add."""

    @dataclass(frozen=True)
    class Folds:
        step: Literal["month", "quarter"] = "quarter"
        folds: int | None = 4
        label: str | None = None

    settings = section_schema(Folds)
    assert settings["step"].expected == 'one of "month", "quarter"'
    assert settings["step"].convert("month") == "month"
    assert settings["folds"].expected == 'an integer or "none"'
    assert settings["folds"].convert("none") is None and settings["folds"].convert(3) == 3
    assert settings["label"].convert("none") == "none"  # a string setting takes any string

    @dataclass(frozen=True)
    class Section:
        choice: Literal[1, 2] = 1

    one = section_schema(Section)["choice"]
    for setting, value in ((settings["step"], "week"), (one, True), (one, 1.0)):
        with pytest.raises(Exception, match=r"^$"):  # the reader turns it into a ConfigError
            setting.convert(value)


# --- precedence ---------------------------------------------------------------------------


def test_the_exports_file_is_picked_up_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = tmp_path / "export"
    write(export / FILE_NAME, "[features]\nfiscal_year_start_month = 4\n")
    with caplog.at_level(logging.INFO, logger="dealcast.config"):
        loaded = read_config(None, data_dir=export)
    assert loaded.config.feature.fiscal_year_start_month == 4
    assert loaded.source == export / FILE_NAME
    assert f"settings from the export's {export / FILE_NAME}" in caplog.text


def test_the_salesforce_importers_file_is_read(tmp_path: Path) -> None:
    from features.importers.salesforce import CONFIG_FILE, config_text

    export = tmp_path / "export"
    write(export / CONFIG_FILE, config_text(7, "FiscalYearSettings.csv"))
    assert load_config(None, data_dir=export).feature.fiscal_year_start_month == 7


def test_config_file_wins_over_the_exports_and_names_what_it_leaves_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = tmp_path / "export"
    write(export / FILE_NAME, "[features]\nfiscal_year_start_month = 4\n")
    mine = write(tmp_path / "mine.toml", "[model]\nlearning_rate = 0.05\n")
    with caplog.at_level(logging.INFO, logger="dealcast.config"):
        config = load_config(mine, data_dir=export)
    assert config.feature.fiscal_year_start_month == 1  # replaced, not merged
    assert config.backtest.model.learning_rate == 0.05
    assert "features.fiscal_year_start_month = 4 (now 1)" in caplog.text


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[backtest]\nstep = "month"\nfolds = 2\n[model]\nseed = 3\n')
    parser = build_parser()
    common = ["--data", str(tmp_path / "export"), "--config", str(path)]

    def backtest_of(*flags: str) -> tuple[str, int | None, int]:
        config = _run_config(parser.parse_args(["backtest", "--out", "o", *flags, *common]))
        return config.backtest.step, config.backtest.folds, config.backtest.model.seed

    assert backtest_of() == ("month", 2, 3)
    assert backtest_of("--quarters", "5") == ("quarter", 5, 3)
    assert backtest_of("--folds", "6") == ("month", 6, 3)
    assert backtest_of("--step", "auto") == ("auto", 2, 3)
    assert _run_config(parser.parse_args(["train", "--data", "x"])) == TrainConfig()


def test_bad_flags_are_named(tmp_path: Path) -> None:
    parser = build_parser()
    with pytest.raises(ConfigError, match=r'^--step: backtest.step: expected one of "auto"'):
        _run_config(parser.parse_args(["train", "--data", "x", "--step", "week"]))
    with pytest.raises(Exception, match="give one or the other"):
        _run_config(parser.parse_args(["train", "--data", "x", "--quarters", "2", "--folds", "3"]))


def test_flags_are_checked_like_a_file() -> None:
    with pytest.raises(ConfigError, match=r"--month: features.fiscal_year_start_month = 0"):
        with_settings(TrainConfig(), {"features": {"fiscal_year_start_month": 0}}, source="--month")


def test_scoring_names_the_feature_settings_the_model_differs_on(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml", "[features]\nfiscal_year_start_month = 4\nsnapshot_step_days = 7\n"
    )
    settings = read_config(path).settings
    trained = FeatureConfig()
    assert differing_settings(settings, "features", trained) == {"fiscal_year_start_month": 4}
    assert differing_settings(settings, "model", TrainConfig().backtest.model) == {}


# --- the CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["backtest", "--out", "OUT"],
        ["train"],
        ["score", "--out", "OUT/scores.csv"],
    ],
    ids=["backtest", "train", "score"],
)
def test_a_bad_file_stops_the_command_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    bad = write(tmp_path / "bad.toml", '[model]\nlearning_rate = "fast"\n')
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    code = main([*args, "--data", str(tmp_path / "export"), "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("dealcast ")]
    assert lines == [
        f'dealcast {command[0]}: {bad}: model.learning_rate: expected a number, got "fast"'
    ]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # checked before any work


@pytest.mark.parametrize("command", ["backtest", "train", "score"])
def test_the_help_names_the_option(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--config FILE" in text and "dealcast.example.toml" in text
    if command != "score":
        assert "overrides backtest.folds of the config file" in text
        assert "--quarters K the last K completed quarters (--step quarter --folds K)" in text


# --- the committed example ----------------------------------------------------------------


def test_the_example_parses_to_the_defaults() -> None:
    assert load_config(EXAMPLE) == TrainConfig()


def test_the_example_lists_every_key_in_its_section() -> None:
    """Set or commented out (`# key = ...`, for a setting whose default is unset)."""
    listed: dict[str, set[str]] = {}
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if heading := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = heading.group(1)
        elif assignment := re.match(r"#?\s*(\w+) = ", line):
            listed.setdefault(section, set()).add(assignment.group(1))
    for name, keys in schema().items():
        assert set(keys) <= listed.get(name, set()), f"[{name}] lacks {set(keys) - listed[name]}"
    set_keys = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for name, keys in schema().items():
        for key, setting in keys.items():
            # Set when it has a default; commented out when unset, since TOML has no null.
            assert (key in set_keys.get(name, {})) == (setting.default is not None), key
