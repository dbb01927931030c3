"""Networks of LLM agents (and classic multiclass queueing networks): the specification.

A network declares three things (``docs/networks.md`` has the full format and examples):

* ``engines``: name -> an LLM engine (``kind: llm``: token budget, optional ``max_seqs``, batch
  time, ``scheduler``) or a classic single-server station (``kind: station``). A mapping without
  ``kind`` is an LLM engine.
* ``classes``: name -> one agent step: where it is served (``engine: E``, or ``engines: [E1, E2]``
  with a ``routing`` rule among them: ``jsq`` = join the shortest queue counted in tokens,
  ``round_robin``, ``random``), its work (``prompt``/``output`` token-length distributions at an
  LLM engine, ``service`` time at a station) and its ``holding_cost`` (per job per second).
* ``workflows``: arrival streams. Each has an ``arrival`` process (requests/s), an ``entry``
  class, and ``after``: for every class of the workflow, where a job goes when that class
  completes: ``exit``; a class name; ``{random: {TARGET: prob, ...}}`` (targets are classes,
  ``exit`` or ``join``); or ``{fork: [CLASS, ...], join: CLASS}``. A fork starts one job per
  listed branch class, in parallel; each branch is a chain of classes that ends by routing to
  the special target ``join``; the join class starts once every branch has reached ``join``.
  Forks nest: ``join`` always closes the innermost fork the class sits in.

Mean work ``w_k`` of a class: ``m_p + m_d`` tokens at an LLM engine, the mean service time
(seconds) at a station. Engine capacities (tokens/s of an LLM engine, one second of work per
second at a station) are computed in the solver layer, not here.

Validation happens when a spec is built and raises :class:`~policyopt.errors.SpecError` naming
the field and the fix (use :func:`~policyopt.model.config.build` or :func:`load_network` to get
it directly; ``NetworkSpec(...)`` raises pydantic's ``ValidationError`` wrapping it). The rules:
references to unknown engines or classes; a class reached from two places of a workflow (inside
and outside a fork) or by two workflows; ``join`` outside a fork branch, ``exit`` inside one, a
branch that never reaches ``join``; random probabilities that do not sum to one (within 1e-9);
routing that never lets jobs leave (the routing matrix, fork multiplicities included, must have
spectral radius below one; the message names a cycle); a prompt that can never fit an engine
whose scheduler cannot chunk prefill; an empty network; an unknown key anywhere.

A validated spec carries a :class:`Topology`: classes and engines as indices, one
:class:`Step` per class (what happens when a job of that class completes), each class's
enclosing forks, exogenous rates and mean work. It is what a simulator follows and what the
solvers read.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    Field,
    PrivateAttr,
    SerializeAsAny,
    field_validator,
    model_validator,
)
from scipy import sparse
from scipy.sparse import csgraph

from policyopt.errors import SpecError
from policyopt.model.arrivals import (
    MMPPArrivals,
    PiecewiseArrivals,
    RenewalArrivals,
    ReplayArrivals,
)
from policyopt.model.batch_time import BatchTime, StaircaseBatchTime
from policyopt.model.config import build, read_mapping
from policyopt.model.engine import EngineSpec
from policyopt.model.kv_cache import KVCacheSpec
from policyopt.model.lengths import LengthDist
from policyopt.model.scenario import Scenario, check_fits, check_memory
from policyopt.model.scheduler import SchedulerField, default_scheduler
from policyopt.model.service import ServiceDist, parse_service
from policyopt.model.validation import MaxLength, StrictSpec, TokenBudget
from policyopt.model.workload import DeterministicArrivals, PoissonArrivals, Workload

EXIT = -1
"""Target index of ``exit`` in a :class:`Step`."""
JOIN = -2
"""Target index of ``join`` in a :class:`Step`."""
RESERVED_NAMES = ("exit", "join")
PROB_TOL = 1e-9
"""Tolerance on the sum of random-routing probabilities."""
TRANSIENT_TOL = 1e-9
"""A routing matrix with spectral radius above ``1 - TRANSIENT_TOL`` is refused."""


class _Spec(StrictSpec):
    """Base of this module's specs (:class:`StrictSpec`: frozen, strict keys and numbers)."""


# --------------------------------------------------------------------------------------------
# engines


class LLMEngine(_Spec):
    """An LLM inference engine in a network: the :class:`EngineSpec` fields plus its scheduler.

    * ``token_budget`` (``b``, tokens per batch), ``max_seqs`` (``k_max``, requests per batch),
      ``batch_time`` (seconds per batch, default the paper's CodeLlama-34B/A100 staircase),
      ``kv_cache`` (optional, a limited KV cache: :class:`~policyopt.model.kv_cache.KVCacheSpec`);
    * ``scheduler``: how batches are formed (``sarathi`` by default; a name such as
      ``vllm`` or ``orca:whole``, or a mapping). A network policy may reorder classes within
      the scheduler's batching rules.
    """

    kind: Literal["llm"] = "llm"
    token_budget: TokenBudget = Field(512, description="tokens per batch (b)")
    max_seqs: int | None = Field(None, ge=1, description="requests per batch (k_max)")
    batch_time: BatchTime = Field(default_factory=StaircaseBatchTime)
    scheduler: SchedulerField = Field(default_factory=default_scheduler)
    kv_cache: KVCacheSpec | None = None

    def engine_spec(self) -> EngineSpec:
        """The single-engine :class:`EngineSpec` of this engine."""
        return EngineSpec(
            token_budget=self.token_budget,
            max_seqs=self.max_seqs,
            batch_time=self.batch_time,
            kv_cache=self.kv_cache,
        )


