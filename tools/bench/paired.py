"""Paired comparisons for interleaved on/off benchmark runs: the median of per-pair differences and a
distribution-free confidence interval for it (from the sign test); pure.

Each pair is one run with the thing under test and one without, taken back to back, so slow drift in the
machine's other load (a shared VM) hits both halves alike; the median of the pairs' relative differences
shrugs off the pairs a burst of other work spoiled, and the interval says how far the median can be trusted
with this many pairs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import List, Sequence, Tuple


@dataclass(frozen=True)
class Paired:
    """Median of the pairs' differences in percent, its interval, and the interval's actual confidence."""

    median_pct: float
    ci_pct: Tuple[float, float]
    confidence: float
    pairs: int


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, j) for j in range(k + 1)) / 2.0 ** n


def sign_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float, float]:
    """The order-statistic interval (x_(k), x_(n+1-k)) for the median of ``values``, with the largest ``k``
    whose coverage 1 - 2·P(X <= k-1) is at least ``level``; with too few values for that, the full range and
    its coverage. Returns (low, high, coverage)."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("no values")
    k = 1
    while k + 1 <= n // 2 and 1 - 2 * _binom_cdf(k, n) >= level:
        k += 1
    return xs[k - 1], xs[n - k], 1 - 2 * _binom_cdf(k - 1, n)


def relative(on: Sequence[float], off: Sequence[float], level: float = 0.95) -> Paired:
    """Pairs (on[i], off[i]): how much slower ``on`` is than ``off``, in percent of ``off``."""
    if len(on) != len(off) or not on:
        raise ValueError("on and off need the same, non-zero number of runs")
    diffs = [(a / b - 1.0) * 100.0 for a, b in zip(on, off)]
    lo, hi, conf = sign_interval(diffs, level)
    med = statistics.median(diffs)
    return Paired(round(med, 2), (round(lo, 2), round(hi, 2)), round(conf, 3), len(diffs))


def steady(before: float, after: float, normal: float, tolerance: float) -> bool:
    """True when speed probes taken just before and just after a run both came within ``tolerance`` (a
    fraction) of the CPU's ``normal`` probe time: it ran at its usual speed across the run, not in one of the
    slow spells a shared host's other load causes (which change a job's CPU time by tens of percent)."""
    return max(before, after) <= normal * (1.0 + tolerance)


def kept_pairs(on: Sequence[Tuple[float, bool]], off: Sequence[Tuple[float, bool]]
               ) -> Tuple[List[float], List[float]]:
    """The pairs (on[i], off[i]) of (value, kept) runs in which both halves were kept, as two lists."""
    a: List[float] = []
    b: List[float] = []
    for (x, x_ok), (y, y_ok) in zip(on, off):
        if x_ok and y_ok:
            a.append(x)
            b.append(y)
    return a, b


def mad_pct(values: Sequence[float]) -> float:
    """The median absolute deviation of ``values`` in percent of their median: how much one run of the same
    job differs from the next, robust to the odd disturbed run."""
    med = statistics.median(values)
    return statistics.median(abs(v - med) for v in values) / med * 100.0
