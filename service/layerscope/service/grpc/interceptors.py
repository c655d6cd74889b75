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
from typing import Any

import grpc
from grpc import StatusCode

from layerscope.service.auth import TokenPolicy
from layerscope.service.errors import ServiceError
from layerscope.service.grpc.status import status_for
from layerscope.service.telemetry import Telemetry

log = logging.getLogger(__name__)
WATCH = "/grpc.health.v1.Health/Watch"


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
    """Counts and times every RPC by method and status code, bounds concurrency, maps domain errors."""

    def __init__(self, telemetry: Telemetry, max_concurrent: int) -> None:
        self._telemetry = telemetry
        self._max_concurrent = max_concurrent
        self._inflight = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        # A health watch lasts as long as its client (a load balancer, for hours): counted and timed, but it
        # takes no slot of the concurrency limit, or a few watchers would shrink capacity for real calls.
        admit = details.method != WATCH
        # Bidirectional streams (server reflection) pass through unmeasured.
        return _rebuild(handler, lambda b: self._unary(method, b), lambda b: self._stream(method, b, admit=admit), None)

    def _admit(self, method: str, limited: bool = True) -> bool:
        if not limited:
            return True
        if self._inflight >= self._max_concurrent:
            self._telemetry.rejections.labels("concurrency").inc()
            return False
        self._inflight += 1
        self._telemetry.inflight.set(self._inflight)
        return True

    def _release(self, method: str, started: float, code: StatusCode, limited: bool = True) -> None:
        if limited:
            self._inflight -= 1
            self._telemetry.inflight.set(self._inflight)
        self._finish(method, started, code)

    def _finish(self, method: str, started: float, code: StatusCode) -> None:
        self._telemetry.rpcs.labels(method, code.name).inc()
        self._telemetry.rpc_seconds.labels(method, code.name).observe(time.perf_counter() - started)

    async def _refuse(self, method: str, context: grpc.aio.ServicerContext, started: float) -> None:
        self._finish(method, started, StatusCode.RESOURCE_EXHAUSTED)
        await context.abort(
            StatusCode.RESOURCE_EXHAUSTED,
            f"Expected at most {self._max_concurrent} calls in flight; the server is at that limit. Retry later.",
        )

    @asynccontextmanager
    async def _guard(self, method: str, context: grpc.aio.ServicerContext, limited: bool = True) -> AsyncIterator[None]:
        """Admit, time and count one call; turn what escapes the handler into its status.

        A call is counted before its error status goes out: `abort` sends the status at once, and a
        client that reads the metrics right after its refusal must find the refusal counted.
        """
        started = time.perf_counter()
        if not self._admit(method, limited):
            await self._refuse(method, context, started)
        code = StatusCode.OK
        counted = False
        try:
            yield
        except grpc.aio.AbortError:
            code = _code_after_abort(context)
            raise
        except asyncio.CancelledError:
            code = StatusCode.CANCELLED
            raise
        except Exception as exc:
            code, message = _answer_for(exc)
            self._release(method, started, code, limited)
            counted = True
            await context.abort(code, message)
        finally:
            if not counted:
                self._release(method, started, code, limited)

    def _unary(self, method: str, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._guard(method, context):
                return await behaviour(request, context)

        return handle

    def _stream(
        self, method: str, behaviour: Callable[..., AsyncIterator[Any]], admit: bool = True
    ) -> Callable[..., AsyncIterator[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._guard(method, context, limited=admit):
                responses = behaviour(request, context)
                if inspect.isawaitable(responses):
                    # A coroutine handler (grpc's health Watch) writes with `context.write` itself.
                    await responses
                    return
                async for item in responses:
                    yield item

        return handle


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