DISCIPLINES = ("preemptive-resume", "non-preemptive")
"""How a station treats the job in service when a job the policy ranks higher arrives."""


class Station(_Spec):
    """A classic station (``docs/networks.md``) with ``servers`` identical servers, one job
    each.

    Its capacity is ``servers`` seconds of work per second, so a class with mean service time
    ``m`` seconds and rate ``lambda`` puts a nominal load ``lambda * m / servers`` on it.
    ``discipline``: ``preemptive-resume`` (the default: the policy's first jobs are always the
    ones in service, a preempted job resumes where it stopped) or ``non-preemptive`` (a job in
    service finishes; the policy chooses only when a server frees up).
    """

    kind: Literal["station"] = "station"
    servers: int = Field(1, ge=1, le=10_000, description="identical servers")
    discipline: Literal["preemptive-resume", "non-preemptive"] = "preemptive-resume"

    @property
    def preemptive(self) -> bool:
        """Whether a job in service can be preempted (``preemptive-resume``)."""
        return self.discipline == "preemptive-resume"


Engine = LLMEngine | Station


def _parse_engine(name: str, value: Any) -> Any:
    """An engine from a mapping: ``kind: station`` or (default) ``kind: llm``."""
    if isinstance(value, (LLMEngine, Station)):
        return value
    if not isinstance(value, dict):
        raise SpecError(name, f"expected a mapping, got {value!r}", "give kind: llm or station")
    kind = value.get("kind", "llm")
    if kind == "station":
        return build(Station, value, prefix=name)
    if kind == "llm":
        return build(LLMEngine, value, prefix=name)
    raise SpecError(f"{name}.kind", f"unknown engine kind {kind!r}", "use llm or station")


# --------------------------------------------------------------------------------------------
# classes


class ClassSpec(_Spec):
    """One agent step: where it is served, how much work it brings, what holding it costs.

    * ``engine: E`` or ``engines: [E1, E2, ...]`` (the eligible set) with ``routing`` among them:
      ``jsq`` (join the shortest queue, counted in tokens; default), ``round_robin``, ``random``.
    * At an LLM engine: ``prompt`` and ``output`` token-length distributions (default: the
      paper's lognormal 129/112 tokens), truncated to ``max_prompt_len``/``max_output_len``.
    * At a station: ``service``, a service-time distribution (:mod:`policyopt.model.service`:
      ``{kind: exponential, mean: SECONDS}`` and the others; ``kind`` defaults to
      ``exponential``).
    * ``holding_cost``: cost per job per second while the job is in this class (>= 0).
    """

    engine: str | None = None
    engines: tuple[str, ...] | None = None
    routing: Literal["jsq", "round_robin", "random"] | None = None
    prompt: LengthDist | None = None
    output: LengthDist | None = None
    max_prompt_len: MaxLength = Field(512, description="tokens")
    max_output_len: MaxLength = Field(1024, description="tokens")
    service: SerializeAsAny[ServiceDist] | None = None
    holding_cost: float = Field(1.0, ge=0, description="cost per job per second")

    @field_validator("service", mode="before")
    @classmethod
    def _parse_service(cls, value: object) -> object:
        return None if value is None else parse_service(value)

    @model_validator(mode="after")
    def _placement(self) -> ClassSpec:
        if (self.engine is None) == (self.engines is None):
            raise SpecError(
                "engine" if self.engine is not None else "engines",
                "give exactly one of engine (one engine) or engines (an eligible set)",
                "remove one" if self.engine is not None else "add engine: NAME",
            )
        if self.engines is not None:
            if not self.engines:
                raise SpecError("engines", "empty", "list at least one engine")
            dup = sorted({e for e in self.engines if self.engines.count(e) > 1})
            if dup:
                raise SpecError("engines", f"{dup[0]!r} is listed twice", "list each engine once")
        if self.routing is not None and self.engine is not None:
            raise SpecError(
                "routing",
                "a routing rule needs an eligible set (engines: [...])",
                "remove routing, or use engines: [...]",
            )
        if self.prompt is not None or self.output is not None:
            self.workload()  # the length distributions must fit their maximum lengths
        return self

    @property
    def eligible(self) -> tuple[str, ...]:
        """Names of the engines that may serve this class."""
        return (self.engine,) if self.engine is not None else tuple(self.engines or ())

    @property
    def routing_rule(self) -> str:
        """``fixed`` for one engine, else the routing rule (``jsq`` by default)."""
        if len(self.eligible) == 1:
            return "fixed"
        return self.routing or "jsq"

    def workload(self) -> Workload:
        """The class's token lengths as a single-engine :class:`Workload` (rate is a dummy)."""
        return build(
            Workload,
            {
                "arrival": PoissonArrivals(rate=1.0),
                "prompt": self.prompt,
                "output": self.output,
                "max_prompt_len": self.max_prompt_len,
                "max_output_len": self.max_output_len,
            },
        )

    def mean_prompt(self) -> float:
        """``m_p``: mean prompt tokens (at an LLM engine)."""
        return self.workload().mean_prompt()

    def mean_output(self) -> float:
        """``m_d``: mean output tokens (at an LLM engine)."""
        return self.workload().mean_output()


