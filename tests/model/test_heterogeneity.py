"""The unexplained between-group spread: zero where the model explains the groups, the
planted spread where it does not."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from models.heterogeneity import unexplained_heterogeneity


def _world(effect_sd: float, *, seed: int, deals: int = 6000, weeks: int = 4):
    """Deals in 12 groups with log-odds effects of sd `effect_sd` that the model's `p` does
    not know; each deal has `weeks` snapshots sharing its one outcome."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 12, deals)
    effect = rng.normal(0.0, 1.0, 12)
    effect = (effect - effect.mean()) / effect.std() * effect_sd
    noise = rng.normal(0.0, 0.2, deals)  # a numeric feature the model reads correctly
    base = -1.0 + noise
    won = (rng.random(deals) < expit(base + effect[group])).astype(float)
    repeat = np.repeat(np.arange(deals), weeks)
    matrix = np.column_stack([group[repeat].astype(float), noise[repeat]])
    p = expit(base)[repeat]
    return p, won[repeat], np.ones(repeat.size), repeat, matrix


def test_no_spread_where_the_model_explains_the_groups() -> None:
    found = []
    for seed in range(5):
        p, y, w, deals, matrix = _world(0.0, seed=seed)
        found.append(
            unexplained_heterogeneity(p, y, w, deals, matrix, ["group", "noise"], {"group"}).sd
        )
    assert np.median(found) < 0.08, found


def test_recovers_a_planted_spread_and_names_its_feature() -> None:
    p, y, w, deals, matrix = _world(0.5, seed=1)
    result = unexplained_heterogeneity(p, y, w, deals, matrix, ["group", "noise"], {"group"})
    assert result.feature == "group"
    assert 0.35 < result.sd < 0.65, result
    assert result.by_feature["noise"] < result.sd


def test_a_deal_counts_once_whatever_its_snapshots() -> None:
    # Repeating every deal's snapshots must not make chance look like heterogeneity.
    p1, y1, w1, d1, m1 = _world(0.0, seed=3, weeks=1)
    p8, y8, w8, d8, m8 = _world(0.0, seed=3, weeks=8)
    one = unexplained_heterogeneity(p1, y1, w1, d1, m1, ["group", "noise"], {"group"})
    eight = unexplained_heterogeneity(p8, y8, w8, d8, m8, ["group", "noise"], {"group"})
    assert np.isclose(one.sd, eight.sd)
