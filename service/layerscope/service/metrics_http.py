"""The metrics port: `/metrics` (and `/`) for Prometheus, 404 for every other path.

prometheus_client's own server answers any path with the metrics, so a probe aimed at the wrong port
(`/v2/health/ready`, `/healthz`) gets 200 and passes for the wrong reason.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from layerscope.service.errors import StartupError
from layerscope.service.ports import in_use

METRICS_PATHS = frozenset({"/metrics", "/"})

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr."""


def metrics_app(registry: CollectorRegistry) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app that serves the registry on /metrics (and /) and answers 404, naming /metrics, elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in METRICS_PATHS:
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"Expected /metrics; received {path}. This port serves Prometheus metrics only.\n".encode()]

    return app


def start_metrics_server(port: int, host: str, registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread]:
    """Serve the registry on its own daemon thread; port 0 picks a free one (`server.server_port`)."""

    class Server(ThreadingWSGIServer):  # the address family follows the bind address
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    try:
        httpd = make_server(host, port, metrics_app(registry), Server, handler_class=_QuietHandler)
    except OSError as exc:  # the port is taken (or the address not this machine's)
        reason = exc.strerror or str(exc)
        raise StartupError(in_use("metrics", host, port, "--metrics-port", "LAYERSCOPE_METRICS_PORT", reason)) from exc
    thread = threading.Thread(target=httpd.serve_forever, name="layerscope-metrics", daemon=True)
    thread.start()
    return httpd, thread
