"""Benchmark: training steps per second on an idle machine and with one core busy.

``policyopt train`` with the default hyperparameters (``ppo`` on ``rybko-stolyar``: four
environments, rollouts of 4,096 steps, ten epochs of updates, checkpoints) is timed for
``--steps`` env steps, rollouts and updates included (the RL phase's steps per wall second as
``config.json`` records it). Each thread setting is timed ``--repeat`` times in each condition,
the conditions alternating, and the median is kept:

* **idle**: nothing else started by the benchmark (other users of the machine are not
  controlled: the load average is printed);
* **one core busy**: a second Python process spins in a busy loop for the whole run (it is
  started before and killed after the timing).

Rows: torch on one thread (the default of ``policyopt train``) and on as many threads as the
machine has cores (torch's own default before, what ``--threads N`` or ``$OMP_NUM_THREADS``
give). ``busy / idle`` is the ratio of the two rates in the same run; the target for the
default is at least 50%. ``steps/CPU s`` divides the steps by the CPU seconds this process
used (set-up included): threads that spin-wait for a core burn CPU without progress, so it
drops with them, while other processes on the machine do not change it.

    python experiments/bench_train.py [--steps 8192] [--repeat 5] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from policyopt.learn.train import train


def busy_loop() -> subprocess.Popen[bytes]:
    """A process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def steps_per_second(threads: int, steps: int, busy: bool, out: Path) -> tuple[float, float]:
    """Steps per wall second (RL phase) and per CPU second of this process (the whole call)
    of one default training of ``steps`` steps, optionally beside a busy loop."""
    spinner = busy_loop() if busy else None
    try:
        if spinner is not None:
            time.sleep(0.5)  # let it start spinning
        cpu = time.process_time()
        res = train(
            "rybko-stolyar",
            "ppo",
            steps,
            seed=0,
            out_dir=out,
            overwrite=True,
            threads=threads,
            progress=False,
        )
        cpu = time.process_time() - cpu
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return res.steps_per_second, res.timesteps / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="env steps per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings per case (median kept)")
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--threads",
        default=f"1,{cores}" if cores > 1 else "1",
        help="torch thread counts to time (default: 1 and the number of cores)",
    )
    args = parser.parse_args()
    counts = [int(x) for x in args.threads.split(",")]
    print(f"{cores} cores; load average before: {os.getloadavg()[0]:.2f}")
    print(f"ppo on rybko-stolyar, default hyperparameters, {args.steps} steps per timing")
    print(
        f"{'torch threads':<14} {'idle steps/s':>12} {'one core busy':>13} {'busy / idle':>11} "
        f"{'steps/CPU s idle':>16} {'busy':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        steps_per_second(1, 1024, False, run)  # warm-up: imports, first allocations
        for n in counts:
            rows: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for i in range(args.repeat):  # alternate, so both meet the same (shared) machine
                for busy in (False, True) if i % 2 == 0 else (True, False):
                    rows[busy].append(steps_per_second(n, args.steps, busy, run))
            (idle, idle_cpu), (busy, busy_cpu) = (
                np.median(np.array(rows[b]), axis=0) for b in (False, True)
            )
            label = f"{n} (default)" if n == 1 else f"{n}"
            print(
                f"{label:<14} {idle:>12.0f} {busy:>13.0f} {100 * busy / idle:>10.0f}% "
                f"{idle_cpu:>16.0f} {busy_cpu:>6.0f}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
