"""The Ray backend of the sweep runner: the same numbers as the local one, failures kept, and
an address that is not a Ray cluster refused within seconds.

The tests start one small local Ray instance for the module (2 CPUs, no dashboard) and shut
it down at the end; the runs find it initialized and use it. Ray is in the ``test`` extra;
without it these tests are skipped (and only these).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip(
    "ray", reason='Ray is not installed (pip install "policyopt[ray]"; the test extra has it)'
)

from policyopt.cli import main  # noqa: E402
from policyopt.compare import run_sweep  # noqa: E402
from policyopt.grid import Cell, run_cell  # noqa: E402
from policyopt.model import RunSpec, Scenario  # noqa: E402
from policyopt.sweep import Backend, run_all  # noqa: E402
from tests.helpers import assert_one_line_error  # noqa: E402
from tests.test_boundary import _cli  # noqa: E402
from tests.test_sweep_grid import SPEC  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance of 2 CPUs for the module's tests."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield
    finally:
        ray.shutdown()


def test_a_sweep_on_ray_writes_the_local_file(local_ray: None, tmp_path: Path) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(SPEC.replace("seeds: [0, 1]", "seeds: [0]"))
    common = ["sweep", str(spec), "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    local = (tmp_path / "local" / "sweep.csv").read_text()
    assert local == (tmp_path / "ray" / "sweep.csv").read_text()
    assert len(local.splitlines()) == 7
    assert ray.is_initialized()  # the module's instance, not closed by the sweep


def test_compare_on_ray_gives_the_same_results(local_ray: None) -> None:
    base = Scenario(run=RunSpec(horizon_s=200.0, seed=3))
    kwargs = {"schedulers": ["vllm", "orca"], "loads": [0.8, 1.2], "progress": False}
    here = run_sweep(base, **kwargs)
    there = run_sweep(base, backend=Backend("ray", 2), **kwargs)
    assert there.complete and not there.failures
    assert [r.summary() for r in here.results] == [r.summary() for r in there.results]


def test_evaluate_on_ray_and_in_processes_gives_the_same_numbers(local_ray: None) -> None:
    """policyopt evaluate's runs, sent by name to two local processes and to Ray, give the
    numbers of the runs made one after the other here."""
    from policyopt.learn.evaluate import evaluate

    kwargs: dict = {"policies": ["max-pressure", "pr", "fcfs"], "seeds": (0, 1), "horizon": 150.0}

    def rows(backend: Backend | None) -> list[dict]:
        ev = evaluate("rybko-stolyar", backend=backend, **kwargs)
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in ev.runs]

    here = rows(None)
    assert len(here) == 6
    assert rows(Backend("local", 2)) == here
    assert rows(Backend("ray", 2)) == here


def test_benchmark_on_ray_gives_the_local_numbers(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from policyopt.cli import main

    argv = ["benchmark", "criss-cross-bh", "--policies", "c-mu,fcfs", "--replications", "2"]
    argv += ["--horizon", "2000", "--no-progress", "--json"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    here = json.loads(capsys.readouterr().out)
    assert main([*argv, "--backend", "ray", "--jobs", "2", "--out", str(tmp_path / "b")]) == 0
    there = json.loads(capsys.readouterr().out)
    assert [c["mean_jobs"] for c in there["cells"]] == [c["mean_jobs"] for c in here["cells"]]


def test_a_failing_run_is_recorded_and_the_others_go_on(local_ray: None) -> None:
    good = Cell("default", 0.5, "sarathi", 0, 100.0, 13.87, scenario=Scenario())
    bad = Cell("broken", 0.5, "sarathi", 0, 100.0, 13.87)  # neither a scenario nor a network
    outcome = run_all([good, bad], run_cell, backend=Backend("ray", 2), progress=False)
    assert outcome.complete and list(outcome.results) == [0] and list(outcome.errors) == [1]
    assert outcome.errors[1].startswith("AssertionError") and "\n" not in outcome.errors[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port on localhost that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_address_that_is_no_ray_cluster_fails_within_seconds(
    tmp_path: Path, silent_server: int, kind: str
) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text("configs: [default]\nloads: [0.5]\nhorizon_s: 100\n")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    port = closed if kind == "refused" else silent_server
    start = time.monotonic()
    out = tmp_path / "out"
    proc = _cli(
        "sweep", spec, "--backend", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", out
    )
    assert time.monotonic() - start < 30
    assert_one_line_error(proc, "--ray-address", f"127.0.0.1:{port}")
    assert not out.exists()
