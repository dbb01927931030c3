"""The stability-boundary finder: the bisection and the sequential test on made-up verdicts,
then the real schedulers on the paper's engine (a fast smoke run by default, the acceptance
set under ``-m slow``), the command line, its files, Ctrl-C and bad input."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyopt.boundary import (
    BoundaryInterrupted,
    BoundarySearch,
    SearchSettings,
    Trial,
    find_boundary,
)
from policyopt.boundary_targets import engine_search
from policyopt.errors import SpecError
from policyopt.model import Scenario, build
from tests.helpers import STATION_LINE, assert_one_line_error, interruptible


def _fake(boundary: float, band: float = 0.0, settle: float = 0.0, stable_above: float = 0.0):
    """A made-up evaluator: stable below ``boundary``, unstable above ``boundary + band``,
    inconclusive in between, and inconclusive anywhere until the horizon reaches ``settle``;
    ``stable_above`` > 0 calls loads up to it stable too (a drift test's tolerance)."""
    calls: list[tuple[float, float]] = []

    def evaluate(load: float, horizon: float) -> Trial:
        calls.append((load, horizon))
        if horizon < settle:
            verdict = "inconclusive"
        elif load < max(boundary, stable_above):
            verdict = "stable"
        elif load > boundary + band:
            verdict = "unstable"
        else:
            verdict = "inconclusive"
        return Trial(horizon, verdict, load - boundary, -1.0, 1.0, 0.5, 0.001)

    return evaluate, calls


def _search(**settings: float) -> BoundarySearch:
    return BoundarySearch("fake", "lambda*", 10.0, 10.0, SearchSettings(**settings))


def test_bisection_brackets_the_boundary_within_the_tolerance() -> None:
    evaluate, calls = _fake(0.73)
    search = find_boundary(_search(tol=0.01), evaluate)
    assert search.complete and "width" in search.stopped
    lo, hi = search.lower, search.upper
    assert lo is not None and hi is not None
    assert lo < 0.73 <= hi and hi - lo <= 0.01 * hi
    assert search.upper_status == "unstable"
    # high first, then low, then midpoints; one run per load (every verdict is decisive)
    assert [round(x, 6) for x, _ in calls[:3]] == [1.2, 0.5, 0.85]
    assert len(calls) == len(search.points)
    assert search.share == pytest.approx((lo + hi) / 2)
    assert search.to_dict()["interval"]["lower_rate"] == pytest.approx(10 * lo)


def test_the_sequential_test_doubles_the_horizon_up_to_the_cap() -> None:
    evaluate, _ = _fake(0.6, band=0.05, settle=400.0)
    search = find_boundary(_search(tol=0.05, horizon_s=100.0, max_horizon_s=800.0), evaluate)
    first = search.points[0]
    assert [t.horizon_s for t in first.trials] == [100.0, 200.0, 400.0]
    band = [p for p in search.points if 0.6 <= p.load <= 0.65]
    for p in band:  # inconclusive at the cap: tried up to it, counted as not stable
        assert [t.horizon_s for t in p.trials] == [100.0, 200.0, 400.0, 800.0]
        assert p.status == "inconclusive" and not p.stable
    lo, hi = search.lower, search.upper
    assert lo is not None and hi is not None and lo < 0.6 and hi <= 0.65 + 1e-9
    if band and hi == min(p.load for p in band):
        assert search.upper_status == "inconclusive"


def test_nothing_above_capacity_counts_as_stable() -> None:
    # a drift test with a tolerance calls loads up to 1.02 stable; the theorem says no
    evaluate, _ = _fake(1.0, stable_above=1.02)
    search = find_boundary(_search(tol=0.01), evaluate)
    lo, hi = search.lower, search.upper
    assert lo is not None and hi is not None
    assert lo < 1.0 <= hi
    above = [p for p in search.points if p.load >= 1.0 and p.verdict == "stable"]
    assert above and all(p.status == "above capacity" for p in above)


def test_no_stable_load_and_stable_everywhere() -> None:
    evaluate, _ = _fake(0.001)
    search = find_boundary(_search(min_load=0.01), evaluate)
    assert search.lower is None and search.upper is not None and search.upper < 0.02
    assert "no stable load" in search.stopped
    evaluate, _ = _fake(5.0)
    search = find_boundary(_search(high=0.9), evaluate)
    assert search.lower == 0.9 and search.upper is None and "raise --high" in search.stopped


def test_an_interrupted_search_keeps_its_points() -> None:
    evaluate, calls = _fake(0.7)

    def interrupted(load: float, horizon: float) -> Trial:
        if len(calls) == 4:
            raise KeyboardInterrupt
        return evaluate(load, horizon)

    with pytest.raises(BoundaryInterrupted) as stop:
        find_boundary(_search(), interrupted)
    search = stop.value.search
    assert len(search.points) == 5 and len(search.points[-1].trials) == 0
    assert not search.complete and search.stopped == "interrupted"
    assert search.points[-1].status == "unfinished"  # bounds nothing
    assert search.lower == 0.675 and search.upper == 0.85


def test_bad_settings_name_the_option() -> None:
    with pytest.raises(SpecError, match="--high"):
        SearchSettings(low=0.9, high=0.8)
    with pytest.raises(SpecError, match="--max-horizon"):
        SearchSettings(horizon_s=100.0, max_horizon_s=50.0)


# ----------------------------------------------------------------------------- real schedulers


def _engine(scheduler: str, seed: int = 0, **settings: float) -> BoundarySearch:
    base = build(Scenario, {"scheduler": scheduler})
    search, evaluate = engine_search(base, SearchSettings(seed=seed, **settings))
    return find_boundary(search, evaluate)


def test_smoke_fastertransformer_far_below_and_sarathi_near_capacity() -> None:
    ft = _engine("fastertransformer", tol=0.3, horizon_s=900.0, max_horizon_s=3600.0)
    assert ft.upper is not None and ft.upper < 0.1
    sarathi = _engine("sarathi", tol=0.05, horizon_s=900.0, max_horizon_s=7200.0)
    assert sarathi.lower is not None and sarathi.upper is not None
    assert 0.9 <= sarathi.lower < 1.0 <= sarathi.upper


def test_same_seed_same_points() -> None:
    kwargs = {"tol": 0.1, "horizon_s": 600.0, "max_horizon_s": 2400.0}

    def rows(seed: int) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k != "wall_s"}
            for r in _engine("vllm", seed=seed, **kwargs).rows()
        ]

    assert rows(3) == rows(3)
    assert rows(3) != rows(4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scheduler", ["sarathi", "orca"])
def test_acceptance_throughput_optimal_schedulers_keep_the_capacity(
    scheduler: str, seed: int
) -> None:
    search = _engine(scheduler, seed=seed)
    lo, hi = search.lower, search.upper
    assert lo is not None and hi is not None
    assert 0.95 <= lo < 1.0 <= hi  # stable just below lambda*, the bracket's upper end >= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_acceptance_vllm_between_80_and_90_percent(seed: int) -> None:
    search = _engine("vllm", seed=seed)
    assert search.lower is not None and search.upper is not None
    assert 0.8 <= search.lower < search.upper <= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_acceptance_fastertransformer_below_a_tenth(seed: int) -> None:
    search = _engine("fastertransformer", seed=seed)
    assert search.lower is not None and search.upper is not None
    assert search.upper < 0.1


@pytest.mark.slow
def test_acceptance_rybko_stolyar_priorities() -> None:
    from policyopt.boundary_targets import network_search
    from policyopt.model.networks_library import get_network

    net = get_network("rybko-stolyar")
    found = {}
    for policy in ("max-pressure", "priority:exit"):
        search, evaluate = network_search(net, policy, SearchSettings(tol=0.05))
        found[policy] = find_boundary(search, evaluate)
    mp, exit_ = found["max-pressure"], found["priority:exit"]
    assert mp.lower is not None and mp.lower >= 0.9
    assert exit_.upper is not None and exit_.upper <= 0.9  # exit priority diverges at 0.9


# ----------------------------------------------------------------------------- command line


def _cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policyopt", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_json_files_and_refusal_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["boundary", "--scheduler", "fastertransformer", "--tol", "0.3", "--horizon", "600"]
    proc = _cli(*args, "--json", "--out", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["capacity"]["name"] == "lambda*"
    assert doc["capacity"]["value"] == pytest.approx(13.87, abs=0.01)
    assert doc["interval"]["upper"] < 0.1 and doc["complete"]
    assert "boundary: load 1.20, horizon 600 s: unstable" in proc.stderr  # progress lines
    with (out / "boundary.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(doc["points"]) and rows[0]["verdict"] == "unstable"
    assert (out / "boundary.png").stat().st_size > 0
    assert json.loads((out / "boundary.json").read_text())["points"] == doc["points"]
    again = _cli(*args, "--out", out)
    assert_one_line_error(again, "--out", "--overwrite")


def test_cli_text_for_a_network(tmp_path: Path) -> None:
    # one station at load 0.5 (theta* = 2): FCFS is work-conserving, so it keeps capacity
    path = tmp_path / "line.yaml"
    path.write_text(STATION_LINE)
    proc = _cli("boundary", path, "--policy", "fcfs", "--tol", "0.1", "--horizon", "2000")
    assert proc.returncode == 0, proc.stderr
    assert "theta* = 2" in proc.stdout
    assert "fcfs on line keeps" in proc.stdout and "% of capacity" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith("boundary: in ["))
    lo, hi = (float(v) for v in line.split("[", 1)[1].split("]", 1)[0].split(","))
    assert lo < 1.0 <= hi


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--policy", "fcfs"], ["--policy", "--scheduler"]),
        (["--scheduler", "nope"], ["scheduler", "nope"]),
        (["--low", "0.9", "--high", "0.8"], ["--high"]),
        (["--max-horizon", "10", "--horizon", "100"], ["--max-horizon"]),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], words: list[str]) -> None:
    assert_one_line_error(_cli("boundary", *args, "--no-progress"), *words)


def test_cli_rybko_stolyar_refuses_a_scheduler() -> None:
    assert_one_line_error(_cli("boundary", "rybko-stolyar", "--scheduler", "vllm"), "--scheduler")


def test_cli_ctrl_c_prints_what_was_judged(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "policyopt",
            "boundary",
            "--scheduler",
            "sarathi",
            "--horizon",
            "20000",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    lines = 0
    while time.monotonic() < deadline and lines < 2:  # the header, then a first point
        if proc.stderr.readline().startswith("boundary:"):
            lines += 1
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted after" in err
    assert "search not finished" in out and "1.20" in out
    doc = json.loads((tmp_path / "boundary.json").read_text())
    assert doc["complete"] is False and len(doc["points"]) >= 1


@pytest.mark.parametrize("command", ["boundary", "sweep"])
def test_help_shows_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from policyopt.cli import main

    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: policyopt {command}")
    assert f"  policyopt {command} " in out.split("examples:\n", 1)[1]
