"""Bad inputs, as a new user makes them: each gives exit code 2, no traceback, and one line
naming the field or argument (and the fix).

Every case writes its files into a fresh folder, runs ``policyopt`` there (in-process for
speed; a few again in a subprocess, as a user runs it) and checks the message. The cases
cover scenario files, network files, command-line arguments, CSVs (profiles, traces,
empirical length columns), and the inputs of ``train`` / ``evaluate`` (hyperparameter files,
model directories).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from policyopt.cli import main
from tests.helpers import STATION_LINE, assert_one_line_error, assert_usage_error

BINARY = bytes(range(256)) * 4
"""A binary file: NUL bytes and bytes that are not UTF-8 (an image, a model, an archive)."""

NOT_UTF8 = b"engine: {token_budget: 512}\n" + b"\xfd\xfe\xff\n"
"""A file that is almost text but not UTF-8."""

ONE_STATION = STATION_LINE

ONE_LLM = (
    "name: llm\n"
    "engines: {e1: {token_budget: 512}}\n"
    "classes:\n"
    "  a: {engine: e1}\n"
    "workflows:\n"
    "  - {name: w, arrival: {kind: poisson, rate: 5.0}, entry: a, after: {a: exit}}\n"
)

TRACE_HEAD = "arrival_s,prompt_len,output_len\n"
PROFILE_HEAD = "prefill_tokens,decode_tokens,time_ms\n"
PROFILE_OK_ROWS = "20,2,5\n30,3,6\n40,1,7\n"


@dataclass(frozen=True)
class Case:
    """One bad input: files to write (a name ending in ``/`` is a folder), the command line,
    and the words the error line must hold. ``usage``: an argparse error (usage, then the
    error line)."""

    argv: tuple[str, ...]
    words: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    usage: bool = False


def scenario(text: str, *argv: str, command: str = "capacity", words: tuple[str, ...]) -> Case:
    return Case((command, "cfg.yaml", *argv), words, {"cfg.yaml": text})


def network(text: str, *argv: str, command: str = "simulate", words: tuple[str, ...]) -> Case:
    return Case((command, "net.yaml", *argv), words, {"net.yaml": text})


def with_trace(rows: str, words: tuple[str, ...]) -> Case:
    cfg = "workload:\n  arrival: {kind: trace, path: trace.csv}\n"
    return Case(("simulate", "cfg.yaml"), words, {"cfg.yaml": cfg, "trace.csv": TRACE_HEAD + rows})


def with_column(csv: str | bytes, words: tuple[str, ...], name: str = "lengths.csv") -> Case:
    cfg = f"workload:\n  prompt: {{kind: empirical, path: {name}, column: n}}\n"
    files: dict[str, str | bytes] = {"cfg.yaml": cfg}
    if name.endswith("/"):
        files[name] = ""
    else:
        files[name] = csv
    return Case(("capacity", "cfg.yaml"), words, files)


def profile(text: str | bytes, words: tuple[str, ...]) -> Case:
    return Case(("fit-batch-time", "profile.csv"), words, {"profile.csv": text})


NOT_A_NUMBER = ("true is not a number",)
ABOVE_BUDGET = ("engine.token_budget", "above the limit of 1,048,576")
TOO_MANY = ("expected requests", "above the limit of 100,000,000", "--force")
HOLDS = ("--out", "already holds results", "--overwrite")

CASES: dict[str, Case] = {
    # ------------------------------------------------------------------ scenario files
    "scenario_binary": Case(
        ("capacity", "cfg.yaml"), ("cfg.yaml", "not a text file"), {"cfg.yaml": BINARY}
    ),
    "scenario_binary_toml": Case(
        ("simulate", "cfg.toml"), ("cfg.toml", "not a text file"), {"cfg.toml": BINARY}
    ),
    "scenario_not_utf8": Case(
        ("compare", "cfg.yaml"), ("cfg.yaml", "not a text file"), {"cfg.yaml": NOT_UTF8}
    ),
    "config_binary_no_suffix": Case(
        ("simulate", "model.bin"), ("model.bin", "not a text file"), {"model.bin": BINARY}
    ),
    "scenario_directory": Case(
        ("capacity", "configs.yaml"), ("configs.yaml", "is a directory"), {"configs.yaml/": ""}
    ),
    "config_directory_no_suffix": Case(
        ("simulate", "configs"), ("configs", "is a directory"), {"configs/": ""}
    ),
    "scenario_missing": Case(("simulate", "nope.yaml"), ("nope.yaml", "no such file")),
    "token_budget_1e12_int": scenario(
        "engine: {token_budget: 1000000000000}\n", words=ABOVE_BUDGET
    ),
    "token_budget_1e12_float": scenario(
        "engine: {token_budget: 1.0e+12}\n", command="simulate", words=ABOVE_BUDGET
    ),
    "token_budget_1e12_toml": Case(
        ("capacity", "cfg.toml"), ABOVE_BUDGET, {"cfg.toml": "[engine]\ntoken_budget = 1e12\n"}
    ),
    "token_budget_true": scenario(
        "engine: {token_budget: true}\n", words=("engine.token_budget", *NOT_A_NUMBER)
    ),
    "token_budget_false": scenario(
        "engine: {token_budget: false}\n",
        command="simulate",
        words=("engine.token_budget", "false is not a number"),
    ),
    "max_seqs_true": scenario(
        "engine: {max_seqs: true}\n", words=("engine.max_seqs", *NOT_A_NUMBER)
    ),
    "staircase_a_true": scenario(
        "engine: {batch_time: {kind: staircase, a_ms: true}}\n",
        words=("engine.batch_time.a_ms", *NOT_A_NUMBER),
    ),
    "piecewise_b0_true": scenario(
        "engine: {batch_time: {kind: piecewise, c_ms: 10, a_ms: 0.1, b0: true}}\n",
        words=("engine.batch_time.b0", *NOT_A_NUMBER),
    ),
    "affine_c_true": scenario(
        "engine: {batch_time: {kind: affine, c_ms: true, cp_ms: 0.1, cd_ms: 0.2}}\n",
        words=("engine.batch_time.c_ms", *NOT_A_NUMBER),
    ),
    "poisson_rate_true": scenario(
        "workload: {arrival: {kind: poisson, rate: true}}\n",
        words=("workload.arrival.rate", *NOT_A_NUMBER),
    ),
    "deterministic_rate_true": scenario(
        "workload: {arrival: {kind: deterministic, rate: true}}\n",
        command="simulate",
        words=("workload.arrival.rate", *NOT_A_NUMBER),
    ),
    "trace_time_scale_true": Case(
        ("simulate", "cfg.yaml"),
        ("workload.arrival.time_scale", *NOT_A_NUMBER),
        {
            "cfg.yaml": "workload:\n  arrival: {kind: trace, path: t.csv, time_scale: true}\n",
            "t.csv": TRACE_HEAD + "0.5,10,5\n",
        },
    ),
    "max_prompt_len_true": scenario(
        "workload: {max_prompt_len: true}\n", words=("workload.max_prompt_len", *NOT_A_NUMBER)
    ),
    "max_prompt_len_1e12": scenario(
        "workload: {max_prompt_len: 1000000000000}\n",
        words=("workload.max_prompt_len", "above the limit of 1,048,576"),
    ),
    "max_output_len_1e12": scenario(
        "workload: {max_output_len: 1000000000000}\n",
        command="simulate",
        words=("workload.max_output_len", "above the limit of 1,048,576"),
    ),
    "constant_value_true": scenario(
        "workload: {prompt: {kind: constant, value: true}}\n",
        words=("workload.prompt.value", *NOT_A_NUMBER),
    ),
    "uniform_low_true": scenario(
        "workload: {output: {kind: uniform, low: true, high: 9}}\n",
        words=("workload.output.low", *NOT_A_NUMBER),
    ),
    "geometric_mean_true": scenario(
        "workload: {prompt: {kind: geometric, mean: true}}\n",
        words=("workload.prompt.mean", *NOT_A_NUMBER),
    ),
    "lognormal_sigma_true": scenario(
        "workload: {prompt: {kind: lognormal, mean: 100, sigma: true}}\n",
        words=("workload.prompt.sigma", *NOT_A_NUMBER),
    ),
    "empirical_values_with_true": scenario(
        "workload: {prompt: {kind: empirical, values: [30, true, 50]}}\n",
        words=("workload.prompt.values", *NOT_A_NUMBER),
    ),
    "horizon_true": scenario(
        "run: {horizon_s: true}\n", command="simulate", words=("run.horizon_s", *NOT_A_NUMBER)
    ),
    "seed_true": scenario(
        "run: {seed: true}\n", command="simulate", words=("run.seed", *NOT_A_NUMBER)
    ),
    "warmup_true": scenario(
        "run: {warmup_s: true}\n", command="simulate", words=("run.warmup_s", *NOT_A_NUMBER)
    ),
    "samples_true": scenario(
        "run: {samples: true}\n", command="simulate", words=("run.samples", *NOT_A_NUMBER)
    ),
    "samples_1e10": scenario(
        "run: {samples: 10000000000}\n",
        command="simulate",
        words=("run.samples", "above the limit of 1,000,000"),
    ),
    "rate_nan": scenario(
        "workload: {arrival: {kind: poisson, rate: .nan}}\n",
        words=("workload.arrival.rate", "finite"),
    ),
    "class_holding_cost_true": scenario(
        "classes:\n  chat: {holding_cost: true}\n  docs: {}\n",
        command="simulate",
        words=("classes.chat.holding_cost", *NOT_A_NUMBER),
    ),
    "class_rate_true": scenario(
        "classes:\n  chat: {arrival: {kind: poisson, rate: true}}\n",
        words=("classes.chat.arrival.rate", *NOT_A_NUMBER),
    ),
    "scenario_rate_1e12": scenario(
        "workload: {arrival: {kind: poisson, rate: 1e12}}\n",
        command="simulate",
        words=("rate 1e+12 requests/s", *TOO_MANY),
    ),
    "scenario_horizon_1e15": scenario(
        "run: {horizon_s: 1e15}\n", command="simulate", words=("horizon 1e+15 s", *TOO_MANY)
    ),
    "scenario_rate_1e12_compare": scenario(
        "workload: {arrival: {kind: poisson, rate: 1e12}}\nrun: {horizon_s: 1e15}\n",
        "--out",
        "o",
        command="compare",
        words=TOO_MANY,
    ),
    "classes_horizon_1e15": scenario(
        "classes:\n  chat: {}\n  docs: {}\nrun: {horizon_s: 1e15}\n",
        command="simulate",
        words=TOO_MANY,
    ),
    # ------------------------------------------------------------------ network files
    "network_binary": Case(
        ("compare", "net.yaml", "--out", "o"), ("net.yaml", "not a text file"), {"net.yaml": BINARY}
    ),
    "network_token_budget_true": network(
        ONE_LLM.replace("token_budget: 512", "token_budget: true"),
        words=("engines.e1.token_budget", *NOT_A_NUMBER),
    ),
    "network_token_budget_1e12": network(
        ONE_LLM.replace("token_budget: 512", "token_budget: 1000000000000"),
        command="capacity",
        words=("engines.e1.token_budget", "above the limit of 1,048,576"),
    ),
    "network_max_seqs_false": network(
        ONE_LLM.replace("token_budget: 512", "max_seqs: false"),
        words=("engines.e1.max_seqs", "false is not a number"),
    ),
    "network_holding_cost_true": network(
        ONE_STATION.replace("mean: 0.5}", "mean: 0.5}, holding_cost: true"),
        words=("classes.a.holding_cost", *NOT_A_NUMBER),
    ),
    "network_service_mean_true": network(
        ONE_STATION.replace("mean: 0.5", "mean: true"),
        words=("classes.a.service.mean", *NOT_A_NUMBER),
    ),
    "service_kind_unknown": network(
        ONE_STATION.replace("kind: exponential", "kind: gamma"),
        words=("classes.a.service.kind", "unknown service distribution 'gamma'", "erlang"),
    ),
    "service_erlang_without_k": network(
        ONE_STATION.replace("kind: exponential", "kind: erlang"),
        words=("classes.a.service.k", "Field required", "add it"),
    ),
    "service_erlang_k_fraction": network(
        ONE_STATION.replace("kind: exponential", "kind: erlang, k: 2.5"),
        words=("classes.a.service.k", "whole number"),
    ),
    "service_h2_scv_below_one": network(
        ONE_STATION.replace("kind: exponential", "kind: hyperexponential, scv: 0.5"),
        words=("classes.a.service.scv", "greater than or equal to 1"),
    ),
    "service_h2_probs_short": network(
        ONE_STATION.replace(
            "kind: exponential, mean: 0.5", "kind: hyperexponential, means: [1, 2], probs: [1]"
        ),
        words=("classes.a.service.probs", "1 probabilities for 2 phase means"),
    ),
    "service_h2_both_forms": network(
        ONE_STATION.replace(
            "kind: exponential", "kind: hyperexponential, scv: 2, means: [1], probs: [1]"
        ),
        words=("classes.a.service.means", "either means and probs", "remove one form"),
    ),
    "service_lognormal_without_sigma": network(
        ONE_STATION.replace("kind: exponential", "kind: lognormal"),
        words=("classes.a.service.sigma", "add it"),
    ),
    "service_empirical_zero": network(
        ONE_STATION.replace("kind: exponential, mean: 0.5", "kind: empirical, values: [0, 1]"),
        words=("classes.a.service.values", "not a time > 0 s"),
    ),
    "service_empirical_missing_file": network(
        ONE_STATION.replace(
            "kind: exponential, mean: 0.5", "kind: empirical, path: none.csv, column: s"
        ),
        words=("classes.a.service.path", "no such file"),
    ),
    "arrival_mmpp_holding_short": network(
        ONE_STATION.replace(
            "{kind: poisson, rate: 1.0}", "{kind: mmpp, rates: [1.0, 2.0], holding: [1.0]}"
        ),
        words=("workflows.0.arrival.holding", "1 values for 2 rates", "one per phase"),
    ),
    "arrival_renewal_with_a_mean": network(
        ONE_STATION.replace(
            "{kind: poisson, rate: 1.0}",
            "{kind: renewal, rate: 1.0, law: {kind: erlang, k: 2, mean: 3}}",
        ),
        words=("workflows.0.arrival.law.mean", "1 / rate", "remove mean"),
    ),
    "arrival_piecewise_all_zero": network(
        ONE_STATION.replace(
            "{kind: poisson, rate: 1.0}", "{kind: piecewise, rates: [0, 0], durations: [1, 1]}"
        ),
        words=("workflows.0.arrival.rates", "every rate is 0"),
    ),
    "arrival_trace_unsorted": Case(
        ("simulate", "net.yaml"),
        ("workflows.0.arrival.path", "times.csv line 3", "goes back in time", "sort"),
        {
            "net.yaml": ONE_STATION.replace(
                "{kind: poisson, rate: 1.0}", "{kind: trace, path: times.csv}"
            ),
            "times.csv": "arrival_s\n1.0\n0.5\n",
        },
    ),
    "station_servers_zero": network(
        ONE_STATION.replace("{kind: station}", "{kind: station, servers: 0}"),
        words=("s1.servers", "greater than or equal to 1"),
    ),
    "station_servers_true": network(
        ONE_STATION.replace("{kind: station}", "{kind: station, servers: true}"),
        words=("s1.servers", *NOT_A_NUMBER),
    ),
    "station_discipline_unknown": network(
        ONE_STATION.replace("{kind: station}", "{kind: station, discipline: fifo}"),
        words=("s1.discipline", "'preemptive-resume' or 'non-preemptive'"),
    ),
    "network_class_max_prompt_len_true": network(
        ONE_LLM.replace("a: {engine: e1}", "a: {engine: e1, max_prompt_len: true}"),
        words=("classes.a.max_prompt_len", *NOT_A_NUMBER),
    ),
    "network_workflow_rate_true": network(
        ONE_STATION.replace("rate: 1.0", "rate: true"),
        command="capacity",
        words=("workflows.0.arrival.rate", *NOT_A_NUMBER),
    ),
    "network_random_probability_true": network(
        ONE_STATION.replace("after: {a: exit}", "after: {a: {random: {exit: true}}}"),
        words=("workflows.0.after.a.random", *NOT_A_NUMBER),
    ),
    "network_rate_1e12": network(
        ONE_STATION.replace("rate: 1.0", "rate: 1e12"), words=("workflows' rates", *TOO_MANY)
    ),
    "network_horizon_1e15": network(
        ONE_STATION, "--horizon", "1e15", words=("horizon 1e+15 s", *TOO_MANY)
    ),
    "network_compare_loads_1e9": network(
        ONE_STATION, "--loads", "0.5,1e9", "--out", "o", command="compare", words=TOO_MANY
    ),
    "network_simulate_out_file": Case(
        ("simulate", "net.yaml", "--horizon", "10", "--out", "taken"),
        ("--out", "taken is a file"),
        {"net.yaml": ONE_STATION, "taken": "x"},
    ),
    "network_compare_out_holds_results": Case(
        ("compare", "net.yaml", "--horizon", "10", "--out", "old"),
        (*HOLDS, "jobs.png"),
        {"net.yaml": ONE_STATION, "old/jobs.png": "png"},
    ),
    "library_network_load_1e9": Case(("simulate", "rybko-stolyar", "--load", "1e9"), TOO_MANY),
    # ------------------------------------------------------------------ command-line arguments
    "load_1e9": Case(("simulate", "--load", "1e9"), ("rate 1.387e+10 requests/s", *TOO_MANY)),
    "rate_1e12": Case(("simulate", "--rate", "1e12"), ("rate 1e+12 requests/s", *TOO_MANY)),
    "horizon_1e15": Case(("simulate", "--horizon", "1e15"), ("horizon 1e+15 s", *TOO_MANY)),
    "compare_horizon_1e9": Case(
        ("compare", "--horizon", "1e9", "--out", "o"), ("24 runs", *TOO_MANY)
    ),
    "compare_loads_1e9": Case(
        ("compare", "--loads", "0.9,1e9", "--schedulers", "orca", "--out", "o"), TOO_MANY
    ),
    "budgets_1e12": Case(
        ("capacity", "--budgets", "64,1e12"),
        ("argument --budgets", "'1e12' is above the limit of 1,048,576"),
        usage=True,
    ),
    "budgets_10_to_12": Case(
        ("capacity", "--budgets", "64,1000000000000"),
        ("argument --budgets", "above the limit of 1,048,576"),
        usage=True,
    ),
    "budget_2e6": Case(
        ("capacity", "--budget", "2000000"),
        ("argument --budget", "above the limit of 1,048,576"),
        usage=True,
    ),
    "budget_fraction": Case(
        ("capacity", "--budget", "512.5"), ("argument --budget", "not a whole number"), usage=True
    ),
    "seed_negative": Case(("simulate", "--seed", "-1"), ("run.seed", "-1")),
    "simulate_out_file": Case(
        ("simulate", "--horizon", "10", "--out", "taken"),
        ("--out", "taken is a file"),
        {"taken": ""},
    ),
    "simulate_out_inside_file": Case(
        ("simulate", "--horizon", "10", "--out", "taken/run"),
        ("--out", "inside taken, which is a file"),
        {"taken": ""},
    ),
    "simulate_out_holds_results": Case(
        ("simulate", "--horizon", "10", "--out", "run1"),
        (*HOLDS, "summary.json"),
        {"run1/summary.json": "{}"},
    ),
    "compare_out_file": Case(
        ("compare", "--horizon", "10", "--out", "taken"),
        ("--out", "taken is a file"),
        {"taken": ""},
    ),
    "compare_out_holds_results": Case(
        ("compare", "--horizon", "10", "--out", "cmp"),
        (*HOLDS, "compare.csv"),
        {"cmp/compare.csv": "scheduler\n"},
    ),
    "compare_default_out_is_a_file": Case(
        ("compare", "--horizon", "10"),
        ("--out", "policyopt-results/compare is a file"),
        {"policyopt-results/compare": ""},
    ),
    "trace_batches_directory": Case(
        ("simulate", "--horizon", "10", "--trace-batches", "batches"),
        ("--trace-batches", "is a folder"),
        {"batches/": ""},
    ),
    # ------------------------------------------------------------------ benchmark
    "benchmark_unknown_instance": Case(
        ("benchmark", "nope", "--horizon", "10"),
        ("instance", "no benchmark instance or library network named 'nope'", "--list"),
    ),
    "benchmark_unknown_policy": Case(
        ("benchmark", "criss-cross-bh", "--policies", "sjf", "--horizon", "10"),
        ("policy", "unknown policy 'sjf'"),
    ),
    "benchmark_unknown_max_pressure_form": Case(
        ("benchmark", "--policies", "max-pressure:greedy", "--horizon", "10"),
        ("policy", "unknown form 'greedy'", "max-pressure:dai-lin"),
    ),
    "benchmark_replications_zero": Case(
        ("benchmark", "--replications", "0"),
        ("argument --replications", "not a whole number >= 1"),
        usage=True,
    ),
    "benchmark_warmup_past_horizon": Case(
        ("benchmark", "--horizon", "100", "--warmup", "200"),
        ("--warmup", "not below the horizon", "shorter than --horizon"),
    ),
    "benchmark_horizon_1e15": Case(
        ("benchmark", "criss-cross-il", "--horizon", "1e15"),
        ("instance criss-cross-il", *TOO_MANY),
    ),
    "benchmark_out_holds_results": Case(
        ("benchmark", "--horizon", "10", "--out", "bm"),
        (*HOLDS, "benchmark.csv"),
        {"bm/benchmark.csv": "instance\n"},
    ),
    # ------------------------------------------------------------------ profiles (fit-batch-time)
    "profile_binary": profile(BINARY, ("profile.csv", "not a text file")),
    "profile_not_utf8": profile(
        PROFILE_HEAD.encode() + b"10,1,\xff\n", ("profile.csv", "not a text file")
    ),
    "profile_nul_byte": profile(
        PROFILE_HEAD + "10,1,4\x00\n" + PROFILE_OK_ROWS, ("profile.csv", "not a text file")
    ),
    "profile_directory": Case(
        ("fit-batch-time", "profiles"), ("profiles", "is a directory"), {"profiles/": ""}
    ),
    "profile_missing": Case(("fit-batch-time", "nope.csv"), ("nope.csv", "no such file")),
    "profile_nan_time": profile(
        PROFILE_HEAD + "10,1,nan\n" + PROFILE_OK_ROWS,
        ("profile.csv line 2", "time_ms=nan", "not a finite number"),
    ),
    "profile_inf_time": profile(
        PROFILE_HEAD + PROFILE_OK_ROWS + "50,2,inf\n",
        ("profile.csv line 5", "time_ms=inf", "not a finite number"),
    ),
    "profile_nan_decode": profile(
        PROFILE_HEAD + "10,NaN,4\n" + PROFILE_OK_ROWS,
        ("profile.csv line 2", "decode_tokens=NaN"),
    ),
    "profile_inf_prefill": profile(
        PROFILE_HEAD + PROFILE_OK_ROWS + "-inf,1,4\n", ("profile.csv line 5", "prefill_tokens=-inf")
    ),
    "profile_nan_kv": profile(
        "prefill_tokens,decode_tokens,kv_tokens,time_ms\n"
        "10,1,5,4\n20,2,nan,5\n30,3,100,6\n40,1,7,7\n50,5,9,9\n",
        ("profile.csv line 3", "kv_tokens=nan"),
    ),
    "profile_missing_column": profile(
        "prefill_tokens,decode,time_ms\n10,1,4\n", ("profile.csv line 1", "decode_tokens")
    ),
    "profile_too_few_rows": profile(PROFILE_HEAD + "10,1,4\n", ("profile.csv", "only 1 data rows")),
    # ------------------------------------------------------------------ traces
    "trace_binary": Case(
        ("simulate", "cfg.yaml"),
        ("workload.arrival.path", "not a text file"),
        {"cfg.yaml": "workload:\n  arrival: {kind: trace, path: trace.csv}\n", "trace.csv": BINARY},
    ),
    "trace_directory": Case(
        ("simulate", "cfg.yaml"),
        ("workload.arrival.path", "is a directory"),
        {"cfg.yaml": "workload:\n  arrival: {kind: trace, path: traces}\n", "traces/": ""},
    ),
    "trace_all_at_zero": with_trace(
        "0,10,5\n0,20,5\n0.0,30,5\n", ("workload.arrival.path", "all 3 arrivals are at t = 0")
    ),
    "trace_one_row_at_zero": with_trace(
        "0,10,5\n", ("workload.arrival.path", "all 1 arrivals are at t = 0")
    ),
    "trace_nan_arrival": with_trace(
        "0.1,10,5\nnan,10,5\n", ("workload.arrival.path", "trace.csv line 3", "arrival_s")
    ),
    "trace_inf_prompt": with_trace(
        "0.1,inf,5\n", ("workload.arrival.path", "trace.csv line 2", "prompt_len")
    ),
    "trace_unsorted": with_trace(
        "0.5,10,5\n0.2,10,5\n", ("workload.arrival.path", "trace.csv line 3", "sort")
    ),
    "trace_no_rows": with_trace("", ("workload.arrival.path", "no data rows")),
    # ------------------------------------------------------------------ empirical length columns
    "column_binary": with_column(BINARY, ("workload.prompt.path", "not a text file")),
    "column_directory": with_column("", ("workload.prompt.path", "is a directory"), "cols/"),
    "column_missing_file": Case(
        ("capacity", "cfg.yaml"),
        ("workload.prompt.path", "no such file"),
        {"cfg.yaml": "workload:\n  prompt: {kind: empirical, path: none.csv, column: n}\n"},
    ),
    "column_nan": with_column("n\n30\nnan\n", ("workload.prompt.path", "lengths.csv line 3")),
    "column_inf": with_column("n\ninf\n", ("workload.prompt.path", "lengths.csv line 2")),
    "column_not_there": with_column("m\n30\n", ("workload.prompt.path", "no column 'n'")),
}


def _write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _check(case: Case, proc: subprocess.CompletedProcess[str]) -> None:
    if case.usage:
        assert_usage_error(proc, *case.words)
    else:
        assert_one_line_error(proc, *case.words)


def test_at_least_60_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process (fast): exit code 2, one line naming the field, nothing written."""
    case = CASES[name]
    _write(tmp_path, case.files)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(list(case.argv))
    captured = capsys.readouterr()
    _check(case, subprocess.CompletedProcess(list(case.argv), code, captured.out, captured.err))
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before  # a refused command writes nothing


