"""The paired on/off statistics of the benchmarks: median of differences and its sign-test interval."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.bench import paired  # noqa: E402


def test_interval_coverage_follows_the_binomial() -> None:
    # 8 values: only (min, max) reaches 95 % (99.2 %); 10 values: (2nd, 9th) with 97.9 %
    lo, hi, conf = paired.sign_interval([float(x) for x in range(8)])
    assert (lo, hi) == (0.0, 7.0) and conf == pytest.approx(1 - 2 / 256)
    lo, hi, conf = paired.sign_interval([float(x) for x in range(10)])
    assert (lo, hi) == (1.0, 8.0) and conf == pytest.approx(1 - 2 * 11 / 1024)
    assert conf >= 0.95


def test_too_few_values_give_the_range_and_its_lower_confidence() -> None:
    lo, hi, conf = paired.sign_interval([3.0, 1.0, 2.0])
    assert (lo, hi) == (1.0, 3.0) and conf == pytest.approx(0.75)


def test_relative_pairs_each_run_with_its_partner() -> None:
    # a drift that doubles both halves of a pair cancels: every pair is 10 % slower
    off = [1.0, 2.0, 4.0, 8.0, 1.0, 2.0]
    on = [x * 1.1 for x in off]
    r = paired.relative(on, off)
    assert r.median_pct == pytest.approx(10.0) and r.ci_pct == pytest.approx((10.0, 10.0))
    assert r.pairs == 6


def test_a_faster_on_half_is_a_negative_overhead() -> None:
    r = paired.relative([0.9, 0.95, 0.9], [1.0, 1.0, 1.0])
    assert r.median_pct == pytest.approx(-10.0)
    assert r.ci_pct[0] <= r.median_pct <= r.ci_pct[1]


def test_mismatched_runs_are_refused() -> None:
    with pytest.raises(ValueError):
        paired.relative([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired.relative([], [])


def test_a_run_is_steady_only_when_both_probes_are_near_the_normal_speed() -> None:
    assert paired.steady(10.5, 10.9, 10.0, 0.10)
    assert not paired.steady(10.5, 11.2, 10.0, 0.10)  # slowed down during the run
    assert not paired.steady(13.0, 10.1, 10.0, 0.10)  # came out of a slow spell during the run


def test_kept_pairs_drop_a_pair_when_either_half_was_discarded() -> None:
    on = [(1.0, True), (2.0, False), (3.0, True), (4.0, True)]
    off = [(5.0, True), (6.0, True), (7.0, False), (8.0, True)]
    assert paired.kept_pairs(on, off) == ([1.0, 4.0], [5.0, 8.0])
    assert paired.kept_pairs(on[:1], off) == ([1.0], [5.0])


def test_mad_pct_ignores_one_wild_run() -> None:
    assert paired.mad_pct([1.0, 1.01, 0.99, 1.0, 5.0]) == pytest.approx(1.0)
