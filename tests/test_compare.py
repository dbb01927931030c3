"""The scheduler/load sweep: parallel runs, common random numbers, failures and Ctrl-C."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import policyopt.compare as compare_mod
from policyopt.cli import main
from policyopt.compare import SweepInterrupted, plan_sweep, run_sweep
from policyopt.errors import SpecError
from policyopt.model import EngineSpec, RunSpec, Scenario
from policyopt.report import COMPARE_COLUMNS, compare_table, write_compare
from policyopt.sim import EngineResult, simulate
from policyopt.solvers.capacity import capacity

SHORT = Scenario(run=RunSpec(horizon_s=200.0, seed=3))


def _same(a: dict, b: dict) -> bool:
    """Summaries equal, NaN equal to NaN (``summary()`` already maps NaN to None)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_parallel_sweep_equals_serial() -> None:
    kwargs = {"schedulers": ["vllm", "orca"], "loads": [0.8, 1.2], "progress": False}
    one = run_sweep(SHORT, jobs=1, **kwargs)
    two = run_sweep(SHORT, jobs=2, **kwargs)
    assert one.complete and two.complete
    assert len(one.results) == len(two.results) == 4
    for a, b in zip(one.results, two.results, strict=True):
        assert _same(a.summary(), b.summary())
        for key in ("t", "n_system", "backlog_tokens"):
            assert np.array_equal(a.series[key], b.series[key])
    # plan order: scheduler by scheduler, loads as given
    assert [(r.scheduler, r.load) for r in two.results] == [
        ("vllm", 0.8),
        ("vllm", 1.2),
        ("orca", 0.8),
        ("orca", 1.2),
    ]


def test_rates_are_loads_times_lambda_star_and_streams_are_common() -> None:
    sweep = run_sweep(SHORT, ["orca", "sarathi", "vllm"], [0.7], progress=False)
    lam = capacity(SHORT.engine, SHORT.workload).lambda_star
    assert math.isclose(sweep.capacity.lambda_star, lam)
    for r in sweep.results:
        assert r.load == 0.7
        assert math.isclose(r.rate, 0.7 * lam, rel_tol=1e-12)
        assert r.seed == 3
    # common random numbers: every scheduler saw the same request stream
    assert len({r.arrived for r in sweep.results}) == 1
    # a run of the sweep is the plain simulation of its scenario
    # and a run of the sweep is the plain simulation of its scenario (the sweep reports the
    # planned load exactly, where rate / lambda* may differ from it in the last bit)
    _, plan = plan_sweep(SHORT, ["orca"], [0.7])
    alone = simulate(plan[0].scenario).summary()
    assert math.isclose(alone.pop("load"), 0.7, rel_tol=1e-12)
    in_sweep = sweep.results[0].summary()
    in_sweep.pop("load")
    assert _same(alone, in_sweep)


def _failing_simulate(fail: set[tuple[str, float]], exc: BaseException):
    """A stand-in for ``simulate`` that raises ``exc`` for the given (scheduler, load)s."""
    calls: list[tuple[str, float]] = []

    def fake(scenario: Scenario, **kwargs: object) -> EngineResult:
        lam = capacity(scenario.engine, scenario.workload).lambda_star
        key = (scenario.scheduler.label, round(scenario.workload.rate / lam, 6))
        calls.append(key)
        if key in fail:
            raise exc
        return simulate(scenario, **kwargs)

    return fake, calls


def test_failed_run_keeps_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, calls = _failing_simulate({("vllm", 0.8)}, RuntimeError("boom\nsecond line"))
    monkeypatch.setattr(compare_mod, "simulate", fake)
    seen: list[EngineResult] = []
    failures = []
    sweep = run_sweep(
        SHORT,
        ["vllm", "orca"],
        [0.8, 1.2],
        progress=False,
        on_result=seen.append,
        on_failure=failures.append,
    )
    assert len(calls) == 4  # the sweep went on after the failure
    assert sweep.complete
    assert [(r.scheduler, r.load) for r in seen] == [("vllm", 1.2), ("orca", 0.8), ("orca", 1.2)]
    assert [(r.scheduler, r.load) for r in sweep.results] == [
        ("vllm", 1.2),
        ("orca", 0.8),
        ("orca", 1.2),
    ]
    assert len(sweep.failures) == 1 and failures == sweep.failures
    f = sweep.failures[0]
    assert (f.scheduler, f.load) == ("vllm", 0.8)
    assert f.error == "RuntimeError: boom second line"
    assert sweep.to_dict()["failures"][0]["error"] == f.error


def test_interrupt_keeps_finished_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, calls = _failing_simulate({("orca", 0.8)}, KeyboardInterrupt())
    monkeypatch.setattr(compare_mod, "simulate", fake)
    seen: list[EngineResult] = []
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(SHORT, ["vllm", "orca"], [0.8, 1.2], progress=False, on_result=seen.append)
    sweep = info.value.sweep
    assert isinstance(info.value, KeyboardInterrupt)
    assert not sweep.complete
    assert len(calls) == 3  # nothing ran after Ctrl-C
    assert [(r.scheduler, r.load) for r in sweep.results] == [("vllm", 0.8), ("vllm", 1.2)]
    assert [r.scheduler for r in seen] == ["vllm", "vllm"]


