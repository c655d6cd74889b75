"""The model lifecycle: scan, install, load, unload, remove, and failed versions, with its file work off the
event loop. The repository is real (files in a temporary folder); the registry is a fake that "loads" an
archive by reading its bytes, because what is under test is the lifecycle, not Keras."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.errors import AlreadyExists, InvalidInput, ModelUnavailable, NotFound
from layerscope.service.models.lifecycle import ModelLifecycle
from layerscope.service.models.repository import ModelRepository


def on_the_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class WatchedRepository(ModelRepository):
    """The real repository, noting for each file-system call whether it ran on the event loop."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, bool]] = []

    def _note(self, what: str) -> None:
        self.calls.append((what, on_the_event_loop()))

    def names(self) -> list[str]:
        self._note("names")
        return super().names()

    def versions(self, name: str) -> list[int]:
        self._note("versions")
        return super().versions(name)

    def is_unloaded(self, name: str, version: int) -> bool:
        self._note("is_unloaded")
        return super().is_unloaded(name, version)

    def set_unloaded(self, name: str, version: int, unloaded: bool) -> None:
        self._note("set_unloaded")
        super().set_unloaded(name, version, unloaded)

    def delete(self, name: str, version: int) -> None:
        self._note("delete")
        super().delete(name, version)

    def remove(self, name: str, version: int) -> None:
        self._note("remove")
        super().remove(name, version)

    def on_loop(self) -> list[str]:
        return [what for what, on_loop in self.calls if on_loop]


@dataclass
class Loaded:
    info: ModelInfo


@dataclass
class FakeRegistry:
    """Loads an archive whose bytes are not b"broken"; counts the loads it was asked for."""

    repository: ModelRepository
    models: dict[tuple[str, int], Loaded] = field(default_factory=dict)
    attempts: list[tuple[str, int]] = field(default_factory=list)

    def load(self, name: str, version: int | None = None, staged: Path | None = None) -> Loaded:
        chosen, path = (version, staged) if staged and version else self.repository.locate(name, version)
        self.attempts.append((name, chosen))
        if path.read_bytes() == b"broken":
            raise InvalidInput(f"Expected a loadable archive; received a broken one for {name}:{chosen}.")
        return self.models.setdefault((name, chosen), Loaded(ModelInfo(name, chosen, "sha", 1, ())))

    def get(self, ref: ModelRef) -> Loaded:
        versions = sorted(v for n, v in self.models if n == ref.name)
        if not versions:
            raise NotFound(f"Expected a loaded model named '{ref.name}'.")
        return self.models[(ref.name, ref.version or versions[-1])]

    def unload(self, ref: ModelRef) -> Loaded:
        loaded = self.get(ref)
        return self.models.pop((loaded.info.name, loaded.info.version))

    def loaded(self) -> list[Loaded]:
        return sorted(self.models.values(), key=lambda m: (m.info.name, m.info.version))


@dataclass
class Observer:
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def loaded(self, seconds: float) -> None:
        self.seconds.append(seconds)

    def failed(self, error: Exception) -> None:
        self.failures.append(type(error).__name__)

    def count(self, models: int) -> None:
        self.counts.append(models)


def store(root: Path, name: str, version: int, content: bytes = b"archive") -> None:
    upload = ModelRepository(root).begin_upload(name, version, 1024)
    upload.write(content)
    upload.commit()
    upload.publish()


def lifecycle(root: Path) -> tuple[ModelLifecycle, WatchedRepository, FakeRegistry, Observer]:
    repository = WatchedRepository(root)
    registry = FakeRegistry(repository)
    observer = Observer()
    return ModelLifecycle(repository, registry, observer), repository, registry, observer  # type: ignore[arg-type]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_scan_loads_the_newest_version_of_each_model_with_every_file_read_off_the_event_loop(
    tmp_path: Path,
) -> None:
    store(tmp_path, "digits", 1)
    store(tmp_path, "digits", 2)
    store(tmp_path, "iris", 1)
    models, repository, _, observer = lifecycle(tmp_path)
    loaded = await models.load_new()
    assert [(m.name, m.version) for m in loaded] == [("digits", 2), ("iris", 1)]
    assert {what for what, _ in repository.calls} >= {"names", "versions", "is_unloaded"}
    assert repository.on_loop() == []
    assert len(observer.seconds) == 2 and observer.counts[-1] == 2


