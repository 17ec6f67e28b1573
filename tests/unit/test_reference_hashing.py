"""Account ids in the outcome reference are salted sha256: a request's few ids and a
batch's many hash alike, missing ids included, and another salt gives other hashes."""

from __future__ import annotations

import hashlib

import numpy as np

from features.reference import hash_ids


def test_few_and_many_ids_hash_alike_and_the_salt_matters() -> None:
    ids = np.array(["ACC-1", "ACC-2", None, "ACC-1", float("nan")], dtype=object)
    few = hash_ids(ids, "salt")
    many = hash_ids(np.array(list(ids) * 30, dtype=object), "salt")[: ids.size]
    assert few.tolist() == many.tolist()
    assert few[0] == few[3] and few[2] == few[4] and few[0] != few[1]
    assert few[0] == hashlib.sha256(b"salt\x00ACC-1").hexdigest()
    assert hash_ids(ids, "other")[0] != few[0]