# --------------------------------------------------------------------------------------------
# workflows


class RandomNext(_Spec):
    """``{random: {TARGET: prob, ...}}``: a random next step; targets are classes, exit, join."""

    random: dict[str, float]

    @model_validator(mode="after")
    def _probabilities(self) -> RandomNext:
        if not self.random:
            raise SpecError("random", "no targets", "list TARGET: probability pairs")
        for target, p in self.random.items():
            if not (0.0 <= p <= 1.0) or not math.isfinite(p):
                raise SpecError(f"random.{target}", f"probability {p!r} is not in [0, 1]", "fix it")
        total = math.fsum(self.random.values())
        if abs(total - 1.0) > PROB_TOL:
            raise SpecError(
                "random",
                f"probabilities sum to {total:.12g}, not 1",
                "make them sum to 1 (within 1e-9)",
            )
        return self


class ForkNext(_Spec):
    """``{fork: [CLASS, ...], join: CLASS}``: run the branches in parallel, then the join class."""

    fork: tuple[str, ...]
    join: str

    @model_validator(mode="after")
    def _two_branches(self) -> ForkNext:
        if len(self.fork) < 2:
            raise SpecError(
                "fork",
                f"{len(self.fork)} branch(es); a fork runs two or more branches in parallel",
                "list at least two branch classes, or route to the class directly",
            )
        return self


Next = str | RandomNext | ForkNext


def _parse_next(key: str, value: Any) -> Any:
    """One ``after`` entry: a name, ``{random: ...}`` or ``{fork: ..., join: ...}``."""
    if isinstance(value, (str, RandomNext, ForkNext)):
        return value
    if isinstance(value, dict):
        if "random" in value:
            return build(RandomNext, value, prefix=key)
        if "fork" in value or "join" in value:
            return build(ForkNext, value, prefix=key)
    raise SpecError(
        key,
        f"cannot read {value!r}",
        "use exit, join, a class name, {random: {TARGET: prob}} or {fork: [CLASS, ...], "
        "join: CLASS}",
    )


class WorkflowSpec(_Spec):
    """An arrival stream and the route its jobs follow.

    ``arrival``: ``{kind: poisson|deterministic, rate: REQUESTS_PER_S}``, or a renewal,
    Markov-modulated, piecewise-constant-rate or replayed process
    (:mod:`policyopt.model.arrivals`); ``entry``: the first class; ``after``: for each class
    of the workflow, where a job goes when it completes.
    """

    name: str = Field(..., min_length=1)
    arrival: Annotated[
        PoissonArrivals
        | DeterministicArrivals
        | RenewalArrivals
        | MMPPArrivals
        | PiecewiseArrivals
        | ReplayArrivals,
        Field(discriminator="kind"),
    ]
    entry: str
    after: dict[str, Next]

    @field_validator("after", mode="before")
    @classmethod
    def _parse_after(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        return {str(k): _parse_next(str(k), v) for k, v in value.items()}

    @property
    def rate(self) -> float:
        """Arrival rate, workflows (requests into the entry class) per second."""
        return float(self.arrival.rate)


# --------------------------------------------------------------------------------------------
# the compiled topology


@dataclass(frozen=True)
class Step:
    """What happens when a job of a class completes.

    * ``exit``: ``targets == (EXIT,)``; ``join``: ``targets == (JOIN,)`` (the innermost fork);
    * ``next``: ``targets == (k,)``;
    * ``random``: outcome ``i`` (probability ``probs[i]``) goes to ``targets[i]`` (a class
      index, ``EXIT`` or ``JOIN``);
    * ``fork``: one job to each class of ``targets`` (a class may repeat), then ``join_class``
      once all of them have reached ``join``.
    """

    kind: Literal["exit", "join", "next", "random", "fork"]
    targets: tuple[int, ...]
    probs: tuple[float, ...] = ()
    join_class: int | None = None


@dataclass(frozen=True)
class Topology:
    """A validated network as indices: what a simulator follows and the solvers read.

    Classes and engines are numbered in declaration order. Per class ``k``: ``eligible[k]``
    (engine indices), ``routing[k]`` (``fixed``/``jsq``/``round_robin``/``random``),
    ``steps[k]``, ``workflow[k]``, ``forks[k]`` (the origin classes of the forks enclosing
    ``k``, outermost first), ``alpha[k]`` (exogenous arrivals/s), ``work[k]`` (mean tokens at
    an LLM engine, mean seconds at a station), ``mean_prompt[k]`` (0 at a station) and
    ``holding_cost[k]``. ``edges`` are the entries ``(k, l, P_kl)`` of the routing matrix:
    expected jobs sent to ``l`` per completion of ``k`` (a fork sends one job per branch; a
    branch reaching ``join`` sends ``1/n`` of a job to the join class of an ``n``-branch fork).
    """

    classes: tuple[str, ...]
    engines: tuple[str, ...]
    engine_kind: tuple[str, ...]
    eligible: tuple[tuple[int, ...], ...]
    routing: tuple[str, ...]
    steps: tuple[Step, ...]
    workflow: tuple[int, ...]
    entries: tuple[int, ...]
    forks: tuple[tuple[int, ...], ...]
    alpha: tuple[float, ...]
    work: tuple[float, ...]
    mean_prompt: tuple[float, ...]
    holding_cost: tuple[float, ...]
    edges: tuple[tuple[int, int, float], ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_engines(self) -> int:
        return len(self.engines)

    def routing_matrix(self) -> sparse.csr_matrix:
        """``P`` (classes x classes, sparse): ``P[k, l]`` = expected jobs sent to ``l``."""
        n = self.n_classes
        if not self.edges:
            return sparse.csr_matrix((n, n))
        rows, cols, vals = zip(*self.edges, strict=True)
        return sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))