async def test_a_slow_repository_volume_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """A scan that blocks on the file system (a shared network volume) leaves the loop free: the loop sets
    the event the scan waits for. Were the scan on the loop, it would wait out its timeout instead."""
    store(tmp_path, "digits", 1)
    answered = threading.Event()
    waited: list[bool] = []

    class SlowVolume(WatchedRepository):
        def names(self) -> list[str]:
            waited.append(answered.wait(timeout=5))
            return super().names()

    repository = SlowVolume(tmp_path)
    models = ModelLifecycle(repository, FakeRegistry(repository), Observer())  # type: ignore[arg-type]

    async def answer_meanwhile() -> None:
        await asyncio.sleep(0.05)
        answered.set()

    loaded, _ = await asyncio.gather(models.load_new(), answer_meanwhile())
    assert waited == [True] and [m.name for m in loaded] == ["digits"]


async def test_a_version_that_fails_to_load_is_skipped_by_later_scans_until_a_caller_asks(tmp_path: Path) -> None:
    store(tmp_path, "bad", 1, b"broken")
    store(tmp_path, "good", 1)
    models, _, registry, observer = lifecycle(tmp_path)
    assert [m.name for m in await models.load_new()] == ["good"]  # one broken archive does not stop the rest
    assert models.failed == {("bad", 1)} and observer.failures == ["InvalidInput"]
    assert await models.load_new() == []
    assert registry.attempts.count(("bad", 1)) == 1, "a scan does not try a failed version again"
    with pytest.raises(InvalidInput, match="broken one for bad:1"):
        await models.load(ModelRef("bad"))  # a caller's load always tries
    assert registry.attempts.count(("bad", 1)) == 2


async def test_an_unloaded_version_stays_unloaded_across_a_restart_until_a_caller_loads_it(tmp_path: Path) -> None:
    store(tmp_path, "digits", 1)
    first, _, _, observer = lifecycle(tmp_path)
    await first.load_new()
    await first.unload(ModelRef("digits"))
    assert observer.counts[-1] == 0
    restarted, repository, _, _ = lifecycle(tmp_path)
    assert await restarted.load_new() == []
    assert (await restarted.load(ModelRef("digits", 1))).version == 1
    assert repository.on_loop() == []
    again, _, _, _ = lifecycle(tmp_path)
    assert [m.name for m in await again.load_new()] == ["digits"]


async def test_an_upload_that_does_not_load_leaves_nothing_behind(tmp_path: Path) -> None:
    models, repository, _, _ = lifecycle(tmp_path)
    with pytest.raises(InvalidInput, match="broken one for bad:1"):
        await models.upload("bad", None, chunks(b"bro", b"ken"), "", True, 1024)
    assert repository.on_loop() == []
    assert repository.versions("bad") == [] and not (tmp_path / "bad" / "1").exists()


async def test_an_upload_stored_without_loading_stays_on_disk_and_unloaded(tmp_path: Path) -> None:
    models, repository, registry, _ = lifecycle(tmp_path)
    info = await models.upload("digits", None, chunks(b"archive"), "", False, 1024)
    assert (info.name, info.version) == ("digits", 1) and registry.loaded() == []
    assert repository.versions("digits") == [1] and repository.is_unloaded("digits", 1)


async def test_a_removed_version_keeps_its_number_as_a_tombstone(tmp_path: Path) -> None:
    store(tmp_path, "digits", 1)
    models, repository, _, _ = lifecycle(tmp_path)
    await models.load_new()
    await models.unload(ModelRef("digits", 1), remove=True)
    assert repository.versions("digits") == [] and ("delete", False) in repository.calls
    with pytest.raises(AlreadyExists, match="numbers are never reused"):
        repository.begin_upload("digits", 1, 1024)
    assert (await models.upload("digits", None, chunks(b"archive"), "", True, 1024)).version == 2


