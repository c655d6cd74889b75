"""One worker process seen from the server: start it, send it calls, tell why it died.

The worker is a fresh interpreter (`python -m layerscope.service.workers.main`), never a fork of the
server: TensorFlow's threads and device state do not survive a fork. It runs in its own session, so a
terminal's Ctrl-C reaches the server, which stops its workers itself.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from layerscope.service.errors import InvalidInput, LimitExceeded
from layerscope.service.workers.protocol import (
    Call,
    Done,
    Failed,
    Load,
    ModelKey,
    ModelSpec,
    Ready,
    Started,
    Unload,
    WorkerSpec,
)
from layerscope.service.workers.transport import Inbox, Outbox, remove_blocks
from layerscope.service.workers.wire import Wire

EXIT_WAIT_SECONDS = 5.0
"""How long a worker whose socket closed gets to exit before it is killed."""
POLL_SECONDS = 0.1
"""How often a call waiting on its worker looks whether the call itself has ended."""

_SIGNAL_MEANING = {
    signal.SIGKILL: "the kernel's out-of-memory killer or an operator",
    signal.SIGSEGV: "a segmentation fault",
    signal.SIGABRT: "an abort in native code",
    signal.SIGBUS: "a bus error",
    signal.SIGTERM: "a termination request",
}


@dataclass(frozen=True)
class Cause:
    """Why a worker stopped: `label` for the restart metric (a short, bounded word), `text` for people."""

    label: str
    text: str
    counts: bool = True
    """Whether it counts as a crash toward failing the model: not when the server stopped it on purpose
    because its call had ended (a caller cancelling calls must not be able to fail a model for everyone)."""


class WorkerDied(Exception):
    def __init__(self, cause: Cause) -> None:
        super().__init__(cause.text)
        self.cause = cause


class CallTimedOut(Exception):
    pass


class CallAbandoned(Exception):
    """The call the worker is running ended (cancelled, past its deadline) and the worker ran on for the
    grace period: the owner stops it, so no CPU stays busy for a caller that is gone."""


class WorkerCallFailed(RuntimeError):
    """The engine raised something other than a domain error inside the worker: a fault, reported as INTERNAL
    with the worker's traceback in the server's log, as the same fault in the server would be."""


def describe_exit(code: int, memory_limit: int | None) -> Cause:
    """Why a worker stopped, from its exit status (negative: the signal); a crash signal under a memory limit
    names the limit as the likely cause."""
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:  # a real-time signal has no name
            return Cause("signal", f"it was killed by signal {-code}")
        text = f"it was killed by {sig.name} ({_SIGNAL_MEANING.get(sig, 'a signal')})"
        if memory_limit is not None and sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
            text += f", most likely an allocation past its memory limit of {memory_limit / 2**20:.0f} MiB"
        return Cause(sig.name, text)
    return Cause("exit", f"it exited with status {code}")


class WorkerProcess:
    """A started worker with its models loaded. Not thread-safe: its owner sends one message at a time."""

    def __init__(self, spec: WorkerSpec, popen: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.spec = spec
        self._popen = popen
        self._input_prefix = f"{spec.block_prefix}in"
        self._wire = Wire(sock, Outbox(self._input_prefix), Inbox())
        # One poll object for the life of the worker, not a selector built per wait.
        self._readable = select.poll()
        self._readable.register(sock.fileno(), select.POLLIN)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @classmethod
    def start(cls, spec: WorkerSpec, timeout: float) -> tuple[WorkerProcess, Started]:
        """Start a worker and wait until it has loaded its models; raise what refused a load, as the
        in-process load would (InvalidInput, LimitExceeded when it takes longer than `timeout`)."""
        ours, theirs = socket.socketpair()
        with ours, theirs:
            popen = subprocess.Popen(
                [sys.executable, "-m", "layerscope.service.workers.main", str(theirs.fileno()), spec.to_json()],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            worker = cls(spec, popen, ours.dup())
        try:
            started = worker._await_loaded(spec.title, timeout)
        except BaseException:
            worker.kill()
            raise
        assert isinstance(started, Started), f"unexpected first message {type(started).__name__}"
        return worker, started

    def load(self, model: ModelSpec, timeout: float) -> Ready:
        """Load one more model into this (shared) worker. Raises what refused it, WorkerDied when loading it
        killed the worker, LimitExceeded past `timeout` (the worker is left running: the owner decides)."""
        try:
            self._wire.send(Load(model))
        except OSError:
            raise WorkerDied(self.death_cause()) from None
        ready = self._await_loaded(model.title, timeout)
        assert isinstance(ready, Ready), f"unexpected reply {type(ready).__name__}"
        return ready

    def unload(self, model: ModelKey, timeout: float) -> None:
        self._exchange(Unload(model), timeout)

    def _await_loaded(self, title: str, timeout: float) -> Started | Ready:
        if not self._readable.poll(timeout * 1000):
            raise LimitExceeded(f"Expected {title} to load within {timeout:.0f} s; its worker did not finish.")
        try:
            message = self._wire.receive()
        except (EOFError, OSError):
            cause = self.death_cause()
            raise InvalidInput(f"Expected a loadable archive for {title}; loading it, {cause.text}.") from None
        if isinstance(message, Failed):
            if message.error is not None:
                raise message.error
            raise InvalidInput(f"Expected a loadable Keras 3 archive for {title}; its worker: {message.summary}")
        assert isinstance(message, (Started, Ready)), f"unexpected message {type(message).__name__}"
        return message

    def call(
        self,
        model: ModelKey,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
        ended: threading.Event | None = None,
        grace: float = 0.0,
    ) -> tuple[Any, float]:
        """`model`'s engine's answer and the seconds the engine itself took in the worker.

        Raises WorkerDied when the worker dies during the call, CallTimedOut past `timeout`, CallAbandoned
        when `ended` (the call's cancellation flag) has been set for `grace` seconds (the worker is left
        running either way: the owner decides), and the engine's own error when it raised one."""
        reply = self._exchange(Call(method, model, args, kwargs), timeout, ended, grace)
        return reply.result, reply.seconds

    def _exchange(
        self,
        message: Call | Unload,
        timeout: float,
        ended: threading.Event | None = None,
        grace: float = 0.0,
    ) -> Done:
        try:
            self._wire.send(message)
            self._await_reply(timeout, ended, grace)
            reply = self._wire.receive()
        except (EOFError, OSError):
            raise WorkerDied(self.death_cause()) from None
        if isinstance(reply, Failed):
            if reply.error is not None:
                raise reply.error
            name, version = message.model
            where = f"model '{name}' version {version}"
            raise WorkerCallFailed(f"{reply.summary}\nin the worker of {where}:\n{reply.traceback}")
        assert isinstance(reply, Done), f"unexpected reply {type(reply).__name__}"
        return reply

    def _await_reply(self, timeout: float, ended: threading.Event | None, grace: float) -> None:
        """Until the worker's socket is readable (an answer, or end of file: a death)."""
        now = time.monotonic()
        deadline, since = now + timeout, None
        while True:
            wait = deadline - now
            if ended is not None:
                if since is None and ended.is_set():
                    since = now
                wait = min(wait, POLL_SECONDS if since is None else since + grace - now)
            if self._readable.poll(max(0.0, wait) * 1000):
                return
            now = time.monotonic()
            if now >= deadline:
                raise CallTimedOut()
            if since is not None and now >= since + grace:
                raise CallAbandoned()

    def death_cause(self) -> Cause:
        """Why the worker is gone (it closed its socket): waits briefly for its exit status."""
        try:
            code = self._popen.wait(EXIT_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self._popen.wait()
        return describe_exit(code, self.spec.memory_limit_bytes)

    def wait(self) -> int:
        """Block until the worker exits; its exit status (negative: the signal). Its blocks are removed."""
        code = self._popen.wait()
        remove_blocks(self.spec.block_prefix)
        remove_blocks(self._input_prefix)
        return code

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            self._popen.kill()

    def stop(self) -> None:
        """SIGTERM: the worker holds nothing to save. A call in flight ends as if the worker died, and the
        owner's watcher reaps the process (`wait`)."""
        with suppress(ProcessLookupError):
            self._popen.terminate()

    def resident_bytes(self) -> int | None:
        """The worker's resident memory (VmRSS), or None once it is gone."""
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