def spectral_radius(matrix: sparse.spmatrix | np.ndarray) -> tuple[float, np.ndarray]:
    """Spectral radius of a nonnegative square matrix, and the strong component labels.

    The radius is the largest over strongly connected components (a singleton's radius is its
    diagonal entry); components up to 2,000 nodes use a dense eigenvalue solve.
    """
    mat = sparse.csr_matrix(matrix)
    n = mat.shape[0]
    if n == 0:
        return 0.0, np.zeros(0, dtype=int)
    _, labels = csgraph.connected_components(mat, directed=True, connection="strong")
    diag = mat.diagonal()
    rho = float(diag.max()) if n else 0.0
    counts = np.bincount(labels)
    for comp in np.flatnonzero(counts > 1):
        idx = np.flatnonzero(labels == comp)
        sub = mat[idx][:, idx]
        if len(idx) <= 2000:
            r = float(np.max(np.abs(np.linalg.eigvals(sub.toarray()))))
        else:  # pragma: no cover - very large cyclic components
            from scipy.sparse.linalg import eigs

            r = float(np.abs(eigs(sub.astype(float), k=1, which="LM")[0][0]))
        rho = max(rho, r)
    return rho, labels


def _component_radius(mat: sparse.csr_matrix, idx: np.ndarray) -> float:
    sub = mat[idx][:, idx].toarray()
    return float(np.max(np.abs(np.linalg.eigvals(sub)))) if len(idx) else 0.0


def _find_cycle(adj: dict[int, list[int]], nodes: list[int]) -> list[int] | None:
    """A directed cycle (as a node list, first node repeated at the end) or ``None``."""
    color: dict[int, int] = {}
    for start in nodes:
        if color.get(start):
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        path: list[int] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = 1
                path.append(node)
            succ = adj.get(node, [])
            if i < len(succ):
                stack.append((node, i + 1))
                nxt = succ[i]
                if color.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not color.get(nxt):
                    stack.append((nxt, 0))
            else:
                color[node] = 2
                path.pop()
    return None


