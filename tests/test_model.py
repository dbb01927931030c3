"""The model: every validation rule refuses bad input with a SpecError naming the field, and
the distributions, batch-time models and config loaders do what docs/model.md says."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policyopt import Scenario, SpecError
from policyopt.model import (
    AffineBatchTime,
    Constant,
    EngineSpec,
    Geometric,
    LogNormal,
    PiecewiseBatchTime,
    StaircaseBatchTime,
    Uniform,
    Workload,
    build,
    fit_affine,
    load_scenario,
    scheduler_spec,
)
from policyopt.model.lengths import Empirical

TRACE_HEADER = "arrival_s,prompt_len,output_len\n"


def refused(data: dict[str, Any], field: str) -> SpecError:
    """Build a Scenario from ``data``; it must fail with a SpecError naming ``field``."""
    with pytest.raises(SpecError) as info:
        build(Scenario, data)
    err = info.value
    assert err.field == field, str(err)
    assert str(err).startswith(f"{field}: ")
    assert err.problem
    return err


def workload(**kw: Any) -> dict[str, Any]:
    return {"workload": kw}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize("kind", ["poisson", "deterministic"])
@pytest.mark.parametrize("rate", [0, -1.5])
def test_arrival_rate_must_be_positive(kind: str, rate: float) -> None:
    err = refused(workload(arrival={"kind": kind, "rate": rate}), "workload.arrival.rate")
    assert repr(rate) in str(err)


def test_with_rate_refuses_nonpositive_rate() -> None:
    with pytest.raises(SpecError, match=r"^workload\.arrival\.rate: "):
        Workload().with_rate(0.0)


@pytest.mark.parametrize("budget", [0, -4])
def test_token_budget_at_least_one(budget: int) -> None:
    refused({"engine": {"token_budget": budget}}, "engine.token_budget")


def test_token_budget_must_be_whole() -> None:
    err = refused({"engine": {"token_budget": "lots"}}, "engine.token_budget")
    assert "whole number" in err.fix


def test_max_seqs_at_least_one() -> None:
    refused({"engine": {"max_seqs": 0}}, "engine.max_seqs")


@pytest.mark.parametrize("value", [0, -3])
def test_constant_length_at_least_one(value: int) -> None:
    refused(workload(prompt={"kind": "constant", "value": value}), "workload.prompt.value")


def test_uniform_high_below_low() -> None:
    err = refused(
        workload(output={"kind": "uniform", "low": 10, "high": 5}), "workload.output.high"
    )
    assert "low (10)" in err.problem and err.fix


def test_uniform_low_at_least_one() -> None:
    refused(workload(prompt={"kind": "uniform", "low": 0, "high": 5}), "workload.prompt.low")


def test_empirical_values_empty() -> None:
    refused(workload(output={"kind": "empirical", "values": []}), "workload.output.values")


@pytest.mark.parametrize("bad", [0, -2])
def test_empirical_values_below_one(bad: int) -> None:
    err = refused(
        workload(prompt={"kind": "empirical", "values": [3, bad, 7]}), "workload.prompt.values"
    )
    assert str(bad) in err.problem


def test_empirical_needs_exactly_one_source(tmp_path: Path) -> None:
    refused(workload(prompt={"kind": "empirical"}), "workload.prompt.path")
    path = write(tmp_path, "l.csv", "n\n3\n")
    both = {"kind": "empirical", "values": [3], "path": path, "column": "n"}
    refused(workload(prompt=both), "workload.prompt.values")
    refused(workload(prompt={"kind": "empirical", "path": path}), "workload.prompt.column")


def test_lognormal_sigma_positive() -> None:
    refused(
        workload(prompt={"kind": "lognormal", "mean": 100, "sigma": 0}), "workload.prompt.sigma"
    )


def test_warmup_must_be_below_horizon() -> None:
    err = refused({"run": {"horizon_s": 10, "warmup_s": 10}}, "run.warmup_s")
    assert "horizon_s" in err.problem
    build(Scenario, {"run": {"horizon_s": 10, "warmup_s": 9.5}})


@pytest.mark.parametrize(
    ("run", "field"),
    [
        ({"horizon_s": 0}, "run.horizon_s"),
        ({"seed": -1}, "run.seed"),
        ({"samples": 3}, "run.samples"),
        ({"first_token": "never"}, "run.first_token"),
    ],
)
def test_run_fields(run: dict[str, Any], field: str) -> None:
    refused({"run": run}, field)


def test_batch_time_parameters() -> None:
    refused({"engine": {"batch_time": {"kind": "piecewise"}}}, "engine.batch_time.c_ms")
    refused({"engine": {"batch_time": {"kind": "staircase", "a_ms": 0}}}, "engine.batch_time.a_ms")
    zero = {"kind": "affine", "c_ms": 0, "cp_ms": 0, "cd_ms": 0.1}
    refused({"engine": {"batch_time": zero}}, "engine.batch_time.c_ms")


# ---------------------------------------------------------------- unknown names and keys


@pytest.mark.parametrize("slot", ["prompt", "output"])
def test_unknown_distribution_kind(slot: str) -> None:
    err = refused(workload(**{slot: {"kind": "zipf", "mean": 3}}), f"workload.{slot}")
    assert "'zipf'" in err.problem and "lognormal" in err.problem


def test_distribution_without_kind() -> None:
    err = refused(workload(prompt={"mean": 3}), "workload.prompt")
    assert "kind" in err.fix


def test_unknown_arrival_and_batch_time_kinds() -> None:
    refused(workload(arrival={"kind": "bursty", "rate": 1}), "workload.arrival")
    refused({"engine": {"batch_time": {"kind": "cubic"}}}, "engine.batch_time")


@pytest.mark.parametrize("given", ["foo", {"name": "foo"}])
def test_unknown_scheduler_name(given: Any) -> None:
    err = refused({"scheduler": given}, "scheduler.name")
    assert "'foo'" in err.problem and "sarathi" in err.problem


def test_unknown_scheduler_option() -> None:
    err = refused({"scheduler": "orca:sometimes"}, "scheduler")
    assert "'sometimes'" in err.problem and "NAME:whole" in err.fix


@pytest.mark.parametrize(
    "given",
    [
        {"name": "vllm", "chunked": True},
        {"name": "fastertransformer", "chunked": True},
        "vllm:chunked",
    ],
)
def test_chunked_refused_for_non_chunking(given: Any) -> None:
    err = refused({"scheduler": given}, "scheduler.chunked")
    assert "no chunked prefill" in err.problem and "orca or sarathi" in err.fix


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"engnie": {}}, "engnie"),
        ({"engine": {"budget": 512}}, "engine.budget"),
        ({"engine": {"batch_time": {"kind": "staircase", "c": 1}}}, "engine.batch_time.c"),
        ({"scheduler": {"name": "orca", "chunk": True}}, "scheduler.chunk"),
        (workload(max_len=10), "workload.max_len"),
        (workload(arrival={"kind": "poisson", "rate": 1, "burst": 2}), "workload.arrival.burst"),
        ({"run": {"horizon": 10}}, "run.horizon"),
        (workload(prompt={"kind": "lognormal", "mean": 100, "std": 1}), "workload.prompt.std"),
        (workload(output={"kind": "constant", "value": 3, "max": 4}), "workload.output.max"),
    ],
)
def test_unknown_keys_at_every_level(data: dict[str, Any], field: str) -> None:
    err = refused(data, field)
    assert err.problem == "unknown key"
    assert "spelling" in err.fix


# ---------------------------------------------------------------- a prompt the budget can't hold


@pytest.mark.parametrize("scheduler", ["vllm", "fastertransformer", "orca:whole", "sarathi:whole"])
def test_non_chunking_scheduler_needs_budget_for_longest_prompt(scheduler: str) -> None:
    data = {"scheduler": scheduler, "engine": {"token_budget": 256}}
    err = refused(data, "engine.token_budget")
    assert "512-token prompt" in err.problem and "cannot chunk" in err.problem
    assert "max_prompt_len" in err.fix
    # either fix works
    build(Scenario, {**data, "workload": {"max_prompt_len": 256}})
    build(Scenario, {**data, "engine": {"token_budget": 512}})


@pytest.mark.parametrize("scheduler", ["orca", "sarathi", "orca:chunked"])
def test_chunking_scheduler_accepts_long_prompts(scheduler: str) -> None:
    sc = build(Scenario, {"scheduler": scheduler, "engine": {"token_budget": 64}})
    assert sc.workload.longest_prompt() == 512 > sc.engine.token_budget


def test_longest_prompt_of_a_bounded_distribution() -> None:
    data = {
        "scheduler": "vllm",
        "engine": {"token_budget": 200},
        "workload": {"prompt": {"kind": "uniform", "low": 50, "high": 200}},
    }
    assert build(Scenario, data).workload.longest_prompt() == 200
    data["workload"]["prompt"]["high"] = 201
    refused(data, "engine.token_budget")


def test_trace_prompt_longer_than_budget(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", TRACE_HEADER + "0.1,300,5\n")
    data = {
        "scheduler": "vllm",
        "engine": {"token_budget": 256},
        "workload": {"arrival": {"kind": "trace", "path": path}},
    }
    err = refused(data, "engine.token_budget")
    assert "300-token prompt" in err.problem


# ---------------------------------------------------------------- means a truncated law can't have


@pytest.mark.parametrize("mean", [512, 600])
def test_lognormal_mean_must_be_below_max_len(mean: float) -> None:
    err = refused(workload(prompt={"kind": "lognormal", "mean": mean}), "workload.prompt.mean")
    assert "512" in err.problem


def test_lognormal_mean_above_one() -> None:
    refused(workload(output={"kind": "lognormal", "mean": 1}), "workload.output.mean")


def test_geometric_mean_impossible_for_max_len() -> None:
    err = refused(workload(prompt={"kind": "geometric", "mean": 300}), "workload.prompt.mean")
    assert "256.5" in err.problem and "599" in err.fix
    # the same mean is fine with a longer context
    build(Scenario, workload(prompt={"kind": "geometric", "mean": 300}, max_prompt_len=600))


def test_geometric_mean_at_least_one() -> None:
    refused(workload(prompt={"kind": "geometric", "mean": 0.5}), "workload.prompt.mean")


def test_lengths_beyond_max_len() -> None:
    refused(workload(prompt={"kind": "constant", "value": 513}), "workload.prompt.value")
    refused(workload(output={"kind": "uniform", "low": 1100, "high": 1200}), "workload.output.low")
    refused(workload(prompt={"kind": "empirical", "values": [600]}), "workload.prompt.values")


# ---------------------------------------------------------------- CSV files


@pytest.mark.parametrize(
    ("rows", "line", "words"),
    [
        ("0.1,10,5\n0.2,abc,5\n", 3, "not a number"),
        ("0.1,10,5\n0.2,10\n", 3, "not a number"),  # a missing field
        ("-0.1,10,5\n", 2, "arrival_s=-0.1"),
        ("nan,10,5\n", 2, "arrival_s=nan"),
        ("0.5,10,5\n0.7,10,5\n0.2,10,5\n", 4, "earlier than the row before"),
        ("0.5,0,5\n", 2, "prompt_len=0"),
        ("0.5,10,0\n", 2, "output_len=0"),
        ("0.5,10.5,5\n", 2, "prompt_len=10.5"),
        ("0.5,10,inf\n", 2, "output_len=inf"),
    ],
)
def test_trace_bad_rows_name_their_line(tmp_path: Path, rows: str, line: int, words: str) -> None:
    path = write(tmp_path, "trace.csv", TRACE_HEADER + rows)
    err = refused(workload(arrival={"kind": "trace", "path": path}), "workload.arrival.path")
    assert f"trace.csv line {line}: " in err.problem
    assert words in err.problem


def test_trace_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "trace.csv", "arrival_s,prompt_len\n0.5,3\n")
    err = refused(workload(arrival={"kind": "trace", "path": path}), "workload.arrival.path")
    assert "trace.csv line 1: missing column(s) output_len" in err.problem


def test_trace_empty_or_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "trace.csv", TRACE_HEADER)
    err = refused(workload(arrival={"kind": "trace", "path": path}), "workload.arrival.path")
    assert "no data rows" in err.problem
    missing = str(tmp_path / "nope.csv")
    err = refused(workload(arrival={"kind": "trace", "path": missing}), "workload.arrival.path")
    assert "no such file" in err.problem


@pytest.mark.parametrize("slot", ["prompt", "output"])
def test_trace_with_lengths_given_is_an_error(tmp_path: Path, slot: str) -> None:
    path = write(tmp_path, "trace.csv", TRACE_HEADER + "0.5,10,5\n")
    data = workload(
        arrival={"kind": "trace", "path": path}, **{slot: {"kind": "constant", "value": 3}}
    )
    err = refused(data, f"workload.{slot}")
    assert "trace" in err.problem and f"remove {slot}" == err.fix


def test_trace_longer_than_max_len(tmp_path: Path) -> None:
    path = write(tmp_path, "trace.csv", TRACE_HEADER + "0.5,10,5\n1.0,20,7\n")
    arrival = {"kind": "trace", "path": path}
    err = refused(workload(arrival=arrival, max_prompt_len=15), "workload.max_prompt_len")
    assert "(20)" in err.problem
    refused(workload(arrival=arrival, max_output_len=6), "workload.max_output_len")


def test_trace_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "trace.csv", TRACE_HEADER + "0.0,10,5\n0.5,30,7\n0.5,20,3\n2.0,4,1\n")
    w = build(Scenario, workload(arrival={"kind": "trace", "path": path})).workload
    assert w.rate == pytest.approx(4 / 2.0)
    assert w.mean_prompt() == pytest.approx(16.0) and w.mean_output() == pytest.approx(4.0)
    assert w.longest_prompt() == 30
    assert w.with_rate(4.0).rate == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("rows", "line", "shown"),
    [("5\n0\n", 3, "'0'"), ("5\nx\n", 3, "'x'"), ("5\n7\n2.5\n", 4, "'2.5'"), ("\n", 2, "''")],
)
def test_empirical_csv_bad_rows(tmp_path: Path, rows: str, line: int, shown: str) -> None:
    path = write(tmp_path, "lengths.csv", "other,len\n" + "".join(f"1,{r}\n" for r in rows.split()))
    if rows == "\n":  # a row with the column left empty
        path = write(tmp_path, "lengths.csv", "other,len\n1,\n")
    dist = {"kind": "empirical", "path": path, "column": "len"}
    err = refused(workload(prompt=dist), "workload.prompt.path")
    assert f"lengths.csv line {line}: len={shown}" in err.problem


def test_empirical_csv_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "lengths.csv", "len\n5\n")
    dist = {"kind": "empirical", "path": path, "column": "tokens"}
    err = refused(workload(output=dist), "workload.output.path")
    assert "lengths.csv line 1: no column 'tokens' (found len)" in err.problem


def test_empirical_csv_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "lengths.csv", "len\n5\n7\n7\n2000\n")
    dist = Empirical(path=path, column="len")
    values, probs = dist.pmf(1024)  # 2000 is above max_len: dropped
    assert values.tolist() == [5, 7] and probs.tolist() == pytest.approx([1 / 3, 2 / 3])


PROFILE_HEADER = "prefill_tokens,decode_tokens,time_ms\n"


@pytest.mark.parametrize(
    ("rows", "line", "words"),
    [
        ("0,1,10\n128,0,x\n", 3, "not a number"),
        ("0,1,10\n-1,4,12\n", 3, "token counts must be >= 0"),
        ("0,1,10\n0,0,12\n", 3, "at least one token"),
        ("0,1,10\n5,4,0\n", 3, "time_ms > 0"),
    ],
)
def test_profile_bad_rows(tmp_path: Path, rows: str, line: int, words: str) -> None:
    path = write(tmp_path, "profile.csv", PROFILE_HEADER + rows)
    with pytest.raises(SpecError) as info:
        fit_affine(path)
    assert info.value.field == f"{path} line {line}"
    assert words in str(info.value)


def test_profile_missing_column_and_too_few_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "profile.csv", "prefill_tokens,time_ms\n1,2\n")
    with pytest.raises(SpecError, match=r"line 1: missing column\(s\) decode_tokens"):
        fit_affine(path)
    path = write(tmp_path, "profile.csv", PROFILE_HEADER + "0,1,10\n5,0,11\n")
    with pytest.raises(SpecError, match="only 2 data rows"):
        fit_affine(path)
    path = write(tmp_path, "profile.csv", PROFILE_HEADER + "1,1,10\n2,2,11\n3,3,12\n4,4,13\n")
    with pytest.raises(SpecError, match="independently"):
        fit_affine(path)
    with pytest.raises(SpecError, match="no such file"):
        fit_affine(tmp_path / "none.csv")


# ---------------------------------------------------------------- config files


def test_config_file_errors(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "engine:\n  token_budget: [1\n")
    with pytest.raises(SpecError, match=r"bad\.yaml line \d+: not valid yaml"):
        load_scenario(bad)
    with pytest.raises(SpecError, match="not valid toml"):
        load_scenario(write(tmp_path, "bad.toml", "engine = {\n"))
    with pytest.raises(SpecError, match="unknown config type"):
        load_scenario(write(tmp_path, "x.json", "{}"))
    with pytest.raises(SpecError, match="not a mapping"):
        load_scenario(write(tmp_path, "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(SpecError, match="no such file"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=r"^engine\.token_budget: "):
        load_scenario(write(tmp_path, "zero.toml", "[engine]\ntoken_budget = 0\n"))


YAML = """\
engine:
  token_budget: 1024
  max_seqs: 64
  batch_time: {kind: piecewise, c_ms: 20, a_ms: 0.25, b0: 64}
