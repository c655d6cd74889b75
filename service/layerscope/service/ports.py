"""A server refuses a port another process holds, in one line, before it starts anything.

gRPC's default SO_REUSEPORT lets a second server listen on a taken port and take half the new connections,
so the gRPC server binds without it (`grpc.so_reuseport` 0) and the ports are probed first: a plain bind
fails on a port with a listener, whatever that listener set. The probe only spares a slow start (and gRPC's
native log line) in the common case; the bind without SO_REUSEPORT is what decides.
"""

from __future__ import annotations

import socket

from layerscope.service.errors import StartupError


def in_use(what: str, host: str, port: int, flag: str, variable: str, reason: str = "the address is in use") -> str:
    return (
        f"cannot serve {what} on {host}:{port}: {reason} (another server?); expected a free port: choose another "
        f"with {flag} or {variable}, or 0 for any free one."
    )


def check_free(what: str, host: str, port: int, flag: str, variable: str) -> None:
    """StartupError naming the port when another socket listens on `host:port` (port 0 is always free)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except OSError:
        return  # an address this machine cannot resolve: the bind itself says so
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to a server
            try:
                probe.bind(address)
            except OSError as exc:
                raise StartupError(in_use(what, host, port, flag, variable, exc.strerror or str(exc))) from exc
