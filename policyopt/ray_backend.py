"""The Ray backend of the sweep runner (:mod:`policyopt.sweep`): runs on a Ray cluster.

Ray is optional (``pip install "policyopt[ray]"``); this module imports it only when a Ray
backend is used. :func:`check_ray` refuses early, with a one-line
:class:`~policyopt.errors.SpecError`, when Ray is not installed or when the address given
does not answer within :data:`CONNECT_TIMEOUT_S` seconds (``ray.init`` itself would retry
for 20 s or more). "Answer" means more than accepting a TCP connection (a proxy or another
service may do that): the address must speak HTTP/2, as a Ray head's gRPC server does, by
answering the HTTP/2 connection preface with a ``SETTINGS`` frame; then :func:`connect`
gives Ray's own connection attempts the same few seconds. :class:`RayRunner` submits one Ray
task per run, yields the outcomes as they finish, and on close cancels what is left and
shuts down the Ray instance it started (a cluster named by address is only disconnected
from; it keeps running).

Every task is the runner's ``attempt`` function applied to ``(run_one, index, run)``: Ray
pickles ``run_one`` by reference (a top-level function of the package, which every worker
must be able to import: the same policyopt installed on every node) and ``run`` by value (a
spec: pydantic models and numbers). Nothing else crosses to the workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from policyopt.errors import SpecError

CONNECT_TIMEOUT_S = 5.0
"""How long :func:`check_ray` waits for the TCP connection to a Ray address, seconds."""

DEFAULT_RAY_PORT = 6379
"""The port of a Ray head's GCS when an address gives none (``ray start --head``'s default)."""

RAY_CLIENT_PORT = 10001
"""The default port of a ``ray://`` (Ray Client) address."""

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""The HTTP/2 client connection preface followed by an empty ``SETTINGS`` frame."""

HTTP2_SETTINGS = 0x04
"""The frame type a gRPC server sends first in answer to the preface."""

INSTALL_FIX = 'install it with pip install "policyopt[ray]" (or pip install "ray>=2.9")'


def ray_module() -> Any:
    """The ``ray`` module, or a :class:`SpecError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SpecError("--backend", "ray is not installed", INSTALL_FIX) from None
    return ray


def host_port(address: str) -> tuple[str, int] | None:
    """The host and port a Ray ``address`` connects to (``HOST``, ``HOST:PORT``,
    ``ray://HOST[:PORT]``), or ``None`` for ``auto`` / ``local``, which Ray resolves itself."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    port = DEFAULT_RAY_PORT
    if text.startswith("ray://"):
        text, port = text[len("ray://") :], RAY_CLIENT_PORT
    text = text.split("/", 1)[0]
    host, sep, tail = text.rpartition(":")
    if not sep:
        return text, port
    try:
        return host.strip("[]"), int(tail)
    except ValueError:
        raise SpecError(
            "--ray-address",
            f"{address!r} has no valid port",
            "give HOST:PORT as printed by ray start --head (e.g. 10.0.0.5:6379)",
        ) from None


def speaks_grpc(target: tuple[str, int], timeout: float) -> str | None:
    """``None`` when ``target`` answers the HTTP/2 preface with a ``SETTINGS`` frame within
    ``timeout`` seconds (as a gRPC server, a Ray head, does), else why not, in words."""
    try:
        with socket.create_connection(target, timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "the connection was closed without an answer: not a Ray head"
                head += chunk
    except TimeoutError:
        return "no answer"
    except OSError as err:
        return err.strerror or str(err)
    if head[3] != HTTP2_SETTINGS:
        return "it answered, but not as a Ray head (no gRPC server)"
    return None


def check_ray(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a Ray backend that cannot run: Ray missing, or ``address`` not answering as a
    Ray head (:func:`speaks_grpc`) within ``timeout`` seconds. ``None`` (a local instance)
    needs Ray only."""
    ray_module()
    if not address:
        return
    target = host_port(address)
    if target is None:
        return
    why = speaks_grpc(target, timeout)
    if why is not None:
        raise SpecError(
            "--ray-address",
            f"cannot reach a Ray cluster at {address} ({why}; waited at most {timeout:g} s)",
            "start its head with ray start --head and give the address it prints, or drop "
            "--ray-address to start a local Ray instance",
        )


def connect(address: str | None, jobs: int) -> bool:
    """Connect to the Ray cluster at ``address``, or start a local instance with ``jobs``
    CPUs (at least 1, no dashboard); ``True`` when this call started or joined it (and the
    caller should shut it down), ``False`` when Ray was already initialized.

    Joining a cluster retries for at most :data:`CONNECT_TIMEOUT_S` seconds (Ray's
    ``RAY_gcs_server_port_wait_time_s``, unless the environment sets it); a failure is a
    :class:`SpecError` naming ``--ray-address``.
    """
    ray = ray_module()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if not address:
        # the workers inherit this process's environment (PYTHONPATH included), so they
        # import the same policyopt as the driver
        ray.init(address="local", num_cpus=max(1, jobs), include_dashboard=False, **options)
        return True
    check_ray(address)
    key = "RAY_gcs_server_port_wait_time_s"
    before = os.environ.get(key)
    os.environ.setdefault(key, f"{CONNECT_TIMEOUT_S:.0f}")
    try:
        with tempfile.TemporaryFile(mode="w+") as log:
            try:
                with quiet_stderr(log):  # Ray's core logs each failed attempt in C++
                    ray.init(address=address, **options)
            except (ConnectionError, RuntimeError) as err:
                raise SpecError(
                    "--ray-address",
                    f"{address} answers but Ray could not join it as a cluster "
                    f"({last_gcs_error(log) or one_line(err)})",
                    "give the address ray start --head printed; a head with token "
                    "authentication (the default of recent Ray) needs RAY_AUTH_MODE=token set "
                    "for this command too",
                ) from None
    finally:
        if before is None:
            os.environ.pop(key, None)
    return True


@contextlib.contextmanager
def quiet_stderr(into: IO[str]) -> Iterator[None]:
    """Send what is written to file descriptor 2 (Python and C++ alike) into ``into``."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(into.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def last_gcs_error(log: IO[str]) -> str | None:
    """The last reason Ray's core gave for not reaching the cluster, from its log lines."""
    log.flush()
    log.seek(0)
    marker = "Failed to get cluster ID from GCS server: "
    reasons = [line.split(marker, 1)[1] for line in log.read().splitlines() if marker in line]
    return one_line(reasons[-1]) if reasons else None


def one_line(err: BaseException) -> str:
    """An exception's text as one line, at most 160 characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


class RayRunner:
    """One Ray task per task ``(run_one, index, run)``, each running ``attempt`` on it.

    Iterating yields ``attempt``'s ``(index, result, error)`` in completion order; a task
    whose worker died yields its error as one line. :meth:`close` cancels the tasks still
    running unless all finished, and shuts Ray down if this runner started it.
    """

    def __init__(
        self,
        tasks: list[tuple[Callable[[Any], Any], int, Any]],
        attempt: Callable[[tuple[Callable[[Any], Any], int, Any]], tuple[int, Any, str | None]],
        *,
        jobs: int = 1,
        address: str | None = None,
    ) -> None:
        self.ray = ray_module()
        self.owned = connect(address, jobs)
        remote = self.ray.remote(num_cpus=1, max_retries=0)(attempt)
        self.pending = {remote.remote(task): task[1] for task in tasks}

    def __iter__(self) -> Iterator[tuple[int, Any, str | None]]:
        from policyopt.sweep import one_line_error

        while self.pending:
            done, _ = self.ray.wait(list(self.pending), num_returns=1)
            for ref in done:
                index = self.pending.pop(ref)
                try:
                    yield self.ray.get(ref)
                except Exception as err:  # the worker died, or Ray failed the task
                    yield index, None, one_line_error(err)

    def close(self, finished: bool) -> None:
        """Cancel the unfinished tasks (after an interrupt) and shut down an owned instance."""
        if not finished:
            for ref in list(self.pending):
                self.ray.cancel(ref, force=True)
        self.pending.clear()
        if self.owned:
            self.ray.shutdown()
            self.owned = False
