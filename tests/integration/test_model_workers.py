"""Model workers (LAYERSCOPE_MODEL_WORKERS), a process per model: a model that dies takes down nothing but itself.

One server with workers serves three models for the whole module, because every worker start imports
TensorFlow (seconds): `steady` must answer throughout, `victim` is SIGKILLed in the middle of a capture,
`hog` allocates past the worker memory limit until its crash loop ends in the failed state. The tests run
in file order and share those workers; each test leaves the models it does not break serving.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

from layerscope.client import Client, NotFoundError, ResourceExhaustedError, UnavailableError
from tests.conftest import ServerHandle, start_server
from tests.integration.test_load_at_start import put
from tests.support import models
from tests.support.metrics import scrape

pytestmark = pytest.mark.slow

MEMORY_LIMIT = 1024 * 1024 * 1024
HOG_UNITS = 512 * 1024
"""The hog fans 16 inputs out to this many units: 2 MiB per example, so a batch of 1024 needs 2 GiB."""


def victim_model() -> keras.Model:
    """Four 3x3 convolutions over 32x32 images: a capture of 512 images runs for a second or more."""
    keras.utils.set_random_seed(1)
    image = keras.Input((32, 32, 3), name="image")
    x = image
    for i in range(4):
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, keras.layers.Dense(4, name="logits")(x), name="victim")


def hog_model() -> keras.Model:
    keras.utils.set_random_seed(2)
    features = keras.Input((16,), name="features")
    wide = keras.layers.Dense(HOG_UNITS, activation="relu", name="wide")(features)
    return keras.Model(features, keras.layers.Dense(1, name="score")(wide), name="hog")


@dataclass
class Servers:
    workers: ServerHandle
    in_process: ServerHandle
    repository: Path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("workers")
    repository = tmp / "repository"
    for name, model in (("steady", models.small_cnn()), ("victim", victim_model()), ("hog", hog_model())):
        put(repository, name, 1, models.save(model, tmp))
    workers = start_server(
        tmp,
        load_at_start=False,
        model_workers=True,
        models_per_worker=1,  # shared workers: tests/integration/test_workers_by_default.py
        worker_memory_limit_bytes=MEMORY_LIMIT,
        worker_max_crashes=2,
        worker_crash_window_seconds=600,
        # The call bounds would refuse the hog's 2 GiB batch before it ran: here the worker's limit must meet it.
        max_call_layer_bytes=4 << 30,
    )
    # Loaded side by side: each worker imports TensorFlow, and three in a row would triple the wait.
    with Client(workers.target, timeout=300) as c, ThreadPoolExecutor(3) as pool:
        list(pool.map(c.load_model, ("steady", "victim", "hog")))
    other = tmp / "in-process"
    other.mkdir()
    (other / "repository").symlink_to(repository)
    in_process = start_server(other, model_workers=False)
    yield Servers(workers, in_process, repository)
    in_process.stop()
    workers.stop()
    assert not worker_pids(), "workers outlived their server"


@pytest.fixture()
def client(servers: Servers) -> Iterator[Client]:
    with Client(servers.workers.target, timeout=300) as c:
        yield c


def worker_pids(model: str | None = None) -> list[int]:
    """Worker processes of this test process, found by their command line (the spec names the model)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        named = model is None or f'"name": "{model}"' in command
        if parent == os.getpid() and "layerscope.service.workers.main" in command and named:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 32, 32, 3)).astype("float32")


