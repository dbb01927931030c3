"""The learning side of the command line: ``policyopt train`` and ``policyopt evaluate``.

Both import torch / stable-baselines3 only when they run (``policyopt --help`` stays fast).
Bad input raises :class:`~policyopt.errors.SpecError` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from policyopt.errors import SpecError
from policyopt.jsonout import to_json

TRAIN_EPILOG = """\
examples:
  policyopt train rybko-stolyar --algo maskable-ppo --timesteps 200000 --seed 0 --out runs/rs
  policyopt train rybko-stolyar --algo ppo --timesteps 500000 --bc max-pressure --out runs/rs-bc
  policyopt train fork-join --algo ppo --timesteps 100000 \
      --config experiments/configs/ppo_default.yaml --out runs/fj
  policyopt train policyopt/LLMEngine-v0 --algo a2c --timesteps 50000 --out runs/llm
  policyopt train rybko-stolyar --algo ppo --timesteps 500000 --out runs/rs --resume

ENV_OR_NETWORK is a network (library name, see `policyopt networks`, or a network file) for
policyopt/AgentNetwork-v0, or a registered id: policyopt/AgentNetwork-v0 (rybko-stolyar) or
policyopt/LLMEngine-v0. The algorithm is ppo unless --algo says a2c, maskable-ppo or ppo-avg
(average-cost PPO: no discount, rewards centred by the average reward rate).
Hyperparameters: experiments/configs/ppo_default.yaml (shipped with the repository) holds the
defaults; copy it, change what you need and give your copy with --config (keys left out keep
their defaults; unknown keys and values out of range are refused, naming the key).
Writes model.zip, config.json, checkpoints/, eval/, best/ and learning_curve.csv into --out.
A directory that already holds a run is refused unless --resume (continue it: an interrupted
run from its latest checkpoint, a finished one from model.zip when --timesteps asks for more)
or --overwrite (delete that run's files first). Ctrl-C during the RL phase saves a checkpoint
that --resume continues; during the behaviour-cloning warm start it saves nothing (exit code
130 either way; evaluations made so far stay in learning_curve.csv).

Torch runs on --threads threads (default 1, or $OMP_NUM_THREADS when set): the policies are
small MLPs, for which one thread is the fastest, and extra threads spin on cores that other
processes need. Progress: a bar when stderr is a terminal, else a line every 30 s (steps,
steps/s, ETA, last evaluation). Use the model as a policy:
  policyopt evaluate rybko-stolyar --policies max-pressure,maskable-ppo:runs/rs
"""

EVALUATE_EPILOG = """\
examples:
  policyopt evaluate rybko-stolyar
  policyopt evaluate rybko-stolyar --policies max-pressure,priority:exit,fluid,ppo:runs/rs \\
      --loads 0.9 --seeds 0,1,2 --horizon 3600 --out results/rs
  policyopt evaluate fork-join --loads 0.8,0.9,0.95 --seeds 0,1 --json

Every policy runs with every seed of --seeds (the same arrivals and job sizes for all:
common random numbers). Loads are fractions of the capacity boundary (static planning LP);
default: the network's own rates. Per policy and load: mean over seeds of the long-run
holding cost per second and the mean number in system, with a 95% interval over seeds (one
seed: the run's batch-means interval), mean latency, and the verdict (stable only if every
seed is). Writes evaluate.csv (one row per run), summary.csv, evaluate.json and evaluate.png
into --out, by default policyopt-results/evaluate-NAME (NAME: the network's name, e.g.
policyopt-results/evaluate-rybko-stolyar; a second run there replaces those four files).
Seeds are whole numbers >= 0.
A failed run is reported and the others go on (exit code 1); Ctrl-C keeps the finished runs
in the files (exit code 130).
"""


def _parse_list(text: str, item: Any, field: str, example: str) -> list[Any]:
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise SpecError(field, f"{text!r} is not a comma-separated list", f"e.g. {example}")
    try:
        return [item(p) for p in parts]
    except ValueError:
        raise SpecError(field, f"{text!r}: not a list of numbers", f"e.g. {example}") from None


def add_learn_parsers(sub: Any, formatter: type) -> None:
    """Add ``train`` and ``evaluate`` to the subparsers ``sub`` of ``policyopt``."""
    p = sub.add_parser(
        "train",
        help="train a PPO / A2C / MaskablePPO scheduler on a network",
        description="Train a stable-baselines3 agent on a policyopt Gymnasium environment.",
        epilog=TRAIN_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("target", metavar="ENV_OR_NETWORK", help="network name or file, or env id")
    p.add_argument(
        "--algo",
        default="ppo",
        metavar="ALGO",
        help="ppo, a2c, maskable-ppo or ppo-avg (default ppo)",
    )
    p.add_argument("--timesteps", required=True, metavar="N", help="env steps in total (all envs)")
    p.add_argument(
        "--seed", default="0", metavar="S", help="random seed, a whole number >= 0 (default 0)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--config",
        metavar="HYPER.yaml",
        help="your hyperparameter file over the defaults (experiments/configs/ppo_default.yaml)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (latest checkpoint, or a finished run's model.zip), "
        "with its hyperparameters unless --config",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --out, then train"
    )
    p.add_argument(
        "--threads",
        metavar="N",
        help="torch threads (default 1, or $OMP_NUM_THREADS when set)",
    )
    p.add_argument(
        "--bc", metavar="POLICY", help="behaviour-cloning warm start from this heuristic"
    )
    p.add_argument("--horizon", metavar="S", help="simulated seconds per episode (env.horizon)")
    p.add_argument(
        "--action",
        choices=("order", "split", "cap"),
        help="order: the class served first; split: and a decode/prefill budget split; cap: and "
        "a cap on the batch's tokens (env.action)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate policies (designed and trained) on common random numbers",
        description="Every policy x load x seed on one network; a table, CSV, JSON and figure.",
        epilog=EVALUATE_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("network", metavar="NETWORK", help="network name or file")
    p.add_argument(
        "--policies",
        metavar="P1,P2,...",
        help="policies, e.g. max-pressure,priority:exit,fluid,ppo:DIR (default "
        "max-pressure,priority:exit,priority:entry,fluid)",
    )
    p.add_argument("--loads", metavar="X1,X2,...", help="fractions of the boundary")
    p.add_argument(
        "--seeds", default="0,1,2", metavar="S1,S2,...", help="seeds >= 0 (default 0,1,2)"
    )
    p.add_argument("--horizon", metavar="S", help="simulated seconds per run (default 3600)")
    p.add_argument("--warmup", metavar="S", help="seconds left out (default horizon/10)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default policyopt-results/evaluate-NAME, NAME the network's)",
    )
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="parallel processes (default 1; 0 = one per CPU); the same numbers either way",
    )
    from policyopt.cli import add_backend_args  # (the command line is loaded by now)

    add_backend_args(p)
    p.set_defaults(func=cmd_evaluate)


def _seed(text: str, field: str, maximum: int | None = None) -> int:
    """A seed: a whole number >= 0 (and <= ``maximum``), or a :class:`SpecError` naming
    ``field``."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise SpecError(
            field, f"{text!r} is not a whole number", "seeds are whole numbers >= 0, e.g. 0"
        ) from None
    if value < 0:
        raise SpecError(field, f"a seed must be >= 0, got {value}", "e.g. 0")
    if maximum is not None and value > maximum:
        raise SpecError(field, f"a seed must be <= {maximum}, got {value}", "e.g. 0")
    return value


