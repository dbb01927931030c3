"""The ``policyopt`` command line, run as a user runs it: in a subprocess.

Numbers are checked against theory where it gives them: the paper's engine has
``mu = 512 / 0.15316 s = 3342.9`` tokens/s; with 100 + 100 tokens per request
``lambda* = mu / 200 = 16.71`` requests/s.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from policyopt.cli import main
from policyopt.model import EngineSpec, build
from tests.helpers import assert_one_line_error, interruptible

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
MU_PAPER = 512 / 0.15316  # tokens/s, t(512) = 11.28 + 4 * 35.47 ms


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m policyopt.cli ARGS`` with output captured."""
    return subprocess.run(
        [sys.executable, "-m", "policyopt.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def ok_json(*args: str | Path, cwd: Path | None = None) -> dict:
    """Run a ``--json`` command, check it succeeded, and parse all of stdout as JSON."""
    proc = run_cli(*args, "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["", "capacity", "simulate", "compare", "fit-batch-time"])
def test_help_of_every_command_shows_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--help"] if command else ["--help"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: policyopt {command}".rstrip())
    examples = out.split("examples:\n", 1)[1]
    assert f"  policyopt {command}".rstrip() in examples


def test_console_script_and_usage_error() -> None:
    script = Path(sys.executable).with_name("policyopt")
    if not script.exists():
        pytest.skip("the policyopt console script is not installed next to this Python")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("policyopt ")
    proc = subprocess.run([script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: policyopt" in proc.stderr and "required: COMMAND" in proc.stderr


# ----------------------------------------------------------------------------- capacity


def test_capacity_of_the_paper_engine() -> None:
    doc = ok_json("capacity", "--budgets", "128,512,1024")
    cap = doc["capacity"]
    assert cap["mu"] == pytest.approx(MU_PAPER, rel=1e-3)
    assert cap["best_batch"] == 512
    assert cap["mean_tokens"] == pytest.approx(241, rel=1e-9)
    assert cap["lambda_star"] == pytest.approx(MU_PAPER / 241, rel=1e-3)
    sweep = {row["token_budget"]: row for row in doc["budget_sweep"]}
    assert sorted(sweep) == [128, 512, 1024]
    assert sweep[512]["t_b_ms"] == pytest.approx(153.16, abs=1e-9)
    assert sweep[128]["mu"] == pytest.approx(128 / 0.04675, rel=1e-9)
    assert sweep[1024]["mu"] == pytest.approx(1024 / (0.01128 + 8 * 0.03547), rel=1e-9)


def test_capacity_constant_lengths_and_budget_override() -> None:
    doc = ok_json("capacity", CONFIGS / "constant_100_100.yaml")
    assert doc["capacity"]["lambda_star"] == pytest.approx(16.71, rel=1e-3)
    assert doc["capacity"]["load"] == pytest.approx(15.0 / (MU_PAPER / 200), rel=1e-6)
    doc = ok_json("capacity", CONFIGS / "constant_100_100.yaml", "--budget", "256")
    assert doc["capacity"]["token_budget"] == 256
    assert doc["capacity"]["mu"] == pytest.approx(256 / (0.01128 + 2 * 0.03547), rel=1e-9)


def test_capacity_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity"]) == 0  # in-process: the subprocess path is tested above
    out = capsys.readouterr().out
    assert "mu:       3342.9 tokens/s" in out
    assert "lambda*:  13.871 req/s" in out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("b "))
    assert header.split() == ["b", "t(b)", "ms", "best", "n", "mu", "tokens/s", "lambda*", "req/s"]


# ----------------------------------------------------------------------------- capacity region

VERTEX_C = ROOT / "examples" / "vertex_c.yaml"  # 290 + 990 tokens every 467.5 ms, b 128, k 100


def _region_rows(out: str) -> dict[str, list[str]]:
    """The rows of the ``--region`` vertex table by vertex name."""
    table = out.split("counterclockwise from the origin):\n", 1)[1].splitlines()
    rows = [line.split() for line in table[3:] if line.strip()]
    return {row[0]: row[1:] for row in rows}


def test_capacity_region_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The hand-computed vertices of b = 128, max_seqs = 100, and the operating point of one
    290 + 990 token request every 467.5 ms on vertex C."""
    assert main(["capacity", str(VERTEX_C), "--region"]) == 0
    out = capsys.readouterr().out
    assert _region_rows(out) == {
        "A": ["0", "0", "-", "0.0", "0.0"],
        "B": ["128", "0", "46.75", "2738.0", "0.0"],
        "C": ["29", "99", "46.75", "620.3", "2117.6"],
        "D": ["0", "100", "46.75", "0.0", "2139.0"],
    }
    assert "operating point: prefill 620.3, decode 2117.6 tokens/s" in out
    assert "theta:           1.0000: inside, on the boundary (no margin)" in out
    assert "largest rate:    2.139 req/s along the workload's mix" in out
    assert "29 prefill + 99 decode tokens per 46.75 ms batch (100.0% of the time)" in out
    header = out.split("counterclockwise from the origin):\n", 1)[1].splitlines()[:2]
    assert header[0].split() == ["vertex", "prefill", "decode", "batch", "prefill", "decode"]
    assert header[1].split() == ["tokens/batch", "tokens/batch", "ms", "tokens/s", "tokens/s"]
    # a larger budget: two more vertices, the operating point still on the boundary
    assert main(["capacity", str(VERTEX_C), "--region", "--budget", "1024"]) == 0
    rows = _region_rows(capsys.readouterr().out)
    assert rows["B"] == ["1024", "0", "295.04", "3470.7", "0.0"]
    assert rows["C"] == ["925", "99", "295.04", "3135.2", "335.5"]
    assert rows["D"][:3] == ["29", "99", "46.75"] and rows["E"][:2] == ["0", "100"]


def test_capacity_region_json() -> None:
    doc = ok_json("capacity", VERTEX_C, "--region")
    assert set(doc) == {"engine", "region"}
    assert doc["engine"]["token_budget"] == 128 and doc["engine"]["max_seqs"] == 100
    region = doc["region"]
    assert set(region) == {
        "vertices",
        "rate",
        "mean_prompt",
        "mean_output",
        "prefill_rate",
        "decode_rate",
        "theta",
        "inside",
        "on_boundary",
        "rate_max",
        "corners",
    }
    assert [(v["prefill_tokens"], v["decode_tokens"]) for v in region["vertices"]] == [
        (0, 0),
        (128, 0),
        (29, 99),
        (0, 100),
    ]
    assert region["vertices"][0]["batch_ms"] is None  # the origin runs no batch
    assert [v["batch_ms"] for v in region["vertices"][1:]] == pytest.approx([46.75] * 3)
    assert region["vertices"][2]["prefill_rate"] == pytest.approx(29 / 0.04675, rel=1e-12)
    assert region["prefill_rate"] == pytest.approx(290 / 0.4675, rel=1e-12)
    assert region["decode_rate"] == pytest.approx(990 / 0.4675, rel=1e-12)
    assert region["theta"] == pytest.approx(1.0, abs=1e-9)
    assert region["inside"] is True and region["on_boundary"] is True
    assert region["rate_max"] == pytest.approx(1 / 0.4675, rel=1e-9)
    # without max_seqs: the triangle of the best batch, and theta * lambda = lambda*
    doc = ok_json("capacity", "--region")["region"]
    assert [(v["prefill_tokens"], v["decode_tokens"]) for v in doc["vertices"]] == [
        (0, 0),
        (512, 0),
        (0, 512),
    ]
    assert doc["theta"] == pytest.approx(MU_PAPER / 2410, rel=1e-9)
    assert doc["rate_max"] == pytest.approx(MU_PAPER / 241, rel=1e-9)


def test_capacity_region_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "region"
    assert main(["capacity", str(VERTEX_C), "--region", "--out", str(out)]) == 0
    assert f"wrote {out / 'region.png'}" in capsys.readouterr().out
    with (out / "region.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["vertex"] for r in rows] == ["A", "B", "C", "D"]
    assert (rows[2]["prefill_tokens"], rows[2]["decode_tokens"]) == ("29", "99")
    assert float(rows[2]["batch_ms"]) == pytest.approx(46.75) and rows[0]["batch_ms"] == ""
    assert float(rows[3]["decode_rate"]) == pytest.approx(100 / 0.04675, rel=1e-12)
    assert (out / "region.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an earlier region is not replaced silently; --overwrite replaces it
    assert main(["capacity", str(VERTEX_C), "--region", "--out", str(out)]) == 2
    assert "--out: " in capsys.readouterr().err
    args = ["capacity", str(VERTEX_C), "--region", "--out", str(out), "--overwrite", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["region"]["theta"] == pytest.approx(1.0, abs=1e-9)
    assert "wrote " in captured.err  # stdout carries only the JSON


# ----------------------------------------------------------------------------- simulate


def test_simulate_json_below_capacity() -> None:
    doc = ok_json("simulate", "--scheduler", "orca", "--load", "0.5", "--horizon", "600")
    assert doc["scheduler"] == "orca"
    assert doc["mu"] == pytest.approx(MU_PAPER, rel=1e-3)
    assert doc["load"] == pytest.approx(0.5, rel=1e-9)
    assert doc["rate"] == pytest.approx(0.5 * MU_PAPER / 241, rel=1e-3)
    # stable: requests leave as fast as they come
    assert doc["throughput"] == pytest.approx(doc["rate"], rel=0.03)
    assert doc["verdict"] != "unstable"
    assert doc["horizon"] == 600 and doc["seed"] == 0


def test_simulate_json_above_capacity_follows_the_fluid_limit() -> None:
    doc = ok_json("simulate", "--scheduler", "sarathi", "--load", "1.3", "--horizon", "600")
    fluid = 0.3 * MU_PAPER
    assert doc["fluid_drift"] == pytest.approx(fluid, rel=1e-3)
    assert doc["verdict"] == "unstable"
    assert doc["drift"] == pytest.approx(fluid, rel=0.25)
    # a work-conserving scheduler in overload completes requests at about lambda*
    assert doc["throughput"] == pytest.approx(MU_PAPER / 241, rel=0.03)


def test_simulate_text_files_and_batch_trace(tmp_path: Path) -> None:
    trace = tmp_path / "batches.csv"
    out = tmp_path / "run"
    proc = run_cli(
        "simulate",
        CONFIGS / "constant_100_100.yaml",
        "--rate",
        "12",
        "--horizon",
        "40",
        "--seed",
        "5",
        "--out",
        out,
        "--trace-batches",
        trace,
    )
    assert proc.returncode == 0, proc.stderr
    text = dict(
        line.split(":", 1) for line in proc.stdout.splitlines() if not line.startswith("wrote")
    )
    assert text["scheduler"].strip() == "sarathi"
    assert text["rate"].strip().startswith("12.000 req/s")
    assert text["verdict"].strip() in ("stable", "inconclusive", "unstable")
    for name in ("summary.json", "series.csv", "n_system.png"):
        assert (out / name).stat().st_size > 0
        assert f"wrote {out / name}" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["rate"] == 12.0
    with trace.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 10
    prev_end = 0.0
    prefilled: dict[int, int] = {}  # request -> prompt tokens prefilled so far
    for row in rows:
        start, end = float(row["start_s"]), float(row["end_s"])
        assert prev_end <= start < end
        prev_end = end
        chunks = [tuple(map(int, c.split(":"))) for c in row["prefill_chunks"].split(";") if c]
        decodes = [int(d) for d in row["decode_ids"].split(";") if d]
        prefill = sum(tokens for _, tokens in chunks)
        assert prefill == int(row["prefill_tokens"])
        assert len(decodes) == int(row["decode_tokens"]) == len(set(decodes))
        tokens = int(row["tokens"])
        assert 0 < prefill + len(decodes) == tokens <= 512
        # the paper's staircase: t = 11.28 + 35.47 * ceil(tokens / 128) ms
        assert (end - start) * 1000 == pytest.approx(11.28 + 35.47 * math.ceil(tokens / 128))
        # a request decodes only after its whole prompt, and not in the batch that ends it
        for rid in decodes:
            assert prefilled.get(rid) == 100
        for rid, n in chunks:
            prefilled[rid] = prefilled.get(rid, 0) + n
            assert prefilled[rid] <= 100
    assert sum(n == 100 for n in prefilled.values()) > 10


# ----------------------------------------------------------------------------- compare


def test_compare_json_and_files(tmp_path: Path) -> None:
    doc = ok_json(
        "compare",
        "--schedulers",
        "vllm,sarathi",
        "--loads",
        "0.5,1.4",
        "--horizon",
        "300",
        "--seed",
        "2",
        "--jobs",
        "2",
        "--out",
        tmp_path,
    )
    lam = MU_PAPER / 241
    assert doc["complete"] is True and doc["failures"] == []
    assert doc["capacity"]["lambda_star"] == pytest.approx(lam, rel=1e-3)
    assert doc["settings"]["horizon_s"] == 300 and doc["settings"]["seed"] == 2
    runs = {(r["scheduler"], r["load"]): r for r in doc["runs"]}
    assert sorted(runs) == [("sarathi", 0.5), ("sarathi", 1.4), ("vllm", 0.5), ("vllm", 1.4)]
    for (_, load), r in runs.items():
        assert r["rate"] == pytest.approx(load * lam, rel=1e-3)
        assert r["seed"] == 2
    assert runs[("sarathi", 1.4)]["verdict"] == "unstable"
    assert runs[("vllm", 1.4)]["verdict"] == "unstable"
    with (tmp_path / "compare.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["scheduler"], float(r["load"])) for r in rows] == [
        ("vllm", 0.5),
        ("vllm", 1.4),
        ("sarathi", 0.5),
        ("sarathi", 1.4),
    ]
    assert json.loads((tmp_path / "compare.json").read_text()) == doc
    assert (tmp_path / "n_system.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_text_table(tmp_path: Path) -> None:
    proc = run_cli(
        "compare",
        "--schedulers",
        "orca:whole,fastertransformer",
        "--loads",
        "0.8",
        "--horizon",
        "120",
        "--out",
        tmp_path / "cmp",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 runs, horizon 120 s, jobs 1"
    rows = [line for line in lines if line.startswith(("orca(whole) ", "fastertransformer "))]
    assert len(rows) == 2
    assert rows[0].split()[1:3] == ["0.80", f"{0.8 * MU_PAPER / 241:.2f}"]
    for name in ("compare.csv", "compare.json", "n_system.png"):
        assert f"wrote {tmp_path / 'cmp' / name}" in proc.stdout


def test_compare_ctrl_c_keeps_finished_rows(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "policyopt.cli",
            "compare",
            "--schedulers",
            "fastertransformer,vllm,orca,sarathi",
            "--loads",
            "1.0,1.2",
            "--horizon",
            "20000",
            "--jobs",
            "2",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    csv_path = tmp_path / "compare.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted after" in err
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert 1 <= len(rows) < 8
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["complete"] is False
    assert len(doc["runs"]) == len(rows)


# ----------------------------------------------------------------------------- fit


def test_fit_batch_time_recovers_the_coefficients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "profile.csv"
    lines = ["prefill_tokens,decode_tokens,kv_tokens,time_ms"]
    for i in range(40):
        p, d, kv = (i * 37) % 900, (i * 13) % 120 + 1, (i * 911) % 20000
        noise = 0.01 * ((i * 7) % 5 - 2)
        lines.append(f"{p},{d},{kv},{12 + 0.05 * p + 0.2 * d + 0.001 * kv + noise:.4f}")
    profile.write_text("\n".join(lines) + "\n")
    doc = ok_json("fit-batch-time", profile)
    bt = doc["batch_time"]
    assert bt["kind"] == "affine"
    assert bt["c_ms"] == pytest.approx(12, rel=0.01)
    assert bt["cp_ms"] == pytest.approx(0.05, rel=0.01)
    assert bt["cd_ms"] == pytest.approx(0.2, rel=0.01)
    assert bt["ckv_ms"] == pytest.approx(0.001, rel=0.01)
    assert bt["max_tokens"] == max(
        int(a) + int(b) for a, b, *_ in (x.split(",") for x in lines[1:])
    )
    assert doc["diagnostics"]["r2"] > 0.999
    assert doc["diagnostics"]["rows"] == 40
    # the YAML snippet is a valid engine config
    engine = yaml.safe_load(doc["yaml"])["engine"]
    spec = build(EngineSpec, engine, prefix="engine")
    assert spec.batch_time.cp_ms == pytest.approx(0.05, rel=0.01)

    assert main(["fit-batch-time", str(profile)]) == 0  # the text form, in-process
    out = capsys.readouterr().out
    assert "R^2:" in out and "RMSE:" in out
    snippet = out.split("for the engine config (YAML):\n", 1)[1]
    assert yaml.safe_load(snippet)["engine"]["batch_time"]["kind"] == "affine"


# ----------------------------------------------------------------------------- errors


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _bad_input(case: str, tmp_path: Path) -> list[str | Path]:
    """The command line of one bad-input case, with its files written into ``tmp_path``."""
    cfg = tmp_path / "cfg.yaml"
    if case == "unknown_key":
        return ["capacity", _write(cfg, "engine: {token_budgt: 512}\n")]
    if case == "negative_rate_config":
        return ["simulate", _write(cfg, "workload:\n  arrival: {kind: poisson, rate: -2}\n")]
    if case == "negative_rate_flag":
        return ["simulate", "--rate", "-1"]
    if case == "negative_horizon":
        return ["compare", "--horizon", "-5", "--out", tmp_path / "o"]
    if case == "vllm_long_prompt":
        text = "engine: {token_budget: 512}\nworkload: {max_prompt_len: 1024}\n"
        return ["simulate", _write(cfg, text), "--scheduler", "vllm"]
    if case == "unknown_scheduler":
        return ["simulate", "--scheduler", "fifo"]
    if case == "compare_unknown_scheduler":
        return ["compare", "--schedulers", "orca,fifo", "--out", tmp_path / "o"]
    if case == "compare_vllm_long_prompt":
        text = "engine: {token_budget: 256}\n"
        return ["compare", _write(cfg, text), "--schedulers", "orca,vllm", "--out", tmp_path / "o"]
    if case == "bad_trace_line":
        _write(tmp_path / "trace.csv", "arrival_s,prompt_len,output_len\n0.1,10,5\n0.2,x,5\n")
        return ["simulate", _write(cfg, "workload:\n  arrival: {kind: trace, path: trace.csv}\n")]
    if case == "bad_profile_line":
        text = "prefill_tokens,decode_tokens,time_ms\n10,1,oops\n20,2,5\n30,3,6\n40,1,7\n"
        return ["fit-batch-time", _write(tmp_path / "profile.csv", text)]
    if case == "unknown_scheduler_option":
        return ["simulate", "--scheduler", "orca:sometimes"]
    if case == "unknown_scheduler_key":
        return ["simulate", _write(cfg, "scheduler: {name: orca, chunk: true}\n")]
    if case == "policy_unknown_class":
        text = "classes:\n  chat: {}\n  docs: {}\n"
        return ["simulate", _write(cfg, text), "--policy", "priority:chat>pdfs"]
    if case == "missing_config":
        return ["compare", "nope.yaml", "--out", tmp_path / "o"]
    if case == "region_of_a_network":
        return ["capacity", "rybko-stolyar", "--region"]
    if case == "region_with_budget_sweep":
        return ["capacity", "--region", "--budgets", "128,256"]
    if case == "out_without_region":
        return ["capacity", "--out", tmp_path / "o"]
    assert case == "bad_yaml"
    return ["capacity", _write(tmp_path / "broken.yaml", "engine: [1, 2\n")]


BAD_INPUTS = {
    "unknown_key": ["engine.token_budgt", "unknown key"],
    "negative_rate_config": ["workload.arrival.rate", "-2"],
    "negative_rate_flag": ["workload.arrival.rate", "-1"],
    "negative_horizon": ["run.horizon_s", "-5"],
    "vllm_long_prompt": ["engine.token_budget", "vllm", "1024"],
    "unknown_scheduler": ["scheduler", "fifo"],
    "compare_unknown_scheduler": ["scheduler", "fifo"],
    "compare_vllm_long_prompt": ["engine.token_budget", "vllm", "512"],
    "bad_trace_line": ["workload.arrival.path", "trace.csv line 3"],
    "bad_profile_line": ["profile.csv line 2"],
    "unknown_scheduler_option": ["scheduler", "'sometimes'", "NAME:whole"],
    "unknown_scheduler_key": ["scheduler.chunk", "unknown key"],
    "policy_unknown_class": ["policy", "'pdfs'", "chat, docs"],
    "missing_config": ["nope.yaml", "no such file"],
    "bad_yaml": ["broken.yaml", "line"],
    "region_of_a_network": ["--region", "rybko-stolyar", "give a scenario file"],
    "region_with_budget_sweep": ["--budgets", "drop --budgets"],
    "out_without_region": ["--out", "add --region"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2(
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process (fast); the subprocess test below checks the real streams and exit code."""
    monkeypatch.chdir(tmp_path)
    code = main([str(a) for a in _bad_input(case, tmp_path)])
    captured = capsys.readouterr()
    proc = subprocess.CompletedProcess([], code, captured.out, captured.err)
    assert_one_line_error(proc, *BAD_INPUTS[case])
    assert not (tmp_path / "o").exists()  # nothing written for a bad compare


@pytest.mark.parametrize("case", ["vllm_long_prompt", "bad_trace_line", "region_of_a_network"])
def test_bad_input_in_a_subprocess(case: str, tmp_path: Path) -> None:
    proc = run_cli(*_bad_input(case, tmp_path), cwd=tmp_path)
    assert_one_line_error(proc, *BAD_INPUTS[case])
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_cli("compare", "--loads", "0.5,x")
    assert proc.returncode == 2
    assert "argument --loads" in proc.stderr and "'x' is not a number" in proc.stderr
    assert main(["simulate", "--rate", "3", "--load", "0.5"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["compare", "--jobs", "-1"]) == 2
    assert "argument --jobs" in capsys.readouterr().err


# ----------------------------------------------------------------------------- examples, README


def test_readme_commands_name_files_that_exist() -> None:
    """Every file a README command line names is shipped (examples/...)."""
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("policyopt ")]
    assert commands
    named = [
        word
        for line in commands
        for word in line.split("#", 1)[0].split()
        if word.endswith((".yaml", ".yml", ".toml", ".csv"))
    ]
    assert "examples/scenario.yaml" in named and "examples/profile.csv" in named
    for name in named:
        assert (ROOT / name).is_file(), name


def test_readme_scenario_is_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    example = (ROOT / "examples" / "scenario.yaml").read_text()
    assert yaml.safe_load(block) == yaml.safe_load(example)


def test_the_readme_example_commands_run(capsys: pytest.CaptureFixture[str]) -> None:
    doc = ok_json("simulate", ROOT / "examples" / "scenario.yaml", "--horizon", "300")
    assert doc["scheduler"] == "sarathi" and doc["rate"] == 12.0
    assert main(["fit-batch-time", str(ROOT / "examples" / "profile.csv")]) == 0
    out = capsys.readouterr().out
    assert float(out.split("R^2:", 1)[1].split()[0]) > 0.999


def test_compare_help_gives_both_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "loads 0.6,0.8,0.9,0.95,1.05,1.1 (multiples of lambda*)" in out
    assert "one load, 0.9 (multiples of theta*)" in out
    assert "--overwrite" in out and "--force" in out and "compare-2" in out


# ----------------------------------------------------------------------------- result folders


def _compare(*args: str) -> list[str]:
    return ["compare", "--schedulers", "orca", "--loads", "0.5", "--horizon", "60", *args]


def test_a_second_compare_goes_to_a_new_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "policyopt-results" / "compare"
    assert main(_compare("--no-progress")) == 0
    out = capsys.readouterr().out
    assert "results go to" not in out
    before = (first / "compare.json").read_bytes()
    assert main(_compare("--no-progress", "--seed", "3")) == 0
    out = capsys.readouterr().out
    second = tmp_path / "policyopt-results" / "compare-2"
    assert out.startswith(f"results go to {Path('policyopt-results/compare-2')}: ")
    assert (first / "compare.json").read_bytes() == before  # the first run's results are kept
    assert json.loads((second / "compare.json").read_text())["settings"]["seed"] == 3
    assert main(_compare("--no-progress", "--json")) == 0  # the note goes to stderr with --json
    captured = capsys.readouterr()
    assert json.loads(captured.out)["complete"] is True
    assert "results go to" in captured.err and "compare-3" in captured.err


def test_an_out_folder_with_results_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert main(_compare("--no-progress", "--out", str(out))) == 0
    capsys.readouterr()
    assert main(_compare("--no-progress", "--out", str(out), "--seed", "4")) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--overwrite" in err
    assert json.loads((out / "compare.json").read_text())["settings"]["seed"] == 0
    assert main(_compare("--no-progress", "--out", str(out), "--seed", "4", "--overwrite")) == 0
    assert json.loads((out / "compare.json").read_text())["settings"]["seed"] == 4
    other = tmp_path / "other"  # a folder with other files is fine
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(_compare("--no-progress", "--out", str(other))) == 0
    assert (other / "notes.txt").read_text() == "mine"


def test_simulate_out_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["simulate", "--horizon", "30", "--out", str(out)]
    assert main(args) == 0
    assert main([*args, "--seed", "2"]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["seed"] == 0
    assert main([*args, "--seed", "2", "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["seed"] == 2


def test_force_runs_past_the_request_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import policyopt.sim.run as run

    monkeypatch.setattr(run, "MAX_REQUESTS", 100)
    assert main(["simulate", "--horizon", "30", "--json"]) == 2
    err = capsys.readouterr().err
    assert "expected requests: rate 10 requests/s x horizon 30 s = about 300 requests" in err
    assert main(["simulate", "--horizon", "30", "--json", "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["horizon"] == 30
