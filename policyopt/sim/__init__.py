"""The single-engine simulator and what it reports."""

from policyopt.sim.engine_sim import BatchRecord, EngineSimulator, RequestList
from policyopt.sim.result import EngineResult
from policyopt.sim.run import simulate

__all__ = ["BatchRecord", "EngineResult", "EngineSimulator", "RequestList", "simulate"]
