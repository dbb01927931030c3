"""Benchmark instances: a library network and the reference values the literature (or exact
queueing theory) gives for it (``docs/benchmark.md``).

An :class:`Instance` names a library network (:func:`~policyopt.model.networks_library.
get_network`) and carries :class:`Reference` values of the long-run average number of jobs
in the system: per policy (a registered policy name, as the benchmark runs it), and the
optimum over all policies when it is known. Each reference says where it comes from and under
which modelling assumptions (preemption, horizon, start state), so that a reader can judge
whether a simulated value should match it.

:data:`INSTANCES` is the registry (:func:`register_instance` adds one); :func:`get_instance`
also accepts any library network name, as an instance without references.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from policyopt.errors import SpecError
from policyopt.model.network import NetworkSpec
from policyopt.model.networks_library import CRISS_CROSS_REGIMES, get_network, network_names
from policyopt.solvers.queueing import mm1_jobs

ReferenceKind = Literal["exact", "optimal", "reported"]
"""``exact``: a closed form (a simulation must hold it in its interval); ``optimal``: the
best any policy achieves (a lower bound for every policy's mean); ``reported``: a simulated
value from a publication (comparable only as far as its assumptions match)."""


@dataclass(frozen=True)
class Reference:
    """A reference value of the long-run average number of jobs in the system (jobs)."""

    value: float
    kind: ReferenceKind
    source: str
    assumptions: str


@dataclass(frozen=True)
class Instance:
    """A benchmark instance: ``network`` (a library name), its ``references`` per policy name
    and its ``optimum`` (``None``: not known)."""

    name: str
    network: str
    description: str = ""
    references: Mapping[str, Reference] = field(default_factory=lambda: MappingProxyType({}))
    optimum: Reference | None = None

    def build(self) -> NetworkSpec:
        """The instance's network."""
        return get_network(self.network)

    def reference(self, policy: str) -> Reference | None:
        """The reference value of ``policy`` here (its name as given), or ``None``."""
        return self.references.get(policy.strip())


INSTANCES: dict[str, Instance] = {}
"""The registered benchmark instances by name (registration order)."""


def register_instance(instance: Instance) -> Instance:
    """Register ``instance`` under its name (replacing one of the same name)."""
    INSTANCES[instance.name] = instance
    return instance


def get_instance(name: str) -> Instance:
    """The instance called ``name``: a registered one, else a library network without
    references; :class:`SpecError` naming the instance otherwise."""
    key = name.strip().lower()
    if key in INSTANCES:
        return INSTANCES[key]
    try:
        get_network(key)
    except SpecError:
        raise SpecError(
            "instance",
            f"no benchmark instance or library network named {name!r}",
            f"use one of {', '.join(INSTANCES)} or a library network "
            f"({', '.join(network_names())}); policyopt benchmark --list shows them",
        ) from None
    return Instance(key, key)


# --------------------------------------------------------------------------------------------
# the criss-cross network at Dai and Gluzman's six load regimes

DAI_GLUZMAN = (
    "Dai and Gluzman, Queueing network controls via deep reinforcement learning, Stochastic "
    "Systems 12(1), 2022"
)

CRISS_CROSS_OPTIMUM = {
    "il": 0.671,
    "bl": 0.843,
    "im": 2.084,
    "bm": 2.829,
    "ih": 9.970,
    "bh": 15.228,
}
"""The optimal long-run average number in system of the criss-cross network per load regime:
the "DP (optimal)" column of Dai and Gluzman's table of the criss-cross network (also in the
manuscript in the authors' repository, mark-gluzman/MulticlassQueuingNetworkPolicyOptimization)."""

CRISS_CROSS_CONTINUING = ("c-mu", "priority:c1>c3", "priority:c1", "lbfs", "fbfs")
"""Policy names that give station 1's priority to the continuing class ``c1`` on every
criss-cross regime (``c-mu``: ``c1`` and ``c3`` tie at ``h mu = 2``, the lower index first;
``lbfs``, ``fbfs``: both stage 0, likewise)."""


def criss_cross_continuing_jobs(rate: float, m2: float) -> float:
    """Exact mean jobs of the criss-cross network (streams at ``rate`` each, means 0.5 at
    ``s1`` and ``m2`` at ``s2``, exponential) under the preemptive priority to ``c1`` at
    ``s1``: ``c1`` is an M/M/1 queue at load ``rate/2`` (nothing preempts it); station 1
    holds as many jobs as one M/M/1 queue of both streams (equal exponential services,
    work-conserving), which gives ``c3``; ``c2`` is fed by ``c1``'s departures, a Poisson
    process (Burke), so it is an M/M/1 queue at load ``rate * m2``."""
    c1 = mm1_jobs(rate, 0.5)
    c3 = mm1_jobs(2 * rate, 0.5) - c1
    return c1 + c3 + mm1_jobs(rate, m2)


def _criss_cross(regime: str) -> Instance:
    rate, m2 = CRISS_CROSS_REGIMES[regime]
    exact = Reference(
        criss_cross_continuing_jobs(rate, m2),
        "exact",
        "queueing theory: c1 an M/M/1 queue, station 1 one M/M/1 queue of both streams, c2 "
        "an M/M/1 queue fed by c1's Poisson departures (Burke)",
        "preemptive-resume priority to c1 at s1; Poisson arrivals, exponential services; "
        "stationary mean (any start state, infinite horizon)",
    )
    optimum = Reference(
        CRISS_CROSS_OPTIMUM[regime],
        "optimal",
        f"{DAI_GLUZMAN}: table of the criss-cross network, column DP (optimal)",
        "Poisson arrivals, exponential services, preemptive-resume, non-idling (the only "
        "choice: c1 or c3 at s1 when both wait); long-run average number in system of the "
        "optimal stationary policy, found by dynamic programming on the uniformized chain "
        "(start state and horizon do not matter)",
    )
    name = f"criss-cross-{regime}"
    return Instance(
        name,
        name,
        f"criss-cross network, load regime {regime.upper()} (loads {rate / 2 + rate / 2:g} "
        f"at s1, {rate * m2:.2g} at s2)",
        MappingProxyType(dict.fromkeys(CRISS_CROSS_CONTINUING, exact)),
        optimum,
    )


for _regime in CRISS_CROSS_REGIMES:
    register_instance(_criss_cross(_regime))

CRISS_CROSS_INSTANCES = tuple(f"criss-cross-{r}" for r in CRISS_CROSS_REGIMES)
"""The six criss-cross instances, light to heavy (the benchmark's default)."""


# --------------------------------------------------------------------------------------------
# the re-entrant line and the extended six-class network (Dai and Gluzman's L = 2..7)

BERTSIMAS = (
    "Bertsimas, Nasrabadi and Paschalidis, Robust fluid processing networks, IEEE "
    f"Transactions on Automatic Control 60(3), 2015, as reported in {DAI_GLUZMAN}"
)
REPORTED_ASSUMPTIONS = (
    "Poisson arrivals, exponential services, the library's rates; simulated values whose "
    "horizon, start state and preemption the reporting table does not state"
)

REENTRANT_REPORTED = {
    # L: (LBFS, FCFS)
    2: (15.911, 16.441),
    3: (30.001, 27.154),
    4: (40.167, 35.633),
    5: (57.056, 47.969),
    6: (66.042, 56.996),
    7: (87.136, 71.002),
}
"""Dai and Gluzman's table of the re-entrant line (3L classes): LBFS and FCFS columns."""

EXTENDED_SIX_CLASS_REPORTED = {
    2: (15.749, 40.173),
    3: (25.257, 71.518),
    4: (34.660, 114.860),
    5: (45.110, 157.556),
    6: (55.724, 203.418),
    7: (65.980, 251.657),
}
"""Dai and Gluzman's table of the extended six-class network: LBFS and FCFS columns. Their
LBFS gives a server's priority to its class of highest index (here the ``priority:`` order
``c{3L} > ... > c1``, which differs from this project's stage-based ``lbfs`` on this network:
class ``c{3s}`` is a different stream's first visit)."""


def highest_index_first(stations: int) -> str:
    """The static priority ``c{3L} > c{3L-1} > ... > c1`` as a policy name."""
    return "priority:" + ">".join(f"c{k}" for k in range(3 * stations, 0, -1))


def _reported(value: float, policy: str) -> Reference:
    return Reference(value, "reported", f"{BERTSIMAS}, column {policy}", REPORTED_ASSUMPTIONS)


for _L, (_lbfs, _fcfs) in REENTRANT_REPORTED.items():
    register_instance(
        Instance(
            f"reentrant-{_L}",
            f"reentrant-{_L}",
            f"re-entrant line, {_L} stations, {3 * _L} classes, load 0.9",
            MappingProxyType(
                {
                    "lbfs": _reported(_lbfs, "LBFS"),
                    highest_index_first(_L): _reported(_lbfs, "LBFS"),
                    "fcfs": _reported(_fcfs, "FCFS"),
                }
            ),
        )
    )
for _L, (_lbfs, _fcfs) in EXTENDED_SIX_CLASS_REPORTED.items():
    register_instance(
        Instance(
            f"extended-six-class-{_L}",
            f"extended-six-class-{_L}",
            f"extended six-class network, {_L} stations, {3 * _L} classes, load 0.9",
            MappingProxyType(
                {
                    highest_index_first(_L): _reported(_lbfs, "LBFS"),
                    "fcfs": _reported(_fcfs, "FCFS"),
                }
            ),
        )
    )
