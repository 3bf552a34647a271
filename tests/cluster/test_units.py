"""The cluster's pure logic on a fake clock, no Redis: decoding what Redis holds,
merging bans, applying pub/sub messages, the budget's window."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.cluster.budget import window_terms
from streamgate.cluster.entries import (
    BanEntry,
    FailureEntry,
    LiveEntry,
    Malformed,
    MissEntry,
    ReleaseEntry,
    decode_ban,
    decode_message,
    decode_miss,
    decode_node,
    encode_message,
)
from streamgate.cluster.replicator import Replicator
from streamgate.cluster.settings import cluster_options
from streamgate.config import load_settings
from streamgate.shield.bans import Ban, MemoryBanStore
from streamgate.shield.negcache import NegativeCache

WALL = 1_700_000_000.0  # the fake wall clock; the fake loop clock starts at 0

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {"k": st.sampled_from(["ban", "miss", "fail", "live", "free", "other"])},
    optional={
        "ip": st.sampled_from(["10.0.0.1", "::1", "999.1.1.1", "", "x"]) | json_values,
        "until": st.sampled_from([0, WALL + 60, 1e300, float("nan")]) | json_values,
        "offences": st.integers(-2, 100) | json_values,
        "reason": st.text(max_size=300) | json_values,
        "changed": st.sampled_from([WALL, -1.0]) | json_values,
        "app": st.text(max_size=5) | json_values,
        "name": st.text(max_size=5) | json_values,
        "expires": st.sampled_from([WALL + 5, 0]) | json_values,
        "kind": st.sampled_from(["failure", "missing", "boom"]) | json_values,
        "detail": st.text(max_size=5) | json_values,
    },
)
DECODERS = (decode_ban, decode_miss, decode_node)


def check_decoders(raw: object) -> None:
    for decode in DECODERS:
        with contextlib.suppress(Malformed):
            decode(raw, WALL)
    try:
        _, items = decode_message(raw, WALL)
    except Malformed:
        return
    kinds = BanEntry | MissEntry | LiveEntry | FailureEntry | ReleaseEntry | Malformed
    assert all(isinstance(e, kinds) for e in items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_malformed(raw: bytes) -> None:
    check_decoders(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_decodes_or_raises_malformed(value: Any) -> None:
    check_decoders(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=6), st.text(max_size=10) | json_values)
def test_messages_of_any_events_keep_the_good_ones(items: list[dict[str, Any]], node: Any) -> None:
    raw = json.dumps({"node": node, "events": items})
    check_decoders(raw)


def test_deeply_nested_json_is_malformed_not_a_recursion_error() -> None:
    raw = "[" * 100_000 + "]" * 100_000
    for decode in DECODERS:
        with pytest.raises(Malformed):
            decode(raw, WALL)
    with pytest.raises(Malformed):
        decode_message(raw, WALL)


# ------------------------------------------------------------------ bans


def test_ban_merge_is_last_writer_wins_on_the_time_of_the_change() -> None:
    store = MemoryBanStore()
    assert store.merge(Ban("10.0.0.1", 100.0, 1, "auth"), changed=10.0, now=10.0)
    assert store.is_banned("10.0.0.1", 11.0)
    # An older lift arriving late changes nothing.
    assert not store.merge(Ban("10.0.0.1", 0.0, 1, ""), changed=9.0, now=11.0)
    assert store.is_banned("10.0.0.1", 11.0)
    # A newer lift wins; then an older ban (delayed on its way) does not return.
    assert store.merge(Ban("10.0.0.1", 0.0, 1, ""), changed=12.0, now=12.0)
    assert not store.is_banned("10.0.0.1", 12.5)
    assert not store.merge(Ban("10.0.0.1", 200.0, 2, "auth"), changed=11.0, now=13.0)
    assert not store.is_banned("10.0.0.1", 13.0)
    # A newer ban does, with its offences (the doubling goes on from there).
    assert store.merge(Ban("10.0.0.1", 300.0, 2, "auth"), changed=14.0, now=14.0)
    assert store.is_banned("10.0.0.1", 299.0) and not store.is_banned("10.0.0.1", 300.0)


# ------------------------------------------------------------------ the replicator


class Clocks:
    def __init__(self) -> None:
        self.loop = 0.0
        self.wall = WALL

    def advance(self, seconds: float) -> None:
        self.loop += seconds
        self.wall += seconds


def replicator(clocks: Clocks) -> tuple[Replicator, MemoryBanStore, NegativeCache]:
    settings = load_settings(None, cluster={"redis_url": "redis://127.0.0.1:1/0", "node_id": "me"})
    options = cluster_options(settings)
    assert options is not None
    bans, negative = MemoryBanStore(), NegativeCache(10.0)
    rep = Replicator(options, bans, negative, lambda: clocks.loop, lambda: clocks.wall)
    return rep, bans, negative


def test_receive_applies_others_events_on_the_local_clock_and_ignores_its_own() -> None:
    clocks = Clocks()
    clocks.advance(100.0)  # the loop clock at 100 is wall WALL + 100
    rep, bans, negative = replicator(clocks)
    verdicts: list[tuple[tuple[str, str], bool]] = []
    rep.on_verdict = lambda key, missing: verdicts.append((key, missing))
    wall = clocks.wall
    rep.receive(encode_message("other", [
        BanEntry("10.0.0.9", wall + 30, 1, "auth", wall),
        MissEntry("live", "gone", wall + 4, "no such stream"),
    ]))  # fmt: skip
    assert bans.is_banned("10.0.0.9", 129.0) and not bans.is_banned("10.0.0.9", 130.5)
    assert negative.holds(("live", "gone"), 103.9) == "no such stream"
    assert negative.holds(("live", "gone"), 104.1) is None  # the sender's expiry, not a new ttl
    assert verdicts == [(("live", "gone"), True)]
    assert rep.received() == {"ban": 1, "miss": 1}

    rep.receive(encode_message("me", [MissEntry("live", "mine", wall + 4, "")]))  # our echo
    assert negative.holds(("live", "mine"), 101.0) is None

    rep.receive(encode_message("other", [LiveEntry("live", "gone")]))  # found after all
    assert negative.holds(("live", "gone"), 101.0) is None
    assert verdicts[-1] == (("live", "gone"), False)


def test_receive_counts_garbage_and_keeps_the_good_events_around_it() -> None:
    clocks = Clocks()
    rep, bans, _ = replicator(clocks)
    good = BanEntry("10.0.0.7", clocks.wall + 60, 1, "auth", clocks.wall).to_json()
    rep.receive(json.dumps({"node": "x", "events": [1, {"k": "ban", "ip": "nope"}, good]}))
    rep.receive(b"\xff\x00")
    assert bans.is_banned("10.0.0.7", clocks.loop + 1)
    assert rep.malformed() == {"event": 1, "ban": 1, "message": 1}


def test_a_late_older_lift_from_the_wire_does_not_undo_a_newer_local_ban() -> None:
    clocks = Clocks()
    rep, bans, _ = replicator(clocks)
    clocks.advance(5.0)
    for _ in range(bans.rules.ban_after):
        bans.record_failure("10.0.0.8", "auth_bad_signature", clocks.loop)
    assert bans.is_banned("10.0.0.8", clocks.loop)
    rep.receive(encode_message("other", [BanEntry("10.0.0.8", 0.0, 1, "", clocks.wall - 2)]))
    assert bans.is_banned("10.0.0.8", clocks.loop)


# ------------------------------------------------------------------ the budget's window


@pytest.mark.parametrize(
    ("rate", "margin", "terms"),
    [
        (10.0, 0.05, (10, 1050)),  # 10 in 1 s, widened by the 50 ms an answer may take
        (10.0, 0.0, (10, 1000)),
        (2.5, 0.1, (2, 900)),  # 2 in 0.8 s is 2.5/s
        (0.5, 0.05, (1, 2050)),  # below one: one per 2 s
        (1000.0, 0.0, (1000, 1000)),
    ],
)
def test_window_terms(rate: float, margin: float, terms: tuple[int, int]) -> None:
    assert window_terms(rate, margin) == terms


@given(st.floats(0.01, 10_000), st.floats(0, 1))
def test_window_terms_never_allow_more_than_the_rate(rate: float, margin: float) -> None:
    limit, window_ms = window_terms(rate, margin)
    assert limit >= 1
    assert limit / (window_ms / 1000) <= rate * (1 + 1e-9)


def test_a_release_from_another_node_is_heard_and_our_own_echo_is_not() -> None:
    clocks = Clocks()
    rep, _, _ = replicator(clocks)
    heard: list[tuple[str, str]] = []
    rep.on_release = heard.append
    rep.receive(encode_message("other", [ReleaseEntry("live", "x", "never sent")]))
    rep.receive(encode_message("me", [ReleaseEntry("live", "mine")]))
    rep.receive(json.dumps({"node": "other", "events": [{"k": "free", "app": "", "name": "y"}]}))
    assert heard == [("live", "x")]
    assert rep.received() == {"free": 1}
    assert rep.malformed() == {"free": 1}
