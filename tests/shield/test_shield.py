"""Backoff, breaker, token bucket and negative cache, on exact clocks."""

from __future__ import annotations

import random

import pytest

from streamgate.shield import Backoff, BreakerState, CircuitBreaker, NegativeCache, TokenBucket


def test_backoff_ceilings_double_and_cap() -> None:
    b = Backoff(0.5, 30.0)
    assert [b.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.ceiling(10_000) == 30.0  # no overflow on long outages


def test_backoff_delays_are_full_jitter_within_ceiling() -> None:
    rng = random.Random(7)
    b = Backoff(0.5, 30.0, uniform=rng.uniform)
    delays = [b.next_delay() for _ in range(40)]
    for n, d in enumerate(delays):
        assert 0.0 <= d <= min(30.0, 0.5 * 2**n)
    late = delays[10:]
    assert max(late) > 15 and min(late) < 15  # spread over the whole range, not a fixed pause


def test_backoff_records_schedule_with_fake_uniform() -> None:
    b = Backoff(0.5, 30.0, uniform=lambda lo, hi: hi)  # worst case: always the ceiling
    assert [b.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    b.reset()
    assert b.next_delay() == 0.5


def test_backoff_is_bounded_in_attempts() -> None:
    b = Backoff(0.5, 30.0, max_attempts=3)
    for _ in range(3):
        b.next_delay()
    assert b.exhausted
    with pytest.raises(RuntimeError):
        b.next_delay()


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_breaker_opens_after_threshold_and_fails_fast() -> None:
    br = CircuitBreaker(threshold=3, reset_after=10.0)
    for t in range(2):
        assert br.allow(t)
        br.failure(t)
    assert br.current(2) is BreakerState.CLOSED
    br.failure(2)
    assert br.current(2) is BreakerState.OPEN
    assert not br.allow(5) and not br.allow(11.9)
    assert br.opens == 1


def test_breaker_half_open_lets_exactly_one_probe() -> None:
    br = CircuitBreaker(threshold=1, reset_after=10.0)
    br.failure(0)
    assert br.allow(10.0)  # the probe
    assert not br.allow(10.1) and not br.allow(10.2)
    br.success()
    assert br.current(10.3) is BreakerState.CLOSED and br.allow(10.3) and br.allow(10.3)


def test_breaker_failed_probe_reopens_for_a_full_period() -> None:
    br = CircuitBreaker(threshold=5, reset_after=10.0)
    for _ in range(5):
        br.failure(0)
    assert br.allow(10)
    br.failure(10)
    assert br.current(15) is BreakerState.OPEN and not br.allow(19.9)
    assert br.allow(20)
    assert br.opens == 2


def test_breaker_success_resets_consecutive_count() -> None:
    br = CircuitBreaker(threshold=3, reset_after=1.0)
    br.failure(0)
    br.failure(0)
    br.success()
    br.failure(0)
    br.failure(0)
    assert br.current(0) is BreakerState.CLOSED


def test_token_bucket_caps_rate_and_burst() -> None:
    tb = TokenBucket(rate=5, burst=5, now=0)
    assert sum(tb.try_take(0) for _ in range(20)) == 5
    assert not tb.try_take(0.1)
    assert tb.try_take(0.2)  # 0.2 s * 5/s = 1 token
    # over 10 s at most 5/s + the burst
    taken = sum(tb.try_take(0.2 + i * 0.01) for i in range(1000))
    assert taken <= 5 * 10 + 5


def test_token_bucket_never_exceeds_burst_after_idle() -> None:
    tb = TokenBucket(rate=2, burst=3, now=0)
    assert tb.available(1000) == 3


def test_negative_cache_expires_after_ttl() -> None:
    nc = NegativeCache(ttl=10)
    nc.add(("live", "x"), now=0, reason="not found")
    assert nc.get(("live", "x"), 9.99) == "not found"
    assert nc.get(("live", "x"), 10.0) is None
    assert len(nc) == 0


def test_negative_cache_is_bounded() -> None:
    nc = NegativeCache(ttl=10, max_entries=100)
    for i in range(1000):
        nc.add(i, now=0)
    assert len(nc) == 100
    assert nc.get(999, 1) is not None and nc.get(0, 1) is None


def test_negative_cache_purge_drops_only_expired() -> None:
    nc = NegativeCache(ttl=10)
    nc.add("a", 0)
    nc.add("b", 5)
    nc.purge(12)
    assert nc.get("a", 12) is None and nc.get("b", 12) == ""


def test_negative_cache_disabled_with_zero_ttl() -> None:
    nc = NegativeCache(ttl=0)
    nc.add("a", 0)
    assert nc.get("a", 0) is None


def test_rate_window_never_exceeds_rate_in_any_window() -> None:
    from streamgate.shield import RateWindow

    rw = RateWindow(20)
    rng = random.Random(3)
    t, taken = 0.0, []
    for _ in range(20_000):
        t += rng.expovariate(200)  # offered at ~10x the limit
        if rw.try_take(t):
            taken.append(t)
    for i in range(len(taken) - 20):
        assert taken[i + 20] - taken[i] >= 1.0  # 21 events never fit in one second
    assert len(taken) >= 0.9 * 20 * t


def test_rate_window_below_one_per_second() -> None:
    from streamgate.shield import RateWindow

    rw = RateWindow(0.5)
    assert rw.try_take(0) and not rw.try_take(1.9) and rw.try_take(2.0)
