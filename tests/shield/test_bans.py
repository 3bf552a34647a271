"""fail2ban: counting, growing bans, allow-list, bounded memory, safe degradation."""

from __future__ import annotations

from streamgate.shield.admission import AdmissionGuard, AdmissionRules
from streamgate.shield.bans import Ban, BanRules, MemoryBanStore, SafeBans


def store(**kw: object) -> MemoryBanStore:
    return MemoryBanStore(BanRules(**kw))  # type: ignore[arg-type]


def test_n_failures_within_the_window_ban() -> None:
    bans = store(ban_after=5, window=60, ban_time=300)
    for t in range(4):
        assert bans.record_failure("1.2.3.4", "auth", t) is None
    ban = bans.record_failure("1.2.3.4", "auth", 4)
    assert isinstance(ban, Ban) and ban.until == 304
    assert bans.is_banned("1.2.3.4", 303) and not bans.is_banned("1.2.3.4", 304)
    assert not bans.is_banned("1.2.3.5", 10)


def test_failures_outside_the_window_do_not_add_up() -> None:
    bans = store(ban_after=3, window=10)
    for t in (0, 11, 22, 33):
        assert bans.record_failure("1.2.3.4", "auth", t) is None


def test_repeat_offences_ban_longer_up_to_the_cap() -> None:
    bans = store(ban_after=1, ban_time=100, max_ban_time=350)
    lengths = []
    now = 0.0
    for _ in range(4):
        ban = bans.record_failure("1.2.3.4", "auth", now)
        assert ban is not None
        lengths.append(ban.until - now)
        now = ban.until
    assert lengths == [100, 200, 350, 350]


def test_distinct_missing_names_count_retries_of_one_do_not() -> None:
    bans = store(ban_after=3)
    for _ in range(10):
        assert bans.record_missing("1.2.3.4", "live/not-yet", 0) is None
    assert bans.record_missing("1.2.3.4", "live/a", 0) is None
    assert bans.record_missing("1.2.3.4", "live/b", 0) is not None


def test_allow_listed_networks_are_never_banned() -> None:
    bans = store(ban_after=1, allow=BanRules.parse_allow(["10.0.0.0/8", "::1/128"]))
    for ip in ("10.9.8.7", "::1"):
        for t in range(50):
            assert bans.record_failure(ip, "auth", t) is None
        assert not bans.is_banned(ip, 50)


def test_reconfigure_keeps_bans_and_unbans_newly_trusted() -> None:
    bans = store(ban_after=1)
    bans.record_failure("1.2.3.4", "auth", 0)
    bans.record_failure("5.6.7.8", "auth", 0)
    bans.configure(BanRules(ban_after=5, allow=BanRules.parse_allow(["5.6.7.0/24"])))
    assert bans.is_banned("1.2.3.4", 1)
    assert not bans.is_banned("5.6.7.8", 1)


def test_tracked_ips_are_bounded() -> None:
    bans = store(ban_after=100, max_tracked=1000)
    for i in range(20_000):
        bans.record_failure(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "auth", 0)
    assert len(bans._records) == 1000


class BrokenStore(MemoryBanStore):
    def is_banned(self, ip: str, now: float) -> bool:
        raise ConnectionError("cluster backend unreachable")

    def record_failure(
        self, ip: str, reason: str, now: float, *, remote: bool = False
    ) -> Ban | None:
        raise ConnectionError("cluster backend unreachable")


def test_a_failing_store_degrades_protection_never_plays() -> None:
    safe = SafeBans(BrokenStore())
    assert safe.is_banned("1.2.3.4", 0) is False
    assert safe.record_failure("1.2.3.4", "auth", 0) is None
    assert safe.failures == 2
    guard = AdmissionGuard(AdmissionRules(), safe)
    assert guard.admit("1.2.3.4", 0) is None  # still admitted


def test_admission_limits() -> None:
    guard = AdmissionGuard(
        AdmissionRules(
            max_connections=4, max_connections_per_ip=2, connections_per_second_per_ip=3
        ),
        SafeBans(MemoryBanStore()),
    )
    assert guard.admit("a", 0) is None and guard.admit("a", 0) is None
    assert guard.admit("a", 0) == "max_connections_per_ip"
    guard.release("a")
    assert guard.admit("a", 0) is None  # the third connect this second
    guard.release("a")
    assert guard.admit("a", 0) == "connection_rate"
    assert guard.admit("a", 1.0) is None
    for ip in ("b", "c"):
        assert guard.admit(ip, 1.0) is None
    assert guard.admit("d", 1.0) == "max_connections"
    assert guard.admit("d", 1.0, allowed=True) == "max_connections"  # the global cap holds


def test_admission_rejects_banned_ips_and_forgets_idle_ones() -> None:
    bans = SafeBans(MemoryBanStore(BanRules(ban_after=1)))
    guard = AdmissionGuard(AdmissionRules(), bans)
    bans.record_failure("1.1.1.1", "auth", 0)
    assert guard.admit("1.1.1.1", 1) == "banned"
    assert guard.admit("1.1.1.1", 1, allowed=True) is None  # trusted: not subject to bans
    guard.release("1.1.1.1")
    for i in range(1000):
        guard.admit(f"2.2.{i >> 8}.{i & 255}", 2)
        guard.release(f"2.2.{i >> 8}.{i & 255}")
    guard.sweep(100)
    assert guard.tracked_ips == 0
