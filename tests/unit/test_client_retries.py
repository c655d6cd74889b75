"""The client's retries (`_core.Attempts`): idempotent calls are retried on UNAVAILABLE within the timeout, and a
retry that runs out of time says what it retried after (a model's worker that died) instead of a bare
DEADLINE_EXCEEDED."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest

from layerscope.client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    InternalError,
    UnavailableError,
)
from layerscope.client._core import RETRY, Attempts
from layerscope.v1 import diagnosis_pb2, models_pb2

DIED = (
    "Model 'victim' version 1 is unavailable: its worker process died during the call; killed by signal 9 "
    "(SIGKILL). The worker is being restarted; retry in a few seconds."
)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Stub:
    """Answers each call with the next of `answers`: an exception is raised, anything else returned."""

    def __init__(self, *answers: Any, wait: float = 0.0) -> None:
        self.answers = list(answers)
        self.timeouts: list[float | None] = []
        self.wait = wait

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(request: Any, timeout: float | None = None, metadata: Any = ()) -> Any:
            self.timeouts.append(timeout)
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


def unavailable(details: str = DIED) -> FakeRpcError:
    return FakeRpcError(grpc.StatusCode.UNAVAILABLE, details)


def out_of_time() -> FakeRpcError:
    return FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


@pytest.fixture()
def offline() -> Iterator[Client]:
    with Client("127.0.0.1:1", timeout=5) as c:  # no server: every call goes to the fake stub
        yield c


def predict(c: Client, stub: Stub) -> dict[str, np.ndarray]:
    c._stub = stub
    return c.predict("victim", np.zeros((1, 2), "float32"))


def test_a_retry_that_runs_out_of_time_names_the_failure_it_retried_after(offline: Client) -> None:
    with pytest.raises(DeadlineExceededError) as caught:
        predict(offline, Stub(unavailable(), out_of_time()))
    error = caught.value
    assert "worker process died during the call; killed by signal 9 (SIGKILL)" in error.message
    assert "timeout of 5 s ran out on attempt 2, a retry after UNAVAILABLE" in error.message
    assert isinstance(error.retried_after, UnavailableError) and error.retried_after.message == DIED
    assert error.__cause__ is error.retried_after


def test_each_attempt_gets_what_is_left_of_the_timeout(offline: Client) -> None:
    stub = Stub(unavailable(), unavailable(), models_pb2.PredictResponse())
    assert predict(offline, stub) == {}
    first, second, third = stub.timeouts
    assert first is not None and second is not None and third is not None
    assert 5 >= first > second > third > 5 - 0.5  # backoffs of 0.1 and 0.2 s at most


def test_a_plain_deadline_stays_as_it_was(offline: Client) -> None:
    with pytest.raises(DeadlineExceededError) as caught:
        predict(offline, Stub(out_of_time()))
    assert caught.value.message == "Deadline Exceeded" and caught.value.retried_after is None


def test_retries_stop_after_four_attempts_with_the_last_unavailable(offline: Client) -> None:
    stub = Stub(*(unavailable(f"down {i}") for i in range(4)))
    with pytest.raises(UnavailableError, match="down 3"):
        predict(offline, stub)
    assert len(stub.timeouts) == RETRY.max_attempts == 4


def test_calls_that_store_runs_are_not_retried(offline: Client) -> None:
    offline._stub = stub = Stub(unavailable(), diagnosis_pb2.DiagnoseResponse())  # type: ignore[assignment]
    with pytest.raises(UnavailableError):
        offline.diagnose("victim")
    assert len(stub.timeouts) == 1


def test_other_failures_are_not_retried(offline: Client) -> None:
    stub = Stub(FakeRpcError(grpc.StatusCode.INTERNAL, "incident 7"), models_pb2.PredictResponse())
    with pytest.raises(InternalError):
        predict(offline, stub)
    assert len(stub.timeouts) == 1


def test_with_no_time_left_for_a_retry_the_unavailable_itself_is_raised() -> None:
    now = [0.0]
    attempts = Attempts(1.0, retried=True, clock=lambda: now[0], draw=lambda high: high)
    assert attempts.remaining() == 1.0
    now[0] = 0.95  # the first attempt failed late: a 0.1 s backoff would pass the deadline
    error = UnavailableError(grpc.StatusCode.UNAVAILABLE, DIED)
    assert attempts.backoff(error) is None
    assert attempts.outcome(error) is error


def test_no_timeout_retries_without_a_deadline() -> None:
    attempts = Attempts(None, retried=True, draw=lambda high: high)
    assert attempts.remaining() is None
    assert attempts.backoff(UnavailableError(grpc.StatusCode.UNAVAILABLE, "x")) == pytest.approx(0.1)
    assert attempts.remaining() is None
    assert attempts.backoff(UnavailableError(grpc.StatusCode.UNAVAILABLE, "x")) == pytest.approx(0.2)


async def test_the_async_client_names_the_failure_it_retried_after_too() -> None:
    class AsyncStub(Stub):
        def __getattr__(self, method: str) -> Callable[..., Any]:
            call = super().__getattr__(method)

            async def acall(*args: Any, **kwargs: Any) -> Any:
                return call(*args, **kwargs)

            return acall

    async with AsyncClient("127.0.0.1:1", timeout=5) as c:
        c._stub = AsyncStub(unavailable(), out_of_time())
        with pytest.raises(DeadlineExceededError) as caught:
            await c.predict("victim", np.zeros((1, 2), "float32"))
    assert "killed by signal 9" in caught.value.message
    assert isinstance(caught.value.__cause__, UnavailableError)


# -- over a real channel --------------------------------------------------------------------------------------


class DiesThenHangs:
    """A gRPC server whose Predict answers UNAVAILABLE (a worker that died), then waits as a restart does."""

    def __init__(self, hang: float) -> None:
        self.calls = 0
        self._hang = hang
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._predict,
            request_deserializer=models_pb2.PredictRequest.FromString,
            response_serializer=models_pb2.PredictResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("layerscope.v1.Inspector", {"Predict": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _predict(self, request: models_pb2.PredictRequest, context: grpc.ServicerContext) -> models_pb2.PredictResponse:
        self.calls += 1
        if self.calls == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, DIED)
        time.sleep(self._hang)
        return models_pb2.PredictResponse()


@pytest.mark.slow  # a gRPC server, if a small one
def test_over_a_real_channel_the_deadline_names_the_dead_worker() -> None:
    fake = DiesThenHangs(hang=3.0)
    fake.server.start()
    try:
        started = time.perf_counter()
        with Client(f"127.0.0.1:{fake.port}", timeout=1.0) as c, pytest.raises(DeadlineExceededError) as caught:
            c.predict("victim", np.zeros((1, 2), "float32"))
        assert time.perf_counter() - started < 2.0
        assert "killed by signal 9" in caught.value.message and fake.calls == 2

        async def call() -> None:
            async with AsyncClient(f"127.0.0.1:{fake.port}", timeout=1.0) as ac:
                await ac.predict("victim", np.zeros((1, 2), "float32"))

        fake.calls = 0
        with pytest.raises(DeadlineExceededError, match="killed by signal 9"):
            asyncio.run(call())
    finally:
        fake.server.stop(0)