# -- transient models (an audit through the server) ----------------------------------------------------------


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture()
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where transient archives go (the system's temporary folder, here one of the test's own)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def test_a_transient_model_loads_without_touching_the_repository_and_leaves_no_file(
    tmp_path: Path, temp: Path
) -> None:
    store(tmp_path / "repo", "digits", 1)
    models, repository, registry, observer = lifecycle(tmp_path / "repo")
    await models.load_new()
    before = files(tmp_path / "repo")
    info = await models.upload_transient("audit-x", None, chunks(b"arch", b"ive"), "", 1024)
    assert (info.name, info.version, info.transient) == ("audit-x", 1, True)
    assert models.get(ModelRef("audit-x")).info.transient
    assert [p.name for p in temp.iterdir()] != []  # its archive, outside the repository
    assert observer.counts[-1] == 1  # transient models are not counted as loaded models
    await models.unload(ModelRef("audit-x", 1), remove=True)
    assert files(tmp_path / "repo") == before  # no version, tombstone, marker or folder
    assert list(temp.iterdir()) == []
    assert [m.info.name for m in registry.loaded()] == ["digits"]
    assert repository.on_loop() == []


async def test_a_transient_model_that_does_not_load_leaves_nothing(tmp_path: Path, temp: Path) -> None:
    models, _, registry, _ = lifecycle(tmp_path / "repo")
    with pytest.raises(InvalidInput, match="broken one"):
        await models.upload_transient("audit-bad", None, chunks(b"broken"), "", 1024)
    with pytest.raises(InvalidInput, match="Expected sha256"):
        await models.upload_transient("audit-bad", None, chunks(b"archive"), "0" * 64, 1024)
    assert list(temp.iterdir()) == [] and registry.loaded() == [] and files(tmp_path / "repo") == []
    assert (await models.upload_transient("audit-bad", None, chunks(b"archive"), "", 1024)).transient  # name free


async def test_transient_and_stored_models_never_share_a_name(tmp_path: Path, temp: Path) -> None:
    store(tmp_path / "repo", "digits", 1)
    models, _, _, _ = lifecycle(tmp_path / "repo")
    with pytest.raises(AlreadyExists, match="is loaded or stored in the repository"):
        await models.upload_transient("digits", None, chunks(b"archive"), "", 1024)
    await models.upload_transient("audit-x", None, chunks(b"archive"), "", 1024)
    with pytest.raises(AlreadyExists, match="loaded as a transient model"):
        await models.upload_transient("audit-x", None, chunks(b"archive"), "", 1024)
    with pytest.raises(AlreadyExists, match="loaded as a transient model"):
        await models.upload("audit-x", None, chunks(b"archive"), "", True, 1024)
    with pytest.raises(AlreadyExists, match="loaded as a transient model"):
        await models.load(ModelRef("audit-x"))
    store(tmp_path / "repo", "audit-x", 1)  # copied in by hand meanwhile: no scan loads it over the transient one
    assert [m.name for m in await models.load_new()] == ["digits"]


async def test_an_idle_transient_model_expires(tmp_path: Path, temp: Path) -> None:
    now = [0.0]
    repository = WatchedRepository(tmp_path / "repo")
    registry = FakeRegistry(repository)
    models = ModelLifecycle(repository, registry, Observer(), transient_seconds=60, clock=lambda: now[0])  # type: ignore[arg-type]
    await models.upload_transient("audit-a", None, chunks(b"archive"), "", 1024)
    await models.upload_transient("audit-b", None, chunks(b"archive"), "", 1024)
    now[0] = 50.0
    models.get(ModelRef("audit-b"))  # a call keeps it
    now[0] = 100.0
    assert [m.name for m in await models.expire()] == ["audit-a"]
    assert [m.info.name for m in registry.loaded()] == ["audit-b"]
    models.discard_transient()  # the server stops
    assert list(temp.iterdir()) == []


# -- loading at start: a few at once, each model's readiness told, UNAVAILABLE while loading ------------------


@dataclass
class Readiness:
    """Records what the lifecycle tells the health service, in order."""

    told: list[tuple[str, bool]] = field(default_factory=list)

    async def model(self, name: str, serving: bool) -> None:
        self.told.append((name, serving))


