"""The supervisor's HTTP API: one listener that answers for every worker together.

Each worker serves its own API on a unix socket of the run directory; this
one binds ``[http] listen`` with the same hardened server and limits and
answers each request by asking the workers that matter:

* listings (streams, clients, origins, directory, bans, cluster) from every
  worker, merged: list entries carry the ``worker`` they came from, counts
  are summed, bans (the same on every worker) are listed once;
* a client by id from the worker whose id range holds it (``DELETE``
  kicks it there);
* a stream, a ban or a reload from every worker (a lift is also sent on by
  the workers' bus, so it holds machine-wide);
* a stream's thumbnail from the one worker that holds the stream itself (its
  publisher's, or the owner pulling it from the origin; else any that has
  it), found by asking every worker for the stream first, so only that one
  decodes;
* a stream's play URLs and the page (``/``, ``/static/...``) by the
  supervisor itself, from its own settings;
* ``/metrics``: every worker's series with a ``worker`` label, one family
  block each, plus the supervisor's own (``streamgate_worker_up``,
  ``streamgate_worker_restarts_total``);
* ``/api/v1/workers``: the workers, their pids, restarts and bus links.

A worker that does not answer within the bound is left out and named
(``"missing_workers"``), so one stuck worker cannot stall the API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from streamgate.api.http import Request, Response, error_response, json_response
from streamgate.api.page import page_routes
from streamgate.api.playurls import PlayKeys
from streamgate.api.routes import JPEG, play_urls_response
from streamgate.api.routing import PathArgs, Route
from streamgate.http_client import HttpError, HttpTarget, fetch
from streamgate.workers.worker import ID_SPAN, api_socket

if TYPE_CHECKING:
    from streamgate.config import Settings


class Machine(Protocol):
    """What the routes read of the supervisor."""

    settings: Settings
    count: int
    run_dir: str

    def connected(self) -> list[int]:
        """The workers on the bus now."""

    def workers_view(self) -> dict[str, Any]: ...

    def reread(self) -> str | None:
        """Re-read the configuration file for the supervisor itself; the error, if any."""

    def own_metrics(self) -> str: ...

    def listener_metrics(self) -> str:
        """The machine's API listener's own series (the streamgate_http_* families)."""


__all__ = ["Machine", "build_routes", "merge_metrics"]

_BOUND = 3.0  # seconds a worker has to answer
_MAX_BODY = 64 << 20
_PLAIN = "text/plain; version=0.0.4; charset=utf-8"


def _label(line: str, worker: int | str) -> str:
    """A sample line with ``worker="N"`` added to its labels."""
    name, sep, rest = line.partition("{")
    if sep:
        return (
            f'{name}{{worker="{worker}",{rest}'
            if not rest.startswith("}")
            else (f'{name}{{worker="{worker}"{rest}')
        )
    name, _, value = line.partition(" ")
    return f'{name}{{worker="{worker}"}} {value}'


def merge_metrics(texts: dict[int, str], own: str = "") -> str:
    """The workers' exposition texts as one: each family once, every sample labelled
    with its worker (``own``, the supervisor's series, with ``worker="supervisor"``)."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    sources: list[tuple[int | str, str]] = [*sorted(texts.items())]
    if own:
        sources.append(("supervisor", own))
    for worker, text in sources:
        family = ""
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    head, _ = families.setdefault(family, ([], []))
                    if line not in head and len(head) < 2:
                        head.append(line)
                continue
            families.setdefault(family, ([], []))[1].append(_label(line, worker))
    out: list[str] = []
    for head, samples in families.values():
        out.extend(head)
        out.extend(samples)
    return "\n".join(out) + "\n"


def _merge(answers: dict[int, Any], key_once: str | None = None) -> Any:
    """Listings merged: lists concatenated (entries tagged with their worker),
    numbers summed, anything else from the first worker."""
    merged: dict[str, Any] = {}
    for worker, body in sorted(answers.items()):
        if not isinstance(body, dict):
            continue
        for key, value in body.items():
            if isinstance(value, list):
                items = merged.setdefault(key, [])
                for item in value:
                    if isinstance(item, dict):
                        if key_once is not None:
                            if any(o.get(key_once) == item.get(key_once) for o in items):
                                continue
                        else:
                            item = {**item, "worker": worker}
                    items.append(item)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                merged[key] = merged.get(key, 0) + value
            else:
                merged.setdefault(key, value)
    return merged


def build_routes(sup: Machine) -> list[Route]:
    """The supervisor's route table."""

    async def ask(
        worker: int, request: Request, target: str | None = None
    ) -> tuple[int, bytes] | None:
        headers = tuple(
            (k, v) for k, v in request.headers if k.lower() in ("authorization", "accept")
        )
        path = target or request.target
        try:
            reply = await fetch(
                HttpTarget(f"http://worker{worker}{path}", "localhost", 80, False, path),
                method=request.method,
                headers=headers,
                timeout=_BOUND,
                max_body=_MAX_BODY,
                unix_path=api_socket(sup.run_dir, worker),
            )
        except HttpError:
            return None
        return reply.status, reply.body

    async def ask_all(request: Request) -> tuple[dict[int, tuple[int, bytes]], list[int]]:
        workers = list(range(sup.count))
        replies = await asyncio.gather(*(ask(w, request) for w in workers))
        got = {w: r for w, r in zip(workers, replies, strict=True) if r is not None}
        return got, [w for w in workers if w not in got]

    def listing(key_once: str | None = None) -> Callable[..., Any]:
        async def handler(request: Request, args: PathArgs) -> Response:
            got, missing = await ask_all(request)
            bodies: dict[int, Any] = {}
            for worker, (status, body) in got.items():
                if status != 200:
                    return Response(status, body, "application/json")
                bodies[worker] = json.loads(body)
            merged = _merge(bodies, key_once)
            if missing:
                merged["missing_workers"] = missing
            return json_response(200, merged)

        return handler

    async def first_found(request: Request, args: PathArgs) -> Response:
        """A GET of one thing any worker may hold: the first 200, else the last answer."""
        got, _ = await ask_all(request)
        found = [(w, body) for w, (status, body) in sorted(got.items()) if status == 200]
        if found:
            worker, body = found[0]
            view = json.loads(body)
            if isinstance(view, dict):
                view["worker"] = worker
            return json_response(200, view)
        if got:
            status, body = got[max(got)]
            return Response(status, body, "application/json")
        return error_response(503, "no worker answered")

    async def on_every(request: Request, args: PathArgs) -> Response:
        """An action every worker takes (end a stream, lift bans, reload): merged answers."""
        got, missing = await ask_all(request)
        ok = {w: json.loads(b) for w, (s, b) in got.items() if s == 200}
        if not ok:
            if got:
                status, body = got[max(got)]
                return Response(status, body, "application/json")
            return error_response(503, "no worker answered")
        merged = _merge(ok)
        merged["workers"] = sorted(ok)
        if missing:
            merged["missing_workers"] = missing
        return json_response(200, merged)

    async def one_client(request: Request, args: PathArgs) -> Response:
        raw = args[0]
        if not raw.isdigit() or len(raw) > 18:
            return error_response(400, "client ids are positive integers")
        worker = int(raw) // ID_SPAN
        if worker >= sup.count:
            return error_response(404, f"no client {raw}")
        reply = await ask(worker, request)
        if reply is None:
            return error_response(503, f"worker {worker} did not answer")
        status, body = reply
        if status == 200:
            view = json.loads(body)
            view["worker"] = worker
            return json_response(200, view)
        return Response(status, body, "application/json")

    async def thumbnail(request: Request, args: PathArgs) -> Response:
        """From the worker holding the stream at first hand (see the module's doc)."""
        app, name = args
        path = f"/api/v1/streams/{quote(app, safe='')}/{quote(name, safe='')}"
        got, _ = await ask_all(Request("GET", path, request.headers, peer=request.peer))
        holders: list[tuple[int, int]] = []  # (preference, worker)
        for worker, (status, body) in got.items():
            if status == 200:
                role = json.loads(body).get("role")
                holders.append((0 if role in ("published", "pulled") else 1, worker))
        if not holders:
            if got:
                status, body = got[max(got)]
                return Response(status, body, "application/json")
            return error_response(503, "no worker answered")
        worker = min(holders)[1]
        reply = await ask(worker, request)
        if reply is None:
            return error_response(503, f"worker {worker} did not answer")
        status, body = reply
        return Response(status, body, JPEG if status == 200 else "application/json")

    keys = PlayKeys()

    def stream_play_urls(request: Request, args: PathArgs) -> Response:
        return play_urls_response(sup.settings, keys, request, args)

    def token() -> str | None:
        secret = sup.settings.http.token
        return secret.get_secret_value() if secret is not None else None

    async def metrics(request: Request, args: PathArgs) -> Response:
        got, _ = await ask_all(request)
        texts = {w: b.decode("utf-8", "replace") for w, (s, b) in got.items() if s == 200}
        merged = merge_metrics(texts, sup.listener_metrics())
        return Response(200, (merged + sup.own_metrics()).encode(), _PLAIN)

    async def readyz(request: Request, args: PathArgs) -> Response:
        got, missing = await ask_all(request)
        ready = not missing and all(status == 200 for status, _ in got.values())
        ready = ready and sorted(sup.connected()) == list(range(sup.count))
        view = {"ready": ready, "workers": sup.count, "missing_workers": missing}
        return json_response(200 if ready else 503, view)

    async def reload(request: Request, args: PathArgs) -> Response:
        """The supervisor checks the file and takes its own settings (the API's token
        and limits), then every worker reloads."""
        error = sup.reread()
        if error is not None:
            return error_response(422, f"configuration not reloaded: {error}")
        return await on_every(request, args)

    def healthz(request: Request, args: PathArgs) -> Response:
        return json_response(200, {"status": "ok", "mode": sup.settings.mode, "workers": sup.count})

    def workers(request: Request, args: PathArgs) -> Response:
        return json_response(200, sup.workers_view())

    v1 = ("api", "v1")
    return [
        *page_routes(lambda: sup.settings, token),
        Route(("healthz",), {"GET": healthz}),
        Route(("readyz",), {"GET": readyz}),
        Route(("metrics",), {"GET": metrics}),
        Route((*v1, "workers"), {"GET": workers}),
        Route((*v1, "streams"), {"GET": listing()}),
        Route((*v1, "streams", "*", "**", "thumbnail.jpg"), {"GET": thumbnail}),
        Route((*v1, "streams", "*", "**", "play-urls"), {"GET": stream_play_urls}),
        Route((*v1, "streams", "*", "**"), {"GET": first_found, "DELETE": on_every}),
        Route((*v1, "clients"), {"GET": listing()}),
        Route((*v1, "clients", "*"), {"GET": one_client, "DELETE": one_client}),
        Route((*v1, "origins"), {"GET": listing()}),
        Route((*v1, "directory"), {"GET": listing()}),
        Route((*v1, "bans"), {"GET": listing("ip"), "DELETE": on_every}),
        Route((*v1, "bans", "*"), {"GET": first_found, "DELETE": on_every}),
        Route((*v1, "cluster"), {"GET": listing()}),
        Route((*v1, "reload"), {"POST": reload}),
    ]
