"""`dealcast.toml`: every setting of a backtest, a training run or a scoring run in one file.

Sections map onto the configuration dataclasses of the libraries:

    [features]  features.config.FeatureConfig   (fiscal year, static attributes, windows, ...)
    [model]     models.win.WinModelConfig       (the trees, calibration, intervals, ...)
    [backtest]  training.backtest.BacktestConfig (its `model` field is the [model] section)
    [train]     training.train.TrainConfig's own settings (its `feature` and `backtest` fields
                are the sections above)

The keys, their types and their defaults are read from the dataclasses' fields and type
annotations, never listed here, so a field added to a dataclass is a key of the file at once
(an annotation this module cannot read fails `tests/unit/test_config_file.py`).

Where settings come from, the first that has one wins:
1. a command-line flag (`--quarters`);
2. the file given with `--config FILE`;
3. `dealcast.toml` in the export folder (the Salesforce importer writes the fiscal year's
   first month there), used only when no `--config` is given: `--config FILE` replaces it, it
   is not merged with it, and a warning names the export's settings that FILE leaves out;
4. the dataclasses' defaults.

A file is checked whole before anything runs: an unknown section or key, a value of the wrong
type and a value the dataclass itself refuses are all reported, each with its key.
"""

from __future__ import annotations

import difflib
import json
import logging
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

from features.errors import DealcastError

if TYPE_CHECKING:
    from training.train import TrainConfig

logger = logging.getLogger(__name__)

FILE_NAME = "dealcast.toml"

# Section name -> the path of its dataclass inside TrainConfig, in the order of the file.
SECTIONS: dict[str, tuple[str, ...]] = {
    "features": ("feature",),
    "model": ("backtest", "model"),
    "backtest": ("backtest",),
    "train": (),
}

# What a file sets: section -> key -> value, converted to the field's type.
Settings = dict[str, dict[str, Any]]

# An optional setting whose default is not None is set to None with this string (TOML has no
# null); one whose default is None is simply left out.
NONE = "none"


class ConfigError(DealcastError):
    """A configuration file, or a flag, asks for a setting that does not exist or cannot be."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Mismatch(Exception):
    """A value does not have the type its setting expects (reported with the whole value)."""


Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Setting:
    """One key of a section: its field, its default and how a TOML value becomes its type."""

    name: str
    default: Any
    expected: str  # what a person should write, e.g. "a list of integers"
    convert: Convert  # raises _Mismatch


@dataclass(frozen=True)
class LoadedConfig:
    """A resolved configuration, the file it came from and what that file set."""

    config: TrainConfig
    source: Path | None
    settings: Settings


# --- the schema, from the dataclasses ------------------------------------------------------


def _train_config_class() -> type[TrainConfig]:
    # Imported here, not at the top: training.train may import this module (to log the
    # resolved configuration with its MLflow run) without a circular import.
    from training.train import TrainConfig

    return TrainConfig


def _section_classes() -> dict[str, type]:
    """Each section's dataclass, found by following SECTIONS' paths through the annotations."""
    out: dict[str, type] = {}
    for section, path in SECTIONS.items():
        cls: type = _train_config_class()
        for name in path:
            cls = get_type_hints(cls)[name]
        out[section] = cls
    return out


@cache
def schema() -> dict[str, dict[str, Setting]]:
    """Every section's settings: the init fields of its dataclass, except nested dataclasses
    (which are sections of their own)."""
    return {section: section_schema(cls) for section, cls in _section_classes().items()}


def section_schema(cls: type) -> dict[str, Setting]:
    """The settings of one configuration dataclass, from its fields and annotations."""
    hints = get_type_hints(cls)
    defaults = cls()
    out: dict[str, Setting] = {}
    for f in fields(cls):
        annotation = hints[f.name]
        if not f.init or (isinstance(annotation, type) and is_dataclass(annotation)):
            continue
        try:
            convert, expected = _converter(annotation)
        except TypeError as error:
            raise TypeError(f"{cls.__name__}.{f.name}: {error}") from None
        out[f.name] = Setting(f.name, getattr(defaults, f.name), expected, convert)
    return out


_SCALARS: dict[type, tuple[str, str]] = {
    bool: ("true or false", "booleans"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _scalar(kind: type) -> Convert:
    def convert(value: Any) -> Any:
        # bool is an int in Python; `true` is never a number here, nor 1 a boolean.
        if isinstance(value, bool) != (kind is bool):
            raise _Mismatch
        if kind is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, kind):
            raise _Mismatch
        return value

    return convert


def _converter(annotation: Any) -> tuple[Convert, str]:
    """How a TOML value becomes a value of `annotation`, and how to say what is expected."""
    if annotation in _SCALARS:
        return _scalar(annotation), _SCALARS[annotation][0]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        choices = args

        def choose(value: Any) -> Any:
            # `==` alone would take `true` for 1 or 1.0 for 1: the type must match as well.
            for choice in choices:
                if type(value) is type(choice) and value == choice:
                    return choice
            raise _Mismatch

        return choose, "one of " + ", ".join(_toml_value(c) for c in choices)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"cannot read the annotation {annotation!r} (only X | None)")
        convert_inner, expected_inner = _converter(inner[0])
        takes_strings = inner[0] is str or (
            get_origin(inner[0]) is Literal and any(isinstance(a, str) for a in get_args(inner[0]))
        )

        def optional(value: Any) -> Any:
            if value == NONE and not takes_strings:
                return None
            return convert_inner(value)

        return optional, expected_inner + ("" if takes_strings else f' or "{NONE}"')
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            convert_item, item = _converter(args[0])
            if args[0] in _SCALARS:
                plural = _SCALARS[args[0]][1]
            elif get_origin(args[0]) is tuple:
                plural = _brackets(args[0]) + (" pairs" if len(get_args(args[0])) == 2 else "")
            else:
                plural = f"items, each {item}"

            def homogeneous(value: Any) -> tuple[Any, ...]:
                if not isinstance(value, list):
                    raise _Mismatch
                return tuple(convert_item(v) for v in value)

            return homogeneous, f"a list of {plural}"
        converters = [_converter(a)[0] for a in args]

        def fixed(value: Any) -> tuple[Any, ...]:
            if not isinstance(value, list) or len(value) != len(converters):
                raise _Mismatch
            return tuple(c(v) for c, v in zip(converters, value, strict=True))

        return fixed, "a " + _brackets(annotation) + (" pair" if len(args) == 2 else "")
    raise TypeError(f"cannot read the annotation {annotation!r}")


def _brackets(annotation: Any) -> str:
    """A fixed tuple's items as a person writes them: tuple[str, str] -> "[string, string]"."""
    items = [_SCALARS[a][1][:-1] if a in _SCALARS else "value" for a in get_args(annotation)]
    return "[" + ", ".join(items) + "]"


