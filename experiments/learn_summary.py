"""Collect runs of ``learn_network.py`` into one table per network (``results/learn_<net>.md``).

Reads ``result.json`` of every ``--runs`` directory (default: ``experiments/out/learn_*``),
groups them by network, and writes for each network a Markdown table: the designed policies
(maximum pressure, fluid tracking, the best static priority, and in newer runs FCFS and the
proportionally randomized ``pr``) once, then per run (discounted ``ppo`` or average-cost
``ppo-avg``) the warm start, the final model and the validation-selected one, with mean
jobs in system [95% CI over the test seeds], the gap to the best designed policy and the
verdict; the runs' learning curves are copied as
``results/learn_<net>_<run>.png``.

    python experiments/learn_summary.py [--runs DIR ...] [--results experiments/results] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _row(label: str, r: dict[str, Any], base: float, extra: str = "") -> str:
    gap = 100 * (r["mean_jobs"] / base - 1.0)
    ci = f"[{r['mean_jobs_low']:.1f}, {r['mean_jobs_high']:.1f}]"
    return f"| {label} | {r['mean_jobs']:.1f} {ci} | {gap:+.1f}% | {r['verdict']} | {extra} |"


def summarize(runs: list[Path], results: Path, tag: str = "") -> list[Path]:
    """Write ``results/learn_<network><tag>.md`` (and the curves) for the runs; their paths."""
    by_net: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for run in runs:
        f = run / "result.json"
        if f.is_file():
            data = json.loads(f.read_text())
            by_net.setdefault(data["network"], []).append((run, data))
    written: list[Path] = []
    results.mkdir(parents=True, exist_ok=True)
    for net, items in sorted(by_net.items()):
        items.sort(key=lambda it: it[0].name)
        rows0 = {r["policy"]: r for r in items[0][1]["summary"]}
        best = items[0][1]["best_priority"]
        # the designed policies every run reports (older runs: three of them)
        names = items[0][1].get("designed", ["max-pressure", "fluid", best])
        reported = [{r["policy"] for r in d["summary"]} for _, d in items]
        names = [n for n in names if all(n in r for r in reported)]
        base = min(rows0[n]["mean_jobs"] for n in names)
        first = items[0][1]
        seeds = first.get("seeds", [0, 1, 2])
        horizon = first.get("eval_horizon", 3600.0)
        same = all(
            (d.get("seeds", [0, 1, 2]), d.get("eval_horizon", 3600.0)) == (seeds, horizon)
            for _, d in items
        )
        if not same:
            raise SystemExit(f"{net}: the runs were tested on different seeds or horizons")
        lines = [
            f"# PPO on {net}",
            "",
            "Made by `experiments/learn_network.py` (one run per algorithm and warm start, "
            "default hyperparameters), collected by `experiments/learn_summary.py`. Mean jobs in "
            f"system over the test runs ({len(seeds)} seeds x {horizon:,.0f} s, common random "
            "numbers), 95% CI over seeds; the gap is to the best designed policy. `ppo` is "
            "discounted PPO, `ppo-avg` average-cost PPO.",
            "",
            "| policy | mean jobs [95% CI] | vs best designed | verdict | training |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [_row(n, rows0[n], base, "designed") for n in names]
        for run, data in items:
            rows = {r["policy"]: r for r in data["summary"]}
            algo = data.get("algo", "ppo")
            bc = data["bc"] or "none (random start)"
            secs = f"{data['timesteps']:,} steps, {data['train_seconds'] / 60:.1f} min"
            warm = next((p for p in rows if p.endswith("/bc")), None)
            if warm is not None:
                lines.append(_row(f"warm start only: clone of `{bc}`", rows[warm], base, "0 steps"))
            final = next(p for p in rows if p.startswith(f"{algo}:") and p.endswith("/ppo"))
            seed = json.loads((run / "ppo" / "config.json").read_text())["seed"]
            label = f"`{algo}`, warm start `{bc}`, seed {seed}"
            lines.append(_row(f"{label}: final", rows[final], base, secs))
            sel = data["selected"]
            if sel != final:
                lines.append(
                    _row(
                        f"{label}: selected",
                        rows[sel],
                        base,
                        f"{data['selected_steps']:,} steps (validation)"
                        if data["selected_steps"]
                        else "the warm start itself (validation)",
                    )
                )
            curve = results / f"learn_{net}_{run.name.removeprefix(f'learn_{net}_')}.png"
            if (run / "learning_curve.png").is_file():
                shutil.copyfile(run / "learning_curve.png", curve)
                written.append(curve)
        lines += [
            "",
            f"Validation curves (mean jobs on {len(first.get('val_seeds', [100, 101]))} seeds x "
            f"{first.get('val_horizon', 1800.0):,.0f} s, by PPO steps in thousands):",
            "",
        ]
        for run, data in items:
            pts = ", ".join(f"{int(s) // 1000}k: {m:.0f}" for s, m, _, _ in data["curve"])
            lines.append(f"- `{run.name}`: {pts}")
        lines.append("")
        path = results / f"learn_{net}{tag}.md"
        path.write_text("\n".join(lines))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=Path, nargs="*", help="learn_network.py output directories")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--tag", default="", help="appended to each table's file name")
    args = ap.parse_args(argv)
    runs = args.runs or sorted((HERE / "out").glob("learn_*"))
    for p in summarize(runs, args.results, args.tag):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
