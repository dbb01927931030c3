"""Session set-up shared by the tests.

The compiled event loop (numba) is compiled the first time a run takes it on a machine (some
20 seconds on two shared cores, then cached next to its module). Doing that here, once and
before any test, keeps the compile out of the tests that bound their time (the documentation
examples, hypothesis deadlines).
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _compiled_loop_ready() -> None:
    """Run a short network in the compiled loop (compiling it, or loading the cache)."""
    from policyopt.model.networks_library import get_network
    from policyopt.sim.compiled_loop import numba_available
    from policyopt.sim.network_sim import NetworkSimulator

    if numba_available():
        NetworkSimulator(get_network("rybko-stolyar"), "fcfs", horizon=5.0).run()
