"""The command line with a network as CONFIG, in subprocesses like a user runs it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import STATION_LINE


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
    # the smallest batch that carries 3,009 tokens/s: 256 tokens in 82.22 ms (3,114 tokens/s)
    small = data["engines"]["e1"]["smallest_batch"]
    assert small["cap"] == 256 and small["batch_s"] == pytest.approx(0.08222)
    assert small["load"] == pytest.approx(0.9 * 3342.9094 / (256 / 0.08222), rel=1e-6)
    text = run("capacity", "rybko-stolyar").stdout
    assert "smallest batches that carry the nominal load" in text and "82.2" in text
    # a station network has no batch
    assert "smallest batches" not in run("capacity", "criss-cross").stdout


def test_no_smaller_batch_outside_the_capacity_region(tmp_path: Path) -> None:
    """replicated-2 with a 30,000-token KV cache at e1 is outside its capacity region (theta*
    0.9546): no engine has room for a smaller batch, so none is shown."""
    import yaml

    from policyopt.model.networks_library import get_network

    data = get_network("replicated-2").model_dump(mode="json", exclude_none=True)
    data["engines"]["e1"]["kv_cache"] = {"tokens": 30000}
    path = tmp_path / "rep2.yaml"
    path.write_text(yaml.safe_dump(data))
    out = run("capacity", str(path))
    assert out.returncode == 0, out.stderr
    assert "0.9546" in out.stdout and "smallest batches" not in out.stdout


def test_simulate_and_compare_a_network_file(tmp_path: Path) -> None:
    net = tmp_path / "line.yaml"
    net.write_text(STATION_LINE)
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


# ----------------------------------------------------------------------------- the sweep runner


def _compare_args(out: Path, jobs: int) -> list[str]:
    args = ["compare", "rybko-stolyar", "--policies", "fcfs,max-pressure", "--loads", "0.9,1.1"]
    return [*args, "--horizon", "150", "--jobs", str(jobs), "--out", str(out), "--json"]


def test_compare_network_jobs_2_gives_the_numbers_of_jobs_1(tmp_path: Path) -> None:
    one = run(*_compare_args(tmp_path / "one", 1))
    two = run(*_compare_args(tmp_path / "two", 2), "--no-progress")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout
    runs = json.loads(two.stdout)["runs"]
    # plan order: policy by policy within each load, loads as given
    assert [(r["policy"], r["load_x_boundary"]) for r in runs] == [
        ("fcfs", 0.9),
        ("max-pressure", 0.9),
        ("fcfs", 1.1),
        ("max-pressure", 1.1),
    ]
    for name in ("compare.csv", "compare.json"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def _failing_simulator(fail: str | None, exc: BaseException):
    """A stand-in for ``NetworkSimulator`` that raises ``exc`` when run with policy ``fail``."""
    from policyopt.sim.network_sim import NetworkSimulator

    class Sim(NetworkSimulator):
        def run(self, progress=None, keep_jobs=True):  # type: ignore[no-untyped-def]
            if self.policy_name == fail:
                raise exc
            return super().run(progress, keep_jobs)

    return Sim


def _compare_in_process(tmp_path: Path) -> int:
    from policyopt.cli import main

    args = ["compare", "rybko-stolyar", "--policies", "fcfs,max-pressure,fluid"]
    return main([*args, "--horizon", "50", "--out", str(tmp_path), "--no-progress"])


def test_compare_network_keeps_the_others_when_a_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import policyopt.cli_network as cli_network

    sim = _failing_simulator("max-pressure", RuntimeError("boom\nsecond line"))
    monkeypatch.setattr(cli_network, "NetworkSimulator", sim)
    assert _compare_in_process(tmp_path) == 1
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert [r["policy"] for r in doc["runs"]] == ["fcfs", "fluid"]
    assert doc["failures"] == [
        {"policy": "max-pressure", "load": 0.9, "error": "RuntimeError: boom second line"}
    ]
    with (tmp_path / "compare.csv").open() as fh:
        assert [r["policy"] for r in csv.DictReader(fh)] == ["fcfs", "fluid"]
    err = capsys.readouterr().err
    assert "run max-pressure at load 0.9 failed: RuntimeError: boom second line" in err


def test_compare_network_ctrl_c_keeps_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import policyopt.cli_network as cli_network

    monkeypatch.setattr(
        cli_network, "NetworkSimulator", _failing_simulator("fluid", KeyboardInterrupt())
    )
    assert _compare_in_process(tmp_path) == 130
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["complete"] is False
    assert [r["policy"] for r in doc["runs"]] == ["fcfs", "max-pressure"]
    with (tmp_path / "compare.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert "interrupted after 2 of 3 runs" in capsys.readouterr().err


def test_evaluate_records_a_failed_run_and_keeps_runs_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import policyopt.learn.evaluate as evaluate_mod
    from policyopt.learn.evaluate import EvaluationInterrupted, evaluate

    kw = {"seeds": [0, 1], "horizon": 40.0}
    plain = evaluate("criss-cross", ["max-pressure", "priority:exit"], **kw)
    sim = _failing_simulator("priority:exit", RuntimeError("bad order"))
    monkeypatch.setattr(evaluate_mod, "NetworkSimulator", sim)
    ev = evaluate("criss-cross", ["max-pressure", "priority:exit"], out=tmp_path / "a", **kw)
    assert ev.complete and ev.summary == plain.summary[:1]
    assert [(f["policy"], f["seed"]) for f in ev.failures] == [
        ("priority:exit", 0),
        ("priority:exit", 1),
    ]
    assert json.loads((tmp_path / "a" / "evaluate.json").read_text())["failures"][0]["error"] == (
        "RuntimeError: bad order"
    )
    sim = _failing_simulator("priority:exit", KeyboardInterrupt())
    monkeypatch.setattr(evaluate_mod, "NetworkSimulator", sim)
    with pytest.raises(EvaluationInterrupted) as info:
        evaluate("criss-cross", ["max-pressure", "priority:exit"], out=tmp_path / "b", **kw)
    partial = info.value.evaluation
    assert not partial.complete and partial.summary == plain.summary[:1]
    assert json.loads((tmp_path / "b" / "evaluate.json").read_text())["complete"] is False


# ----------------------------------------------------------------------------- result folders


def test_a_second_network_compare_goes_to_a_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from policyopt.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "line.yaml").write_text(STATION_LINE)
    args = ["compare", "line.yaml", "--policies", "fcfs", "--horizon", "200", "--no-progress"]
    assert main(args) == 0
    first = tmp_path / "policyopt-results" / "compare-line"
    doc = json.loads((first / "compare.json").read_text())
    assert [r["load_x_boundary"] for r in doc["runs"]] == [0.9]  # the one default load
    capsys.readouterr()
    assert main([*args, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"results go to {Path('policyopt-results/compare-line-2')}: ")
    assert json.loads((first / "compare.json").read_text()) == doc  # the first one is kept
    assert (tmp_path / "policyopt-results" / "compare-line-2" / "jobs.png").is_file()
    # an explicit --out with results is refused without --overwrite
    assert main([*args, "--out", str(first)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(first), "--overwrite"]) == 0


def test_network_simulate_out_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from policyopt.cli import main

    net = tmp_path / "line.yaml"
    net.write_text(STATION_LINE)
    args = ["simulate", str(net), "--horizon", "100", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds results of an earlier run (summary.json, jobs.png)" in (
        capsys.readouterr().err
    )
    assert main([*args, "--overwrite"]) == 0
