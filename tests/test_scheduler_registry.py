"""Adding a scheduler is one module and one registry line: a toy scheduler registered here
runs in ``simulate``, on the command line and inside a network, and the two simulators agree
on it as they do on the built-in ones."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal

import pytest

from policyopt.cli import main
from policyopt.errors import SpecError
from policyopt.model import Scenario, build
from policyopt.model.network import NetworkSpec
from policyopt.model.scheduler import SchedulerSpec, scheduler_spec
from policyopt.sim import simulate
from policyopt.sim.network_sim import simulate_network
from policyopt.sim.schedulers import (
    SCHEDULERS,
    BatchPlan,
    Queues,
    Scheduler,
    fill_decode,
    fill_prefill,
    make_scheduler,
    register_scheduler,
    unregister_scheduler,
)
from tests.test_engine_crosscheck import departures, network_batches, run_both


class HalfPrefillSpec(SchedulerSpec):
    """Decode first; prefill chunks take at most ``share`` of the budget."""

    name: Literal["half-prefill"] = "half-prefill"
    share: float = 0.5
    decode_first: ClassVar[bool] = True
    mixes: ClassVar[bool] = True

    @property
    def chunks(self) -> bool:
        return True


class HalfPrefill(Scheduler):
    def fill(self, q: Queues, order: Sequence[int], b: int, k: int, plan: BatchPlan) -> None:
        m = fill_decode(q, order, b, k, plan)
        cap = max(1, int(b * self.spec.share))  # type: ignore[attr-defined]
        fill_prefill(q, order, min(b - m, cap), k - m, True, plan)


@pytest.fixture
def toy() -> Iterator[None]:
    register_scheduler(HalfPrefillSpec, HalfPrefill)
    yield
    unregister_scheduler("half-prefill")


def test_toy_runs_in_simulate(toy: None) -> None:
    sc = Scenario(
        scheduler="half-prefill",
        workload={"arrival": {"kind": "poisson", "rate": 4.0}},
        run={"horizon_s": 200, "seed": 1},
    )
    assert isinstance(make_scheduler(sc.scheduler), HalfPrefill)
    res = simulate(sc, record_batches=True)
    assert res.scheduler == "half-prefill" and res.completed > 500
    b = sc.engine.token_budget
    for rec in res.batch_records:
        assert rec.tokens <= b
        assert sum(c for _, c in rec.prefill) <= b // 2
    # half the budget never goes to prefill while prompts wait: not work-conserving
    assert res.non_work_conserving_share > 0


def test_toy_options_are_validated(toy: None) -> None:
    assert scheduler_spec({"name": "half-prefill", "share": 0.25}).share == 0.25  # type: ignore[attr-defined]
    with pytest.raises(SpecError) as err:
        build(Scenario, {"scheduler": {"name": "half-prefill", "chunked": True}})
    assert err.value.field == "scheduler.chunked" and err.value.problem == "unknown key"
    with pytest.raises(SpecError) as err:
        build(Scenario, {"scheduler": "half-prefill:whole"})
    assert err.value.field == "scheduler" and "takes no option" in err.value.problem


def test_toy_runs_inside_a_network(toy: None) -> None:
    net = build(
        NetworkSpec,
        {
            "engines": {"e": {"token_budget": 256, "scheduler": {"name": "half-prefill"}}},
            "classes": {
                "a": {"engine": "e", "prompt": {"kind": "constant", "value": 64}},
                "b": {"engine": "e", "prompt": {"kind": "constant", "value": 200}},
            },
            "workflows": [
                {
                    "name": "w",
                    "arrival": {"kind": "poisson", "rate": 3.0},
                    "entry": "a",
                    "after": {"a": "b", "b": "exit"},
                }
            ],
        },
    )
    res = simulate_network(net, "priority:b>a", horizon=1000.0, seed=2)
    assert res.verdict == "stable"
    assert res.workflows["w"]["throughput"] == pytest.approx(3.0, rel=0.15)


def test_toy_on_the_command_line(toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--scheduler", "half-prefill", "--load", "0.5", "--horizon", "60"])
    assert code == 0
    assert "half-prefill" in capsys.readouterr().out


def test_simulators_agree_on_the_toy(toy: None) -> None:
    case = {
        "scheduler": "half-prefill",
        "budget": 10,
        "max_seqs": 4,
        "batch_time": {"kind": "staircase", "c_ms": 11.28, "a_ms": 35.47, "b0": 8},
        "arrivals": [0.0, 0.0, 0.01, 0.02, 0.3, 0.3, 0.31],
        "prompts": [7, 13, 2, 25, 1, 4, 9],
        "outputs": [3, 1, 6, 2, 5, 1, 2],
    }
    single, net = run_both(case, coalesce=False)
    assert network_batches(net) == [(b.start, b.end, b.prefill, b.decode) for b in single.batches]
    assert departures(net) == single.w_fin


def test_unregistered_toy_is_refused() -> None:
    assert "half-prefill" not in SCHEDULERS
    with pytest.raises(SpecError) as err:
        build(Scenario, {"scheduler": "half-prefill"})
    assert err.value.field == "scheduler.name" and "sarathi" in err.value.problem
