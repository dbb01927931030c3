"""The network specification: format, topology, validation rules, library (``docs/networks.md``)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from policyopt.errors import SpecError
from policyopt.model import NETWORKS, NetworkSpec, build, get_network, load_network
from policyopt.model.network import EXIT, JOIN, spectral_radius
from policyopt.model.networks_library import resolve_network

ROOT = Path(__file__).resolve().parent.parent


def fork_join_dict() -> dict[str, Any]:
    """A small valid network: an LLM fork-join workflow and a station workflow."""
    return {
        "name": "test",
        "engines": {
            "main": {"kind": "llm", "token_budget": 512},
            "tools": {"token_budget": 1024, "scheduler": "vllm"},
            "desk": {"kind": "station"},
        },
        "classes": {
            "planner": {"engine": "main", "holding_cost": 2.0},
            "search": {"engine": "tools", "prompt": {"kind": "constant", "value": 300}},
            "read": {"engines": ["main", "tools"], "routing": "round_robin"},
            "code": {"engines": ["main", "tools"]},
            "summary": {"engine": "main"},
            "clerk": {"engine": "desk", "service": {"kind": "deterministic", "mean": 0.5}},
        },
        "workflows": [
            {
                "name": "research",
                "arrival": {"kind": "poisson", "rate": 1.0},
                "entry": "planner",
                "after": {
                    "planner": {"fork": ["search", "code"], "join": "summary"},
                    "search": "read",
                    "read": "join",
                    "code": {"random": {"code": 0.25, "join": 0.75}},
                    "summary": "exit",
                },
            },
            {
                "name": "paperwork",
                "arrival": {"kind": "deterministic", "rate": 0.5},
                "entry": "clerk",
                "after": {"clerk": "exit"},
            },
        ],
    }


def chain(*after: tuple[str, Any], engines: int = 1) -> dict[str, Any]:
    """A one-workflow station network whose ``after`` is given; classes are the keys."""
    names = [k for k, _ in after]
    return {
        "engines": {f"s{i}": {"kind": "station"} for i in range(engines)},
        "classes": {c: {"engine": "s0", "service": {"mean": 0.1}} for c in names},
        "workflows": [
            {
                "name": "w",
                "arrival": {"kind": "poisson", "rate": 1.0},
                "entry": names[0],
                "after": dict(after),
            }
        ],
    }


def refused(data: dict[str, Any], field: str, *words: str) -> SpecError:
    """Building ``data`` fails with a SpecError on ``field`` whose text has ``words``."""
    with pytest.raises(SpecError) as info:
        build(NetworkSpec, data)
    err = info.value
    assert err.field == field, str(err)
    for w in words:
        assert w in str(err), str(err)
    assert err.fix, f"no fix given: {err}"
    return err


# --------------------------------------------------------------------------------------------
# format and topology


def test_valid_network_topology() -> None:
    net = build(NetworkSpec, fork_join_dict())
    topo = net.topology
    idx = {c: k for k, c in enumerate(topo.classes)}
    assert topo.classes == ("planner", "search", "read", "code", "summary", "clerk")
    assert topo.engines == ("main", "tools", "desk")
    assert topo.engine_kind == ("llm", "llm", "station")
    fork = topo.steps[idx["planner"]]
    assert fork.kind == "fork"
    assert fork.targets == (idx["search"], idx["code"]) and fork.join_class == idx["summary"]
    assert topo.steps[idx["search"]].targets == (idx["read"],)
    assert topo.steps[idx["read"]].targets == (JOIN,)
    assert topo.steps[idx["code"]].kind == "random"
    assert topo.steps[idx["code"]].targets == (idx["code"], JOIN)
    assert topo.steps[idx["summary"]].targets == (EXIT,)
    # fork context: branch classes sit inside the fork after planner
    assert topo.forks[idx["read"]] == (idx["planner"],)
    assert topo.forks[idx["summary"]] == ()
    assert topo.eligible[idx["code"]] == (0, 1)
    assert topo.routing[idx["code"]] == "jsq" and topo.routing[idx["read"]] == "round_robin"
    assert topo.routing[idx["planner"]] == "fixed"
    assert topo.alpha[idx["planner"]] == 1.0 and topo.alpha[idx["clerk"]] == 0.5
    assert topo.work[idx["clerk"]] == 0.5
    assert topo.work[idx["search"]] == pytest.approx(300 + 112)
    assert topo.holding_cost[idx["planner"]] == 2.0
    edges = {(src, dst): w for src, dst, w in topo.edges}
    assert edges[(idx["planner"], idx["search"])] == 1.0
    assert edges[(idx["read"], idx["summary"])] == 0.5  # one of two branches
    assert edges[(idx["code"], idx["summary"])] == pytest.approx(0.75 / 2)
    assert edges[(idx["code"], idx["code"])] == 0.25
    assert net.class_kind("clerk") == "station" and net.mean_work("clerk") == 0.5


def test_yaml_and_toml_files_agree(tmp_path: Path) -> None:
    data = fork_join_dict()
    ypath = tmp_path / "net.yaml"
    ypath.write_text(yaml.safe_dump(data, sort_keys=False))
    toml = """
