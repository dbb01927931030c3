"""The command line with a network as CONFIG, in subprocesses like a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policyopt.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_networks_lists_the_library() -> None:
    out = run("networks", "--json")
    assert out.returncode == 0, out.stderr
    names = {row["name"] for row in json.loads(out.stdout)}
    assert {"rybko-stolyar", "fork-join", "replicated-K", "pipeline-3"} <= names


def test_capacity_of_a_library_network() -> None:
    out = run("capacity", "rybko-stolyar", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # each engine at nominal load 0.9: theta* = 1 / 0.9, both engines bottlenecks
    assert data["theta"] == pytest.approx(1 / 0.9, rel=1e-6)
    assert sorted(data["bottlenecks"]) == ["e1", "e2"]
    assert all(e["nominal_load"] == pytest.approx(0.9) for e in data["engines"].values())


def test_simulate_and_compare_a_network_file(tmp_path: Path) -> None:
    net = tmp_path / "line.yaml"
    net.write_text(
        "name: line\n"
        "engines: {s1: {kind: station}}\n"
        "classes:\n"
        "  a: {engine: s1, service: {kind: exponential, mean: 0.5}}\n"
        "workflows:\n"
        "  - {name: w, arrival: {kind: poisson, rate: 1.0}, entry: a, after: {a: exit}}\n"
    )
    out = run("simulate", str(net), "--policy", "fcfs", "--horizon", "4000", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # M/M/1 at load 0.5: mean number in system rho / (1 - rho) = 1
    assert data["mean_jobs"] == pytest.approx(1.0, rel=0.15)
    assert data["verdict"] == "stable"
    res = run(
        "compare",
        str(net),
        "--policies",
        "fcfs,max-pressure",
        "--loads",
        "0.5",
        "--horizon",
        "2000",
        "--out",
        str(tmp_path / "cmp"),
        "--json",
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["runs"]
    assert [r["policy"] for r in rows] == ["fcfs", "max-pressure"]
    for name in ("compare.csv", "compare.json", "jobs.png"):
        assert (tmp_path / "cmp" / name).is_file()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["simulate", "rybko-stolyar", "--policy", "lifo"], "policy"),
        (["simulate", "rybko-stolyar", "--policy", "priority:Q>A1"], "policy"),
        (["simulate", "no-such-network"], "network"),
        (["compare", "rybko-stolyar", "--schedulers", "vllm"], "--schedulers"),
        (["simulate", "--policy", "max-pressure"], "--policy"),
    ],
)
def test_bad_network_input_exits_2(args: list[str], field: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("policyopt: error:")
    assert field in lines[0]
    assert "Traceback" not in out.stderr