def seeds_arg(text: str, field: str = "--seeds") -> list[int]:
    """A comma-separated list of seeds (whole numbers >= 0)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise SpecError(field, f"{text!r} is not a comma-separated list", "e.g. 0,1,2")
    try:
        return [_seed(p, field) for p in parts]
    except SpecError as err:
        raise SpecError(field, f"in {text!r}: {err.problem}", "e.g. 0,1,2") from None


def positive_arg(text: str | None, field: str, kind: type = float, zero: bool = False) -> Any:
    """``text`` read as a finite ``kind`` > 0 (``>= 0`` with ``zero``); ``None`` stays
    ``None``; SpecError naming ``field`` otherwise."""
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise SpecError(field, f"{text!r} is not {word}", "") from None
    if not (math.isfinite(value) and (value > 0 or (zero and value == 0))):
        raise SpecError(field, f"must be {'>=' if zero else '>'} 0, got {text}", "")
    return value


def _run_hp(out: str) -> dict[str, Any] | None:
    """The hyperparameters recorded in ``out/config.json`` (what ``--resume`` keeps unless
    ``--config`` is given); ``None`` when there are none."""
    try:
        cfg = json.loads((Path(out) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    hp = cfg.get("hyperparameters") if isinstance(cfg, dict) else None
    return hp if isinstance(hp, dict) else None


def cmd_train(args: argparse.Namespace) -> int:
    """``policyopt train``."""
    from policyopt.learn.common import MAX_SEED, check_algo, load_hyperparams

    algo = check_algo(args.algo)
    timesteps = positive_arg(args.timesteps, "--timesteps", int)
    seed = _seed(args.seed, "--seed", MAX_SEED)
    horizon = positive_arg(args.horizon, "--horizon")
    threads = positive_arg(args.threads, "--threads", int)
    if args.config or not args.resume:
        hp = load_hyperparams(args.config)
    else:  # the run's own hyperparameters
        hp = load_hyperparams(_run_hp(args.out), where=str(Path(args.out) / "config.json"))
    if horizon is not None:
        hp["env"]["horizon"] = horizon
    if args.action is not None:
        hp["env"]["action"] = args.action
    from policyopt.learn.train import TrainingInterrupted, train

    try:
        res = train(
            args.target,
            algo,
            timesteps,
            seed,
            args.out,
            hp,
            resume=args.resume,
            bc_policy=args.bc,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            threads=threads,
        )
    except TrainingInterrupted as stop:
        if stop.checkpoint is not None:
            print(
                f"policyopt: interrupted at {stop.timesteps} steps; saved the checkpoint "
                f"{stop.checkpoint} (continue with --resume)",
                file=sys.stderr,
            )
        else:
            print(
                f"policyopt: interrupted during {stop.phase}, before the first RL step; no "
                f"checkpoint saved (start again with --overwrite --out {args.out})",
                file=sys.stderr,
            )
        return 130
    info = {
        "out": str(res.out_dir),
        "model": str(res.model_path),
        "algo": res.algo,
        "timesteps": res.timesteps,
        "seconds": round(res.seconds, 2),
        "steps_per_second": round(res.steps_per_second, 1)
        if math.isfinite(res.steps_per_second)
        else None,
        "resumed_from": res.resumed_from,
        "bc": res.bc or None,
        "threads": res.threads,
    }
    if args.json:
        print(to_json(info))
    else:
        rate = info["steps_per_second"]
        speed = f" ({rate:,.0f} steps/s, torch threads {res.threads})" if rate else ""
        print(
            f"trained {algo} for {res.timesteps} steps in {res.seconds:.1f} s{speed}; "
            f"model {res.model_path}"
        )
        if res.bc:
            print(
                f"warm start: {res.bc['samples']} samples of {res.bc['policy']}, "
                f"accuracy {res.bc['accuracy']:.3f}"
            )
        print(f"use it as a policy: {algo}:{res.out_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``policyopt evaluate``."""
    from policyopt.learn.evaluate import (
        DEFAULT_EVAL_HORIZON_S,
        DEFAULT_EVAL_POLICIES,
        EvaluationInterrupted,
        evaluate,
    )
    from policyopt.model.networks_library import resolve_network
    from policyopt.policies import split_policy_names

    seeds = seeds_arg(args.seeds)
    policies = list(DEFAULT_EVAL_POLICIES)
    if args.policies:
        policies = split_policy_names(args.policies)
        if not all(policies):
            raise SpecError(
                "--policies", f"{args.policies!r} is not a comma-separated list", "e.g. fcfs,pr"
            )
    loads = _parse_list(args.loads, float, "--loads", "0.9") if args.loads else [None]
    for x in loads:
        if x is not None and not (math.isfinite(x) and x > 0):
            raise SpecError("--loads", f"a load must be > 0, got {x:g}", "")
    horizon = positive_arg(args.horizon, "--horizon") or DEFAULT_EVAL_HORIZON_S
    warmup = None
    if args.warmup is not None:
        try:
            warmup = float(args.warmup)
        except ValueError:
            raise SpecError("--warmup", f"{args.warmup!r} is not a number", "") from None
        if not (math.isfinite(warmup) and 0 <= warmup < horizon):
            raise SpecError("--warmup", f"must be in [0, horizon), got {args.warmup}", "")
    net = resolve_network(args.network)
    out = Path(args.out or f"policyopt-results/evaluate-{net.name}")
    from policyopt.learn.common import ALGOS, set_threads

    if any(p.split(":")[0].strip().lower() in ALGOS for p in policies if ":" in p):
        set_threads()  # loading an agent runs torch (its actor then runs as numpy matrices)

    def progress(row: dict[str, Any]) -> None:
        if not args.json:
            print(
                f"  {row['policy']} load {row['load']} seed {row['seed']}: mean jobs "
                f"{row['mean_jobs']:.2f}, {row['verdict']} ({row['wall_s']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )

    code = 0
    try:
        from policyopt.sweep import make_backend

        backend = make_backend(args.backend, max(1, args.jobs), args.ray_address)
        ev = evaluate(
            net, policies, loads, seeds, horizon, warmup, out=out, on_run=progress, backend=backend
        )
    except EvaluationInterrupted as stop:
        ev, code = stop.evaluation, 130
    if args.json:
        print(to_json(ev.to_dict()))
    else:
        print(
            f"network {ev.network}, horizon {ev.horizon:g} s, seeds "
            f"{','.join(map(str, ev.seeds))} (the same random streams for every policy)"
        )
        print(ev.table())
    for f in ev.failures:
        print(
            f"policyopt: warning: run {f['policy']} load {f['load']} seed {f['seed']} failed: "
            f"{f['error']}",
            file=sys.stderr,
        )
        code = code or 1
    if ev.complete or ev.runs:  # the files were written
        for name in ("evaluate.csv", "summary.csv", "evaluate.json", "evaluate.png"):
            print(f"wrote {out / name}", file=sys.stderr)
    if code == 130:
        planned = len(ev.policies) * len(ev.loads) * len(ev.seeds)
        print(
            f"policyopt: interrupted after {len(ev.runs)} of {planned} runs; kept them in {out}",
            file=sys.stderr,
        )
    return code
