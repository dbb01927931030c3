"""The one sweep runner: independent runs, serially, on a process pool or on Ray, keeping what
finished.

:func:`run_all` takes a list of run descriptions and a top-level function that does one run.
``policyopt compare`` (one engine, :mod:`policyopt.compare`, or a network), ``policyopt
sweep`` (:mod:`policyopt.grid`) and ``policyopt evaluate`` (:mod:`policyopt.learn.evaluate`)
run through it. A run that raises is recorded as a one-line error and the others go on;
Ctrl-C raises :class:`RunsInterrupted`, which carries the runs that had finished. Runs must
not depend on each other or on the order they run in: then ``jobs > 1``, or another backend,
gives exactly the results of ``jobs = 1``.

**Backends** (:class:`Backend`). ``local`` runs in this process (one job) or on a pool of
``jobs`` processes on this machine. ``ray`` sends each run to a Ray cluster
(:mod:`policyopt.ray_backend`): the one at ``address`` (``ray start --head`` prints it), or a
local Ray instance with ``jobs`` CPUs started for the sweep and shut down after it. What goes
to a worker is the run description (specs: pydantic models, dataclasses of them, numbers)
and a reference to the top-level function, never a simulator; results come back pickled.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from tqdm import tqdm

Run = TypeVar("Run")
Result = TypeVar("Result")


@dataclass
class Outcome(Generic[Result]):
    """What :func:`run_all` produced: ``results`` and ``errors`` keyed by the run's index in
    the list given, in that order; ``complete`` is false after an interrupt."""

    planned: int
    results: dict[int, Result] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    complete: bool = False


class RunsInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_all`; ``outcome`` holds the runs that had finished."""

    def __init__(self, outcome: Outcome[Any]) -> None:
        super().__init__("runs interrupted")
        self.outcome = outcome


def one_line_error(err: BaseException) -> str:
    """An exception as one line: ``Type: message`` with all whitespace runs made one space."""
    text = " ".join(str(err).split()) or repr(err)
    return f"{type(err).__name__}: {text}"


def _attempt(task: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, Any, str | None]:
    """``(index, result, None)`` of one run, or ``(index, None, error)`` if it raised."""
    run_one, index, run = task
    try:
        return index, run_one(run), None
    except Exception as err:  # recorded as a failure; the other runs go on
        return index, None, one_line_error(err)


