"""Cross-cutting concerns for every RPC: metrics, admission, and the mapping of errors to statuses.

One interceptor wraps all four handler kinds, so no servicer repeats this code; streaming handlers are
wrapped as async generators, so their latency covers the whole stream, not just its creation.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import StatusCode

from layerscope.service import cancellation
from layerscope.service.errors import DeadlineExceeded, ServiceError
from layerscope.service.grpc.admission import Admission, AdmissionLimits, Refusal, Ticket, caller_of
from layerscope.service.grpc.auth import TokenPolicy
from layerscope.service.grpc.methods import policy_of
from layerscope.service.grpc.status import status_for
from layerscope.service.telemetry import Telemetry

log = logging.getLogger(__name__)


def _answer_for(exc: Exception) -> tuple[StatusCode, str]:
    """The status and message for an error; an unexpected one gets INTERNAL and a reference to the log."""
    if isinstance(exc, ServiceError):
        return status_for(exc), exc.message
    incident = uuid.uuid4().hex[:12]
    log.exception("unexpected error (incident %s)", incident, exc_info=exc)
    return StatusCode.INTERNAL, f"Internal error; the server log has the details (incident {incident})."


def _code_after_abort(context: grpc.aio.ServicerContext) -> StatusCode:
    code = context.code() if hasattr(context, "code") else None
    return code if isinstance(code, StatusCode) else StatusCode.UNKNOWN


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Counts and times every RPC by method and status code, admits calls (admission.py), bounds their time,
    maps domain errors.

    Responses of server streams are written with `context.write`, each within `stream_idle` seconds: a
    client that stops reading holds one message in flight, not the whole result, and not for ever.
    """

    def __init__(self, telemetry: Telemetry, max_concurrent: int, limits: AdmissionLimits | None = None) -> None:
        self._telemetry = telemetry
        self._admission = Admission(limits or AdmissionLimits(max_concurrent=max_concurrent))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        policy = policy_of(details.method, client_streaming=bool(handler.stream_unary or handler.stream_stream))
        # Its pool and deadline come from the table of per-call policy (methods.py): a health watch lasts as
        # long as its client (a load balancer, for hours) and probes must answer under any load, so they are
        # counted and timed, but take no slot and have no deadline.
        call = _Call(
            method,
            policy.pool,
            streams=policy.pool is not None and bool(handler.unary_stream or handler.stream_stream),
            timeout=self._admission.limits.call_timeout if policy.deadline else None,
        )
        return _rebuild(handler, lambda b: self._unary(call, b), lambda b: self._stream(call, b), self._bidi(call))

    def _finish(self, method: str, started: float, code: StatusCode) -> None:
        self._telemetry.rpcs.labels(method, code.name).inc()
        self._telemetry.rpc_seconds.labels(method, code.name).observe(time.perf_counter() - started)

    def _admit(self, call: _Call, context: grpc.aio.ServicerContext) -> Ticket | Refusal:
        caller = None
        if call.streams:
            authorization = dict(context.invocation_metadata() or ()).get("authorization")
            caller = caller_of(authorization if isinstance(authorization, str) else None, context.peer() or "")
        ticket = self._admission.admit(call.pool, caller)
        if isinstance(ticket, Refusal):
            self._telemetry.rejections.labels(ticket.reason).inc()
        else:
            self._telemetry.inflight.set(self._admission.inflight())
        return ticket

    def _release(self, ticket: Ticket, method: str, started: float, code: StatusCode) -> None:
        self._admission.release(ticket)
        self._telemetry.inflight.set(self._admission.inflight())
        self._finish(method, started, code)

    @asynccontextmanager
    async def _guard(self, call: _Call, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """Admit, time and count one call; bound its time; turn what escapes the handler into its status.

        A call is counted before its error status goes out: `abort` sends the status at once, and a
        client that reads the metrics right after its refusal must find the refusal counted. When the call
        ends early (cancelled, past its deadline) its cancellation flag stops the work left in threads.
        """
        started = time.perf_counter()
        ticket = self._admit(call, context)
        if isinstance(ticket, Refusal):
            self._finish(call.method, started, StatusCode.RESOURCE_EXHAUSTED)
            await context.abort(StatusCode.RESOURCE_EXHAUSTED, ticket.message)  # raises: the handler never runs
            return
        flag = cancellation.start_call()
        deadline = _Deadline(call.timeout)
        code = StatusCode.OK
        counted = False
        try:
            yield
        except grpc.aio.AbortError:
            code = _code_after_abort(context)
            raise
        except asyncio.CancelledError:
            if not deadline.expired:
                code = StatusCode.CANCELLED
                raise
            code, counted = StatusCode.DEADLINE_EXCEEDED, True
            self._release(ticket, call.method, started, code)
            await context.abort(code, deadline.message)
        except Exception as exc:
            code, message = _answer_for(exc)
            self._release(ticket, call.method, started, code)
            counted = True
            await context.abort(code, message)
        finally:
            flag.set()  # the call is over: work still running for it in a thread stops at its next check
            deadline.cancel()
            if not counted:
                self._release(ticket, call.method, started, code)

    def _unary(self, call: _Call, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        idle = self._admission.limits.upload_idle

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._guard(call, context):
                if hasattr(request, "__aiter__"):  # client streaming: an upload
                    request = _idle_guarded(request, idle)
                return await behaviour(request, context)

        return handle

    def _stream(self, call: _Call, behaviour: Callable[..., AsyncIterator[Any]]) -> Callable[..., Awaitable[None]]:
        idle = self._admission.limits.stream_idle

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> None:
            async with self._guard(call, context):
                responses = behaviour(request, context)
                if inspect.isawaitable(responses):
                    # A coroutine handler (grpc's health Watch) writes with `context.write` itself.
                    await responses
                    return
                await _write_all(context, responses, idle)

        return handle

    def _bidi(self, call: _Call) -> Callable[[Behaviour], Behaviour]:
        limits = self._admission.limits

        def wrap(behaviour: Callable[..., AsyncIterator[Any]]) -> Callable[..., Awaitable[None]]:
            async def handle(requests: Any, context: grpc.aio.ServicerContext) -> None:
                async with self._guard(call, context):
                    responses = behaviour(_idle_guarded(requests, limits.upload_idle), context)
                    if inspect.isawaitable(responses):
                        await responses
                        return
                    await _write_all(context, responses, limits.stream_idle)

            return handle

        return wrap


@dataclass(frozen=True)
class _Call:
    method: str
    pool: str | None
    streams: bool
    timeout: float | None


class _Deadline:
    """Cancels the calling task after `seconds`; `expired` tells that cancellation from the client's."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.expired = False
        self._timer: asyncio.TimerHandle | None = None
        task = asyncio.current_task()
        if seconds is not None and task is not None:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._expire, task)

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self.expired = True
        task.cancel()

    @property
    def message(self) -> str:
        return f"Expected the call to finish within the server's deadline of {self.seconds:g} s; it took longer."

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def _write_all(context: grpc.aio.ServicerContext, responses: AsyncIterator[Any], idle: float | None) -> None:
    """Write each response once the previous one is taken by the transport; close the source on any exit,
    so what it holds (a capture's tensors) is freed when the stream ends, early or not.

    One `asyncio.timeout` moved forward after each write bounds how long a response may wait unread:
    `wait_for` per message made a task per message, a third of a small capture's time through the service."""
    loop = asyncio.get_running_loop()
    unread = asyncio.timeout(None)
    try:
        async with unread:
            async for item in responses:
                if idle is not None:
                    unread.reschedule(loop.time() + idle)
                await context.write(item)
                unread.reschedule(None)  # producing the next response is not the client's wait
    except TimeoutError:
        if not unread.expired():  # the source's own timeout, not an unread stream
            raise
        raise DeadlineExceeded(
            f"Expected the client to read its stream; a response waited {idle:g} s unread, so the stream was ended."
        ) from None
    finally:
        aclose = getattr(responses, "aclose", None)
        if aclose is not None:
            await aclose()


async def _idle_guarded(requests: AsyncIterator[Any], idle: float | None) -> AsyncIterator[Any]:
    """The client's messages, each within `idle` seconds of the last: a stalled upload loses its slot."""
    iterator = aiter(requests)
    while True:
        try:
            item = await (anext(iterator) if idle is None else asyncio.wait_for(anext(iterator), idle))
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(
                f"Expected the client's next message within {idle:g} s; received none, so the call was ended."
            ) from None
        yield item


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Checks the bearer token's role before the handler runs; refusals keep the handler's shape."""

    def __init__(self, policy: TokenPolicy) -> None:
        self._policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not self._policy.enabled:
            return handler
        service, _, method = details.method.lstrip("/").rpartition("/")
        authorization = dict(details.invocation_metadata or ()).get("authorization")
        try:
            self._policy.check(service, method, authorization)
        except ServiceError as exc:
            return _refusing(handler, exc)
        return handler


def _refusing(handler: grpc.RpcMethodHandler, exc: ServiceError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers with the error's status and message."""
    code = status_for(exc)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, exc.message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(code, exc.message)
        yield  # pragma: no cover - makes this an async generator

    return _rebuild(handler, lambda _: unary, lambda _: stream, lambda _: stream)


Behaviour = Callable[..., Any]


def _rebuild(
    handler: grpc.RpcMethodHandler,
    wrap_unary: Callable[[Behaviour], Behaviour],
    wrap_stream: Callable[[Behaviour], Behaviour],
    wrap_bidi: Callable[[Behaviour], Behaviour] | None,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler`, its behaviour wrapped (single-response kinds by
    `wrap_unary`, streamed responses by `wrap_stream`); a bidirectional one unchanged when `wrap_bidi` is None.
    """
    args = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), *args)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), *args)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), *args)
    if wrap_bidi is None:
        return handler
    return grpc.stream_stream_rpc_method_handler(wrap_bidi(handler.stream_stream), *args)
