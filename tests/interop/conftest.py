"""Fixtures shared by the interop tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.test_edge import edge_server
from tests.server.harness import ServerThread


@pytest.fixture(params=["origin", "edge"])
def gateway(request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, ServerThread]]:
    """(origin, where players go): the origin itself, or an edge in front of it."""
    with ServerThread() as origin:
        if request.param == "origin":
            yield origin, origin
            return
        edge, _ = edge_server(origin.port)
        try:
            yield origin, edge
        finally:
            edge.stop()
