"""Arrival processes: rates, burstiness and shapes match what each one promises.

Statistical checks use fixed seeds and tolerances of several standard errors, so they are
deterministic and far from flaky. Time-varying processes are checked two ways: counts per
period against the integral of the rate curve, and the time-rescaling theorem (mapping each
arrival through the cumulative rate gives a unit-rate Poisson process, so its gaps must pass a
Kolmogorov-Smirnov test against Exp(1)).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from llmsim.errors import ConfigError
from llmsim.workload import (
    BatchArrivals,
    ConstantArrivals,
    DiurnalArrivals,
    FixedLength,
    GammaArrivals,
    OnOffArrivals,
    PiecewiseArrivals,
    PoissonArrivals,
    RateSegment,
    WorkloadConfig,
    generate,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gap_stats(times: np.ndarray) -> tuple[float, float]:
    gaps = np.diff(np.concatenate(([0.0], times)))
    return 1.0 / gaps.mean(), gaps.std() / gaps.mean()


# --- renewal processes ----------------------------------------------------------------------


def test_poisson_rate_cv_and_exponential_gaps() -> None:
    t = PoissonArrivals(rate=8.0).times(rng(1), 50_000)
    rate, cv = gap_stats(t)
    assert rate == pytest.approx(8.0, rel=0.03)
    assert cv == pytest.approx(1.0, rel=0.03)
    gaps = np.diff(np.concatenate(([0.0], t)))
    assert stats.kstest(gaps, "expon", args=(0, 1 / 8.0)).pvalue > 1e-3


def test_poisson_times_until_counts_and_window() -> None:
    t = PoissonArrivals(rate=20.0).times_until(rng(2), 500.0)
    assert t.min() > 0 and t.max() < 500.0 and np.all(np.diff(t) >= 0)
    assert len(t) == pytest.approx(10_000, abs=5 * 100)  # Poisson count: sd = sqrt(10000)


def test_poisson_stream_unchanged_by_the_new_fields() -> None:
    """The arrival and length draws of a plain workload are the same as before sessions,
    classes and traces existed: child streams 0, 1, 2 of the workload seed."""
    cfg = WorkloadConfig(
        arrival=PoissonArrivals(rate=3.0),
        prompt_tokens=FixedLength(value=7),
        output_tokens=FixedLength(value=3),
        num_requests=100,
    )
    s = generate(cfg, np.random.SeedSequence(42))
    child = np.random.SeedSequence(42).spawn(3)[0]
    expected = np.cumsum(np.random.default_rng(child).exponential(1 / 3.0, size=100))
    np.testing.assert_array_equal(s.arrival, expected)


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_rate_and_cv(cv: float) -> None:
    t = GammaArrivals(rate=5.0, cv=cv).times(rng(3), 50_000)
    rate, got_cv = gap_stats(t)
    assert rate == pytest.approx(5.0, rel=0.05)
    assert got_cv == pytest.approx(cv, rel=0.08)
    # The gap distribution itself (at cv 3 a few percent of gaps are below 1e-12 s, finer than
    # arrival times in float64 can resolve, so the check draws gaps directly).
    gaps = GammaArrivals(rate=5.0, cv=cv)._gaps(rng(3), 50_000)
    k = 1 / cv**2
    assert stats.kstest(gaps, "gamma", args=(k, 0, 1 / (5.0 * k))).pvalue > 1e-3


def test_gamma_cv_one_is_poisson() -> None:
    t = GammaArrivals(rate=4.0, cv=1.0).times(rng(4), 20_000)
    gaps = np.diff(np.concatenate(([0.0], t)))
    assert stats.kstest(gaps, "expon", args=(0, 0.25)).pvalue > 1e-3


def test_gamma_times_until_rate() -> None:
    t = GammaArrivals(rate=10.0, cv=2.0).times_until(rng(5), 2000.0)
    assert t.max() < 2000.0
    # count sd of a renewal process ~ cv * sqrt(rate * T)
    assert len(t) == pytest.approx(20_000, abs=5 * 2.0 * np.sqrt(20_000))


def test_constant_is_exact_and_draws_nothing() -> None:
    g = rng(6)
    state = g.bit_generator.state
    t = ConstantArrivals(rate=4.0).times(g, 5)
    np.testing.assert_allclose(t, [0.25, 0.5, 0.75, 1.0, 1.25])
    u = ConstantArrivals(rate=4.0).times_until(g, 2.0)
    np.testing.assert_allclose(u, [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    assert g.bit_generator.state == state
    _, cv = gap_stats(ConstantArrivals(rate=3.0).times(g, 1000))
    assert cv < 1e-9


def test_batch_all_at_zero() -> None:
    assert BatchArrivals().times(rng(), 4).tolist() == [0, 0, 0, 0]


# --- time-varying processes -----------------------------------------------------------------


def rescaled_gaps_pvalue(t: np.ndarray, cumulative: np.ndarray) -> float:
    """KS p-value of the gaps of Lambda(t) against Exp(1) (time-rescaling theorem)."""
    u = np.diff(np.concatenate(([0.0], cumulative)))
    return float(stats.kstest(u, "expon").pvalue)


def test_piecewise_counts_per_segment_match_schedule() -> None:
    proc = PiecewiseArrivals(
        schedule=(
            RateSegment(duration_s=60, rate=2.0),
            RateSegment(duration_s=60, rate=10.0),
            RateSegment(duration_s=30, rate=0.0),
            RateSegment(duration_s=60, rate=5.0),
        ),
        repeat=True,
    )
    cycles = 10
    t = proc.times_until(rng(7), 210.0 * cycles)
    phase = np.mod(t, 210.0)
    edges = [0, 60, 120, 150, 210]
    counts = np.histogram(phase, bins=edges)[0]
    expected = np.array([2 * 60, 10 * 60, 0, 5 * 60]) * cycles
    assert counts[2] == 0
    for got, exp in zip(counts, expected, strict=True):
        assert abs(got - exp) <= 5 * np.sqrt(max(exp, 1))
    assert proc.mean_rate == pytest.approx((120 + 600 + 300) / 210)
    # time rescaling: Lambda is piecewise linear, exact on a grid through the breakpoints
    grid = np.arange(0, 210.0 * cycles + 1, 30.0)
    lam = np.concatenate(([0.0], np.cumsum(proc.rate_at(grid[:-1] + 1e-9) * 30.0)))
    assert rescaled_gaps_pvalue(t, np.interp(t, grid, lam)) > 1e-3


def test_piecewise_without_repeat_holds_the_last_rate() -> None:
    proc = PiecewiseArrivals(
        schedule=(RateSegment(duration_s=10, rate=50.0), RateSegment(duration_s=10, rate=1.0))
    )
    t = proc.times(rng(8), 3000)
    late = t[t > 20.0]
    # after the schedule, rate 1/s: the later arrivals are spaced about 1 s apart
    assert np.diff(late).mean() == pytest.approx(1.0, rel=0.15)
    assert proc.rate_at(np.array([5.0, 15.0, 1000.0])).tolist() == [50.0, 1.0, 1.0]


def test_piecewise_rejects_no_traffic() -> None:
    with pytest.raises(ValueError, match="every segment has rate 0"):
        PiecewiseArrivals(schedule=(RateSegment(duration_s=1, rate=0.0),))


def test_diurnal_counts_follow_the_curve() -> None:
    proc = DiurnalArrivals(rate=20.0, amplitude=0.8, period_s=100.0, peak_at=0.25)
    days = 10
    t = proc.times_until(rng(9), 100.0 * days)
    bins = np.linspace(0, 100.0, 21)
    counts = np.histogram(np.mod(t, 100.0), bins=bins)[0]

    def cumulative(x: np.ndarray) -> np.ndarray:
        w = 2 * np.pi / proc.period_s
        s = np.sin(w * x - 2 * np.pi * proc.peak_at) - np.sin(-2 * np.pi * proc.peak_at)
        return proc.rate * (x + proc.amplitude * s / w)

    expected = np.diff(cumulative(bins)) * days
    assert stats.chisquare(counts, expected * counts.sum() / expected.sum()).pvalue > 1e-3
    # the busiest bin is around the peak (t = 25 s), the quietest half a day later
    assert 20 <= bins[np.argmax(counts)] <= 30
    assert 70 <= bins[np.argmin(counts)] <= 80
    assert len(t) == pytest.approx(20_000, abs=5 * np.sqrt(20_000))
    assert rescaled_gaps_pvalue(t, cumulative(t)) > 1e-3


def test_diurnal_times_n_gives_n_sorted() -> None:
    t = DiurnalArrivals(rate=5.0, amplitude=1.0, period_s=60.0).times(rng(10), 1234)
    assert len(t) == 1234 and np.all(np.diff(t) >= 0) and t[0] > 0


def test_onoff_fixed_periods() -> None:
    proc = OnOffArrivals(rate=20.0, on_s=2.0, off_s=8.0, off_rate=1.0)
    t = proc.times_until(rng(11), 5000.0)
    on = np.mod(t, 10.0) < 2.0
    # 500 periods: 20 req/s for 1000 s on, 1 req/s for 4000 s off
    assert on.sum() == pytest.approx(20_000, abs=5 * np.sqrt(20_000))
    assert (~on).sum() == pytest.approx(4_000, abs=5 * np.sqrt(4_000))
    assert len(t) / 5000.0 == pytest.approx(proc.mean_rate, rel=0.05)
    _, cv = gap_stats(t)
    assert cv > 1.5  # bursty


def test_onoff_exponential_periods_mean_rate_and_burstiness() -> None:
    proc = OnOffArrivals(rate=30.0, on_s=1.0, off_s=4.0, periods="exponential")
    t = proc.times_until(rng(12), 20_000.0)
    assert len(t) / 20_000.0 == pytest.approx(proc.mean_rate, rel=0.05)
    _, cv = gap_stats(t)
    assert cv > 1.5
    with pytest.raises(ValueError, match="no fixed rate curve"):
        proc.rate_at(np.array([0.0]))


def test_onoff_rejects_off_rate_above_rate() -> None:
    with pytest.raises(ValueError, match="off_rate"):
        OnOffArrivals(rate=1.0, on_s=1, off_s=1, off_rate=2.0)


@pytest.mark.parametrize(
    "proc",
    [
        PoissonArrivals(rate=3.0),
        GammaArrivals(rate=3.0, cv=2.0),
        OnOffArrivals(rate=9.0, on_s=1.0, off_s=2.0, periods="exponential"),
        DiurnalArrivals(rate=3.0, period_s=50.0),
        PiecewiseArrivals(schedule=(RateSegment(duration_s=5, rate=3.0),)),
    ],
    ids=lambda p: p.kind,
)
def test_same_generator_seed_same_times(proc: object) -> None:
    a = proc.times(rng(13), 500)  # type: ignore[attr-defined]
    b = proc.times(rng(13), 500)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a, b)
    c = proc.times_until(rng(13), 100.0)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(c, proc.times_until(rng(13), 100.0))  # type: ignore[attr-defined]


def test_piecewise_ending_at_zero_needs_duration() -> None:
    arrival = PiecewiseArrivals(
        schedule=(RateSegment(duration_s=5, rate=3.0), RateSegment(duration_s=5, rate=0.0))
    )
    with pytest.raises(ValueError, match="never reached"):
        WorkloadConfig(
            arrival=arrival,
            prompt_tokens=FixedLength(value=1),
            output_tokens=FixedLength(value=1),
            num_requests=10,
        )
    with pytest.raises(ConfigError, match="rate stays 0"):
        arrival.times(rng(), 10)
    cfg = WorkloadConfig(
        arrival=arrival,
        prompt_tokens=FixedLength(value=1),
        output_tokens=FixedLength(value=1),
        duration_s=60.0,
    )
    assert generate(cfg, np.random.SeedSequence(0)).arrival.max() < 5.0