def test_spec_errors_come_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, calls = _failing_simulate(set(), RuntimeError())
    monkeypatch.setattr(compare_mod, "simulate", fake)
    small = SHORT.model_copy(update={"engine": EngineSpec(token_budget=256)})
    with pytest.raises(SpecError, match=r"engine\.token_budget.*vllm"):
        run_sweep(small, ["orca", "vllm"], [0.5], progress=False)
    with pytest.raises(SpecError, match="scheduler"):
        run_sweep(SHORT, ["orca", "nope"], [0.5], progress=False)
    with pytest.raises(SpecError, match="listed twice"):
        run_sweep(SHORT, ["orca", "orca"], [0.5], progress=False)
    with pytest.raises(SpecError, match="loads"):
        run_sweep(SHORT, ["orca"], [0.5, -1.0], progress=False)
    assert calls == []


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_compare_keeps_rows_of_a_failed_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = _failing_simulate({("sarathi", 0.9)}, ValueError("simulator bug"))
    monkeypatch.setattr(compare_mod, "simulate", fake)
    args = ["compare", "--horizon", "100", "--schedulers", "orca,sarathi", "--loads", "0.9"]
    code = main([*args, "--out", str(tmp_path), "--no-progress"])
    assert code == 1
    rows = _csv_rows(tmp_path / "compare.csv")
    assert [(r["scheduler"], float(r["load"])) for r in rows] == [("orca", 0.9)]
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["complete"] is True
    assert [f["scheduler"] for f in doc["failures"]] == ["sarathi"]
    assert "simulator bug" in capsys.readouterr().err
    assert (tmp_path / "n_system.png").stat().st_size > 0


def test_cli_compare_interrupted_keeps_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = _failing_simulate({("sarathi", 0.9)}, KeyboardInterrupt())
    monkeypatch.setattr(compare_mod, "simulate", fake)
    args = ["compare", "--horizon", "100", "--schedulers", "orca,sarathi", "--loads", "0.9"]
    code = main([*args, "--out", str(tmp_path), "--no-progress"])
    assert code == 130
    rows = _csv_rows(tmp_path / "compare.csv")
    assert [r["scheduler"] for r in rows] == ["orca"]
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["complete"] is False and len(doc["runs"]) == 1
    assert "interrupted after 1 of 2 runs" in capsys.readouterr().err


def test_compare_table_and_csv_of_a_sweep(tmp_path: Path) -> None:
    sweep = run_sweep(SHORT, ["fastertransformer", "sarathi"], [0.9], progress=False)
    lines = compare_table(sweep.results).splitlines()
    assert len(lines) == 2 + 1 + 2  # two header lines, the rule, two rows
    rule = lines[2]
    assert set(rule) == {"-", " "} and len(rule.split()) == len(COMPARE_COLUMNS)
    ft = lines[3].split()
    # FasterTransformer finishes no request that arrived after the warm-up: no latency
    assert ft[0] == "fastertransformer" and ft[4:7] == ["-", "-", "-"]
    assert lines[4].startswith("sarathi ")
    # every row is as wide as the rule: the columns line up
    assert all(len(line) <= len(rule) for line in lines)
    md = compare_table(sweep.results, markdown=True).splitlines()
    assert md[0].count("|") == len(COMPARE_COLUMNS) + 1 and "lambda\\*" in md[0]
    paths = write_compare(sweep, tmp_path)
    assert [p.name for p in paths] == ["compare.csv", "compare.json", "n_system.png"]
    rows = _csv_rows(tmp_path / "compare.csv")
    assert rows[0]["latency_mean"] == "" and float(rows[1]["latency_mean"]) > 0
    assert (
        float(rows[1]["drift_ci_low"]) <= float(rows[1]["drift"]) <= float(rows[1]["drift_ci_high"])
    )


# ----------------------------------------------------------------------------- shared helpers


def _square_or_fail(x: int) -> int:
    """A run for :func:`run_all`: top-level, so a process pool can call it."""
    if x == 3:
        raise ValueError(f"no\n{x}")
    return x * x


def test_run_all_pool_equals_serial_and_records_failures() -> None:
    from policyopt.sweep import run_all

    seen: list[tuple[int, int]] = []
    errors: list[tuple[int, str]] = []
    one = run_all(
        range(6),
        _square_or_fail,
        progress=False,
        on_result=lambda i, r: seen.append((i, r)),
        on_error=lambda i, e: errors.append((i, e)),
    )
    two = run_all(list(range(6)), _square_or_fail, jobs=2, progress=False)
    assert one.complete and two.complete
    assert one.results == two.results == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert list(two.results) == [0, 1, 2, 4, 5]  # by index, whatever the completion order
    assert one.errors == two.errors == {3: "ValueError: no 3"}
    assert seen == list(one.results.items()) and errors == [(3, "ValueError: no 3")]


def test_json_ready_is_the_one_conversion() -> None:
    from dataclasses import dataclass

    from policyopt.jsonout import json_ready, to_json

    @dataclass
    class Point:
        x: float
        ci: tuple[float, float]

    data = {
        1: np.float64(0.5),
        "n": np.int64(3),
        "flag": np.bool_(True),
        "a": np.array([1.0, np.nan]),
        "p": Point(math.inf, (np.float32(0.25), -math.inf)),
    }
    ready = json_ready(data)
    assert ready == {
        "1": 0.5,
        "n": 3,
        "flag": True,
        "a": [1.0, None],
        "p": {"x": None, "ci": [0.25, None]},
    }
    assert type(ready["1"]) is float and type(ready["n"]) is int
    assert json.loads(to_json(data)) == ready