class GatedRegistry(FakeRegistry):
    """Each load waits at `gate` (a barrier: it opens only when that many loads wait together) and counts how
    many run at once."""

    def __init__(self, repository: ModelRepository, gate: threading.Barrier | threading.Event) -> None:
        super().__init__(repository)
        self.gate = gate
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def load(self, name: str, version: int | None = None, staged: Path | None = None) -> Loaded:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.gate.wait(timeout=5) is not False, "the loads expected together never met"
            return super().load(name, version, staged)
        finally:
            with self.lock:
                self.running -= 1


async def test_found_models_load_concurrently_up_to_the_bound_and_never_beyond(tmp_path: Path) -> None:
    for i in range(6):
        store(tmp_path, f"m{i}", 1)
    repository = ModelRepository(tmp_path)
    registry = GatedRegistry(repository, threading.Barrier(3))  # one after another, the first load would wait 5 s
    models = ModelLifecycle(repository, registry, Observer(), load_concurrency=3)  # type: ignore[arg-type]
    loaded = await models.load_found(await models.scan_new())
    assert [m.name for m in loaded] == [f"m{i}" for i in range(6)]  # in scan order, whatever finished first
    assert registry.most == 3


async def test_each_model_is_not_serving_from_the_scan_until_loaded_and_answers_unavailable_meanwhile(
    tmp_path: Path,
) -> None:
    store(tmp_path, "digits", 1)
    store(tmp_path, "broken", 1, b"broken")
    repository = ModelRepository(tmp_path)
    gate = threading.Event()
    readiness = Readiness()
    models = ModelLifecycle(
        repository,
        GatedRegistry(repository, gate),  # type: ignore[arg-type]
        Observer(),
        readiness=readiness,
        load_concurrency=2,
    )
    found = await models.scan_new()
    assert readiness.told == [("broken", False), ("digits", False)]  # known to a readiness check at once
    with pytest.raises(ModelUnavailable, match=r"Expected a loaded model 'digits'; .* still loading .* retry"):
        models.get(ModelRef("digits"))
    with pytest.raises(ModelUnavailable, match="'digits' version 1"):
        models.get(ModelRef("digits", 1))
    with pytest.raises(NotFound):  # another version is not loading: not there
        models.get(ModelRef("digits", 2))
    assert await models.scan_new() == [], "a poll meanwhile does not load again what is loading"
    gate.set()
    await models.load_found(found)
    assert sorted(readiness.told[2:]) == [("broken", False), ("digits", True)]
    assert models.get(ModelRef("digits")).info.version == 1
    with pytest.raises(NotFound):  # failed: no longer loading
        models.get(ModelRef("broken"))
    await models.unload(ModelRef("digits"))
    await models.load(ModelRef("digits"))
    assert readiness.told[-2:] == [("digits", False), ("digits", True)]


async def test_stopping_lets_found_models_that_have_not_started_loading_go(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        store(tmp_path, name, 1)
    repository = ModelRepository(tmp_path)
    gate = threading.Event()
    registry = GatedRegistry(repository, gate)
    models = ModelLifecycle(repository, registry, Observer(), load_concurrency=1)  # type: ignore[arg-type]
    loading = asyncio.create_task(models.load_found(await models.scan_new()))
    while registry.running == 0:  # "a" is loading, "b" and "c" wait for the one slot
        await asyncio.sleep(0.01)
    models.stop_loading()
    gate.set()
    assert [m.name for m in await loading] == ["a"]
    assert registry.attempts == [("a", 1)] and models.failed == frozenset()
    with pytest.raises(NotFound):
        models.get(ModelRef("b"))


def test_a_load_concurrency_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected load_concurrency of at least 1; received 0"):
        ModelLifecycle(
            ModelRepository(tmp_path), FakeRegistry(ModelRepository(tmp_path)), Observer(), load_concurrency=0
        )  # type: ignore[arg-type]


async def test_an_uploaded_model_is_serving_once_published_and_one_stored_unloaded_is_not(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    readiness = Readiness()
    models = ModelLifecycle(repository, FakeRegistry(repository), Observer(), readiness=readiness)  # type: ignore[arg-type]
    await models.upload("fresh", None, chunks(b"archive"), "", True, 1024)
    await models.upload("stored", None, chunks(b"archive"), "", False, 1024)
    assert readiness.told == [("fresh", True), ("stored", False)]
