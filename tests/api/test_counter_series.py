"""Every counter the server keeps is a metric series: a new field cannot be forgotten."""

from __future__ import annotations

import dataclasses

from streamgate.api import metrics
from streamgate.server.counters import ServerCounters


def test_every_server_counter_field_has_its_series() -> None:
    fields = {f.name for f in dataclasses.fields(ServerCounters)}
    mapped = set(metrics._PLAIN_COUNTERS) | set(metrics._LABELLED_COUNTERS)
    assert fields == mapped
    series = (*metrics._PLAIN_COUNTERS.values(), *metrics._LABELLED_COUNTERS.values())
    names = [entry[0] for entry in series]
    assert len(names) == len(set(names)) and all(n.startswith("streamgate_") for n in names)
