"""The HTTP API, Prometheus metrics and health checks.

:mod:`~streamgate.api.http` is a small bounded HTTP/1.1 server over h11,
:mod:`~streamgate.api.routing` the path table and bearer-token check,
:mod:`~streamgate.api.routes` the endpoints, :mod:`~streamgate.api.views`
the state as JSON, :mod:`~streamgate.api.actions` the few changes the API
makes, :mod:`~streamgate.api.metrics` the scrape-time collector,
:mod:`~streamgate.api.thumbnails` stream thumbnails,
:mod:`~streamgate.api.playurls` signed play URLs and
:mod:`~streamgate.api.page` the built-in page (files in :mod:`streamgate.web`).
"""

from __future__ import annotations

from streamgate.api.http import HttpLimits
from streamgate.api.server import ApiServer, start_api

__all__ = ["ApiServer", "HttpLimits", "start_api"]
