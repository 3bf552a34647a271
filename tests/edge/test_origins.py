"""The origin pool keeps the origins' health: leases, and each link's outcome told once."""

from __future__ import annotations

from streamgate.edge.origins import Lease, OriginPool, Refusal
from streamgate.shield import BreakerState


def pool(origins: int = 1, *, breaker_failures: int = 2, max_upstreams: int = 10) -> OriginPool:
    return OriginPool.from_urls(
        [f"rtmp://127.0.0.1:{19350 + i}" for i in range(origins)],
        max_upstreams=max_upstreams,
        max_connects_per_second=1000,
        breaker_failures=breaker_failures,
        breaker_reset=10.0,
        now=0.0,
    )


def lease(origins: OriginPool, now: float = 0.0, exclude: frozenset[int] = frozenset()) -> Lease:
    choice = origins.acquire(now, exclude)
    assert isinstance(choice, Lease), choice
    return choice


def test_a_lease_names_its_origin_by_index() -> None:
    origins = pool(3)
    second = lease(origins, exclude=frozenset({0}))
    assert second.index == 1 and second.origin is origins.origins[1]
    assert (second.origin.links, second.origin.connects) == (1, 1)
    origins.release(second)
    assert second.origin.links == 0


def test_each_link_outcome_is_told_to_the_breaker_once() -> None:
    origins = pool(breaker_failures=2)
    origin = origins.origins[0]
    first = lease(origins)
    origins.record_failure(first, "connection refused", 1.0)
    origins.record_failure(first, "again", 1.0)  # the same link: not a second failure
    origins.record_success(first)  # nor a success after its verdict
    assert (origin.failures, origin.last_error, origin.breaker.failures) == (
        1,
        "connection refused",
        1,
    )
    second = lease(origins)
    origins.record_failure(second, "timed out", 2.0)
    assert origin.breaker.current(2.0) is BreakerState.OPEN
    assert isinstance(origins.acquire(2.5), Refusal)


def test_a_success_closes_the_count_and_a_miss_is_not_a_failure() -> None:
    origins = pool(breaker_failures=2)
    origin = origins.origins[0]
    origins.record_failure(lease(origins), "refused", 1.0)
    answered = lease(origins)
    origins.record_miss(answered)
    origins.record_success(answered)
    assert (origin.missing, origin.failures, origin.breaker.failures) == (1, 1, 0)
    origins.record_failure(answered, "late", 2.0)  # judged already
    assert origin.failures == 1


def test_a_probe_released_without_a_verdict_lets_the_next_probe_in() -> None:
    origins = pool(breaker_failures=1)
    origins.record_failure(lease(origins), "refused", 0.0)
    probe = lease(origins, now=10.0)  # past the reset: the one half-open probe
    assert probe.probe
    assert isinstance(origins.acquire(10.0), Refusal)  # no second probe meanwhile
    origins.release(probe)  # abandoned before the origin answered
    assert lease(origins, now=10.0).probe


def test_a_judged_probe_keeps_its_verdict_when_released() -> None:
    origins = pool(breaker_failures=1)
    origins.record_failure(lease(origins), "refused", 0.0)
    probe = lease(origins, now=10.0)
    origins.record_failure(probe, "refused again", 10.0)
    origins.release(probe)
    assert isinstance(origins.acquire(10.0), Refusal)  # open again for a full period