@pytest.mark.parametrize(
    "name",
    [
        "scenario_binary",
        "token_budget_true",
        "budgets_1e12",
        "profile_nan_time",
        "trace_all_at_zero",
        "load_1e9",
        "compare_out_holds_results",
    ],
)
def test_bad_input_in_a_subprocess(name: str, tmp_path: Path) -> None:
    """As a user runs it: the real streams, exit code and no traceback."""
    case = CASES[name]
    _write(tmp_path, case.files)
    proc = subprocess.run(
        [sys.executable, "-m", "policyopt.cli", *case.argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    _check(case, proc)


# ---------------------------------------------------------------------- train and evaluate

TRAIN = ("train", "rybko-stolyar", "--timesteps", "200", "--out", "r", "--no-progress")
"""A tiny training run (it never starts: every case below fails first)."""


def hyper(text: str | bytes, *words: str, algo: str = "ppo") -> Case:
    """``train --config hyper.yaml`` with ``text`` as the hyperparameter file."""
    return Case((*TRAIN, "--algo", algo, "--config", "hyper.yaml"), words, {"hyper.yaml": text})


def evaluate_with(*argv: str, words: tuple[str, ...], files: dict[str, str | bytes] | None = None):
    return Case(("evaluate", "rybko-stolyar", "--horizon", "10", *argv), words, files or {})


LARGER = "use a larger value"

LEARN_CASES: dict[str, Case] = {
    # ------------------------------------------------------------------ hyperparameter files
    "hyperparameters_unknown_section": Case(
        ("train", "rybko-stolyar", "--config", "hyper.yaml", "--timesteps", "10", "--out", "r"),
        ("learnin_rate", "unknown"),
        {"hyper.yaml": "learnin_rate: 0.001\n"},
    ),
    "hyperparameters_directory": Case(
        ("train", "rybko-stolyar", "--config", "hyper", "--timesteps", "10", "--out", "r"),
        ("--config", "hyper", "is a directory"),
        {"hyper/": ""},
    ),
    "hyper_unknown_section_underscore": hyper(
        "maskable_ppo: {n_steps: 64}\n",
        "maskable_ppo",
        "unknown hyperparameter section",
        "maskable-ppo",
    ),
    "hyper_unknown_key_in_ppo": hyper(
        "ppo: {learnin_rate: 0.1}\n", "ppo.learnin_rate", "unknown key of ppo", "learning_rate"
    ),
    "hyper_unknown_key_in_env": hyper(
        "env: {horizn: 50}\n", "env.horizn", "unknown key of env", "horizon"
    ),
    "hyper_key_of_another_algorithm": hyper(
        "a2c: {batch_size: 64}\n", "a2c.batch_size", "unknown key of a2c", algo="a2c"
    ),
    "hyper_key_set_by_train": hyper("ppo: {seed: 3}\n", "ppo.seed", "set by policyopt train"),
    "hyper_policy_kwargs_unknown_key": hyper(
        "ppo: {policy_kwargs: {net_arc: [64]}}\n", "ppo.policy_kwargs.net_arc", "net_arch"
    ),
    "hyper_learning_rate_negative": hyper(
        "ppo: {learning_rate: -1}\n", "ppo.learning_rate", "greater than 0", "-1", LARGER
    ),
    "hyper_learning_rate_zero_a2c": hyper(
        "a2c: {learning_rate: 0}\n", "a2c.learning_rate", "greater than 0", algo="a2c"
    ),
    "hyper_learning_rate_word": hyper(
        "ppo: {learning_rate: fast}\n", "ppo.learning_rate", "'fast'", "give a number"
    ),
    "hyper_learning_rate_true": hyper(
        "ppo: {learning_rate: true}\n", "ppo.learning_rate", "true is not a number"
    ),
    "hyper_n_steps_zero": hyper(
        "maskable-ppo: {n_steps: 0}\n", "maskable-ppo.n_steps", "(got 0)", algo="maskable-ppo"
    ),
    "hyper_n_steps_true": hyper("ppo: {n_steps: true}\n", "ppo.n_steps", "true is not a number"),
    "hyper_n_steps_fraction": hyper(
        "ppo: {n_steps: 64.5}\n", "ppo.n_steps", "64.5", "give a whole number"
    ),
    "hyper_n_steps_huge": hyper(
        "ppo: {n_steps: 1000000000}\n", "ppo.n_steps", "above the limit of 1,000,000"
    ),
    "hyper_one_step_rollout": hyper(
        "env: {n_envs: 1}\nppo: {n_steps: 1}\n", "ppo.n_steps", "normalize advantages"
    ),
    "hyper_batch_size_zero": hyper("ppo: {batch_size: 0}\n", "ppo.batch_size", "(got 0)"),
    "hyper_batch_size_one": hyper(
        "ppo: {batch_size: 1}\n", "ppo.batch_size", "normalize_advantage"
    ),
    "hyper_n_epochs_word": hyper(
        "ppo: {n_epochs: many}\n", "ppo.n_epochs", "'many'", "give a whole number"
    ),
    "hyper_gamma_above_one": hyper(
        "ppo: {gamma: 1.5}\n", "ppo.gamma", "less than or equal to 1", "use a smaller value"
    ),
    "hyper_gamma_zero": hyper("a2c: {gamma: 0}\n", "a2c.gamma", "greater than 0", algo="a2c"),
    "hyper_gae_lambda_negative": hyper(
        "ppo: {gae_lambda: -0.1}\n", "ppo.gae_lambda", "greater than or equal to 0"
    ),
    "hyper_clip_range_zero": hyper("ppo: {clip_range: 0}\n", "ppo.clip_range", LARGER),
    "hyper_ent_coef_negative": hyper("ppo: {ent_coef: -0.01}\n", "ppo.ent_coef", LARGER),
    "hyper_vf_coef_false": hyper("ppo: {vf_coef: false}\n", "ppo.vf_coef", "false is not"),
    "hyper_max_grad_norm_zero": hyper(
        "ppo: {max_grad_norm: 0}\n", "ppo.max_grad_norm", "greater than 0"
    ),
    "hyper_target_kl_negative": hyper("ppo: {target_kl: -1}\n", "ppo.target_kl", LARGER),
    "hyper_net_arch_negative": hyper(
        "ppo: {policy_kwargs: {net_arch: [64, -1]}}\n", "ppo.policy_kwargs.net_arch", "-1"
    ),
    "hyper_net_arch_true": hyper(
        "ppo: {policy_kwargs: {net_arch: [64, true]}}\n",
        "ppo.policy_kwargs.net_arch",
        "true is not a number",
    ),
    "hyper_net_arch_not_a_list": hyper(
        "ppo: {policy_kwargs: {net_arch: 64}}\n",
        "ppo.policy_kwargs.net_arch",
        "valid list (got 64)",
        "[64, 64]",
    ),
    "hyper_policy_kwargs_not_a_mapping": hyper(
        "ppo: {policy_kwargs: [64, 64]}\n", "ppo.policy_kwargs", "must be a mapping"
    ),
    "hyper_section_not_a_mapping": hyper("ppo: 0.001\n", "ppo", "must be a mapping", "0.001"),
    "hyper_env_n_envs_zero": hyper("env: {n_envs: 0}\n", "env.n_envs", "(got 0)"),
    "hyper_env_n_envs_true": hyper("env: {n_envs: true}\n", "env.n_envs", "true is not"),
    "hyper_env_horizon_negative": hyper("env: {horizon: -5}\n", "env.horizon", LARGER),
    "hyper_env_action_unknown": hyper(
        "env: {action: fifo}\n", "env.action", "'order', 'split' or 'cap'", "'fifo'"
    ),
    "hyper_env_vec_env_unknown": hyper("env: {vec_env: threads}\n", "env.vec_env", "'subproc'"),
    "hyper_eval_freq_negative": hyper("eval: {eval_freq: -5}\n", "eval.eval_freq", "(got -5)"),
    "hyper_checkpoint_word": hyper(
        "checkpoint: {save_freq: often}\n", "checkpoint.save_freq", "give a whole number"
    ),
    "hyper_bc_learning_rate_zero": hyper(
        "bc: {learning_rate: 0}\n", "bc.learning_rate", "greater than 0"
    ),
    "hyper_binary": hyper(BINARY, "--config", "hyper.yaml", "not a text file"),
    "hyper_not_utf8": hyper(NOT_UTF8, "--config", "not a text file"),
    "hyper_empty": hyper("", "--config", "hyper.yaml", "empty", "leave out --config"),
    "hyper_comments_only": hyper("# nothing here\n", "--config", "empty"),
    "hyper_not_a_mapping": hyper("- 1\n- 2\n", "--config", "mapping of sections", "list"),
    "hyper_a_number": hyper("0.001\n", "--config", "mapping of sections", "float"),
    "hyper_bad_yaml": hyper("ppo: {n_steps: [1, 2\n", "--config", "hyper.yaml", "not valid YAML"),
    "hyper_missing": Case(
        (*TRAIN, "--config", "none.yaml"), ("--config", "no such file", "none.yaml")
    ),
    "hyper_of_a_run_to_resume": Case(
        (*TRAIN, "--resume"),
        ("ppo.learning_rate", "greater than 0", "r/config.json"),
        {"r/config.json": '{"algo": "ppo", "hyperparameters": {"ppo": {"learning_rate": -1}}}'},
    ),
    # ------------------------------------------------------------------ train arguments
    "train_seed_negative": Case((*TRAIN, "--seed", "-1"), ("--seed", ">= 0", "-1")),
    "train_seed_fraction": Case((*TRAIN, "--seed", "1.5"), ("--seed", "'1.5'", "whole number")),
    "train_seed_huge": Case((*TRAIN, "--seed", "99999999999"), ("--seed", "<= 2147483647")),
    "train_timesteps_zero": Case(
        ("train", "rybko-stolyar", "--timesteps", "0", "--out", "r"), ("--timesteps", "> 0")
    ),
    "train_timesteps_word": Case(
        ("train", "rybko-stolyar", "--timesteps", "many", "--out", "r"),
        ("--timesteps", "'many'", "whole number"),
    ),
    "train_algo_unknown": Case(
        (*TRAIN, "--algo", "sac"), ("--algo", "unknown algorithm 'sac'", "maskable-ppo")
    ),
    "train_threads_zero": Case((*TRAIN, "--threads", "0"), ("--threads", "> 0")),
    "train_env_id_unknown": Case(
        ("train", "policyopt/Foo-v0", "--timesteps", "200", "--out", "r"),
        (
            "ENV_OR_NETWORK",
            "unknown environment id 'policyopt/Foo-v0'",
            "policyopt/AgentNetwork-v0, policyopt/LLMEngine-v0",
        ),
    ),
    "train_env_id_of_another_package": Case(
        ("train", "phys2d/CartPole-v1", "--timesteps", "200", "--out", "r"),
        ("ENV_OR_NETWORK", "not a policyopt environment", "policyopt/LLMEngine-v0"),
    ),
    "train_network_unknown": Case(
        ("train", "no-such-net", "--timesteps", "200", "--out", "r"), ("no-such-net",)
    ),
    "train_out_is_a_file": Case(
        ("train", "rybko-stolyar", "--timesteps", "200", "--out", "taken"),
        ("--out", "taken", "is a file"),
        {"taken": "x"},
    ),
    # ------------------------------------------------------------------ evaluate arguments
    "evaluate_seeds_negative": evaluate_with("--seeds", "-1", words=("--seeds", ">= 0", "-1")),
    "evaluate_seeds_one_negative": evaluate_with(
        "--seeds", "0,1,-2", words=("--seeds", "'0,1,-2'", ">= 0")
    ),
    "evaluate_seeds_word": evaluate_with(
        "--seeds", "x", words=("--seeds", "'x' is not a whole number")
    ),
    "evaluate_seeds_fraction": evaluate_with(
        "--seeds", "0.5", words=("--seeds", "'0.5' is not a whole number")
    ),
    "evaluate_seeds_empty_item": evaluate_with(
        "--seeds", "0,,1", words=("--seeds", "comma-separated")
    ),
    "evaluate_loads_negative": evaluate_with("--loads", "-0.5", words=("--loads", "> 0")),
    "evaluate_out_is_a_file": evaluate_with(
        "--out", "taken", words=("--out", "taken", "is a file"), files={"taken": "x"}
    ),
    "evaluate_policy_algo_unknown": evaluate_with(
        "--policies", "sac:runs/rs", words=("sac:runs/rs",)
    ),
    # ------------------------------------------------------------------ model directories
    "model_directory_missing": Case(
        ("evaluate", "rybko-stolyar", "--policies", "ppo:runs/none", "--horizon", "10"),
        ("policy", "runs/none", "no model directory"),
    ),
    "model_directory_empty": Case(
        ("evaluate", "rybko-stolyar", "--policies", "ppo:runs/empty", "--horizon", "10"),
        ("policy", "runs/empty", "model.zip"),
        {"runs/empty/": ""},
    ),
    "model_directory_is_a_file": Case(
        ("evaluate", "rybko-stolyar", "--policies", "ppo:runs/file", "--horizon", "10"),
        ("policy", "runs/file", "is a file, not a model directory"),
        {"runs/file": "x"},
    ),
    "model_directory_without_model_zip": evaluate_with(
        "--policies",
        "max-pressure,ppo:runs/rs",
        words=("policy", "runs/rs", "has no model.zip"),
        files={"runs/rs/config.json": '{"algo": "ppo"}', "runs/rs/checkpoints/": ""},
    ),
    "model_directory_a2c_missing": evaluate_with(
        "--policies", "a2c:runs/none", words=("policy", "runs/none", "no model directory")
    ),
}


def test_at_least_15_learning_cases() -> None:
    assert len(LEARN_CASES) >= 15


@pytest.mark.parametrize("name", sorted(LEARN_CASES))
def test_bad_learning_input(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process: exit code 2, one line naming the field or argument, nothing written
    (every case fails before training or evaluating starts)."""
    case = LEARN_CASES[name]
    _write(tmp_path, case.files)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(list(case.argv))
    captured = capsys.readouterr()
    _check(case, subprocess.CompletedProcess(list(case.argv), code, captured.out, captured.err))
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before


@pytest.mark.parametrize(
    "name", ["hyper_binary", "hyper_learning_rate_negative", "train_seed_negative"]
)
def test_bad_learning_input_in_a_subprocess(name: str, tmp_path: Path) -> None:
    """As a user runs it: the real streams, exit code and no traceback."""
    case = LEARN_CASES[name]
    _write(tmp_path, case.files)
    proc = subprocess.run(
        [sys.executable, "-m", "policyopt.cli", *case.argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    _check(case, proc)
