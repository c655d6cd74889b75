"""The restart state machine of `ModelWorker`, on fake worker processes: no subprocess, no TensorFlow.

The worker's seams are its constructor's: the first process, the `start` callable that makes the next one,
and a `RestartPolicy` whose clock the tests own. Backoffs are tens of milliseconds, so restarts are real
(the watcher thread waits them out) and the file still runs in about a second.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.models import ModelInfo
from layerscope.service.errors import DeadlineExceeded, InvalidInput, ModelUnavailable
from layerscope.service.workers.model_worker import ModelWorker, State, WorkerEngine
from layerscope.service.workers.policy import RestartPolicy
from layerscope.service.workers.process import CallTimedOut, WorkerDied, describe_exit
from layerscope.service.workers.protocol import ModelKey, ModelSpec, Ready, Started, WorkerSpec

MODEL = ModelSpec(path="/models/m/1/model.keras", name="m", version=1)
SPEC = WorkerSpec(models=(MODEL,), block_prefix="test-m")
INFO = ModelInfo(name="m", version=1, sha256="0" * 64, parameters=10, layers=("dense",), outputs=("dense",))
READY = Ready(INFO, ModelDescription("m", (), (), ("dense",), 10), pid=0)


def ready_for(model: ModelSpec) -> Ready:
    info = ModelInfo(name=model.name, version=model.version, sha256="0" * 64, parameters=10, layers=("dense",))
    return Ready(info, ModelDescription(model.name, (), (), ("dense",), 10), pid=0)


WAIT = 5.0
"""How long a test waits for the watcher thread at most (it normally takes milliseconds)."""


class FakeProcess:
    """A worker process that answers, dies or hangs when told; `wait` blocks until it has exited."""

    spec = SPEC

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.killed = self.stopped = False
        self.calls: list[str] = []
        self.called: list[ModelKey] = []
        self.loaded: list[ModelKey] = []
        self.on_call: Callable[[FakeProcess], None] | None = None
        self.on_load: Callable[[FakeProcess], None] | None = None
        self._exited = threading.Event()

    def call(
        self, model: ModelKey, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float, *ending: Any
    ) -> tuple[Any, float]:
        self.calls.append(method)
        self.called.append(model)
        if self.on_call is not None:
            self.on_call(self)
        return (self.pid, method, args), 0.0

    def load(self, model: ModelSpec, timeout: float) -> Ready:
        self.loaded.append(model.key)
        if self.on_load is not None:
            self.on_load(self)
        return ready_for(model)

    def unload(self, model: ModelKey, timeout: float) -> None:
        self.loaded.remove(model)

    def exit(self, code: int) -> None:
        self.code = code
        self._exited.set()

    def die_during_call(self, code: int = -signal.SIGKILL) -> None:
        self.exit(code)
        raise WorkerDied(describe_exit(code, None))

    def wait(self) -> int:
        self._exited.wait()
        assert self.code is not None
        return self.code

    def kill(self) -> None:
        self.killed = True
        self.exit(-signal.SIGKILL)

    def stop(self) -> None:
        self.stopped = True
        self.exit(-signal.SIGTERM)

    def resident_bytes(self) -> int | None:
        return None if self._exited.is_set() else 1 << 20


class Starter:
    """The worker's `start`: `first` the first time (the process the worker starts with), then a new
    FakeProcess each time, holding the models it was given; it can be made to fail, or to wait for a gate."""

    def __init__(self, first: FakeProcess) -> None:
        self.first: FakeProcess | None = first
        self.models: list[tuple[ModelKey, ...]] = []
        self.started: list[FakeProcess] = []
        self.times: list[float] = []
        self.fail_with: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, models: tuple[ModelSpec, ...]) -> tuple[FakeProcess, Started]:
        if self.first is not None:
            process, self.first = self.first, None
        else:
            self.times.append(time.monotonic())
            self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            process = FakeProcess(pid=100 + len(self.started))
            self.started.append(process)
            self.models.append(tuple(m.key for m in models))
        process.loaded.extend(m.key for m in models)
        return process, Started(tuple(ready_for(m) for m in models), process.pid)


class Observer:
    def __init__(self) -> None:
        self.restarts: list[tuple[str, str]] = []
        self.resident_sizes: list[int | None] = []
        self.crossings = 0

    def restarted(self, model: str, cause: str) -> None:
        self.restarts.append((model, cause))

    def resident(self, model: str, version: int, size: int | None) -> None:
        self.resident_sizes.append(size)

    def crossed(self, model: str, seconds: float) -> None:
        self.crossings += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(
        self,
        max_crashes: int = 3,
        window: float = 60.0,
        backoff: float = 0.01,
        start_timeout: float = WAIT,
        make_room: Callable[[ModelWorker], None] = lambda worker: None,
        shared: bool = False,
    ):
        self.first = FakeProcess(pid=1)
        self.starter = Starter(self.first)
        self.observer = Observer()
        self.clock = Clock()
        self.policy = RestartPolicy(max_crashes, window, first_backoff=backoff, max_backoff=1.0, clock=self.clock)
        self.evicted: list[WorkerEngine] = []
        self.worker = ModelWorker(
            self.starter,  # type: ignore[arg-type]  # FakeProcess stands in for WorkerProcess
            self.policy,
            call_timeout=2.0,
            start_timeout=start_timeout,
            observer=self.observer,
            make_room=make_room,
            on_evict=self.evicted.append if shared else None,
        )
        self.engine = self.worker.add(MODEL)

    @property
    def process(self) -> FakeProcess:
        return self.starter.started[-1] if self.starter.started else self.first


@pytest.fixture()
def make() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def build(**kwargs: Any) -> Rig:
        rigs.append(Rig(**kwargs))
        return rigs[-1]

    yield build
    for rig in rigs:
        rig.starter.gate.set()
        rig.worker.close(wait=WAIT)


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"expected {what} within {WAIT} s"
        time.sleep(0.002)


def test_calls_reach_the_live_process_and_report_their_crossing(make: Callable[..., Rig]) -> None:
    rig = make()
    assert rig.engine.predict({"x": 1}) == (1, "predict", ({"x": 1},))
    assert rig.worker.state is State.READY and rig.worker.pid == 1
    assert rig.observer.crossings == 1 and rig.observer.resident_sizes[0] == 1 << 20


@pytest.mark.parametrize(
    ("code", "label"), [(-signal.SIGKILL, "SIGKILL"), (-signal.SIGSEGV, "SIGSEGV"), (1, "exit"), (-40, "signal")]
)
def test_a_death_between_calls_is_restarted_and_named_by_its_cause(
    make: Callable[..., Rig], code: int, label: str
) -> None:
    rig = make()
    rig.first.exit(code)
    eventually(lambda: bool(rig.starter.started) and rig.worker.state is State.READY, "a restarted worker")
    assert rig.observer.restarts == [("m", label)]
    assert rig.engine.predict()[0] == 100, "the next call goes to the new process"
    assert rig.first.calls == []


def test_a_death_during_a_call_fails_that_call_and_the_next_waits_for_the_restart(make: Callable[..., Rig]) -> None:
    rig = make()
    rig.starter.gate.clear()  # hold the restart, so the state between death and restart can be seen
    rig.first.on_call = lambda p: p.die_during_call(-signal.SIGKILL)
    with pytest.raises(ModelUnavailable) as died:
        rig.engine.run({"x": 1})  # type: ignore[arg-type]  # the fake process never reads it
    assert "Model 'm' version 1 is unavailable: its worker process died during the call" in died.value.message
    assert "SIGKILL" in died.value.message and "retry in a few seconds" in died.value.message
    assert rig.worker.state is State.RESTARTING, "the next call must not meet the dead process"

    answers: list[Any] = []
    waiting = threading.Thread(target=lambda: answers.append(rig.engine.predict()))
    waiting.start()
    time.sleep(0.05)
    assert waiting.is_alive() and not answers, "a call that arrives during the restart waits for it"
    rig.starter.gate.set()
    waiting.join(WAIT)
    assert answers and answers[0][0] == 100
    assert rig.first.calls == ["run"]


def test_a_call_past_its_deadline_kills_the_worker_and_restarts_it(make: Callable[..., Rig]) -> None:
    rig = make()

    def hang(process: FakeProcess) -> None:
        raise CallTimedOut()

    rig.first.on_call = hang
    with pytest.raises(DeadlineExceeded, match=r"within 2 s \(worker_call_timeout_seconds\)"):
        rig.engine.predict()
    assert rig.first.killed
    eventually(lambda: rig.worker.state is State.READY and bool(rig.starter.started), "a restarted worker")
    assert rig.observer.restarts == [("m", "deadline")]


def test_backoff_doubles_with_each_crash_in_the_window(make: Callable[..., Rig]) -> None:
    rig = make(max_crashes=4, backoff=0.05)
    for n in range(3):
        died = time.monotonic()
        rig.process.exit(1)
        eventually(lambda n=n: len(rig.starter.started) == n + 1, f"restart {n + 1}")
        assert rig.starter.times[n] - died >= 0.05 * 2**n, f"restart {n + 1} waited at least its backoff"
        eventually(lambda: rig.worker.state is State.READY, "a ready worker")
    assert rig.policy.recent == 3


def test_max_crashes_within_the_window_leave_the_model_failed(make: Callable[..., Rig]) -> None:
    rig = make(max_crashes=3)
    for n in range(2):
        rig.process.exit(-signal.SIGKILL)
        eventually(lambda n=n: len(rig.starter.started) == n + 1 and rig.worker.state is State.READY, "a restart")
    rig.process.exit(-signal.SIGKILL)
    eventually(lambda: rig.worker.state is State.FAILED, "a failed worker")
    assert len(rig.starter.started) == 2, "the third crash is not restarted"
    assert rig.observer.resident_sizes[-1] is None, "a failed worker's memory gauge is cleared"
    with pytest.raises(ModelUnavailable) as failed:
        rig.engine.predict()
    assert failed.value.message.startswith("Model 'm' version 1 is failed: its worker stopped 3 times within 60 s")
    assert "(last: it was killed by SIGKILL" in failed.value.message
    assert "loaded again (LoadModel)" in failed.value.message


def test_crashes_further_apart_than_the_window_never_add_up(make: Callable[..., Rig]) -> None:
    rig = make(max_crashes=2, window=60.0)
    for n in range(4):
        rig.clock.now += 61.0
        rig.process.exit(1)
        eventually(lambda n=n: len(rig.starter.started) == n + 1 and rig.worker.state is State.READY, "a restart")
    assert rig.policy.recent == 1


def test_a_restart_that_fails_to_start_counts_as_a_crash(make: Callable[..., Rig]) -> None:
    rig = make(max_crashes=3)
    rig.starter.fail_with = ModelUnavailable("the archive is gone")
    rig.first.exit(1)
    eventually(lambda: rig.worker.state is State.FAILED, "a failed worker")
    assert len(rig.starter.times) == 2, "two failed starts after the crash make three crashes"
    assert [cause for _, cause in rig.observer.restarts] == ["exit", "start"]
    with pytest.raises(ModelUnavailable, match="last: its restart failed: the archive is gone"):
        rig.engine.predict()


def test_a_call_waits_for_a_slow_restart_only_up_to_the_start_timeout(make: Callable[..., Rig]) -> None:
    rig = make(start_timeout=0.1)
    rig.starter.gate.clear()
    rig.first.exit(-signal.SIGSEGV)
    eventually(lambda: bool(rig.starter.times), "a restart under way")
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="is restarting after it was killed by SIGSEGV"):
        rig.engine.predict()
    assert time.monotonic() - started >= 0.1


def test_close_stops_the_process_and_nothing_restarts_it(make: Callable[..., Rig]) -> None:
    rig = make()
    rig.worker.close(wait=WAIT)
    assert rig.first.stopped and rig.worker.state is State.CLOSED
    assert rig.starter.started == [] and rig.observer.restarts == []
    assert rig.observer.resident_sizes[-1] is None
    with pytest.raises(ModelUnavailable, match="it was unloaded"):
        rig.engine.predict()


def test_close_during_the_backoff_cancels_the_restart(make: Callable[..., Rig]) -> None:
    rig = make(backoff=0.5)
    rig.first.exit(1)
    eventually(lambda: rig.observer.restarts == [("m", "exit")], "a restart announced")
    rig.worker.close(wait=WAIT)
    assert rig.starter.times == [] and rig.worker.state is State.CLOSED


# -- parking: many models, a bounded number of processes --------------------------------------------------------


def test_a_parked_worker_frees_its_process_and_its_next_call_starts_a_new_one(make: Callable[..., Rig]) -> None:
    rig = make()
    assert rig.worker.park() is True
    assert rig.first.stopped and rig.worker.state is State.PARKED
    assert rig.observer.resident_sizes[-1] is None, "a parked worker holds no memory"
    time.sleep(0.05)
    assert rig.observer.restarts == [] and rig.starter.started == [], "parking is no crash: nothing restarts it"
    assert rig.engine.predict()[0] == 100, "the next call starts a worker again and is answered by it"
    assert rig.worker.state is State.READY and rig.observer.restarts == []
    rig.process.exit(-signal.SIGKILL)  # and that worker is watched like the first
    eventually(lambda: rig.observer.restarts == [("m", "SIGKILL")], "a restart after the resumed worker's death")


def test_a_worker_in_a_call_or_not_ready_is_not_parked(make: Callable[..., Rig]) -> None:
    rig = make()
    entered, release = threading.Event(), threading.Event()

    def hold(process: FakeProcess) -> None:
        entered.set()
        release.wait(WAIT)

    rig.first.on_call = hold
    call = threading.Thread(target=rig.engine.predict)
    call.start()
    entered.wait(WAIT)
    assert rig.worker.park() is False and not rig.first.stopped
    release.set()
    call.join(WAIT)
    rig.worker.close()
    assert rig.worker.park() is False


def test_an_unloaded_parked_worker_stays_down(make: Callable[..., Rig]) -> None:
    rig = make()
    rig.worker.park()
    rig.worker.close()
    with pytest.raises(ModelUnavailable, match="unloaded"):
        rig.engine.predict()
    assert rig.starter.started == []


@pytest.mark.slow  # the pool's module imports the engine's, and so TensorFlow
def test_the_pool_parks_the_least_recently_used_idle_worker_beyond_its_bound() -> None:
    from layerscope.service.settings import Settings
    from layerscope.service.workers.pool import WorkerPool

    pool = WorkerPool(Settings(max_workers=2), Observer())
    rigs = [Rig(make_room=pool.make_room) for _ in range(3)]
    for i, rig in enumerate(rigs):
        rig.worker.last_used = 100.0 + i
    pool._workers.update(r.worker for r in rigs)
    pool.make_room(None)  # a fourth is about to start: two may run, so the two least recently used are parked
    assert [r.worker.state for r in rigs] == [State.PARKED, State.PARKED, State.READY]
    rigs[0].engine.predict()  # the oldest is called again: room is made for it first (the least recent idle one)
    assert [r.worker.state for r in rigs] == [State.READY, State.PARKED, State.READY]
    for rig in rigs:
        rig.worker.close(wait=WAIT)


# -- shared workers: several models in one process --------------------------------------------------------------

OTHER = ModelSpec(path="/models/n/1/model.keras", name="n", version=1)


def test_a_shared_worker_runs_each_call_on_the_model_it_names(make: Callable[..., Rig]) -> None:
    rig = make(shared=True)
    other = rig.worker.add(OTHER)
    assert rig.first.loaded == [("m", 1), ("n", 1)], "the second model is loaded into the running process"
    rig.engine.predict()
    other.run({"x": 1})  # type: ignore[arg-type]
    assert rig.first.called == [("m", 1), ("n", 1)]
    assert rig.worker.models == (("m", 1), ("n", 1)) and other.pid == rig.engine.pid == 1


def test_the_model_whose_call_kills_a_shared_worker_moves_out_and_the_others_restart_without_it(
    make: Callable[..., Rig],
) -> None:
    rig = make(shared=True)
    other = rig.worker.add(OTHER)
    rig.first.on_call = lambda p: p.die_during_call(-signal.SIGSEGV)
    with pytest.raises(ModelUnavailable, match="Model 'm' version 1 is unavailable: its worker process died"):
        rig.engine.predict()
    assert rig.evicted == [rig.engine], "the crashing model is handed over for a worker of its own"
    eventually(lambda: rig.worker.state is State.READY and bool(rig.starter.started), "a restarted worker")
    assert rig.starter.models == [(("n", 1),)], "the restart holds only the models that did not crash it"
    assert other.predict()[0] == 100
    assert ("n", "SIGSEGV") in rig.observer.restarts, "the model that had to restart counts a restart"


def test_a_dedicated_worker_keeps_its_crashing_model(make: Callable[..., Rig]) -> None:
    rig = make(shared=False)
    rig.first.on_call = lambda p: p.die_during_call(-signal.SIGSEGV)
    with pytest.raises(ModelUnavailable):
        rig.engine.predict()
    eventually(lambda: rig.worker.state is State.READY and bool(rig.starter.started), "a restarted worker")
    assert rig.evicted == [] and rig.starter.models == [(("m", 1),)]


def test_a_load_that_kills_a_shared_worker_is_refused_and_the_worker_restarts_with_the_rest(
    make: Callable[..., Rig],
) -> None:
    rig = make(shared=True)
    rig.first.on_load = lambda p: p.die_during_call(-signal.SIGABRT)
    refused = r"Expected a loadable archive for model 'n' version 1; loading it, .*SIGABRT"
    with pytest.raises(InvalidInput, match=refused):
        rig.worker.add(OTHER)
    eventually(lambda: rig.worker.state is State.READY and bool(rig.starter.started), "a restarted worker")
    assert rig.starter.models == [(("m", 1),)] and rig.worker.models == (("m", 1),)
    assert rig.engine.predict()[0] == 100


def test_unloading_one_model_of_a_shared_worker_keeps_the_process_and_the_last_one_stops_it(
    make: Callable[..., Rig],
) -> None:
    rig = make(shared=True)
    other = rig.worker.add(OTHER)
    rig.engine.close()
    eventually(lambda: rig.first.loaded == [("n", 1)], "the worker let the model go")
    with pytest.raises(ModelUnavailable, match="it was unloaded"):
        rig.engine.predict()
    assert other.predict()[0] == 1 and not rig.first.stopped
    other.close()
    assert rig.first.stopped and rig.worker.state is State.CLOSED


def evicted_by_a_crash(make: Callable[..., Rig]) -> Rig:
    """A shared worker whose call on the rig's model was killed: the model is evicted (and recorded)."""
    rig = make(shared=True)
    rig.worker.add(OTHER)
    rig.first.on_call = lambda p: p.die_during_call(-signal.SIGKILL)
    with pytest.raises(ModelUnavailable):
        rig.engine.predict()
    return rig


def test_an_evicted_model_is_adopted_by_a_new_worker_and_started_by_its_next_call(make: Callable[..., Rig]) -> None:
    rig = evicted_by_a_crash(make)
    home = Starter(FakeProcess(pid=7))
    own = ModelWorker(home, rig.policy, 2.0, WAIT, rig.observer)  # type: ignore[arg-type]
    own.adopt(rig.evicted[0])
    assert rig.engine.worker is own and own.state is State.PARKED
    assert rig.engine.predict()[0] == 7, "its next call starts its own worker"
    own.close(wait=WAIT)


def test_an_evicted_model_not_yet_adopted_says_its_worker_is_being_replaced(make: Callable[..., Rig]) -> None:
    rig = evicted_by_a_crash(make)
    with pytest.raises(ModelUnavailable, match=r"Model 'm' version 1 is unavailable: its worker is being replaced"):
        rig.engine.predict()  # no pool adopted it (the rig's on_evict only records it)
