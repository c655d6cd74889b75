"""Who may start a call now: the pools calls are counted in, per-caller stream limits, and the methods exempt.

One reader that opens many streams and never reads them must not lock out everyone: probes (health, OIP
readiness) take no slot at all, uploads and reflection streams have small pools of their own, and each
caller (a token, or a peer address without one) may hold only so many streams at once. Which pool a method's
calls count in, or none, is its entry in the table of per-call policy (methods.py).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from layerscope.service.grpc.methods import MAIN, REFLECTION, UPLOADS

__all__ = ["MAIN", "REFLECTION", "UPLOADS", "Admission", "AdmissionLimits", "Refusal", "Ticket", "caller_of"]

_REASONS = {MAIN: "concurrency", UPLOADS: "uploads", REFLECTION: "reflection"}


@dataclass(frozen=True)
class AdmissionLimits:
    max_concurrent: int = 64
    max_uploads: int = 4
    max_reflection: int = 8
    max_streams_per_caller: int = 16
    call_timeout: float | None = None
    """Server-side deadline of the calls whose policy has one (`Policy.deadline` in methods.py)."""
    stream_idle: float | None = None
    """How long one response may wait for a client that does not read its stream."""
    upload_idle: float | None = None
    """How long a client-streaming call may wait for the client's next message."""


@dataclass(frozen=True)
class Ticket:
    pool: str | None
    caller: str | None


@dataclass(frozen=True)
class Refusal:
    reason: str
    """The rejections metric's label: `concurrency` (the RPC cap), `uploads`, `reflection`, `per_caller`."""
    message: str


def caller_of(authorization: str | None, peer: str) -> str:
    """A token (hashed: never kept or logged in clear) or, without one, the peer's address without its port."""
    if authorization:
        return "token:" + hashlib.sha256(authorization.encode()).hexdigest()[:16]
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer  # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555"
    return "peer:" + host


class Admission:
    """Counts calls per pool and streams per caller; all on the event loop, so no lock."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._pools: Counter[str] = Counter()
        self._streams: Counter[str] = Counter()

    def capacity(self, pool: str) -> int:
        return {
            MAIN: self.limits.max_concurrent,
            UPLOADS: self.limits.max_uploads,
            REFLECTION: self.limits.max_reflection,
        }[pool]

    def inflight(self, pool: str = MAIN) -> int:
        return self._pools[pool]

    def admit(self, pool: str | None, caller: str | None) -> Ticket | Refusal:
        """A ticket to release when the call ends, or why the call is refused."""
        if pool is not None and self._pools[pool] >= self.capacity(pool):
            return Refusal(
                _REASONS[pool],
                f"Expected at most {self.capacity(pool)} {pool} in flight; the server is at that limit. Retry later.",
            )
        if caller is not None and self._streams[caller] >= self.limits.max_streams_per_caller:
            return Refusal(
                "per_caller",
                f"Expected at most {self.limits.max_streams_per_caller} open streams per caller; this caller has "
                f"{self._streams[caller]}. Read or cancel some first.",
            )
        if pool is not None:
            self._pools[pool] += 1
        if caller is not None:
            self._streams[caller] += 1
        return Ticket(pool, caller)

    def release(self, ticket: Ticket) -> None:
        if ticket.pool is not None:
            self._pools[ticket.pool] -= 1
        if ticket.caller is not None:
            self._streams[ticket.caller] -= 1
            if not self._streams[ticket.caller]:
                del self._streams[ticket.caller]
