"""``policyopt sweep``: the spec, the grid, streaming to CSV and resuming, and bad input.

The Ray backend's tests are in ``tests/test_ray_backend.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import policyopt.grid as grid
from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.grid import SweepSpec, plan_cells, read_rows
from policyopt.model import build
from tests.helpers import assert_one_line_error
from tests.test_boundary import _cli

SPEC = """\
configs: [default, rybko-stolyar]
loads: [0.7, 0.9]
schedulers: [vllm, sarathi]
policies: [max-pressure]
seeds: [0, 1]
horizon_s: 300
"""
"""2 loads x (2 schedulers + 1 policy) x 2 seeds = 12 cells of a fraction of a second."""


def _spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_the_grid_is_configs_x_loads_x_policies_x_seeds(tmp_path: Path) -> None:
    spec = build(SweepSpec, {"configs": ["default", "rybko-stolyar"], "loads": [0.7, 0.9],
                             "schedulers": ["vllm", "sarathi"], "policies": ["max-pressure"],
                             "seeds": [0, 1], "horizon_s": 300})  # fmt: skip
    cells = plan_cells(spec)
    assert len(cells) == 12 and len({c.key for c in cells}) == 12
    engine = [c for c in cells if c.config == "default"]
    assert {c.policy for c in engine} == {"vllm", "sarathi"}
    lam = engine[0].capacity
    assert lam == pytest.approx(13.87, abs=0.01)
    for c in engine:  # the cell carries the scenario at its rate, horizon and seed
        assert c.scenario is not None and c.network is None
        assert c.scenario.workload.rate == pytest.approx(c.load * lam)
        assert c.scenario.run.horizon_s == 300 and c.scenario.run.seed == c.seed
    net = [c for c in cells if c.config == "rybko-stolyar"]
    assert all(c.network is not None and c.network.policy == "max-pressure" for c in net)
    row = grid.run_cell(cells[0])
    assert tuple(row) == grid.ROW_FIELDS and row["kind"] == "engine"
    assert grid.run_cell(net[0])["kind"] == "network"


def test_defaults_relative_paths_and_a_scenario_with_classes(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("scheduler: orca\nrun: {horizon_s: 200}\n")
    cells = plan_cells(build(SweepSpec, {"configs": ["one.yaml"], "loads": [0.5]}), tmp_path)
    assert [(c.policy, c.seed, c.horizon_s) for c in cells] == [("orca", 0, 200.0)]
    examples = Path(__file__).resolve().parents[1] / "examples"
    spec = {"configs": [str(examples / "chat_and_documents.yaml")], "loads": [0.5]}
    (cell,) = plan_cells(build(SweepSpec, spec))
    assert cell.network is not None and cell.policy == "fcfs"


def _run(spec: Path, out: Path, *extra: str) -> int:
    return main(["sweep", str(spec), "--out", str(out), "--no-progress", *extra])


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    real = grid.run_cell

    def counted(cell: grid.Cell) -> dict:
        calls.append(cell.key)
        return real(cell)

    monkeypatch.setattr(grid, "run_cell", counted)
    return calls


@pytest.mark.parametrize("cut", ["lines", "bytes"])
def test_a_killed_sweep_resumes_with_only_the_missing_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cut: str
) -> None:
    spec = _spec(tmp_path)
    calls = _counting(monkeypatch)
    assert _run(spec, tmp_path / "once") == 0
    whole = (tmp_path / "once" / "sweep.csv").read_text()
    assert len(calls) == 12 and len(whole.splitlines()) == 13
    # the kill: keep the header and the first half of the rows (or cut inside a line)
    half = tmp_path / "half"
    half.mkdir()
    lines = whole.splitlines(keepends=True)
    text = "".join(lines[:7]) if cut == "lines" else whole[: len("".join(lines[:7])) + 25]
    (half / "sweep.csv").write_text(text)
    calls.clear()
    capsys.readouterr()
    assert _run(spec, half) == 0
    assert "12 cells; 6 already in" in capsys.readouterr().out
    assert len(calls) == 6  # only the missing cells ran
    done_before = {grid.row_key(r) for r in csv.DictReader(lines[:7])}
    assert not done_before & set(calls)
    assert (half / "sweep.csv").read_text() == whole  # the same file as one go
    # a third run has nothing to do
    calls.clear()
    assert _run(spec, half) == 0 and calls == []
    doc = json.loads((half / "sweep.json").read_text())
    assert doc["cells"] == 12 and doc["skipped"] == 12 and doc["ran"] == 0 and doc["complete"]
    assert len(doc["summary"]) == 6 and (half / "sweep.png").stat().st_size > 0


def test_two_local_workers_give_the_same_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("seeds: [0, 1]", "seeds: [0]"))
    assert _run(spec, tmp_path / "one") == 0
    assert _run(spec, tmp_path / "two", "--jobs", "2") == 0
    one = (tmp_path / "one" / "sweep.csv").read_text()
    assert one == (tmp_path / "two" / "sweep.csv").read_text()


def test_overwrite_starts_again_and_another_horizon_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, SPEC.replace("seeds: [0, 1]", "seeds: [0]"))
    out = tmp_path / "o"
    assert _run(spec, out) == 0
    calls = _counting(monkeypatch)
    assert _run(spec, out, "--overwrite") == 0 and len(calls) == 6
    longer = _spec(tmp_path, SPEC.replace("horizon_s: 300", "horizon_s: 400"))
    with pytest.raises(SpecError, match="horizon_s"):
        grid.run_grid(plan_cells(grid.load_sweep_spec(longer)), out / "sweep.csv")


def test_a_file_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sweep.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="not a sweep results file"):
        read_rows(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("configs: [default]\nloads: []\n", ["loads"]),
        ("configs: []\nloads: [0.5]\n", ["configs"]),
        ("configs: [default]\nloads: [0.5, 0]\n", ["loads.1", "greater than 0"]),
        ("configs: [default]\nloads: [0.5, -1]\n", ["loads.1"]),
        ("configs: [default]\nloads: [0.5]\nhorizon: 60\n", ["horizon", "unknown key"]),
        ("configs: [default]\nloads: [0.5]\nseeds: []\n", ["seeds"]),
        ("configs: [default]\nloads: [0.5, 0.5]\n", ["loads", "twice"]),
        ("configs: [default]\nloads: [0.5]\npolicies: [fcfs]\n", ["policies", "network"]),
        ("configs: [default]\nloads: [0.5]\nschedulers: [nope]\n", ["schedulers", "nope"]),
        ("configs: [nope.yaml]\nloads: [0.5]\n", ["configs", "nope.yaml"]),
        ("configs: [default]\nloads: [0.5]\nhorizon_s: 0\n", ["horizon_s"]),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path: Path, text: str, words: list[str]) -> None:
    proc = _cli("sweep", _spec(tmp_path, text), "--out", tmp_path / "out")
    assert_one_line_error(proc, *words)
    assert not (tmp_path / "out" / "sweep.csv").exists()


def test_bad_backend_options_are_one_line_errors(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "configs: [default]\nloads: [0.5]\n")
    proc = _cli("sweep", spec, "--ray-address", "127.0.0.1:1")
    assert_one_line_error(proc, "--ray-address", "--backend ray")
