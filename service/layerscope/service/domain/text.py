"""Caller-supplied text quoted in messages: at most a prefix, so a 1 MB id cannot overflow a status trailer."""

from __future__ import annotations

PREFIX = 64


def quoted(value: str, limit: int = PREFIX) -> str:
    """`value` as repr, cut to `limit` characters with its full length said when longer."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"