name = "test"
[engines.main]
kind = "llm"
token_budget = 512
[engines.tools]
token_budget = 1024
scheduler = "vllm"
[engines.desk]
kind = "station"
[classes.planner]
engine = "main"
holding_cost = 2.0
[classes.search]
engine = "tools"
prompt = {kind = "constant", value = 300}
[classes.read]
engines = ["main", "tools"]
routing = "round_robin"
[classes.code]
engines = ["main", "tools"]
[classes.summary]
engine = "main"
[classes.clerk]
engine = "desk"
service = {kind = "deterministic", mean = 0.5}
[[workflows]]
name = "research"
arrival = {kind = "poisson", rate = 1.0}
entry = "planner"
[workflows.after]
planner = {fork = ["search", "code"], join = "summary"}
search = "read"
read = "join"
code = {random = {code = 0.25, join = 0.75}}
summary = "exit"
[[workflows]]
name = "paperwork"
arrival = {kind = "deterministic", rate = 0.5}
entry = "clerk"
after = {clerk = "exit"}
"""
    tpath = tmp_path / "net.toml"
    tpath.write_text(toml)
    assert load_network(ypath) == load_network(tpath) == build(NetworkSpec, data)
    assert resolve_network(str(ypath)) == load_network(ypath)


def test_scaled_and_with_rates() -> None:
    net = build(NetworkSpec, fork_join_dict())
    double = net.scaled(2.0)
    assert double.workflow_rates() == {"research": 2.0, "paperwork": 1.0}
    assert double.topology.alpha[0] == 2.0  # the topology is rebuilt, not copied
    assert net.with_rates({"paperwork": 0.1}).workflow_rates()["paperwork"] == 0.1
    with pytest.raises(SpecError, match="no workflow named"):
        net.with_rates({"nope": 1.0})


def test_nested_forks_and_duplicate_branches() -> None:
    data = chain(
        ("a", {"fork": ["b", "b", "c"], "join": "z"}),
        ("b", "join"),
        ("c", {"fork": ["d", "e"], "join": "f"}),
        ("d", "join"),
        ("e", "join"),
        ("f", "join"),
        ("z", "exit"),
    )
    topo = build(NetworkSpec, data).topology
    idx = {c: k for k, c in enumerate(topo.classes)}
    assert topo.forks[idx["d"]] == (idx["a"], idx["c"])
    assert topo.forks[idx["f"]] == (idx["a"],)
    edges = {(src, dst): w for src, dst, w in topo.edges}
    assert edges[(idx["a"], idx["b"])] == 2.0  # the branch class runs twice per fork
    assert edges[(idx["b"], idx["z"])] == pytest.approx(1 / 3)
    assert edges[(idx["d"], idx["f"])] == 0.5


# --------------------------------------------------------------------------------------------
# validation: one test per rule


def test_unknown_engine_reference() -> None:
    data = fork_join_dict()
    data["classes"]["planner"]["engine"] = "gpu9"
    refused(data, "classes.planner.engine", "unknown engine 'gpu9'", "main, tools, desk")
    data = fork_join_dict()
    data["classes"]["code"]["engines"] = ["main", "gpu9"]
    refused(data, "classes.code.engines", "unknown engine 'gpu9'")


def test_unknown_class_reference() -> None:
    data = fork_join_dict()
    data["workflows"][0]["after"]["search"] = "reed"
    refused(data, "workflows.0.after.search", "unknown class 'reed'")
    data = fork_join_dict()
    data["workflows"][0]["entry"] = "boss"
    refused(data, "workflows.0.entry", "unknown class 'boss'")
    data = fork_join_dict()
    data["workflows"][0]["after"]["planner"]["join"] = "summry"
    refused(data, "workflows.0.after.planner", "unknown class 'summry'")
    data = fork_join_dict()
    data["workflows"][0]["after"]["code"] = {"random": {"join": 0.75, "cod": 0.25}}
    refused(data, "workflows.0.after.code.random", "unknown class 'cod'")


def test_routing_that_never_lets_jobs_leave_names_the_cycle() -> None:
    data = chain(("a", "b"), ("b", "c"), ("c", "b"))
    err = refused(data, "workflows.0.after", "b -> c -> b", "multiply to 1")
    assert "spectral radius 1" in str(err)
    # no cycle of probability 1, but a closed set: every job stays among b, c, d
    data = chain(("a", "b"), ("b", {"random": {"c": 0.5, "d": 0.5}}), ("c", "b"), ("d", "b"))
    err = refused(data, "workflows.0.after", "classes b, c, d", "never lets jobs leave")
    assert re.search(r"cycle b -> [cd] -> b", str(err))
    # a leak makes the same loop transient
    data = chain(
        ("a", "b"), ("b", {"random": {"c": 0.5, "d": 0.4, "exit": 0.1}}), ("c", "b"), ("d", "b")
    )
    assert build(NetworkSpec, data).topology.n_classes == 4


def test_join_without_its_fork() -> None:
    data = chain(("a", "b"), ("b", "join"))
    refused(data, "workflows.0.after.b", "not inside a fork branch", "join without its fork")
    data = chain(("a", {"random": {"exit": 0.5, "join": 0.5}}))
    refused(data, "workflows.0.after.a", "join without its fork")


def test_fork_branch_that_never_reaches_join() -> None:
    data = chain(
        ("a", {"fork": ["b", "c"], "join": "z"}),
        ("b", "join"),
        ("c", "d"),
        ("d", "c"),
        ("z", "exit"),
    )
    refused(data, "workflows.0.after.a.fork", "branch 'c' never reaches join", "'z'")
    # a branch that leaves the network instead of joining
    data = chain(
        ("a", {"fork": ["b", "c"], "join": "z"}), ("b", "join"), ("c", "exit"), ("z", "exit")
    )
    refused(data, "workflows.0.after.c", "inside a branch of the fork after 'a'", "exit")


def test_probabilities_must_sum_to_one() -> None:
    data = chain(("a", {"random": {"b": 0.3, "exit": 0.6}}), ("b", "exit"))
    refused(data, "workflows.0.after.a.random", "sum to 0.9, not 1")
    data = chain(("a", {"random": {"b": 0.5 + 1e-12, "exit": 0.5}}), ("b", "exit"))
    assert build(NetworkSpec, data).topology.steps[0].probs[0] == pytest.approx(0.5)
    data = chain(("a", {"random": {"b": 1.5, "exit": -0.5}}), ("b", "exit"))
    refused(data, "workflows.0.after.a.random.b", "not in [0, 1]")


def test_prompt_that_can_never_fit_its_engine() -> None:
    data = fork_join_dict()
    data["engines"]["tools"]["token_budget"] = 256  # vllm cannot chunk; prompts reach 300+
    err = refused(data, "classes.search.prompt", "engine 'tools'", "'vllm' cannot chunk")
    assert "engines.tools.token_budget to >= 300" in str(err)
    # the same budget with a chunking scheduler is fine
    data["engines"]["tools"]["scheduler"] = "sarathi"
    build(NetworkSpec, data)
    # a class eligible at two engines must fit both
    data = fork_join_dict()
    data["engines"]["main"]["scheduler"] = "fastertransformer"
    data["engines"]["main"]["token_budget"] = 128
    refused(data, "classes.planner.prompt", "engine 'main'", "512 tokens")


def test_empty_network() -> None:
    data = fork_join_dict()
    data["workflows"] = []
    refused(data, "workflows", "no workflows")
    data = fork_join_dict()
    del data["classes"]
    refused(data, "classes", "no classes")
    refused({}, "engines", "no engines")


def test_unknown_key_anywhere() -> None:
    spots: list[tuple[list[Any], str]] = [
        ([], "colour"),
        (["engines", "main"], "speed"),
        (["engines", "desk"], "token_budget"),
        (["classes", "planner"], "priority"),
        (["classes", "clerk", "service"], "sd"),
        (["workflows", 0], "deadline"),
        (["workflows", 0, "arrival"], "burst"),
        (["workflows", 0, "after", "planner"], "timeout"),
        (["workflows", 0, "after", "code"], "seed"),
    ]
    for path, key in spots:
        data = copy.deepcopy(fork_join_dict())
        node: Any = data
        for p in path:
            node = node[p]
        node[key] = 1
        with pytest.raises(SpecError, match="unknown key") as info:
            build(NetworkSpec, data)
        expected = ".".join(str(p) for p in [*path, key])
        assert info.value.field == expected


def test_other_reference_rules() -> None:
    # a class shared by two workflows
    data = fork_join_dict()
    data["workflows"][1]["after"] = {"clerk": "summary"}
    refused(data, "workflows.1.after", "used by workflows 'research' and 'paperwork'")
    # a class both inside and outside a fork
    data = chain(("a", {"fork": ["b", "c"], "join": "z"}), ("b", "join"), ("c", "join"), ("z", "b"))
    refused(data, "workflows.0.after.b", "inside the fork after 'a'", "outside any fork")
    # a class no workflow reaches, and an after entry never reached
    data = chain(("a", "exit"))
    data["classes"]["b"] = {"engine": "s0", "service": {"mean": 1.0}}
    refused(data, "classes.b", "no workflow reaches")
    data["workflows"][0]["after"]["b"] = "exit"
    refused(data, "workflows.0.after.b", "never reached from the entry 'a'")
    # a reached class without an after entry
    refused(
        chain(("a", "b"))
        | {"classes": {c: {"engine": "s0", "service": {"mean": 1}} for c in "ab"}},
        "workflows.0.after",
        "no entry for class 'b'",
    )
    # kinds: a station class needs a service time; an LLM class must not have one
    data = fork_join_dict()
    del data["classes"]["clerk"]["service"]
    refused(data, "classes.clerk.service", "needs a service time")
    data = fork_join_dict()
    data["classes"]["planner"]["service"] = {"mean": 1.0}
    refused(data, "classes.planner.service", "token lengths, not a service time")
    data = fork_join_dict()
    data["classes"]["read"]["engines"] = ["main", "desk"]
    refused(data, "classes.read.engines", "mixes LLM engines and stations")
    # reserved names, one-branch forks, unknown engine kinds
    data = chain(("exit", "exit"))
    refused(data, "classes.exit", "reserved")
    data = chain(("a", {"fork": ["b"], "join": "z"}), ("b", "join"), ("z", "exit"))
    refused(data, "workflows.0.after.a.fork", "two or more branches")
    data = fork_join_dict()
    data["engines"]["desk"]["kind"] = "gpu"
    refused(data, "engines.desk.kind", "unknown engine kind")


def test_spectral_radius_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(2, 12))
        mat = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
        rho, _ = spectral_radius(mat)
        assert rho == pytest.approx(float(np.max(np.abs(np.linalg.eigvals(mat)))), abs=1e-9)


# --------------------------------------------------------------------------------------------
# library


def test_every_library_network_builds() -> None:
    for name, description in NETWORKS:
        assert description
        concrete = name.replace("-K", "-3").replace("-L", "-3").replace("-R", "-im")
        net = get_network(concrete)
        assert isinstance(net, NetworkSpec) and net.topology.n_classes >= 1
        assert net.name == concrete
    assert get_network("replicated-4").topology.n_engines == 4
    assert get_network("reentrant-5").topology.n_classes == 15
    assert get_network("Criss-Cross") == get_network("criss-cross") == get_network("criss-cross-BH")
    with pytest.raises(SpecError, match="no load regime 'xx'"):
        get_network("criss-cross-xx")
    with pytest.raises(SpecError, match="no network named 'criss'"):
        get_network("criss")
    with pytest.raises(SpecError, match=r"outside 1\.\.256"):
        get_network("replicated-0")


def test_reentrant_line_structure() -> None:
    topo = get_network("reentrant-3").topology
    # route c1 -> c4 -> c7 -> c2 -> c5 -> c8 -> c3 -> c6 -> c9 -> exit
    route = [0]
    while topo.steps[route[-1]].targets[0] != EXIT:
        route.append(topo.steps[route[-1]].targets[0])
    assert [topo.classes[k] for k in route] == [f"c{i}" for i in (1, 4, 7, 2, 5, 8, 3, 6, 9)]
    assert [topo.engines[topo.eligible[k][0]] for k in route] == ["s1", "s2", "s3"] * 3


def test_docs_network_examples_load(tmp_path: Path) -> None:
    """Every ``yaml fragment network`` / ``toml fragment network`` block of docs/networks.md."""
    text = (ROOT / "docs" / "networks.md").read_text()
    blocks = re.findall(r"^```(yaml|toml) fragment network\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) >= 3
    for i, (lang, body) in enumerate(blocks):
        path = tmp_path / f"example{i}.{lang}"
        path.write_text(body)
        assert load_network(path).topology.n_classes >= 1
