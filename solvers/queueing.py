"""Exact steady-state means of classic single-station queues (``docs/networks.md``).

Every function takes arrival rates in jobs per second and service times in seconds (means
``m``, second moments ``E[S^2]``), requires a load ``rho < 1`` (``ValueError`` otherwise) and
returns a mean number of jobs in the system (waiting plus in service); Little's law
``L = lambda W`` turns it into a mean time in the system.

* :func:`mm1_jobs`: M/M/1, ``L = rho / (1 - rho)``.
* :func:`mmc_jobs`: M/M/c, ``L = lambda m + C(c, a) rho / (1 - rho)`` with ``a = lambda m``,
  ``rho = a / c`` and ``C`` Erlang's C formula (the probability of waiting).
* :func:`mg1_jobs`: M/G/1 (Pollaczek-Khinchine), ``L = rho + lambda^2 E[S^2] / (2 (1 - rho))``.
* :func:`gim1_jobs`: GI/M/1, ``L = rho / (1 - sigma)`` with ``sigma`` the root in ``(0, 1)``
  of ``sigma = A*(mu (1 - sigma))``, ``A*`` the Laplace-Stieltjes transform of the
  interarrival time (the number in system an arrival finds is geometric with ratio
  ``sigma``).
* :func:`priority_jobs`: M/G/1 with static priority classes (class 0 highest), per class;
  non-preemptive (Cobham 1954) or preemptive-resume. With ``sigma_k`` the load of classes
  ``0..k`` and ``R_k = sum_{i <= k} lambda_i E[S_i^2] / 2``::

      non-preemptive:    W_k = R_{K-1} / ((1 - sigma_{k-1}) (1 - sigma_k)) + m_k
      preemptive-resume: W_k = m_k / (1 - sigma_{k-1}) + R_k / ((1 - sigma_{k-1}) (1 - sigma_k))

  and ``L_k = lambda_k W_k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from scipy import optimize


def _check_load(rho: float) -> None:
    if not 0 <= rho < 1:
        raise ValueError(f"the load {rho:.6g} is not below 1: no steady state")


def mm1_jobs(rate: float, mean: float) -> float:
    """Mean jobs in an M/M/1 queue with arrival ``rate`` (1/s) and mean service ``mean`` (s)."""
    rho = rate * mean
    _check_load(rho)
    return rho / (1.0 - rho)


def erlang_c(servers: int, offered: float) -> float:
    """Erlang's C formula: the probability that an arrival waits in an M/M/c queue with
    ``servers`` servers and offered load ``offered = lambda m`` (Erlangs, below ``servers``)."""
    _check_load(offered / servers)
    term, total = 1.0, 1.0  # a^n / n! for n = 0, summed over n < c
    for n in range(1, servers):
        term *= offered / n
        total += term
    last = term * offered / servers / (1.0 - offered / servers)  # a^c / c! / (1 - rho)
    return last / (total + last)


def mmc_jobs(rate: float, mean: float, servers: int) -> float:
    """Mean jobs in an M/M/c queue (``servers`` servers, arrival ``rate`` 1/s, mean service
    ``mean`` s)."""
    offered = rate * mean
    rho = offered / servers
    _check_load(rho)
    return offered + erlang_c(servers, offered) * rho / (1.0 - rho)


def mg1_jobs(rate: float, mean: float, second_moment: float) -> float:
    """Mean jobs in an M/G/1 queue (Pollaczek-Khinchine): arrival ``rate`` (1/s), service
    mean ``mean`` (s) and second moment ``second_moment`` (s^2)."""
    rho = rate * mean
    _check_load(rho)
    return rho + rate * rate * second_moment / (2.0 * (1.0 - rho))


def gim1_jobs(rate: float, mean: float, laplace: Callable[[float], float]) -> float:
    """Mean jobs in a GI/M/1 queue: arrivals at ``rate`` (1/s) with interarrival transform
    ``laplace(s) = E[exp(-s A)]``, exponential service of mean ``mean`` (s)."""
    rho = rate * mean
    _check_load(rho)
    mu = 1.0 / mean

    def gap(sigma: float) -> float:
        return laplace(mu * (1.0 - sigma)) - sigma

    top = 1.0 - 1e-3  # gap > 0 at 0; find a point below 1 where it is negative (the root
    while gap(top) >= 0:  # at 1 is the trivial one)
        top = 1.0 - (1.0 - top) / 10.0
        if 1.0 - top < 1e-14:
            raise ValueError("no root of sigma = A*(mu (1 - sigma)) below 1")
    sigma = optimize.brentq(gap, 0.0, top, xtol=1e-15)
    return rho / (1.0 - sigma)


def priority_jobs(
    rates: Sequence[float],
    means: Sequence[float],
    second_moments: Sequence[float],
    *,
    preemptive: bool,
) -> list[float]:
    """Mean jobs of each class at an M/G/1 station under a static priority (index 0 first),
    non-preemptive or preemptive-resume (formulas in the module docstring)."""
    loads = [r * m for r, m in zip(rates, means, strict=True)]
    _check_load(math.fsum(loads))
    residual = [r * s / 2.0 for r, s in zip(rates, second_moments, strict=True)]
    out: list[float] = []
    above = 0.0  # sigma_{k-1}
    for k, (rate, mean) in enumerate(zip(rates, means, strict=True)):
        upto = above + loads[k]  # sigma_k
        if preemptive:
            r_k = math.fsum(residual[: k + 1])
            time = mean / (1.0 - above) + r_k / ((1.0 - above) * (1.0 - upto))
        else:
            time = math.fsum(residual) / ((1.0 - above) * (1.0 - upto)) + mean
        out.append(rate * time)
        above = upto
    return out