def describe_closed_loop(topo: Topology) -> tuple[int, str] | None:
    """If jobs can circulate forever, ``(a class of the loop, a description)``; else ``None``.

    The description names a cycle whose routing probabilities multiply to 1 when there is one,
    otherwise the closed set of classes and an example cycle inside it.
    """
    mat = topo.routing_matrix()
    rho, labels = spectral_radius(mat)
    if rho < 1.0 - TRANSIENT_TOL:
        return None
    names = topo.classes
    for comp in np.unique(labels):
        idx = np.flatnonzero(labels == comp)
        radius = float(mat[idx[0], idx[0]]) if len(idx) == 1 else _component_radius(mat, idx)
        if radius < 1.0 - TRANSIENT_TOL:
            continue
        members = set(idx.tolist())
        sub = mat[idx][:, idx].tocoo()
        strong: dict[int, list[int]] = {}
        best: dict[int, tuple[float, int]] = {}
        for r, c, v in zip(sub.row, sub.col, sub.data, strict=True):
            src, dst = int(idx[r]), int(idx[c])
            if v >= 1.0 - TRANSIENT_TOL:
                strong.setdefault(src, []).append(dst)
            if src not in best or v > best[src][0]:
                best[src] = (float(v), dst)
        cycle = _find_cycle(strong, sorted(members))
        if cycle is not None:
            text = " -> ".join(names[k] for k in cycle)
            return cycle[0], (
                f"routing never lets jobs leave: the cycle {text} sends every job around "
                f"again (its routing probabilities multiply to 1; spectral radius "
                f"{radius:.6g} >= 1)"
            )
        # no single certain cycle: the classes form a closed set; show one cycle inside it
        node, seen = int(idx[0]), []
        while node not in seen:
            seen.append(node)
            node = best[node][1]
        loop = [*seen[seen.index(node) :], node]
        prob = math.prod(best[k][0] for k in loop[:-1])
        members_text = ", ".join(names[k] for k in sorted(members))
        return loop[0], (
            f"routing never lets jobs leave: classes {members_text} pass every job among "
            f"themselves (no route leads out; e.g. the cycle "
            f"{' -> '.join(names[k] for k in loop)} with probability {prob:.6g}; spectral "
            f"radius {radius:.6g} >= 1)"
        )
    return None  # pragma: no cover - rho >= 1 implies some component has radius >= 1


# --------------------------------------------------------------------------------------------
# the network