scheduler: orca:whole
workload:
  arrival: {kind: deterministic, rate: 4.5}
  prompt: {kind: geometric, mean: 200}
  output: {kind: uniform, low: 10, high: 300}
  max_prompt_len: 1000
run: {horizon_s: 120, warmup_s: 20, seed: 7, samples: 50, first_token: prefill}
"""

TOML = """\
scheduler = { name = "orca", chunked = false }

[engine]
token_budget = 1024
max_seqs = 64
batch_time = { kind = "piecewise", c_ms = 20.0, a_ms = 0.25, b0 = 64 }

[workload]
max_prompt_len = 1000
arrival = { kind = "deterministic", rate = 4.5 }
prompt = { kind = "geometric", mean = 200 }
output = { kind = "uniform", low = 10, high = 300 }

[run]
horizon_s = 120
warmup_s = 20
seed = 7
samples = 50
first_token = "prefill"
"""


def test_yaml_and_toml_load_to_the_same_scenario(tmp_path: Path) -> None:
    a = load_scenario(write(tmp_path, "s.yaml", YAML))
    b = load_scenario(write(tmp_path, "s.toml", TOML))
    assert a == b
    assert a.scheduler.label == "orca(whole)" and not a.scheduler.chunks
    assert a.engine.batch_time == PiecewiseBatchTime(c_ms=20, a_ms=0.25, b0=64)
    assert a.run.warmup == 20 and a.run.first_token == "prefill"
    assert a.workload.mean_prompt() == pytest.approx(200, abs=1e-6)
    # the same as building the dict in Python
    assert build(Scenario, a.model_dump()) == a


def test_load_scenario_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", YAML)
    sc = load_scenario(path, scheduler="sarathi", run={"horizon_s": 5})
    assert sc.scheduler.name == "sarathi" and sc.run.horizon_s == 5
    assert sc.run.seed == 0  # a replaced top-level key takes its defaults


def test_empty_config_gives_the_defaults(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, "empty.yaml", ""))
    assert sc == Scenario()
    assert sc.scheduler.name == "sarathi" and sc.engine.token_budget == 512
    assert sc.engine.max_seqs is None and sc.engine.batch_time == StaircaseBatchTime()
    assert sc.workload.prompt_dist == LogNormal(mean=129, sigma=0.7)
    assert sc.workload.output_dist == LogNormal(mean=112, sigma=0.7)
    assert (sc.workload.max_prompt_len, sc.workload.max_output_len) == (512, 1024)
    assert sc.workload.rate == 10.0
    assert sc.run.horizon_s == 3600 and sc.run.warmup == pytest.approx(360)
    assert sc.workload.mean_tokens() == pytest.approx(241, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "decode_first", "mixes", "chunks", "request_level"),
    [
        ("fastertransformer", True, False, False, True),
        ("vllm", False, False, False, False),
        ("orca", False, True, True, False),
        ("orca:whole", False, True, False, False),
        ("sarathi", True, True, True, False),
        ("sarathi:whole", True, True, False, False),
        ("sarathi:chunked", True, True, True, False),
    ],
)
def test_scheduler_properties(
    name: str, decode_first: bool, mixes: bool, chunks: bool, request_level: bool
) -> None:
    s = scheduler_spec(name)
    assert (s.decode_first, s.mixes, s.chunks, s.request_level) == (
        decode_first,
        mixes,
        chunks,
        request_level,
    )


# ---------------------------------------------------------------- truncated distributions


@pytest.mark.parametrize(
    ("mean", "sigma", "max_len"),
    [
        (129, 0.7, 512),
        (112, 0.7, 1024),
        (40, 1.5, 64),
        (2, 0.3, 512),
        (500, 0.7, 512),  # mean near the top: mass piled at max_len
        (1.001, 2.0, 512),  # mean near 1: mass piled at 1
        (1.1, 5.0, 512),
        (511.9, 5.0, 512),
        (300, 0.05, 4096),
    ],
)
def test_truncated_lognormal_has_exactly_the_mean(mean: float, sigma: float, max_len: int) -> None:
    values, probs = LogNormal(mean=mean, sigma=sigma).pmf(max_len)
    assert values.tolist() == list(range(1, max_len + 1))
    assert probs.min() >= 0 and probs.sum() == pytest.approx(1, abs=1e-12)
    assert abs(values @ probs - mean) < 1e-6


@pytest.mark.parametrize(
    ("mean", "max_len"), [(1, 10), (112, 1024), (129, 512), (256.4, 512), (2.9, 5), (50, 100000)]
)
def test_truncated_geometric_has_exactly_the_mean(mean: float, max_len: int) -> None:
    values, probs = Geometric(mean=mean).pmf(max_len)
    assert values.tolist() == list(range(1, max_len + 1))
    assert probs.sum() == pytest.approx(1, abs=1e-12)
    assert abs(values @ probs - mean) < 1e-6
    if mean > 1:  # geometric: each probability a fixed fraction of the one before
        head = probs[: min(10, max_len)]
        ratios = head[1:] / head[:-1]
        assert np.ptp(ratios) < 1e-9 and ratios[0] < 1


def test_lognormal_is_a_rounded_truncated_lognormal() -> None:
    """P(L = k) = P(k - 1/2 < X <= k + 1/2 | 1/2 < X <= max_len + 1/2), X lognormal(mu, sigma)."""
    from scipy import optimize, stats

    sigma, max_len, mean = 0.5, 200, 60.0
    edges = np.arange(0.5, max_len + 1)
    values = np.arange(1, max_len + 1)

    def pmf(mu: float) -> np.ndarray:
        w = np.diff(stats.lognorm(s=sigma, scale=math.exp(mu)).cdf(edges))
        return w / w.sum()

    mu = optimize.brentq(lambda m: values @ pmf(m) - mean, 0.0, 8.0, xtol=1e-13)
    got_values, got = LogNormal(mean=mean, sigma=sigma).pmf(max_len)
    assert got_values.tolist() == values.tolist()
    assert np.abs(got - pmf(mu)).max() < 1e-9


@pytest.mark.parametrize(
    ("dist", "max_len"),
    [
        (LogNormal(mean=129, sigma=0.7), 512),
        (LogNormal(mean=300, sigma=1.2), 1024),
        (Geometric(mean=112), 1024),
        (Uniform(low=10, high=2000), 1024),
        (Empirical(values=(1, 5, 5, 80)), 100),
    ],
)
def test_sampling_matches_the_pmf(dist: Any, max_len: int) -> None:
    n = 20_000
    values, probs = dist.pmf(max_len)
    mean = values @ probs
    sd = math.sqrt(((values - mean) ** 2) @ probs)
    sample = dist.sample(np.random.default_rng(12345), n, max_len)
    assert sample.dtype == np.int64
    assert sample.min() >= 1 and sample.max() <= max_len
    assert set(np.unique(sample)) <= set(values[probs > 0].tolist())
    assert abs(sample.mean() - mean) < 3 * sd / math.sqrt(n)
    again = dist.sample(np.random.default_rng(12345), n, max_len)
    assert np.array_equal(sample, again)  # same seed, same samples
    other = dist.sample(np.random.default_rng(54321), n, max_len)
    assert not np.array_equal(sample, other)


def test_constant_and_uniform() -> None:
    assert Constant(value=7).pmf(10)[0].tolist() == [7]
    assert Constant(value=7).sample(np.random.default_rng(0), 3, 10).tolist() == [7, 7, 7]
    values, probs = Uniform(low=3, high=20).pmf(10)  # truncated at 10: conditioned
    assert values.tolist() == list(range(3, 11)) and probs.tolist() == pytest.approx([1 / 8] * 8)
    assert Uniform(low=3, high=20).mean_tokens(10) == pytest.approx(6.5)
    assert Uniform(low=3, high=20).largest(10) == 10


# ---------------------------------------------------------------- batch time


def test_staircase_default_is_the_paper_profile() -> None:
    bt = StaircaseBatchTime()
    assert (bt.c_ms, bt.a_ms, bt.b0) == (11.28, 35.47, 128)
    assert bt.seconds(512, 0) == pytest.approx(0.15316, abs=1e-12)
    assert bt.seconds(300, 212) == pytest.approx(0.15316, abs=1e-12)  # only n counts
    n = np.array([1, 128, 129, 256, 257, 512])
    expected = (11.28 + 35.47 * np.array([1, 1, 2, 2, 3, 4])) / 1000
    assert bt.seconds_for_tokens(n) == pytest.approx(expected, abs=1e-12)
    assert [bt.seconds(int(k), 0) for k in n] == pytest.approx(expected.tolist(), abs=1e-12)


def test_piecewise_formula() -> None:
    bt = PiecewiseBatchTime(c_ms=20, a_ms=0.25, b0=64)
    n = np.array([1, 64, 65, 512])
    expected = np.array([20, 20, 20.25, 20 + 0.25 * 448]) / 1000
    assert bt.seconds_for_tokens(n) == pytest.approx(expected, abs=1e-12)
    assert bt.seconds(500, 12, kv_read=99) == pytest.approx(0.132, abs=1e-12)


def test_affine_formula_and_range() -> None:
    bt = AffineBatchTime(c_ms=10, cp_ms=0.05, cd_ms=0.3, ckv_ms=0.001, max_tokens=512, max_kv=900)
    assert bt.seconds(100, 20, kv_read=500) == pytest.approx((10 + 5 + 6 + 0.5) / 1000)
    assert bt.seconds_for_tokens(np.array([100]), prefill_share=0.25)[0] == pytest.approx(
        (10 + 100 * (0.25 * 0.05 + 0.75 * 0.3)) / 1000
    )
    assert bt.in_range(512, 900)
    assert not bt.in_range(513, 0) and not bt.in_range(10, 901)


@pytest.mark.parametrize("with_kv", [False, True])
def test_fit_affine_recovers_known_coefficients(tmp_path: Path, with_kv: bool) -> None:
    c, cp, cd, ckv = 10.0, 0.05, 0.3, (0.001 if with_kv else 0.0)
    batches = [(0, 1, 100), (128, 0, 0), (256, 32, 4000), (512, 0, 0), (0, 64, 20000), (7, 9, 50)]
    lines = ["prefill_tokens,decode_tokens,time_ms" + (",kv_tokens" if with_kv else "")]
    for p, d, kv in batches:
        t = c + cp * p + cd * d + ckv * kv
        lines.append(f"{p},{d},{t!r}" + (f",{kv}" if with_kv else ""))
    model, diag = fit_affine(write(tmp_path, "profile.csv", "\n".join(lines) + "\n"))
    assert model.c_ms == pytest.approx(c, abs=1e-9)
    assert model.cp_ms == pytest.approx(cp, abs=1e-12)
    assert model.cd_ms == pytest.approx(cd, abs=1e-12)
    assert model.ckv_ms == pytest.approx(ckv, abs=1e-12)
    assert diag["r2"] == pytest.approx(1.0, abs=1e-12) and diag["rmse_ms"] < 1e-9
    assert diag["rows"] == len(batches)
    assert model.max_tokens == 512
    assert model.max_kv == (20000 if with_kv else None)
    # the fitted model is a valid engine batch time
    assert EngineSpec(batch_time=model).batch_time == model


def test_config_paths_are_relative_to_the_config_file(tmp_path, monkeypatch) -> None:
    from policyopt.model import load_scenario

    sub = tmp_path / "cfg"
    sub.mkdir()
    (sub / "trace.csv").write_text("arrival_s,prompt_len,output_len\n0.5,10,5\n1.0,20,6\n")
    (sub / "s.yaml").write_text("workload:\n  arrival: {kind: trace, path: trace.csv}\n")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    sc = load_scenario(sub / "s.yaml")
    assert sc.workload.mean_prompt() == 15.0


def test_infinite_numbers_are_refused() -> None:
    from policyopt.errors import SpecError
    from policyopt.model import Scenario, build

    with pytest.raises(SpecError, match=r"run\.horizon_s"):
        build(Scenario, {"run": {"horizon_s": float("inf")}})
    with pytest.raises(SpecError, match=r"workload\.arrival\.rate"):
        build(Scenario, {"workload": {"arrival": {"kind": "poisson", "rate": float("nan")}}})


# ----------------------------------------------------------------------------- strict numbers


def test_a_bool_is_not_a_number_in_any_spec() -> None:
    err = refused({"engine": {"token_budget": True}}, "engine.token_budget")
    assert err.problem == "true is not a number"
    refused(
        {"workload": {"prompt": {"kind": "empirical", "values": [3, False]}}},
        "workload.prompt.values",
    )
    refused({"run": {"horizon_s": True}}, "run.horizon_s")
    # a bool where a bool belongs is still fine
    assert build(Scenario, {"scheduler": {"name": "orca", "chunked": False}}).scheduler.label == (
        "orca(whole)"
    )


def test_every_spec_derives_from_the_strict_base() -> None:
    """Every pydantic model of the model package refuses a bool for a number."""
    import inspect

    from pydantic import BaseModel

    import policyopt.model as model
    from policyopt.model import batch_time, engine, lengths, network, scenario, scheduler, workload
    from policyopt.model.validation import StrictSpec

    modules = (model, batch_time, engine, lengths, network, scenario, scheduler, workload)
    specs = {
        obj
        for mod in modules
        for _, obj in inspect.getmembers(mod, inspect.isclass)
        if issubclass(obj, BaseModel) and obj.__module__.startswith("policyopt.model")
    }
    assert len(specs) > 20
    assert [s.__name__ for s in specs if not issubclass(s, StrictSpec)] == []


def test_a_registered_scheduler_option_refuses_a_bool() -> None:
    from typing import Literal

    from policyopt.model.scheduler import (
        SarathiSpec,
        register_scheduler_spec,
        unregister_scheduler_spec,
    )

    class Slotted(SarathiSpec):
        name: Literal["slotted"] = "slotted"  # type: ignore[assignment]
        slots: int = 4

    register_scheduler_spec(Slotted)
    try:
        assert scheduler_spec({"name": "slotted", "slots": 8}).slots == 8
        with pytest.raises(SpecError, match="slots: true is not a number"):
            scheduler_spec({"name": "slotted", "slots": True})
    finally:
        unregister_scheduler_spec("slotted")


def test_limits_on_budget_lengths_and_samples() -> None:
    from policyopt.model.validation import MAX_LENGTH, MAX_SAMPLES, MAX_TOKEN_BUDGET

    assert build(EngineSpec, {"token_budget": MAX_TOKEN_BUDGET}).token_budget == MAX_TOKEN_BUDGET
    err = refused({"engine": {"token_budget": MAX_TOKEN_BUDGET + 1}}, "engine.token_budget")
    assert "1,048,576" in err.problem
    refused({"workload": {"max_output_len": MAX_LENGTH + 1}}, "workload.max_output_len")
    refused({"run": {"samples": MAX_SAMPLES + 1}}, "run.samples")
    net = {
        "engines": {"e": {"token_budget": MAX_TOKEN_BUDGET + 1}},
        "classes": {"a": {"engine": "e"}},
        "workflows": [
            {
                "name": "w",
                "arrival": {"kind": "poisson", "rate": 1.0},
                "entry": "a",
                "after": {"a": "exit"},
            }
        ],
    }
    from policyopt.model import NetworkSpec

    with pytest.raises(SpecError, match=r"^engines\.e\.token_budget: .*above the limit"):
        build(NetworkSpec, net)


# ----------------------------------------------------------------------------- files


def test_binary_and_directory_files_are_named(tmp_path: Path) -> None:
    binary = tmp_path / "model.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(SpecError, match=r"model\.yaml: is not a text file"):
        load_scenario(binary)
    with pytest.raises(SpecError, match="is a directory"):
        load_scenario(tmp_path)
    with pytest.raises(SpecError, match="is a directory"):
        fit_affine(tmp_path)
    with pytest.raises(SpecError, match="no such file"):
        fit_affine(tmp_path / "none.csv")


def test_fit_refuses_nan_and_inf(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("prefill_tokens,decode_tokens,time_ms\n10,1,4\n20,2,nan\n30,3,6\n40,1,7\n")
    with pytest.raises(SpecError, match=r"p\.csv line 3: time_ms=nan is not a finite number"):
        fit_affine(csv)


def test_the_example_profile_fits_well() -> None:
    root = Path(__file__).resolve().parents[1]
    model, diag = fit_affine(root / "examples" / "profile.csv")
    assert diag["r2"] > 0.999 and diag["negative_coefficients_set_to_zero"] == 0
    assert model.ckv_ms > 0 and model.max_tokens == 512


def test_a_trace_with_every_arrival_at_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(TRACE_HEADER + "0,10,5\n0,12,5\n")
    err = refused(
        {"workload": {"arrival": {"kind": "trace", "path": str(tmp_path / "t.csv")}}},
        "workload.arrival.path",
    )
    assert "t = 0" in err.problem


# ----------------------------------------------------------------------------- run size


def test_expected_requests_of_scenarios_and_the_limit(tmp_path: Path) -> None:
    from policyopt.sim.run import MAX_REQUESTS, check_run_size, expected_requests, scenario_requests

    assert expected_requests(2.0, 100.0) == 200.0
    assert expected_requests([1.0, 2.5], 10.0) == 35.0
    sc = build(
        Scenario,
        {"workload": {"arrival": {"kind": "poisson", "rate": 12.0}}, "run": {"horizon_s": 600}},
    )
    assert scenario_requests(sc) == 12.0 * 600
    classes = build(
        Scenario,
        {
            "classes": {
                "a": {"arrival": {"kind": "poisson", "rate": 1.0}},
                "b": {"arrival": {"kind": "poisson", "rate": 3.0}},
            },
            "run": {"horizon_s": 10},
        },
    )
    assert scenario_requests(classes) == 40.0
    (tmp_path / "t.csv").write_text(TRACE_HEADER + "0.5,10,5\n1.5,10,5\n9,10,5\n")
    trace = build(
        Scenario,
        {
            "workload": {"arrival": {"kind": "trace", "path": str(tmp_path / "t.csv")}},
            "run": {"horizon_s": 5},
        },
    )
    assert scenario_requests(trace) == 2  # the arrivals before the horizon
    check_run_size(MAX_REQUESTS, "x", force=False)
    check_run_size(10 * MAX_REQUESTS, "x", force=True)
    with pytest.raises(SpecError, match="expected requests: x = about 1e"):
        check_run_size(10 * MAX_REQUESTS, "x", force=False)
