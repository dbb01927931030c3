"""Stations against exact queueing formulas: the table of ``docs/stations.md`` (and the
GI/M/1 rows of ``docs/arrivals.md``).

Each queue is one station (:func:`policyopt.model.networks_library.single_station`) simulated
for ``--horizon`` seconds (a third of it with three servers, half with two) at ``--seed``;
the table gives the exact mean number in system, the simulated one with its 95% batch-means
interval, whether the interval holds the exact value, and Little's law gap. ``--coverage N``
also reruns four of the queues over seeds ``0..N-1`` at a tenth of the horizon and counts how
often the interval holds the exact value (a 95% interval should, 95% of the time).

    python experiments/station_queues.py [--horizon 200000] [--seed 0] [--coverage 60]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policyopt.model import NetworkSpec, build
from policyopt.model.arrivals import RenewalArrivals
from policyopt.model.networks_library import single_station
from policyopt.sim.network_sim import NetworkResult, simulate_network
from policyopt.solvers.queueing import gim1_jobs, mg1_jobs, mm1_jobs, mmc_jobs, priority_jobs

EXP = {"kind": "exponential", "mean": 1.0}


@dataclass(frozen=True)
class Queue:
    """One row: a label, the network, the policy, the horizon factor, the class measured
    (``None``: the whole station) and the exact mean jobs."""

    label: str
    net: NetworkSpec
    policy: str
    share: float
    cls: str | None
    exact: float


def queues() -> list[Queue]:
    """The queues of the table (those of ``tests/test_station_queues.py``)."""
    rows = [
        Queue(
            "M/M/1, rho 0.7", single_station({"a": (0.7, EXP)}), "fcfs", 1, None, mm1_jobs(0.7, 1)
        ),
        Queue(
            "M/M/3, rho 0.8",
            single_station({"a": (2.4, EXP)}, servers=3),
            "fcfs",
            0.3,
            None,
            mmc_jobs(2.4, 1.0, 3),
        ),
    ]
    for label, svc in (
        ("M/D/1", {"kind": "deterministic", "mean": 1.0}),
        ("M/H2/1 (scv 4)", {"kind": "hyperexponential", "mean": 1.0, "scv": 4.0}),
        ("M/E4/1", {"kind": "erlang", "mean": 1.0, "k": 4}),
        ("M/LN/1 (sigma 0.8)", {"kind": "lognormal", "mean": 1.0, "sigma": 0.8}),
    ):
        net = single_station({"a": (0.7, svc)})
        spec = net.classes["a"].service
        assert spec is not None
        exact = mg1_jobs(0.7, 1.0, spec.second_moment())
        rows.append(Queue(f"{label}, rho 0.7 (P-K)", net, "fcfs", 1, None, exact))
    for disc, pre in (("preemptive-resume", True), ("non-preemptive", False)):
        net = single_station(
            {"a": (0.5, {"mean": 0.5}), "b": (0.3, EXP)}, discipline=disc, name=disc
        )
        exact = priority_jobs([0.5, 0.3], [0.5, 1.0], [0.5, 2.0], preemptive=pre)
        for cls, value in zip("ab", exact, strict=True):
            rows.append(
                Queue(f"priority a>b, {disc}, class {cls}", net, "priority:a>b", 1, cls, value)
            )
    for label, law in (
        ("D/M/1", {"kind": "deterministic"}),
        ("E3/M/1", {"kind": "erlang", "k": 3}),
        ("H2/M/1 (scv 3)", {"kind": "hyperexponential", "scv": 3.0}),
    ):
        data = single_station({"a": (1.0, {"mean": 0.7})}).model_dump()
        data["workflows"][0]["arrival"] = {"kind": "renewal", "rate": 1.0, "law": law}
        net = build(NetworkSpec, data)
        arrival = net.workflows[0].arrival
        assert isinstance(arrival, RenewalArrivals)
        exact = gim1_jobs(1.0, 0.7, arrival.interarrival().laplace)
        rows.append(Queue(f"{label}, rho 0.7 (GI/M/1)", net, "fcfs", 1, None, exact))
    two = single_station({"a": (0.6, EXP), "b": (0.8, EXP)}, servers=2)
    high = mmc_jobs(0.6, 1.0, 2)
    rows.append(Queue("M/M/2 priority a>b, class a", two, "priority:a>b", 0.5, "a", high))
    rows.append(
        Queue(
            "M/M/2 priority a>b, class b",
            two,
            "priority:a>b",
            0.5,
            "b",
            mmc_jobs(1.4, 1.0, 2) - high,
        )
    )
    return rows


def measured(res: NetworkResult, cls: str | None) -> tuple[float, float, float]:
    """Mean jobs and its interval, of the station or of one class."""
    if cls is None:
        return res.mean_jobs, *res.mean_jobs_ci
    c = res.classes[cls]
    return c["mean_jobs"], c["mean_jobs_low"], c["mean_jobs_high"]


def table(horizon: float, seed: int) -> list[str]:
    """The markdown table's lines."""
    lines = [
        "| queue | exact | simulated [95% CI] | inside | Little gap |",
        "| --- | --- | --- | --- | --- |",
    ]
    for q in queues():
        res = simulate_network(q.net, q.policy, horizon=horizon * q.share, seed=seed)
        mean, lo, hi = measured(res, q.cls)
        inside = "yes" if lo <= q.exact <= hi else "**no**"
        lines.append(
            f"| {q.label} | {q.exact:.4f} | {mean:.4f} [{lo:.4f}, {hi:.4f}] | {inside} | "
            f"{res.little_gap():.2%} |"
        )
    return lines


def coverage(horizon: float, seeds: int) -> list[str]:
    """How often the interval holds the exact value, over seeds, for four queues."""
    picked: dict[str, Callable[[Queue], bool]] = {
        "M/M/1": lambda q: q.label.startswith("M/M/1"),
        "M/M/3": lambda q: q.label.startswith("M/M/3"),
        "M/D/1": lambda q: q.label.startswith("M/D/1"),
        "low class, preemptive": lambda q: q.label.endswith("preemptive-resume, class b"),
    }
    lines: list[str] = []
    rows = queues()
    for name, match in picked.items():
        q = next(r for r in rows if match(r))
        hits = 0
        for seed in range(seeds):
            res = simulate_network(q.net, q.policy, horizon=horizon * q.share, seed=seed)
            _, lo, hi = measured(res, q.cls)
            hits += lo <= q.exact <= hi
        lines.append(f"{name}: {hits} of {seeds}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=float, default=200_000.0, help="simulated seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coverage", type=int, default=0, help="seeds of the coverage count")
    args: Any = parser.parse_args(argv)
    start = time.perf_counter()
    print("\n".join(table(args.horizon, args.seed)))
    if args.coverage:
        print()
        print("\n".join(coverage(args.horizon / 10, args.coverage)))
    print(f"\n({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
