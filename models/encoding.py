"""From feature columns to the numeric matrix the trees read.

Categories are coded by the vocabulary seen in training (stored with the model), so a
category the model never saw is missing to it (NaN) rather than a new, meaningless code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.deals import Vocabulary

Columns = Mapping[str, np.ndarray] | pd.DataFrame


@dataclass
class FeatureEncoder:
    """Feature names in matrix order, which of them are categorical, and their vocabularies."""

    names: list[str]
    categorical: list[str]
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lookups = {name: Vocabulary(tuple(v)) for name, v in self.vocabularies.items()}

    @classmethod
    def fit(
        cls, columns: Columns, *, names: Sequence[str], categorical: Sequence[str]
    ) -> FeatureEncoder:
        vocabularies = {}
        for name in categorical:
            values = pd.Series(np.asarray(columns[name], dtype=object)).dropna()
            vocabularies[name] = sorted(str(v) for v in values.unique())
        return cls(names=list(names), categorical=list(categorical), vocabularies=vocabularies)

    @property
    def categorical_indices(self) -> list[int]:
        return [self.names.index(name) for name in self.categorical]

    def transform(self, columns: Columns) -> np.ndarray:
        """A float64 matrix, one row per deal; categories as codes, unknown ones NaN."""
        first = columns[self.names[0]]
        matrix = np.empty((len(first), len(self.names)), dtype=np.float64)
        for j, name in enumerate(self.names):
            values = np.asarray(columns[name])
            if name in self._lookups:
                codes = self._lookups[name].codes(values.astype(object)).astype(np.float64)
                codes[codes < 0] = np.nan
                matrix[:, j] = codes
            else:
                matrix[:, j] = values
        return matrix

    def unseen(self, columns: Columns) -> dict[str, np.ndarray]:
        """Per categorical feature, which rows carry a value the model never saw."""
        out = {}
        for name, lookup in self._lookups.items():
            values = np.asarray(columns[name], dtype=object)
            out[name] = (lookup.codes(values) < 0) & ~pd.isna(values)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "names": self.names,
            "categorical": self.categorical,
            "vocabularies": self.vocabularies,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """What `to_dict` gave (a model bundle stores the encoder so)."""
        return cls(
            names=list(data["names"]),
            categorical=list(data["categorical"]),
            vocabularies={str(k): list(v) for k, v in data["vocabularies"].items()},
        )
