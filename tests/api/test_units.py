"""The API's pure parts, without sockets or a loop: routing, the token check, redaction,
metric label caps and the lag histogram."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamgate.api.http import Request, Response, json_response
from streamgate.api.metrics import MAX_LABEL_VALUES, LoopLagMonitor, _BytesTotal, _labelled_counter
from streamgate.api.routing import PathArgs, Route, Router
from streamgate.api.views import redact


def echo(request: Request, args: PathArgs) -> Response:
    return json_response(200, {"method": request.method, "args": list(args)})


ROUTES = [
    Route(("healthz",), {"GET": echo}),
    Route(("api", "v1", "streams", "*", "**"), {"GET": echo, "DELETE": echo}),
    Route(("api", "v1", "clients", "*"), {"DELETE": echo}),
]


def call(router: Router, method: str, target: str, token: str | None = None) -> Response:
    headers = (("authorization", f"Bearer {token}"),) if token is not None else ()
    answer = router(Request(method, target, headers))
    assert isinstance(answer, Response)  # these routes answer at once
    return answer


def test_route_matching() -> None:
    router = Router(ROUTES, token=lambda: None)
    ok = call(router, "GET", "/api/v1/streams/live/a/b?x=1")
    assert (ok.status, ok.body) == (200, b'{"method":"GET","args":["live","a/b"]}\n')
    assert call(router, "GET", "/healthz/").status == 200  # one trailing slash is fine
    assert call(router, "GET", "/api/v1/streams/live").status == 404
    assert call(router, "GET", "/api/v1/streams/live/a//b").status == 404
    assert call(router, "GET", "/api/v1/streams//x").status == 404
    assert call(router, "GET", "http://example/healthz").status == 400
    assert call(router, "GET", "*").status == 400
    assert call(router, "GET", "/api/v1/streams/%c3%28/x").status == 400  # not UTF-8


def test_method_rules() -> None:
    router = Router(ROUTES, token=lambda: None)
    assert call(router, "HEAD", "/healthz").status == 200
    refused = call(router, "POST", "/healthz")
    assert refused.status == 405
    assert refused.headers == (("allow", "GET, HEAD"),)
    only_delete = call(router, "GET", "/api/v1/clients/3")
    assert only_delete.headers == (("allow", "DELETE"),)


def test_token_check() -> None:
    token: list[str | None] = ["right"]
    router = Router(ROUTES, token=lambda: token[0])
    assert call(router, "GET", "/healthz").status == 200  # not protected
    assert call(router, "GET", "/api/v1/streams/a/b").status == 401
    assert call(router, "GET", "/api/v1/streams/a/b", "wrong").status == 401
    assert call(router, "GET", "/api/v1/streams/a/b", "right").status == 200
    assert call(router, "GET", "/api/v9/anything", "right").status == 404
    assert call(router, "GET", "/api/v9/anything").status == 401  # 401 before 404
    lower = router(Request("GET", "/api/v1/streams/a/b", (("authorization", "bearer right"),)))
    assert isinstance(lower, Response) and lower.status == 200  # the scheme is case-insensitive
    token[0] = None  # a reload removed the token
    assert call(router, "GET", "/api/v1/streams/a/b").status == 200


@given(st.text(max_size=200))
def test_router_never_fails_on_any_target(target: str) -> None:
    router = Router(ROUTES, token=lambda: "t")
    assert call(router, "GET", target, "t").status in (200, 400, 404, 405)


def test_redact_drops_query_values() -> None:
    assert redact("rtmp://h/live/x?token=abc&e=1 failed") == "rtmp://h/live/x?<redacted> failed"
    assert redact("origin refused: 'rtmp://h/a?k=v'") == "origin refused: 'rtmp://h/a?<redacted>'"
    assert redact("no query here") == "no query here"


def test_labelled_counter_caps_its_label_values() -> None:
    values = {f"reason{i:03d}": i + 1 for i in range(MAX_LABEL_VALUES + 20)}
    family = _labelled_counter("streamgate_x", "doc", "reason", values)
    totals = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert len(totals) == MAX_LABEL_VALUES
    assert sum(totals.values()) == sum(values.values())  # nothing lost, the tail is summed
    assert "(other)" in totals
    assert "reason119" in totals  # the biggest are kept by name


def test_lag_histogram_buckets_are_cumulative() -> None:
    lag = LoopLagMonitor(cast(asyncio.AbstractEventLoop, None), buckets=(0.01, 0.1))
    for sample in (0.0, 0.005, 0.05, 0.5, -1.0):
        lag.observe(sample)
    assert lag.cumulative() == [("0.01", 3.0), ("0.1", 4.0), ("+Inf", 5.0)]
    assert lag.samples == 5
    assert lag.total == pytest.approx(0.555)
    assert lag.last == 0.0


class _FakeStream:
    def __init__(self, name: str, created: float) -> None:
        self.app, self.name, self.created, self.bytes_in = "live", name, created, 0


def test_bytes_total_stays_monotonic_as_streams_come_and_go() -> None:
    total = _BytesTotal()
    a, b = _FakeStream("a", 1.0), _FakeStream("b", 2.0)
    a.bytes_in, b.bytes_in = 100, 50
    assert total.update([a, b]) == 150  # type: ignore[list-item]
    a.bytes_in = 180
    assert total.update([a]) == 230  # type: ignore[list-item]  # b ended: its 50 stay
    assert total.update([]) == 230
    c = _FakeStream("a", 3.0)  # the same name published again
    c.bytes_in = 10
    assert total.update([c]) == 240  # type: ignore[list-item]