def _ignore_sigint() -> None:
    """Pool initializer: Ctrl-C is handled by the parent, which terminates the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


BACKENDS: tuple[str, ...] = ("local", "ray")
"""The names of the backends of :func:`run_all` (``--backend`` of the commands)."""


@dataclass(frozen=True)
class Backend:
    """Where :func:`run_all` runs: ``kind`` ``local`` (``jobs`` processes on this machine; one:
    in this process) or ``ray`` (the Ray cluster at ``address``, or without one a local Ray
    instance with ``jobs`` CPUs, at least 1)."""

    kind: Literal["local", "ray"] = "local"
    jobs: int = 1
    address: str | None = None

    def describe(self) -> str:
        """In words, for a progress line: ``local, 2 jobs`` or ``ray at HOST:6379``."""
        if self.kind == "local":
            return f"local, {self.jobs} job{'s' if self.jobs != 1 else ''}"
        if self.address:
            return f"ray at {self.address}"
        return f"ray, a local instance of {max(1, self.jobs)} CPUs"


def make_backend(kind: str, jobs: int = 1, address: str | None = None) -> Backend:
    """The :class:`Backend` of the command-line options ``--backend KIND``, ``--jobs N`` and
    ``--ray-address ADDR``, checked before anything is planned: an address without
    ``--backend ray``, Ray not installed, or a Ray address that cannot be joined within
    seconds is a :class:`~policyopt.errors.SpecError`. With an address, this process joins
    the cluster now (and stays joined until it exits, for every run of the command)."""
    from policyopt.errors import SpecError

    if kind not in BACKENDS:
        raise SpecError("--backend", f"unknown backend {kind!r}", f"use one of {BACKENDS}")
    if address and kind != "ray":
        raise SpecError("--ray-address", "goes with --backend ray", "add --backend ray")
    if kind == "ray":
        from policyopt.ray_backend import check_ray, connect

        check_ray(address)
        if address:
            connect(address, jobs)
    return Backend("ray" if kind == "ray" else "local", max(1, jobs), address or None)


class _TaskRunner(Protocol):
    """Yields ``(index, result, error)`` of every task, then is closed."""

    def __iter__(self) -> Iterator[tuple[int, Any, str | None]]: ...

    def close(self, finished: bool) -> None: ...


def _runner(tasks: list[tuple[Callable[[Any], Any], int, Any]], backend: Backend) -> _TaskRunner:
    """The runner of ``backend`` for ``tasks``."""
    if backend.kind == "ray":
        from policyopt.ray_backend import RayRunner

        return RayRunner(tasks, _attempt, jobs=backend.jobs, address=backend.address)
    return _Runner(tasks, backend.jobs)


class _Runner:
    """Runs tasks in this process (one job) or in a pool of processes.

    The pool is created up front (before any progress-bar thread starts) and is terminated
    by :meth:`close` if runs are still going, e.g. after Ctrl-C.
    """

    def __init__(self, tasks: list[tuple[Callable[[Any], Any], int, Any]], jobs: int) -> None:
        self.tasks = tasks
        self.pool = None
        if jobs > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context()
            self.pool = ctx.Pool(min(jobs, len(tasks)), initializer=_ignore_sigint)

    def __iter__(self) -> Iterator[tuple[int, Any, str | None]]:
        """Outcomes in list order for one job, in completion order for a pool."""
        if self.pool is None:
            return (_attempt(task) for task in self.tasks)
        return self.pool.imap_unordered(_attempt, self.tasks, chunksize=1)

    def close(self, finished: bool) -> None:
        """Shut the pool down: wait for it when every run finished, else kill it."""
        if self.pool is None:
            return
        if finished:
            self.pool.close()
        else:
            self.pool.terminate()
        self.pool.join()
        self.pool = None


def run_all(
    runs: Sequence[Run],
    run_one: Callable[[Run], Result],
    *,
    jobs: int = 1,
    backend: Backend | None = None,
    progress: bool = True,
    desc: str = "runs",
    label: Callable[[Run], str] | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    on_error: Callable[[int, str], None] | None = None,
) -> Outcome[Result]:
    """``run_one(run)`` for every run of ``runs``; the results and errors by index.

    ``jobs > 1`` runs them in that many processes (then ``run_one`` must be a top-level
    function and runs and results picklable), else one after the other in this process, in
    list order. ``backend`` (:class:`Backend`) runs them elsewhere, e.g. on Ray; without it,
    ``Backend("local", jobs)``. A progress bar over runs (``desc``, the last finished run's
    ``label``) goes to stderr when ``progress`` is true and stderr is a terminal.

    ``on_result(index, result)`` is called in this process as each run finishes (in
    completion order when ``jobs > 1``), ``on_error(index, error)`` for each run that raised
    an ``Exception``: its error, one line (:func:`one_line_error`), is recorded and the other
    runs go on. Ctrl-C raises :class:`RunsInterrupted` carrying the finished runs.
    """
    outcome: Outcome[Result] = Outcome(len(runs))
    results: dict[int, Result] = {}
    errors: dict[int, str] = {}
    where = backend if backend is not None else Backend("local", jobs)
    runner = _runner([(run_one, i, run) for i, run in enumerate(runs)], where)
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(runs), desc=desc, unit="run", disable=not show, file=sys.stderr)
    try:
        for index, result, error in runner:
            if error is None:
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
            else:
                errors[index] = error
                if on_error is not None:
                    on_error(index, error)
            if label is not None:
                bar.set_postfix_str(label(runs[index]), refresh=False)
            bar.update(1)
        outcome.complete = True
    except KeyboardInterrupt:
        raise RunsInterrupted(outcome) from None
    finally:
        bar.close()
        runner.close(finished=outcome.complete)
        outcome.results = {i: results[i] for i in sorted(results)}
        outcome.errors = {i: errors[i] for i in sorted(errors)}
    return outcome


def horizon_bar(horizon: float, desc: str) -> tqdm:
    """A progress bar over one run's simulated seconds, on stderr when it is a terminal and
    the run takes over a second; ``bar.update(t - bar.n)`` moves it to simulated time ``t``."""
    return tqdm(
        total=horizon,
        desc=desc,
        disable=not sys.stderr.isatty(),
        delay=1.0,
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} simulated s [{elapsed}<{remaining}]",
    )
