"""A library of named networks: agent networks on LLM engines and classic benchmarks.

``get_network(name)`` returns a validated :class:`~policyopt.model.network.NetworkSpec`;
``NETWORKS`` lists ``(name, one-line description)``; names ending in ``-K`` or ``-L`` take a
whole number (``replicated-4``, ``reentrant-3``). ``resolve_network(value)`` accepts a library
name or the path of a YAML/TOML network file. Parameters, loads and sources are written out in
``docs/networks.md``.

The LLM networks use the default engine (token budget 512, the paper's CodeLlama-34B/A100
staircase, Sarathi-Serve): its token capacity is ``mu = 512 / t(512) = 512 / 0.15316 s``,
about 3342.9 tokens/s. Their arrival rates are set from ``mu`` so that the most loaded engine
runs at nominal load 0.9 (the solvers recompute the loads; the tests check them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from policyopt.errors import SpecError
from policyopt.model.config import build
from policyopt.model.network import LLMEngine, NetworkSpec, load_network

NOMINAL_LOAD = 0.9
"""Nominal load of the most loaded engine in the LLM networks of the library."""

NETWORKS: list[tuple[str, str]] = [
    (
        "rybko-stolyar",
        "two LLM engines, two agent types (short task then long task on the other engine): "
        "load 0.9 per engine, exit priority unstable (virtual station 1.4)",
    ),
    ("fork-join", "a planner fans out to three tool agents, a summarizer joins; load 0.9"),
    ("replicated-K", "K identical LLM engines behind join-shortest-queue (e.g. replicated-4)"),
    ("pipeline-3", "a three-stage agent pipeline whose stages share one LLM engine; load 0.9"),
    ("criss-cross", "classic criss-cross network, 2 stations, 3 classes (Dai & Gluzman BH case)"),
    (
        "criss-cross-R",
        "the criss-cross network at Dai & Gluzman's load regime R: il, bl, im, bm, ih, bh "
        "(e.g. criss-cross-im)",
    ),
    (
        "classic-rybko-stolyar",
        "classic Rybko-Stolyar network, 2 stations, 4 classes: loads 0.7, virtual station 1.2",
    ),
    ("lu-kumar", "classic Lu-Kumar re-entrant network, 2 stations, 4 classes: loads 0.7"),
    (
        "reentrant-L",
        "Dai & Gluzman re-entrant line: L stations, 3L classes, load 0.9 (e.g. reentrant-2)",
    ),
    (
        "extended-six-class-L",
        "Dai & Gluzman extended six-class network: L stations, 3L classes, two streams, load 0.9",
    ),
]


def _llm_mu(engine: LLMEngine) -> float:
    """``mu = max_{n <= b} n / t(n)`` tokens/s of ``engine`` (to set the library's rates).

    :meth:`policyopt.model.engine.EngineSpec.token_capacity`, the one implementation the solvers
    use as well.
    """
    return engine.engine_spec().token_capacity()[0]


def _const(tokens: int) -> dict[str, Any]:
    return {"kind": "constant", "value": tokens}


def _lognormal(mean: float, sigma: float = 0.6) -> dict[str, Any]:
    return {"kind": "lognormal", "mean": mean, "sigma": sigma}


def _poisson(rate: float) -> dict[str, Any]:
    return {"kind": "poisson", "rate": rate}


def rybko_stolyar() -> NetworkSpec:
    """The Rybko–Stolyar-type agent network (the paper's §5.4).

    Two LLM engines ``e1``, ``e2`` (default engine, ``mu`` ~ 3342.9 tokens/s each). Agent type A
    does a short task ``A1`` at ``e1`` (128 prompt + 32 output tokens = 160) and then a long task
    ``A2`` at ``e2`` (480 + 80 = 560 tokens), then leaves; type B is the mirror image (``B1``
    short at ``e2``, ``B2`` long at ``e1``). Lengths are constant, so the loads are exact. Both
    types arrive as Poisson streams at ``lambda = 0.9 mu / 720`` requests/s (~4.18/s), so each
    engine's nominal load is ``lambda (160 + 560) / mu = 0.9``.

    Exit priority gives each engine's priority to the class that leaves the network through it
    (``B2`` at ``e1``, ``A2`` at ``e2``). Then the two long classes are never served at the same
    time (while ``e1`` works on ``B2``, it starves ``A1``, which is what feeds ``A2``), so they
    form a virtual station with load ``rho_A2 + rho_B2 = 2 * 0.9 * 560 / 720 = 1.4 > 1``: the
    network is unstable although every engine is at 0.9. The reversed priority (short tasks
    first) is stable (``docs/networks.md``, "The Rybko–Stolyar agent network and its virtual
    station").
    """
    mu = _llm_mu(LLMEngine())
    rate = NOMINAL_LOAD * mu / (160 + 560)
    short = {"prompt": _const(128), "output": _const(32)}
    long = {"prompt": _const(480), "output": _const(80)}
    return build(
        NetworkSpec,
        {
            "name": "rybko-stolyar",
            "description": rybko_stolyar.__doc__.splitlines()[0] if rybko_stolyar.__doc__ else "",
            "engines": {"e1": {"kind": "llm"}, "e2": {"kind": "llm"}},
            "classes": {
                "A1": {"engine": "e1", **short},
                "A2": {"engine": "e2", **long},
                "B1": {"engine": "e2", **short},
                "B2": {"engine": "e1", **long},
            },
            "workflows": [
                {
                    "name": "type-A",
                    "arrival": _poisson(rate),
                    "entry": "A1",
                    "after": {"A1": "A2", "A2": "exit"},
                },
                {
                    "name": "type-B",
                    "arrival": _poisson(rate),
                    "entry": "B1",
                    "after": {"B1": "B2", "B2": "exit"},
                },
            ],
        },
    )


FORK_JOIN_TOKENS = {
    # class: (engine, mean prompt, mean output)
    "planner": ("orchestrator", 256, 128),
    "search": ("tools", 384, 64),
    "code": ("tools", 256, 192),
    "math": ("tools", 128, 96),
    "summarizer": ("orchestrator", 768, 160),
}


def fork_join() -> NetworkSpec:
    """A planner fans out to three tool agents in parallel; a summarizer joins their results.

    Engines: ``orchestrator`` (planner and summarizer) and ``tools`` (the three tool agents),
    both the default LLM engine. Lengths are lognormal (``sigma = 0.6``) with means (prompt +
    output tokens): planner 256 + 128, search 384 + 64, code 256 + 192, math 128 + 96,
    summarizer 768 + 160, prompts up to 2048 tokens. Per request the orchestrator does 1312
    tokens and the tools engine 1120, so the orchestrator is the bottleneck; the arrival rate
    ``0.9 mu / 1312`` (~2.29 requests/s) puts it at load 0.9 (tools at ~0.768).
    """
    mu = _llm_mu(LLMEngine())
    per_engine: dict[str, float] = {}
    for eng, p, d in FORK_JOIN_TOKENS.values():
        per_engine[eng] = per_engine.get(eng, 0.0) + p + d
    rate = NOMINAL_LOAD * mu / max(per_engine.values())
    classes = {
        name: {
            "engine": eng,
            "prompt": _lognormal(p),
            "output": _lognormal(d),
            "max_prompt_len": 2048,
        }
        for name, (eng, p, d) in FORK_JOIN_TOKENS.items()
    }
    return build(
        NetworkSpec,
        {
            "name": "fork-join",
            "description": "a planner fans out to three tool agents, a summarizer joins",
            "engines": {"orchestrator": {"kind": "llm"}, "tools": {"kind": "llm"}},
            "classes": classes,
            "workflows": [
                {
                    "name": "research",
                    "arrival": _poisson(rate),
                    "entry": "planner",
                    "after": {
                        "planner": {"fork": ["search", "code", "math"], "join": "summarizer"},
                        "search": "join",
                        "code": "join",
                        "math": "join",
                        "summarizer": "exit",
                    },
                }
            ],
        },
    )


def replicated(k: int) -> NetworkSpec:
    """``K`` identical default LLM engines behind join-shortest-queue (by tokens).

    One class ``chat`` with the paper's workload (lognormal, means 129 prompt + 112 output =
    241 tokens) eligible at every engine, routed by ``jsq``. The arrival rate ``0.9 K mu /
    241`` puts each engine at nominal load 0.9 when the work is spread evenly; the capacity
    boundary is ``K`` times one engine's ``lambda* = mu / 241`` (~13.9 requests/s).
    """
    if not 1 <= k <= 256:
        raise SpecError("replicated-K", f"K = {k} is outside 1..256", "use e.g. replicated-4")
    mu = _llm_mu(LLMEngine())
    engines = {f"e{i + 1}": {"kind": "llm"} for i in range(k)}
    return build(
        NetworkSpec,
        {
            "name": f"replicated-{k}",
            "description": f"{k} identical LLM engines behind join-shortest-queue",
            "engines": engines,
            "classes": {"chat": {"engines": list(engines), "routing": "jsq"}},
            "workflows": [
                {
                    "name": "chat",
                    "arrival": _poisson(NOMINAL_LOAD * k * mu / 241.0),
                    "entry": "chat",
                    "after": {"chat": "exit"},
                }
            ],
        },
    )


PIPELINE_TOKENS = {"plan": (256, 64), "act": (384, 128), "reflect": (192, 32)}


def pipeline3() -> NetworkSpec:
    """A three-stage agent pipeline (plan -> act -> reflect) whose stages share one engine.

    One default LLM engine ``shared``; lognormal lengths (``sigma = 0.6``) with means plan
    256 + 64, act 384 + 128, reflect 192 + 32 tokens (1056 per request, prompts up to 2048).
    The arrival rate ``0.9 mu / 1056`` (~2.85 requests/s) puts the engine at load 0.9.
    """
    mu = _llm_mu(LLMEngine())
    total = sum(p + d for p, d in PIPELINE_TOKENS.values())
    classes = {
        name: {
            "engine": "shared",
            "prompt": _lognormal(p),
            "output": _lognormal(d),
            "max_prompt_len": 2048,
        }
        for name, (p, d) in PIPELINE_TOKENS.items()
    }
    return build(
        NetworkSpec,
        {
            "name": "pipeline-3",
            "description": "a three-stage agent pipeline sharing one LLM engine",
            "engines": {"shared": {"kind": "llm"}},
            "classes": classes,
            "workflows": [
                {
                    "name": "pipeline",
                    "arrival": _poisson(NOMINAL_LOAD * mu / total),
                    "entry": "plan",
                    "after": {"plan": "act", "act": "reflect", "reflect": "exit"},
                }
            ],
        },
    )


def _station_net(
    name: str,
    description: str,
    stations: list[str],
    classes: dict[str, tuple[str, float]],
    workflows: list[tuple[str, float, list[str]]],
) -> NetworkSpec:
    """A classic network: classes ``(station, mean service s)``, workflows as fixed routes."""
    return build(
        NetworkSpec,
        {
            "name": name,
            "description": description,
            "engines": {s: {"kind": "station"} for s in stations},
            "classes": {
                c: {"engine": s, "service": {"kind": "exponential", "mean": m}}
                for c, (s, m) in classes.items()
            },
            "workflows": [
                {
                    "name": wname,
                    "arrival": _poisson(rate),
                    "entry": route[0],
                    "after": {
                        c: (route[i + 1] if i + 1 < len(route) else "exit")
                        for i, c in enumerate(route)
                    },
                }
                for wname, rate, route in workflows
            ],
        },
    )


def single_station(
    classes: dict[str, tuple[float, dict[str, Any]]],
    *,
    servers: int = 1,
    discipline: str = "preemptive-resume",
    name: str = "station",
) -> NetworkSpec:
    """One station ``s`` (``servers`` servers, ``discipline``) fed by one Poisson stream per
    class: ``classes[c] = (rate, service)`` with ``rate`` in jobs/s and ``service`` a service
    distribution mapping (:mod:`policyopt.model.service`). Each class leaves after its
    service. The queues of ``docs/stations.md`` (M/M/c, M/G/1, priority classes) are built
    this way."""
    return build(
        NetworkSpec,
        {
            "name": name,
            "engines": {"s": {"kind": "station", "servers": servers, "discipline": discipline}},
            "classes": {c: {"engine": "s", "service": svc} for c, (_, svc) in classes.items()},
            "workflows": [
                {"name": c, "arrival": _poisson(rate), "entry": c, "after": {c: "exit"}}
                for c, (rate, _) in classes.items()
            ],
        },
    )


CRISS_CROSS_REGIMES: dict[str, tuple[float, float]] = {
    # regime: (arrival rate of each of the two streams, mean service time of c2 at s2)
    "il": (0.3, 1 / 1.5),  # imbalanced light: loads 0.3, 0.2
    "bl": (0.3, 1.0),  # balanced light: 0.3, 0.3
    "im": (0.6, 1 / 1.5),  # imbalanced medium: 0.6, 0.4
    "bm": (0.6, 1.0),  # balanced medium: 0.6, 0.6
    "ih": (0.9, 1 / 1.5),  # imbalanced heavy: 0.9, 0.6
    "bh": (0.9, 1.0),  # balanced heavy: 0.9, 0.9
}
"""Dai and Gluzman's six load regimes of the criss-cross network (their Table of load
parameters): both streams at the same rate, service rates 2 for ``c1`` and ``c3`` at ``s1``
and 1.5 (imbalanced) or 1 (balanced) for ``c2`` at ``s2``."""


def criss_cross(regime: str = "bh") -> NetworkSpec:
    """The criss-cross network (Harrison & Wein 1989) at one of Dai & Gluzman's load regimes.

    Stations ``s1``, ``s2``; classes ``c1`` (at ``s1``) -> ``c2`` (at ``s2``) -> exit, and
    ``c3`` (at ``s1``) -> exit. Poisson arrivals ``lambda_1 = lambda_3``, exponential service
    with means ``m1 = m3 = 0.5`` and ``m2`` (:data:`CRISS_CROSS_REGIMES`). The default, balanced
    heavy traffic (``bh``: ``lambda = 0.9``, ``m2 = 1``, both stations at load 0.9), is the
    library's ``criss-cross``. The regimes are those of Dai & Gluzman, "Queueing network
    controls via deep reinforcement learning" (Stochastic Systems 2022), whose class 2 is the
    exiting class at ``s1`` (``c3`` here) and class 3 the class at ``s2`` (``c2`` here); the
    values also match the authors' released code (service rates 2, 1, 2; arrival rates
    0.9, 0, 0.9 for ``bh``).
    """
    key = regime.lower()
    if key not in CRISS_CROSS_REGIMES:
        raise SpecError(
            "criss-cross-R",
            f"no load regime {regime!r}",
            f"use one of {', '.join(CRISS_CROSS_REGIMES)} (e.g. criss-cross-im)",
        )
    rate, m2 = CRISS_CROSS_REGIMES[key]
    name = "criss-cross" if key == "bh" else f"criss-cross-{key}"
    return _station_net(
        name,
        f"classic criss-cross network (Dai & Gluzman load regime {key.upper()})",
        ["s1", "s2"],
        {"c1": ("s1", 0.5), "c2": ("s2", m2), "c3": ("s1", 0.5)},
        [("stream-1", rate, ["c1", "c2"]), ("stream-3", rate, ["c3"])],
    )


def classic_rybko_stolyar() -> NetworkSpec:
    """The Rybko–Stolyar network (Rybko & Stolyar 1992) with single-server stations.

    Stations ``s1``, ``s2``; stream 1: ``c1`` (at ``s1``) -> ``c2`` (at ``s2``) -> exit; stream
    3: ``c3`` (at ``s2``) -> ``c4`` (at ``s1``) -> exit. Poisson ``lambda_1 = lambda_3 = 1``,
    exponential service with means ``m1 = m3 = 0.1``, ``m2 = m4 = 0.6``: both stations at load
    0.7. Under the priority to the exiting classes (``c4`` at ``s1``, ``c2`` at ``s2``), ``c2``
    and ``c4`` are never served together, a virtual station of load ``m2 + m4 = 1.2 > 1``: the
    network is unstable (Rybko & Stolyar's condition). The numbers are the standard
    illustrative choice for this example in the fluid-model literature; the structure and the
    instability condition are Rybko & Stolyar's.
    """
    return _station_net(
        "classic-rybko-stolyar",
        "classic Rybko-Stolyar network",
        ["s1", "s2"],
        {"c1": ("s1", 0.1), "c2": ("s2", 0.6), "c3": ("s2", 0.1), "c4": ("s1", 0.6)},
        [("stream-1", 1.0, ["c1", "c2"]), ("stream-3", 1.0, ["c3", "c4"])],
    )


def lu_kumar() -> NetworkSpec:
    """The Lu–Kumar network (Lu & Kumar 1991): a re-entrant line over two stations.

    One stream, route ``c1`` (at ``s1``) -> ``c2`` (at ``s2``) -> ``c3`` (at ``s2``) -> ``c4``
    (at ``s1``) -> exit. Poisson ``lambda = 1``, exponential service with means ``m1 = m3 =
    0.1``, ``m2 = m4 = 0.6``: both stations at load 0.7. The buffer priority ``c4 > c1`` at
    ``s1`` and ``c2 > c3`` at ``s2`` is unstable because ``lambda (m2 + m4) = 1.2 > 1`` (Lu &
    Kumar's virtual-station condition); FCFS and last-buffer-first-served are stable. Lu &
    Kumar's original example is deterministic; these exponential values are the illustrative
    choice that matches the Rybko–Stolyar entry of this library.
    """
    return _station_net(
        "lu-kumar",
        "classic Lu-Kumar network",
        ["s1", "s2"],
        {"c1": ("s1", 0.1), "c2": ("s2", 0.6), "c3": ("s2", 0.1), "c4": ("s1", 0.6)},
        [("stream", 1.0, ["c1", "c2", "c3", "c4"])],
    )


DAI_GLUZMAN_RATE = 9.0 / 140.0
"""Arrival rate of the Dai & Gluzman re-entrant and extended six-class networks."""
DAI_GLUZMAN_MEANS = ((8.0, 2.0, 4.0), (6.0, 7.0, 1.0))
"""Mean service times of the three classes of odd- and even-numbered stations."""


def _dai_gluzman_classes(stations: int) -> dict[str, tuple[str, float]]:
    """Classes ``c1..c{3L}``: station ``s`` holds ``c{3s-2}``, ``c{3s-1}``, ``c{3s}``."""
    out: dict[str, tuple[str, float]] = {}
    for s in range(1, stations + 1):
        means = DAI_GLUZMAN_MEANS[(s - 1) % 2]
        for v in range(3):
            out[f"c{3 * (s - 1) + v + 1}"] = (f"s{s}", means[v])
    return out


def reentrant(stations: int) -> NetworkSpec:
    """The re-entrant line of Dai & Gluzman (Stochastic Systems 2022) with ``L`` stations.

    ``3L`` classes; station ``s`` (``s1..sL``) serves ``c{3s-2}``, ``c{3s-1}``, ``c{3s}``. A job
    passes the line three times: ``c1 -> c4 -> ... -> c{3L-2}`` (first visit of every station),
    then ``c2 -> c5 -> ... -> c{3L-1}``, then ``c3 -> c6 -> ... -> c{3L}`` and leaves. Poisson
    arrivals at ``lambda = 9/140`` into ``c1``; exponential service with means ``(8, 2, 4)`` for
    the three classes of odd-numbered stations and ``(6, 7, 1)`` for even-numbered ones, so every
    station has load ``9/140 * 14 = 0.9``. These are the values in the authors' released code
    (the ``N-classes_re`` networks, ``L = 2..7`` there).
    """
    if not 1 <= stations <= 200:
        raise SpecError("reentrant-L", f"L = {stations} is outside 1..200", "use e.g. reentrant-2")
    route = [f"c{3 * (s - 1) + v + 1}" for v in range(3) for s in range(1, stations + 1)]
    return _station_net(
        f"reentrant-{stations}",
        f"Dai & Gluzman re-entrant line with {stations} stations",
        [f"s{s}" for s in range(1, stations + 1)],
        _dai_gluzman_classes(stations),
        [("line", DAI_GLUZMAN_RATE, route)],
    )


def extended_six_class(stations: int) -> NetworkSpec:
    """The extended six-class network (Bertsimas et al.) as in Dai & Gluzman, ``L`` stations.

    Same stations, classes and service means as :func:`reentrant`, but two streams, each at
    ``9/140``: stream 1 enters ``c1`` and visits every station twice (``c1 -> c4 -> ... ->
    c{3L-2} -> c2 -> c5 -> ... -> c{3L-1}``), stream 2 enters ``c3`` and visits each station once
    (``c3 -> c6 -> ... -> c{3L}``). Every station has load 0.9. ``L = 2`` is the six-class
    network; values from the authors' released code (the ``N-classes`` networks).
    """
    if not 2 <= stations <= 200:
        raise SpecError(
            "extended-six-class-L",
            f"L = {stations} is outside 2..200",
            "use e.g. extended-six-class-2",
        )
    first = [f"c{3 * (s - 1) + 1}" for s in range(1, stations + 1)]
    second = [f"c{3 * (s - 1) + 2}" for s in range(1, stations + 1)]
    third = [f"c{3 * (s - 1) + 3}" for s in range(1, stations + 1)]
    return _station_net(
        f"extended-six-class-{stations}",
        f"Dai & Gluzman extended six-class network with {stations} stations",
        [f"s{s}" for s in range(1, stations + 1)],
        _dai_gluzman_classes(stations),
        [("stream-1", DAI_GLUZMAN_RATE, first + second), ("stream-2", DAI_GLUZMAN_RATE, third)],
    )


_FIXED = {
    "rybko-stolyar": rybko_stolyar,
    "fork-join": fork_join,
    "pipeline-3": pipeline3,
    "criss-cross": criss_cross,
    "classic-rybko-stolyar": classic_rybko_stolyar,
    "lu-kumar": lu_kumar,
}
_PARAMETRIC = {
    "replicated": replicated,
    "reentrant": reentrant,
    "extended-six-class": extended_six_class,
}


def network_names() -> list[str]:
    """The names of :data:`NETWORKS` (parametric ones with their ``-K``/``-L`` suffix)."""
    return [name for name, _ in NETWORKS]


def get_network(name: str) -> NetworkSpec:
    """The library network called ``name`` (``replicated-4``, ``reentrant-3``,
    ``criss-cross-im``, ...)."""
    key = name.strip().lower()
    if key in _FIXED:
        return _FIXED[key]()
    if key.startswith("criss-cross-"):
        return criss_cross(key.removeprefix("criss-cross-"))
    match = re.fullmatch(r"([a-z-]+)-(\d+)", key)
    if match and match.group(1) in _PARAMETRIC:
        return _PARAMETRIC[match.group(1)](int(match.group(2)))
    raise SpecError(
        "network",
        f"no network named {name!r}",
        f"use one of {', '.join(network_names())} (K, L whole numbers), or a .yaml/.toml file",
    )


def resolve_network(value: str | Path | NetworkSpec) -> NetworkSpec:
    """A network from a library name, a YAML/TOML file path, or a spec (returned as is)."""
    if isinstance(value, NetworkSpec):
        return value
    text = str(value)
    if Path(text).suffix.lower() in (".yaml", ".yml", ".toml") or Path(text).is_file():
        return load_network(text)
    return get_network(text)
