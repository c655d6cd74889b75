"""A call's cancellation, seen from the worker thread that does its work.

`asyncio.to_thread` copies the caller's context variables into the thread, so the transport sets one
`threading.Event` per call and sets it when the client cancels, the call passes its deadline, or its
stream stalls; long loops in worker threads call `check()` between steps (layers, probes) and stop.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

from layerscope.service.errors import Cancelled

_CURRENT: ContextVar[threading.Event | None] = ContextVar("layerscope_call_cancelled", default=None)


def start_call() -> threading.Event:
    """A fresh flag for the call running in this context (set by the transport when the call ends early)."""
    flag = threading.Event()
    _CURRENT.set(flag)
    return flag


def current() -> threading.Event | None:
    """The flag of the call running in this context, if one is tracked."""
    return _CURRENT.get()


def detach() -> None:
    """Work started by a call that must outlive it (a background warm-up) stops following its flag: call
    this in the work's own thread, whose context is a copy."""
    _CURRENT.set(None)


def check() -> None:
    """Raise Cancelled if the current call was cancelled; free when no call is being tracked."""
    flag = _CURRENT.get()
    if flag is not None and flag.is_set():
        raise Cancelled("Expected the call to be still wanted; it was cancelled or passed its deadline: work stopped.")
