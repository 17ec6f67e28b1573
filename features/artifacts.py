"""Learned state as files of plain data: JSON, numpy arrays and text.

A model bundle (models.bundle) is written through an `ArtifactWriter` and read back through
an `ArtifactReader`. Each class that a bundle holds has its own `to_data` / `from_data` pair
beside it: `to_data` returns a JSON-ready dict and hands its arrays and texts to the writer,
which names them; `from_data` reads the same dict back with the reader. Nothing is pickled:
arrays go to one `.npz` file read with `allow_pickle=False` (so an object array can neither
be written nor read), texts (LightGBM's model text) to files of their own, everything else
to JSON. Floats survive exactly: numpy stores them bit for bit and Python's JSON writes the
shortest repr that reads back to the same double (NaN and infinities as JSON's common
extension, `NaN` and `Infinity`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import DealcastError

ARRAYS_FILE = "arrays.npz"
TEXTS_DIR = "texts"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ArtifactError(DealcastError):
    """A bundle's data files are missing something, or hold what cannot be read as data."""


class ArtifactWriter:
    """Collects a bundle's arrays and texts under unique names, then writes them."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._texts: dict[str, str] = {}

    def array(self, name: str, value: Any) -> str:
        """Store `value` as the array `name`; returns the name, for the JSON to refer to."""
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise ArtifactError(f"array {name}: dtype object cannot be stored as data")
        self._claim(name, self._arrays)
        self._arrays[name] = array
        return name

    def text(self, name: str, value: str) -> str:
        """Store `value` as the text file `name`; returns the name."""
        self._claim(name, self._texts)
        self._texts[name] = value
        return name

    def write(self, folder: Path) -> list[Path]:
        """Write the arrays and texts into `folder`; returns the files written."""
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / ARRAYS_FILE]
        with written[0].open("wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **self._arrays)
        if self._texts:
            (folder / TEXTS_DIR).mkdir(exist_ok=True)
        for name, text in self._texts.items():
            path = folder / TEXTS_DIR / f"{name}.txt"
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written

    @staticmethod
    def _claim(name: str, taken: Mapping[str, object]) -> None:
        if not _NAME.match(name):
            raise ArtifactError(f"data name {name!r}: only letters, digits and . _ - allowed")
        if name in taken:
            raise ArtifactError(f"data name {name!r} is used twice")


class ArtifactReader:
    """Reads what an `ArtifactWriter` wrote to `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as stored:
                self._arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as error:
            raise ArtifactError(
                f"{folder / ARRAYS_FILE}: cannot be read as arrays: {error}"
            ) from error

    def array(self, name: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise ArtifactError(f"{self.folder / ARRAYS_FILE} has no array {name!r}") from None

    def text(self, name: str) -> str:
        path = self.folder / TEXTS_DIR / f"{name}.txt"
        if not _NAME.match(name) or not path.is_file():
            raise ArtifactError(f"{self.folder} has no text {name!r} ({path.name})")
        return path.read_text(encoding="utf-8")


def dumps(document: Any) -> str:
    """A document as JSON; anything that is not plain data is refused (named by its path)."""
    return json.dumps(_plain(document, "$"), indent=1)


def _plain(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArtifactError(f"{path}: key {key!r} is not a string")
            out[key] = _plain(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise ArtifactError(f"{path}: a {type(value).__name__} is not plain data")


# --------------------------------------------------------------------------- small shapes


def frame_to_data(frame: pd.DataFrame, out: ArtifactWriter, key: str) -> dict[str, Any]:
    """A frame of numeric columns with a string index: the index as JSON, each column an
    array (its dtype kept)."""
    return {
        "index": [str(v) for v in frame.index],
        "index_name": frame.index.name,
        "columns": {
            str(name): out.array(f"{key}.{i}", frame[name].to_numpy())
            for i, name in enumerate(frame.columns)
        },
    }


def frame_from_data(data: Mapping[str, Any], source: ArtifactReader) -> pd.DataFrame:
    index = pd.Index(list(data["index"]), dtype=object, name=data["index_name"])
    return pd.DataFrame(
        {name: source.array(ref) for name, ref in data["columns"].items()}, index=index
    )


def arrays_to_data(
    arrays: Mapping[str, np.ndarray], out: ArtifactWriter, key: str
) -> dict[str, str]:
    """A mapping of names (teams, stages) to arrays: names kept in JSON, arrays numbered."""
    return {name: out.array(f"{key}.{i}", value) for i, (name, value) in enumerate(arrays.items())}


def arrays_from_data(data: Mapping[str, str], source: ArtifactReader) -> dict[str, np.ndarray]:
    return {name: source.array(ref) for name, ref in data.items()}
