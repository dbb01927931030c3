"""Benchmark: the optimal-control solver's compiled sweeps on one thread and on several.

For each case, ``--sweeps`` sweeps of relative value iteration (optimizing) are timed with 1
thread and with every thread numba may use, alternating so that both meet the same machine
load (best of ``--repeat``); the table gives seconds per sweep, nanoseconds per state and the
speed-up. The sweeps give the same values bit for bit whatever the threads
(``tests/test_mdp.py``).

    python experiments/bench_mdp.py [--sweeps 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

from policyopt.model.networks_library import resolve_network
from policyopt.report import format_table
from policyopt.solvers import mdp

CASES = [("criss-cross", [60, 60, 60], 0.0), ("extended-six-class-2", [25, 3, 8, 25, 6, 3], 2000.0)]
"""(network, caps, loss cost)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=256, help="sweeps per timing")
    parser.add_argument("--repeat", type=int, default=3, help="timings per thread count")
    args = parser.parse_args(argv)
    threads = sorted({1, mdp.max_threads()})
    rows = []
    for name, caps, loss in CASES:
        model = mdp.chain_model(resolve_network(name), caps, loss)
        for t in threads:  # compile and warm up
            mdp.solve(model, max_sweeps=8, threads=t)
        best = {t: float("inf") for t in threads}
        for _ in range(args.repeat):
            for t in threads:
                start = time.perf_counter()
                mdp.solve(model, max_sweeps=args.sweeps, threads=t)
                best[t] = min(best[t], time.perf_counter() - start)
        for t in threads:
            per_sweep = best[t] / args.sweeps
            rows.append(
                [
                    name,
                    ",".join(map(str, caps)),
                    f"{model.n_states:,}",
                    str(t),
                    f"{per_sweep * 1e3:.1f}",
                    f"{per_sweep / model.n_states * 1e9:.1f}",
                    f"{best[1] / best[t]:.2f}x",
                ]
            )
    headers = ["network", "caps", "states", "threads", "ms/sweep", "ns/state", "speed-up"]
    print(format_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
