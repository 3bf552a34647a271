"""The global cap's reserve for allow-listed networks, and its hard ceiling."""

from __future__ import annotations

import pytest

from streamgate.config import load_settings
from streamgate.errors import ConfigError
from streamgate.server.context import _admission_rules
from streamgate.shield.admission import AdmissionGuard, AdmissionRules
from streamgate.shield.bans import MemoryBanStore, SafeBans


def guard(cap: int, reserved: int) -> AdmissionGuard:
    rules = AdmissionRules(
        max_connections=cap,
        max_connections_per_ip=1_000,
        connections_per_second_per_ip=1_000.0,
        reserved_connections=reserved,
    )
    return AdmissionGuard(rules, SafeBans(MemoryBanStore()))


def test_others_stop_short_of_the_reserve_and_trusted_ones_use_it() -> None:
    g = guard(cap=10, reserved=3)
    assert [g.admit(f"10.0.0.{i}", 0) for i in range(8)] == [None] * 7 + ["max_connections"]
    assert [g.admit("127.0.0.1", 0, allowed=True) for _ in range(4)] == [None] * 3 + [
        "max_connections"  # the hard ceiling binds trusted addresses too
    ]
    assert g.connections == 10
    g.release("10.0.0.1")
    assert g.admit("10.0.0.9", 0) == "max_connections"  # still inside the reserve
    assert g.admit("127.0.0.1", 0, allowed=True) is None


def test_trusted_connections_count_against_the_open_part_too() -> None:
    g = guard(cap=10, reserved=3)
    for _ in range(7):
        assert g.admit("127.0.0.1", 0, allowed=True) is None
    assert g.admit("10.0.0.1", 0) == "max_connections"


def test_no_reserve_is_the_plain_cap() -> None:
    g = guard(cap=3, reserved=0)
    assert [g.admit("10.0.0.1", 0) for _ in range(4)] == [None, None, None, "max_connections"]


def test_the_reserve_is_configured_only_with_an_allow_list() -> None:
    with_allow = load_settings(None, limits={"allow": ["10.0.0.0/8"], "max_connections": 100})
    assert _admission_rules(with_allow).reserved_connections == 50  # the default
    without = load_settings(None, limits={"max_connections": 20})  # 50 >= 20: not an error
    assert _admission_rules(without).reserved_connections == 0


def test_a_reserve_as_large_as_the_cap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"reserved_connections .* less than max_connections"):
        load_settings(
            None,
            limits={"allow": ["10.0.0.0/8"], "max_connections": 20, "reserved_connections": 20},
        )
