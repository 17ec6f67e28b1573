"""The synthetic CRM world: a complete, realistic export in the data contract, per seed.

The demo, the tests and the benchmarks run on it. See ../../shared/spec/synthetic-world.md
(the stylized facts it must show) and `measure_facts`, which measures them on any export.
"""

from features.synthetic.facts import Fact, format_facts, measure_facts
from features.synthetic.parameters import WorldParameters
from features.synthetic.world import SyntheticWorld, generate_world, write_world

__all__ = [
    "Fact",
    "SyntheticWorld",
    "WorldParameters",
    "format_facts",
    "generate_world",
    "measure_facts",
    "write_world",
]
