"""The as-of search against a naive count, for the vectorised path (many queries) and the
query-by-query path (a request's few), which must agree to the row."""

from __future__ import annotations

import numpy as np
import pytest

from features.asof import _FEW_QUERIES, GroupedTimes


def _rows(rng: np.random.Generator, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = rng.integers(0, 40, n_groups)  # some groups have no rows
    groups = np.repeat(np.arange(n_groups), sizes)
    # Coarse times so that ties (several rows at one instant, queries exactly on a row) occur.
    times = rng.integers(0, 50, groups.size) * 1_000
    order = np.lexsort((times, groups))
    return groups[order], times[order]


def _naive(groups, times, starts, query_groups, query_times, strict):
    out = []
    for g, t in zip(query_groups, query_times, strict=True):
        if g < 0:
            out.append(-1)
            continue
        mine = times[groups == g]
        out.append(int(starts[g]) + int(np.sum(mine < t if strict else mine <= t)))
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("n_queries", [1, 3, _FEW_QUERIES, _FEW_QUERIES + 1, 500])
@pytest.mark.parametrize("strict", [False, True])
def test_count_until_matches_a_naive_count(n_queries: int, strict: bool) -> None:
    rng = np.random.default_rng(n_queries + 7 * strict)
    n_groups = 30
    groups, times = _rows(rng, n_groups)
    index = GroupedTimes.from_sorted(groups, times, n_groups)
    query_groups = rng.integers(-1, n_groups, n_queries)  # -1: a group these rows never saw
    query_times = rng.integers(-1, 52, n_queries) * 1_000
    got = index.count_until(query_groups, query_times, strict=strict)
    want = _naive(groups, times, index.starts, query_groups, query_times, strict)
    np.testing.assert_array_equal(got, want)


def test_both_paths_agree_on_the_same_queries() -> None:
    rng = np.random.default_rng(3)
    groups, times = _rows(rng, 12)
    index = GroupedTimes.from_sorted(groups, times, 12)
    query_groups = rng.integers(0, 12, 200)
    query_times = rng.integers(0, 50, 200) * 1_000
    vectorised = index.count_until(query_groups, query_times)
    one_by_one = np.concatenate(
        [
            index.count_until(query_groups[k : k + 4], query_times[k : k + 4])
            for k in range(0, 200, 4)
        ]
    )
    np.testing.assert_array_equal(vectorised, one_by_one)


def test_no_rows_at_all_matches_nothing() -> None:
    index = GroupedTimes.from_sorted(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 0)
    np.testing.assert_array_equal(index.count_until(np.array([0, -1]), np.array([5, 5])), [-1, -1])
