"""A queueing-control benchmark: library instances x policies x seeds, long-run average number
in system with pooled batch-means intervals, next to exact or published reference values
(``policyopt benchmark``; ``docs/benchmark.md``).

* :mod:`~policyopt.benchmark.instances`: the instances and their references (with sources and
  modelling assumptions);
* :mod:`~policyopt.benchmark.runner`: the runs (through :func:`policyopt.sweep.run_all`) and
  one cell per instance and policy;
* :mod:`~policyopt.benchmark.report`: table, CSV rows, JSON document, figure.
"""

from policyopt.benchmark.instances import (
    CRISS_CROSS_INSTANCES,
    INSTANCES,
    Instance,
    Reference,
    get_instance,
    register_instance,
)
from policyopt.benchmark.runner import BenchmarkRun, Cell, RunOutcome, aggregate, plan, run_one

__all__ = [
    "CRISS_CROSS_INSTANCES",
    "INSTANCES",
    "BenchmarkRun",
    "Cell",
    "Instance",
    "Reference",
    "RunOutcome",
    "aggregate",
    "get_instance",
    "plan",
    "register_instance",
    "run_one",
]