class KeepAsking:
    """Calls `steady` over and over in a thread; every answer must be right, none may fail."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._stop = threading.Event()
        self.answers = 0
        self.errors: list[Exception] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KeepAsking:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        x = np.ones((2, 8, 8, 1), "float32")
        with Client(self._target, timeout=60) as c:
            while not self._stop.is_set():
                try:
                    assert c.predict("steady", x)["probabilities"].shape == (2, 3)
                    self.answers += 1
                except Exception as exc:  # collected and asserted on by the test
                    self.errors.append(exc)
                time.sleep(0.05)


def test_worker_results_equal_in_process_results(servers: Servers) -> None:
    x = images(6)
    grid = np.linspace(-1, 1, 3 * 64, dtype="float32").reshape(3, 8, 8, 1)
    with Client(servers.workers.target, timeout=300) as w, Client(servers.in_process.target, timeout=300) as p:
        for name, arrays in (("victim", x), ("steady", grid)):
            assert_same_outputs(w.predict(name, arrays), p.predict(name, arrays))
            for statistics in ("exact", "sampled", "none"):
                full = ["conv0", "logits"] if name == "victim" else ["conv"]
                a = w.capture(name, arrays, full=full, statistics=statistics)
                b = p.capture(name, arrays, full=full, statistics=statistics)
                assert_same_outputs(a.outputs, b.outputs)
                assert a.summaries == b.summaries, f"{name} {statistics}"
                assert (statistics == "none") == (not any("activation" in k for k in a.summaries.values()))
                assert a.tensors.keys() == b.tensors.keys() and a.tensors
                for layer, kinds in a.tensors.items():
                    assert kinds.keys() == b.tensors[layer].keys()
                    for kind, tensor in kinds.items():
                        np.testing.assert_array_equal(tensor, b.tensors[layer][kind])
        assert w.diagnose("steady").findings == p.diagnose("steady").findings
        # Gradients and the training probe run in the worker too, with the same answers.
        y = np.eye(3, dtype="float32")[[0, 1, 2]]
        kinds = ("activation", "gradient", "kernel_gradient")
        a = w.capture("steady", grid, y=y, loss="categorical_crossentropy", kinds=kinds)
        b = p.capture("steady", grid, y=y, loss="categorical_crossentropy", kinds=kinds)
        assert a.summaries == b.summaries and a.summaries["conv"]["kernel_gradient"].count == 36
        probed = w.diagnose("steady", grid, y=y, probe_steps=2, loss="categorical_crossentropy")
        assert (
            probed.findings == p.diagnose("steady", grid, y=y, probe_steps=2, loss="categorical_crossentropy").findings
        )


def test_an_uploaded_version_restarts_from_its_published_archive(servers: Servers, tmp_path: Path) -> None:
    """An upload is loaded from a staged file that is then renamed into place: a restart must find it."""
    archive = models.save(models.small_cnn(), tmp_path)
    x = np.ones((2, 8, 8, 1), "float32")
    with Client(servers.workers.target, timeout=300) as c:
        info = c.upload_model("uploaded", archive)
        before = c.predict("uploaded", x)
        [pid] = worker_pids("uploaded")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:  # the call that finds the worker dead may be refused; the restart must then succeed
            try:
                after = c.predict("uploaded", x)
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the uploaded version never came back"
                time.sleep(0.5)
        assert_same_outputs(before, after)
        assert worker_pids("uploaded") not in ([], [pid])
        c.unload_model("uploaded", remove=True)
    assert info.version == 1


def assert_same_outputs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_a_worker_killed_mid_capture_fails_that_call_only_and_comes_back(servers: Servers, client: Client) -> None:
    [pid] = worker_pids("victim")
    outcome: list[BaseException | object] = []

    def capture() -> None:
        try:
            outcome.append(client.capture("victim", images(512), run_id="killed-mid-capture"))
        except BaseException as exc:  # the test asserts on it
            outcome.append(exc)

    with KeepAsking(servers.workers.target) as steady:
        caller = threading.Thread(target=capture)
        before = cpu_seconds(pid)
        caller.start()
        while cpu_seconds(pid) < before + 0.3:  # the worker is computing this capture now
            assert caller.is_alive(), "the capture finished before the worker could be killed"
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        caller.join(timeout=60)
        [error] = outcome
        assert isinstance(error, UnavailableError), error
        assert "Model 'victim' version 1" in error.message and "SIGKILL" in error.message, error.message
        with pytest.raises(NotFoundError):
            client.get_run("killed-mid-capture")  # the run that died was not stored
        # Calls that arrive now wait for the restart: a full queue of them must not stall the other model.
        waiting = [threading.Thread(target=client.predict, args=("victim", images(2))) for _ in range(8)]
        for thread in waiting:
            thread.start()
        answered = steady.answers
        time.sleep(1.0)
        assert any(t.is_alive() for t in waiting), "the restart (a TensorFlow import) cannot take under a second"
        assert steady.answers > answered + 5, "the steady model stalled while the victim's callers waited"
        for thread in waiting:
            thread.join(timeout=120)
        # The next call waits for the restarted worker; the retry of the same run id is stored once.
        again = client.capture("victim", images(4), run_id="killed-mid-capture")
        assert again.run_id == "killed-mid-capture" and again.summaries["conv0"]["activation"].count > 0
    assert steady.answers > 0 and not steady.errors, steady.errors
    assert worker_pids("victim") != [pid]
    assert client.get_run("killed-mid-capture").batch_size == 4
    assert client.health() == "SERVING"
    samples = scrape(servers.workers.metrics_url)
    assert samples['layerscope_worker_restarts_total{cause="SIGKILL",model="victim"}'] == 1.0
    assert samples['layerscope_worker_resident_memory_bytes{model="victim",version="1"}'] > 0
    assert any(k.startswith("layerscope_worker_crossing_seconds_count") for k in samples)


def test_a_worker_past_its_memory_limit_fails_that_call_only(servers: Servers, client: Client) -> None:
    assert client.predict("hog", np.ones((2, 16), "float32"))["score"].shape == (2, 1)
    with KeepAsking(servers.workers.target) as steady:
        # 2 GiB in one layer. TensorFlow either dies of the refused allocation (the worker restarts: UNAVAILABLE)
        # or survives it with its own out-of-memory error (RESOURCE_EXHAUSTED); which, depends on where it
        # allocates. Both name the limit, and fail this call only.
        with pytest.raises((UnavailableError, ResourceExhaustedError)) as raised:
            client.capture("hog", np.ones((1024, 16), "float32"), statistics="none")
        message = raised.value.message
        assert "memory limit of 1024 MiB" in message, message
        if isinstance(raised.value, UnavailableError):
            assert "Model 'hog' version 1" in message, message
        else:
            assert "a smaller batch needs less" in message and "OOM when allocating" in message, message
        assert client.predict("victim", images(2))["logits"].shape == (2, 4)
    assert steady.answers > 0 and not steady.errors, steady.errors
    assert client.health() == "SERVING"


def test_a_crash_loop_ends_failed_until_the_model_is_loaded_again(servers: Servers, client: Client) -> None:
    # worker_max_crashes is 2: its worker is killed until the model is failed (the test above may have crashed
    # it once already). A real crash, not a refused allocation, which TensorFlow sometimes survives.
    small = np.ones((2, 16), "float32")
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "the hog never ended failed"
        started = time.monotonic()
        try:
            client.predict("hog", small)
        except UnavailableError as error:
            if "is failed" in error.message:
                raised = error
                break
            time.sleep(0.5)  # restarting
            continue
        [pid] = worker_pids("hog")
        os.kill(pid, signal.SIGSEGV)
        time.sleep(0.2)
    assert time.monotonic() - started < 5, "a failed model answers at once, without waiting for a restart"
    assert "Model 'hog' version 1 is failed" in raised.message and "loaded again" in raised.message
    time.sleep(1.0)
    assert worker_pids("hog") == [], "a failed model's worker is not restarted"
    assert client.predict("steady", np.ones((1, 8, 8, 1), "float32"))["probabilities"].shape == (1, 3)
    assert client.health() == "SERVING"
    assert client.load_model("hog").name == "hog"  # a new worker
    assert client.predict("hog", np.ones((2, 16), "float32"))["score"].shape == (2, 1)
    samples = scrape(servers.workers.metrics_url)
    assert sum(v for k, v in samples.items() if k.startswith('layerscope_worker_restarts_total{cause="SIGSEGV"')) >= 1


class Restarts:
    """A WorkerObserver that keeps the restart causes (the pool is driven without a server here)."""

    def __init__(self) -> None:
        self.causes: list[str] = []

    def restarted(self, model: str, cause: str) -> None:
        self.causes.append(cause)

    def resident(self, model: str, version: int, size: int | None) -> None:
        pass

    def crossed(self, model: str, seconds: float) -> None:
        pass


def test_a_call_past_the_deadline_kills_and_restarts_the_worker(servers: Servers) -> None:
    from layerscope.service.domain.capture import CaptureRequest
    from layerscope.service.domain.selection import Selection
    from layerscope.service.errors import DeadlineExceeded
    from layerscope.service.settings import Settings
    from layerscope.service.workers.pool import WorkerPool

    restarts = Restarts()
    pool = WorkerPool(Settings(model_workers=True, worker_call_timeout_seconds=1.0), restarts)
    try:
        victim = pool.open(servers.repository / "victim" / "1" / "model.keras", "victim", 1)
        pid = victim.engine.pid  # type: ignore[attr-defined]
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"Model 'victim' version 1 to answer within 1 s"):
            # About 120 GFLOP and exact statistics over 270 M values: seconds on any CPU.
            victim.engine.run(CaptureRequest({"image": images(2048)}, Selection(), statistics="exact"))
        assert time.monotonic() - started < 5
        assert victim.engine.predict({"image": images(2)})["logits"].shape == (2, 4)  # after the restart
        assert victim.engine.pid != pid and restarts.causes == ["deadline"]  # type: ignore[attr-defined]
    finally:
        pool.close_all()


def test_unloading_stops_the_worker(servers: Servers, client: Client) -> None:
    [pid] = worker_pids("hog")
    client.unload_model("hog")
    deadline = time.monotonic() + 10
    while pid in worker_pids("hog") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker_pids("hog") == []


def test_live_monitoring_samples_through_the_worker_with_the_same_answers(client: Client) -> None:
    """At the default 5% rate every 20th Predict runs the capture path, in the worker, in one crossing; its
    answer is the unsampled one and its summaries reach the server's monitor."""
    x = np.random.default_rng(3).random((4, 8, 8, 1)).astype("float32")
    before = client.monitor("steady").samples
    answers = []
    deadline = time.monotonic() + 30  # the first samples wait for the live capture function's trace
    while client.monitor("steady").samples < before + 2 and time.monotonic() < deadline:
        answers += [client.predict("steady", x) for _ in range(20)]
        time.sleep(0.1)
    status = client.monitor("steady")
    assert status.samples >= before + 2
    for answer in answers[1:]:
        for name, value in answer.items():
            np.testing.assert_array_equal(value, answers[0][name])
    window = status.open_window or status.windows[0]
    assert [layer.layer for layer in window.layers][:2] == ["conv", "pool"]