class NetworkSpec(_Spec):
    """A network of LLM engines (or stations), classes and workflows; see the module docstring.

    ``name`` and ``description`` are free text. Build one from a dict with
    ``build(NetworkSpec, data)``, from a file with :func:`load_network`, or take a named one
    from :func:`policyopt.model.networks_library.get_network`.
    """

    name: str = "network"
    description: str = ""
    engines: dict[str, Engine] = Field(default_factory=dict)
    classes: dict[str, ClassSpec] = Field(default_factory=dict)
    workflows: tuple[WorkflowSpec, ...] = ()
    _topology: Topology | None = PrivateAttr(default=None)

    @field_validator("engines", mode="before")
    @classmethod
    def _parse_engines(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        return {str(k): _parse_engine(str(k), v) for k, v in value.items()}

    @model_validator(mode="after")
    def _compile(self) -> NetworkSpec:
        self._topology = _compile(self)
        return self

    @property
    def topology(self) -> Topology:
        """The validated network as indices (see :class:`Topology`)."""
        assert self._topology is not None
        return self._topology

    def engine_kind(self, engine: str) -> str:
        """``llm`` or ``station``."""
        return self.engines[engine].kind

    def class_kind(self, cls: str) -> str:
        """``llm`` or ``station``: the kind of the engines serving class ``cls``."""
        return self.engine_kind(self.classes[cls].eligible[0])

    def mean_work(self, cls: str) -> float:
        """``w_k``: mean tokens (``m_p + m_d``) at an LLM engine, mean seconds at a station."""
        spec = self.classes[cls]
        if self.class_kind(cls) == "station":
            assert spec.service is not None
            return spec.service.mean_time()
        return spec.workload().mean_tokens()

    def workflow_rates(self) -> dict[str, float]:
        """Arrival rate of each workflow, per second."""
        return {w.name: w.rate for w in self.workflows}

    def scaled(self, factor: float) -> NetworkSpec:
        """The same network with every arrival rate multiplied by ``factor`` (> 0)."""
        if not factor > 0 or not math.isfinite(factor):
            raise SpecError("factor", f"{factor!r} is not > 0", "give a positive scale")
        return self.with_rates({w.name: w.rate * factor for w in self.workflows})

    def with_rates(self, rates: dict[str, float]) -> NetworkSpec:
        """The same network with new arrival rates (requests/s) for the named workflows."""
        data = self.model_dump()
        names = [w["name"] for w in data["workflows"]]
        for name, rate in rates.items():
            if name not in names:
                raise SpecError(
                    "workflows", f"no workflow named {name!r}", f"use one of {', '.join(names)}"
                )
            if not rate > 0 or not math.isfinite(rate):
                raise SpecError(f"workflows.{name}.arrival.rate", f"{rate!r} is not > 0", "")
            i = names.index(name)
            data["workflows"][i]["arrival"] = self.workflows[i].arrival.with_rate(rate).model_dump()
        return build(NetworkSpec, data)


def _fmt_known(names: Any) -> str:
    names = list(names)
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "none"


def _compile(net: NetworkSpec) -> Topology:
    """Check every cross-reference of a network and build its :class:`Topology`."""
    if not net.engines:
        raise SpecError(
            "engines", "the network has no engines", "declare at least one engine (llm or station)"
        )
    if not net.classes:
        raise SpecError(
            "classes", "the network has no classes", "declare at least one class (an agent step)"
        )
    if not net.workflows:
        raise SpecError(
            "workflows",
            "the network has no workflows (nothing ever arrives)",
            "declare at least one workflow: an arrival stream into an entry class",
        )
    engines = tuple(net.engines)
    classes = tuple(net.classes)
    e_index = {e: j for j, e in enumerate(engines)}
    c_index = {c: k for k, c in enumerate(classes)}

    # classes: names, engines, kinds, work ------------------------------------------------
    for cname, spec in net.classes.items():
        if cname in RESERVED_NAMES or not cname:
            raise SpecError(
                f"classes.{cname}",
                f"{cname!r} is reserved for routing" if cname else "empty class name",
                "rename the class",
            )
        key = "engine" if spec.engine is not None else "engines"
        for e in spec.eligible:
            if e not in e_index:
                raise SpecError(
                    f"classes.{cname}.{key}",
                    f"unknown engine {e!r} (engines: {_fmt_known(engines)})",
                    "fix the name or declare the engine under engines",
                )
        kinds = {net.engines[e].kind for e in spec.eligible}
        if len(kinds) > 1:
            raise SpecError(
                f"classes.{cname}.engines",
                "mixes LLM engines and stations",
                "list engines of one kind",
            )
        if kinds == {"station"}:
            if spec.service is None:
                raise SpecError(
                    f"classes.{cname}.service",
                    "a class served at a station needs a service time",
                    "add service: {kind: exponential, mean: SECONDS}",
                )
            for field in ("prompt", "output"):
                if getattr(spec, field) is not None:
                    raise SpecError(
                        f"classes.{cname}.{field}",
                        "a class served at a station has no token lengths",
                        f"remove {field} (use service)",
                    )
        else:
            if spec.service is not None:
                raise SpecError(
                    f"classes.{cname}.service",
                    "a class served at an LLM engine has token lengths, not a service time",
                    "remove service (use prompt and output)",
                )
            workload = spec.workload()
            for e in spec.eligible:
                eng = net.engines[e]
                assert isinstance(eng, LLMEngine)
                try:
                    check_fits(eng.engine_spec(), eng.scheduler, workload)
                except SpecError:
                    longest = workload.longest_prompt()
                    raise SpecError(
                        f"classes.{cname}.prompt",
                        f"prompts of up to {longest} tokens can never run on engine {e!r}: "
                        f"its token_budget is {eng.token_budget} and its scheduler "
                        f"{eng.scheduler.label!r} cannot chunk prefill",
                        f"raise engines.{e}.token_budget to >= {longest}, lower "
                        f"classes.{cname}.max_prompt_len to <= {eng.token_budget}, or give "
                        f"engine {e!r} a chunking scheduler (orca or sarathi)",
                    ) from None
                try:
                    check_memory(eng.engine_spec(), workload, f"engines.{e}.kv_cache")
                except SpecError as err:
                    raise SpecError(err.field, f"class {cname!r}: {err.problem}", err.fix) from None

    # workflows -----------------------------------------------------------------------------
    owner: dict[str, int] = {}
    context: dict[str, tuple[str, ...]] = {}
    alpha = [0.0] * len(classes)
    entries: list[int] = []
    wf_names: set[str] = set()
    for wi, wf in enumerate(net.workflows):
        where = f"workflows.{wi}"
        if wf.name in wf_names:
            raise SpecError(f"{where}.name", f"{wf.name!r} is used twice", "rename one")
        wf_names.add(wf.name)
        if wf.entry not in c_index:
            raise SpecError(
                f"{where}.entry",
                f"unknown class {wf.entry!r} (classes: {_fmt_known(classes)})",
                "fix the name or declare the class",
            )
        for cname, nxt in wf.after.items():
            if cname not in c_index:
                raise SpecError(
                    f"{where}.after.{cname}",
                    f"unknown class {cname!r} (classes: {_fmt_known(classes)})",
                    "fix the name or declare the class",
                )
            _check_targets(f"{where}.after.{cname}", nxt, c_index, classes)
        _walk_workflow(wi, wf, owner, context, net)
        alpha[c_index[wf.entry]] += wf.rate
        entries.append(c_index[wf.entry])
    for cname in classes:
        if cname not in owner:
            raise SpecError(
                f"classes.{cname}",
                "no workflow reaches this class",
                "remove it, or route a workflow to it",
            )

    # steps and routing edges ---------------------------------------------------------------
    steps: list[Step] = []
    edges: dict[tuple[int, int], float] = {}

    def add(src: int, dst: int, w: float) -> None:
        edges[(src, dst)] = edges.get((src, dst), 0.0) + w

    def join_target(cname: str) -> tuple[int, float]:
        origin = context[cname][-1]
        nxt = net.workflows[owner[origin]].after[origin]
        assert isinstance(nxt, ForkNext)
        return c_index[nxt.join], 1.0 / len(nxt.fork)

    def index_of(target: str) -> int:
        return EXIT if target == "exit" else JOIN if target == "join" else c_index[target]

    for k, cname in enumerate(classes):
        nxt = net.workflows[owner[cname]].after[cname]
        if isinstance(nxt, str):
            t = index_of(nxt)
            steps.append(Step("exit" if t == EXIT else "join" if t == JOIN else "next", (t,)))
            if t >= 0:
                add(k, t, 1.0)
            elif t == JOIN:
                j, w = join_target(cname)
                add(k, j, w)
        elif isinstance(nxt, RandomNext):
            targets = tuple(index_of(t) for t in nxt.random)
            probs = tuple(float(p) for p in nxt.random.values())
            steps.append(Step("random", targets, probs))
            for t, p in zip(targets, probs, strict=True):
                if p <= 0:
                    continue
                if t >= 0:
                    add(k, t, p)
                elif t == JOIN:
                    j, w = join_target(cname)
                    add(k, j, p * w)
        else:
            branches = tuple(c_index[b] for b in nxt.fork)
            steps.append(Step("fork", branches, join_class=c_index[nxt.join]))
            for b in branches:
                add(k, b, 1.0)

    engine_kind = tuple(net.engines[e].kind for e in engines)
    work: list[float] = []
    prompt: list[float] = []
    for cname in classes:
        spec = net.classes[cname]
        if net.engines[spec.eligible[0]].kind == "station":
            assert spec.service is not None
            work.append(spec.service.mean_time())
            prompt.append(0.0)
        else:
            wl = spec.workload()
            work.append(wl.mean_tokens())
            prompt.append(wl.mean_prompt())
    topo = Topology(
        classes=classes,
        engines=engines,
        engine_kind=engine_kind,
        eligible=tuple(tuple(e_index[e] for e in net.classes[c].eligible) for c in classes),
        routing=tuple(net.classes[c].routing_rule for c in classes),
        steps=tuple(steps),
        workflow=tuple(owner[c] for c in classes),
        entries=tuple(entries),
        forks=tuple(tuple(c_index[o] for o in context[c]) for c in classes),
        alpha=tuple(alpha),
        work=tuple(work),
        mean_prompt=tuple(prompt),
        holding_cost=tuple(float(net.classes[c].holding_cost) for c in classes),
        edges=tuple((src, dst, w) for (src, dst), w in sorted(edges.items()) if w > 0),
    )
    loop = describe_closed_loop(topo)
    if loop is not None:
        k, text = loop
        wi = topo.workflow[k]
        raise SpecError(
            f"workflows.{wi}.after",
            text,
            "route some of these jobs elsewhere (to exit, or through a random step with a way out)",
        )
    return topo


def _check_targets(where: str, nxt: Next, c_index: dict[str, int], classes: Any) -> None:
    """Every class a routing step names must exist."""
    if isinstance(nxt, str):
        names, field = [nxt], where
    elif isinstance(nxt, RandomNext):
        names, field = list(nxt.random), f"{where}.random"
    else:
        for b in nxt.fork:
            if b in RESERVED_NAMES:
                raise SpecError(
                    f"{where}.fork", f"a branch cannot be {b!r}", "list the branch classes"
                )
        if nxt.join in RESERVED_NAMES:
            raise SpecError(f"{where}.join", f"{nxt.join!r} is not a class", "name the join class")
        names, field = [*nxt.fork, nxt.join], where
    for name in names:
        if name not in RESERVED_NAMES and name not in c_index:
            raise SpecError(
                field,
                f"unknown class {name!r} (classes: {_fmt_known(classes)})",
                "fix the name, declare the class, or use exit/join",
            )


def _successors(nxt: Next) -> list[tuple[str, bool]]:
    """Targets of a step as ``(name, is_branch_start)``; the fork's join class is not a branch."""
    if isinstance(nxt, str):
        return [(nxt, False)]
    if isinstance(nxt, RandomNext):
        return [(t, False) for t in nxt.random]  # zero-probability targets count as reached
    return [(b, True) for b in nxt.fork] + [(nxt.join, False)]


def _walk_workflow(
    wi: int,
    wf: WorkflowSpec,
    owner: dict[str, int],
    context: dict[str, tuple[str, ...]],
    net: NetworkSpec,
) -> None:
    """Follow a workflow from its entry: give each class its fork context, check fork/join."""
    where = f"workflows.{wi}"
    local: dict[str, tuple[str, ...]] = {}
    # breadth first, so that a class is first met at its shallowest place
    queue: deque[tuple[str, tuple[str, ...], str]] = deque([(wf.entry, (), "its entry")])
    while queue:
        cname, ctx, source = queue.popleft()
        if cname in owner and owner[cname] != wi:
            other = net.workflows[owner[cname]].name
            raise SpecError(
                f"{where}.after",
                f"class {cname!r} is used by workflows {other!r} and {wf.name!r}; a class is "
                "one step of one workflow",
                f"declare a copy of {cname!r} under another name for one of them",
            )
        if cname in local:
            if local[cname] != ctx:
                raise SpecError(
                    f"{where}.after.{cname}",
                    f"class {cname!r} is reached {_place(local[cname])} and also "
                    f"{_place(ctx)} (from {source}); a class belongs to one place of a workflow",
                    f"declare a copy of {cname!r} under another name for one of the places",
                )
            continue
        local[cname] = ctx
        owner[cname] = wi
        if cname not in wf.after:
            raise SpecError(
                f"{where}.after",
                f"no entry for class {cname!r} (reached from {source})",
                f"add '{cname}: exit' or say where its jobs go next",
            )
        for target, is_branch in _successors(wf.after[cname]):
            if target not in RESERVED_NAMES:
                queue.append((target, (*ctx, cname) if is_branch else ctx, f"class {cname!r}"))
    # exit only outside forks, join only inside a branch
    for cname, ctx in local.items():
        for target, _ in _successors(wf.after[cname]):
            if target == "exit" and ctx:
                raise SpecError(
                    f"{where}.after.{cname}",
                    f"{cname!r} is inside a branch of the fork after {ctx[-1]!r} and routes "
                    "to exit, so the join would wait forever",
                    "end the branch by routing to join",
                )
            if target == "join" and not ctx:
                raise SpecError(
                    f"{where}.after.{cname}",
                    f"{cname!r} routes to join but is not inside a fork branch (a join "
                    "without its fork)",
                    "route it to exit or a class, or fork before it with "
                    "{fork: [...], join: CLASS}",
                )
    for cname in wf.after:
        if cname not in local:
            raise SpecError(
                f"{where}.after.{cname}",
                f"class {cname!r} is never reached from the entry {wf.entry!r}",
                "remove this entry, or route a job to the class",
            )
    # every branch of every fork must be able to reach its join
    for origin, nxt in wf.after.items():
        if not isinstance(nxt, ForkNext):
            continue
        level = (*local[origin], origin)
        for branch in dict.fromkeys(nxt.fork):
            if not _reaches_join(branch, level, wf, local):
                raise SpecError(
                    f"{where}.after.{origin}.fork",
                    f"branch {branch!r} never reaches join, so the join class {nxt.join!r} "
                    "would wait forever",
                    "end the branch's last class with ': join'",
                )
    context.update(local)


def _reaches_join(
    start: str, level: tuple[str, ...], wf: WorkflowSpec, local: dict[str, tuple[str, ...]]
) -> bool:
    """Whether some path from ``start`` reaches ``join`` at fork depth ``level``."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        cname = stack.pop()
        if cname in seen:
            continue
        seen.add(cname)
        nxt = wf.after[cname]
        for target, is_branch in _successors(nxt):
            if target == "join" and local[cname] == level:
                return True
            if target not in RESERVED_NAMES and not is_branch:
                stack.append(target)
    return False


def _place(ctx: tuple[str, ...]) -> str:
    if not ctx:
        return "outside any fork"
    return f"inside the fork after {ctx[-1]!r}"


def load_network(path: str | Path, **overrides: Any) -> NetworkSpec:
    """A validated :class:`NetworkSpec` from a YAML or TOML file.

    ``overrides`` replace top-level keys. Raises :class:`SpecError` naming the field.
    """
    data = read_mapping(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return build(NetworkSpec, data)


ENGINE_NAME = "engine"
"""The engine's name in the network of a scenario (:func:`scenario_network`)."""

SINGLE_CLASS = "requests"
"""The class (and workflow) name of a single-workload scenario in :func:`scenario_network`."""


def scenario_network(scenario: Scenario) -> NetworkSpec:
    """The scenario as a network: one LLM engine (``engine``) and one class per request class,
    each fed by its own workflow of the same name that enters it and exits after it (a
    single-workload scenario gives one class, ``requests``). The network simulator and the
    network policies then run it; the single-engine simulator gives the same batches for one
    class (``tests/test_engine_crosscheck.py``). A trace workload is refused (give its
    requests to the simulator instead)."""
    classes = scenario.classes or {SINGLE_CLASS: scenario.workload}
    cls: dict[str, Any] = {}
    flows: list[dict[str, Any]] = []
    for name, wl in classes.items():
        if not isinstance(wl.arrival, (PoissonArrivals, DeterministicArrivals)):
            raise SpecError(
                "workload.arrival",
                "a trace workload has no network form",
                "use poisson or deterministic arrivals",
            )
        cls[name] = {
            "engine": ENGINE_NAME,
            "prompt": wl.prompt,
            "output": wl.output,
            "max_prompt_len": wl.max_prompt_len,
            "max_output_len": wl.max_output_len,
            "holding_cost": getattr(wl, "holding_cost", 1.0),
        }
        flows.append({"name": name, "arrival": wl.arrival, "entry": name, "after": {name: "exit"}})
    eng = scenario.engine
    engine = {
        "kind": "llm",
        "token_budget": eng.token_budget,
        "max_seqs": eng.max_seqs,
        "batch_time": eng.batch_time,
        "scheduler": scenario.scheduler,
        "kv_cache": eng.kv_cache,
    }
    return build(
        NetworkSpec,
        {"name": "scenario", "engines": {ENGINE_NAME: engine}, "classes": cls, "workflows": flows},
    )