# --- reading ------------------------------------------------------------------------------


def config_file(path: Path | None, *, data_dir: Path | None = None) -> Path | None:
    """The file a run reads: `path` when given, else the export's dealcast.toml if any."""
    if path is not None:
        return path
    if data_dir is not None and (data_dir / FILE_NAME).is_file():
        return data_dir / FILE_NAME
    return None


def read_settings(path: Path) -> Settings:
    """A file's settings, each checked against its field's type (not yet against the
    dataclass's own rules: see build_config)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), [f"cannot be read ({error})"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [f"not valid TOML ({error})"]) from None
    return check_settings(raw, source=str(path))


def check_settings(raw: Mapping[str, Any], *, source: str) -> Settings:
    """Sections and keys known, values of the right type; every problem at once."""
    known = schema()
    problems: list[str] = []
    settings: Settings = {}
    for section, table in raw.items():
        if section not in known:
            if not isinstance(table, dict):
                problems.append(_outside_any_section(section))
            else:
                problems.append(
                    f"[{section}]: unknown section{_did_you_mean(section, known, '[{}]')}; "
                    f"known sections: {', '.join(f'[{s}]' for s in known)}"
                )
            continue
        if not isinstance(table, dict):
            problems.append(f"{section}: expected a [{section}] section, got {_shown(table)}")
            continue
        for key, value in table.items():
            setting = known[section].get(key)
            if setting is None:
                problems.append(_unknown_key(section, key))
                continue
            try:
                settings.setdefault(section, {})[key] = setting.convert(value)
            except _Mismatch:
                problems.append(
                    f"{section}.{key}: expected {setting.expected}, got {_shown(value)}"
                )
    if problems:
        raise ConfigError(source, problems)
    return settings


def _outside_any_section(key: str) -> str:
    homes = [f"[{s}]" for s, keys in schema().items() if key in keys]
    if homes:
        return f"{key}: a setting outside any section; it belongs in {' or '.join(homes)}"
    return (
        f"{key}: a setting outside any section, and no section has it; "
        f"known sections: {', '.join(f'[{s}]' for s in schema())}"
    )


def _unknown_key(section: str, key: str) -> str:
    known = schema()
    where = f"{section}.{key}: unknown key"
    if key in known:
        return f"{where}; the {key} settings are the [{key}] section"
    homes = [f"[{s}]" for s, keys in known.items() if key in keys]
    if homes:
        return f"{where}; {key} is a key of {' and '.join(homes)}"
    return (
        f"{where}{_did_you_mean(key, known[section], '{}')}; "
        f"known keys of [{section}]: {', '.join(known[section])}"
    )


def _did_you_mean(word: str, choices: Mapping[str, Any], pattern: str) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {pattern.format(close[0])}?)" if close else ""


def _shown(value: Any) -> str:
    """A value as the file wrote it (strings quoted, lists in brackets)."""
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


def build_config(
    settings: Settings, *, base: TrainConfig | None = None, source: str = "configuration"
) -> TrainConfig:
    """`base` (default: the defaults) with `settings` applied, each dataclass's own checks run;
    a value a dataclass refuses is reported with its key."""
    config = base if base is not None else _train_config_class()()
    problems: list[str] = []
    section_at = {path: section for section, path in SECTIONS.items()}

    def assemble(instance: Any, path: tuple[str, ...]) -> Any:
        changes: dict[str, Any] = {}
        for f in fields(instance):
            inner = (*path, f.name)
            if inner in section_at:
                changes[f.name] = assemble(getattr(instance, f.name), inner)
        section = section_at[path]
        own = settings.get(section, {})
        try:
            return replace(instance, **changes, **own)
        except (DealcastError, ValueError, TypeError) as error:
            problems.append(_refusal(replace(instance, **changes), section, own, error))
            return instance

    resolved = assemble(config, ())
    if problems:
        raise ConfigError(source, problems)
    return resolved


def _refusal(instance: Any, section: str, own: dict[str, Any], error: Exception) -> str:
    """Which key a dataclass refused: the first that fails on its own, else the section."""
    for key, value in own.items():
        try:
            replace(instance, **{key: value})
        except (DealcastError, ValueError, TypeError) as alone:
            return f"{section}.{key} = {_shown(value)}: {alone}"
    return f"[{section}] ({', '.join(own)} together): {error}"


def read_config(path: Path | None, *, data_dir: Path | None = None) -> LoadedConfig:
    """The configuration of a run, with the file it came from (see the module's precedence)."""
    chosen = config_file(path, data_dir=data_dir)
    if chosen is None:
        return LoadedConfig(_train_config_class()(), None, {})
    settings = read_settings(chosen)
    config = build_config(settings, source=str(chosen))
    if path is None:
        logger.info("settings from the export's %s", chosen)
    else:
        logger.info("settings from %s", chosen)
        if data_dir is not None and (data_dir / FILE_NAME).is_file():
            _warn_replaced(data_dir / FILE_NAME, config, by=chosen)
    return LoadedConfig(config, chosen, settings)


def load_config(path: Path | None, *, data_dir: Path | None = None) -> TrainConfig:
    """The configuration of a run: `path` (--config) if given, else `data_dir`'s
    dealcast.toml if it has one, else the defaults."""
    return read_config(path, data_dir=data_dir).config


def _warn_replaced(export_file: Path, config: TrainConfig, *, by: Path) -> None:
    if export_file.resolve() == by.resolve():
        return
    try:
        theirs = read_settings(export_file)
    except ConfigError as error:
        logger.warning("%s is not used (--config %s is) and is invalid: %s", export_file, by, error)
        return
    resolved = resolved_config(config)
    left_out = [
        f"{section}.{key} = {_toml_value(_plain(value))} (now {_toml_value(now)})"
        for section, keys in theirs.items()
        for key, value in keys.items()
        if (now := resolved[section][key]) != _plain(value)
    ]
    if left_out:
        logger.warning(
            "--config %s replaces the export's %s, whose settings it leaves out: %s",
            by,
            export_file,
            "; ".join(left_out),
        )


def with_settings(config: TrainConfig, settings: Settings, *, source: str) -> TrainConfig:
    """`config` with a few settings changed (command-line flags), checked like a file's."""
    return build_config(check_settings(settings, source=source), base=config, source=source)


def differing_settings(settings: Settings, section: str, instance: Any) -> dict[str, Any]:
    """The keys of `section` a file sets to a value other than `instance`'s, with the file's
    value (e.g. the [features] of a scoring run against the model's own)."""
    return {
        key: value
        for key, value in settings.get(section, {}).items()
        if getattr(instance, key) != value
    }


# --- writing ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def resolved_config(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Every setting of `config`, defaults included, by section, as plain data (lists, not
    tuples; None where unset): what a run logs next to its results."""
    out: dict[str, dict[str, Any]] = {}
    for section, path in SECTIONS.items():
        instance: Any = config
        for name in path:
            instance = getattr(instance, name)
        out[section] = {key: _plain(getattr(instance, key)) for key in schema()[section]}
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr(1e-06) is "1e-06", repr(inf) "inf": both TOML
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")  # JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def config_to_toml(config: TrainConfig) -> str:
    """`config` as a dealcast.toml that load_config reads back to an equal configuration."""
    lines = ["# The resolved configuration of a dealcast run: every setting, defaults included."]
    known = schema()
    for section, values in resolved_config(config).items():
        lines += ["", f"[{section}]"]
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
            elif known[section][key].default is None:
                lines.append(f"# {key} is unset (None)")
            else:
                lines.append(f'{key} = "{NONE}"')
    return "\n".join(lines) + "\n"
