"""A model's life: stored in the repository, loaded, unloaded, removed; and the versions that failed to load.
A transient model (an audit through the server) is loaded from a temporary file and never enters the repository.

Every step that touches the file system runs in a worker thread: the repository may be a shared network
volume (one per set of replicas), and reading it must never stall the event loop that answers calls.

Models found in the repository load a few at once (`load_concurrency`): one load is mostly a worker process
importing TensorFlow, or Keras rebuilding a model, so five models one after another took five times one. A
found version is "loading" from its scan to the end of its load: calls for it are answered UNAVAILABLE
(retry), not NOT_FOUND, and `Readiness` hears when each model name can answer calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from layerscope.service.domain.models import ModelInfo, ModelRef, check_version
from layerscope.service.errors import AlreadyExists, ModelUnavailable, NotFound
from layerscope.service.models.registry import LoadedModel, ModelRegistry
from layerscope.service.models.repository import ModelRepository, Upload, check_name

log = logging.getLogger(__name__)

Version = tuple[str, int]


class LoadObserver(Protocol):
    """Told of every load as it ends, and of the number of models loaded after each change (for metrics)."""

    def loaded(self, seconds: float) -> None: ...
    def failed(self, error: Exception) -> None: ...
    def count(self, models: int) -> None: ...


class Readiness(Protocol):
    """Told, as it changes, whether a model name can answer calls: a version of it is loaded (the gRPC health
    service's per-model status). Transient models are no one's and are never told."""

    async def model(self, name: str, serving: bool) -> None: ...


class _NoReadiness:
    async def model(self, name: str, serving: bool) -> None:
        pass


@dataclass
class _Transient:
    folder: Path
    """The temporary folder that holds its archive (a worker that restarts opens it again)."""
    used: float
    """When a call last asked for it (the lifecycle's clock)."""


class ModelLifecycle:
    def __init__(
        self,
        repository: ModelRepository,
        registry: ModelRegistry,
        observer: LoadObserver,
        transient_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        readiness: Readiness | None = None,
        load_concurrency: int = 1,
    ) -> None:
        if load_concurrency < 1:
            raise ValueError(f"Expected load_concurrency of at least 1; received {load_concurrency!r}.")
        self._repository = repository
        self._registry = registry
        self._observer = observer
        self._readiness = readiness or _NoReadiness()
        self._load_slots = asyncio.Semaphore(load_concurrency)
        self._loading: dict[Version, float] = {}
        """Versions found by a scan whose load has not ended -> when the scan found them (the clock's time)."""
        self._closing = False
        self._failed: set[Version] = set()
        self._transient: dict[Version, _Transient] = {}
        self._transient_seconds = transient_seconds
        self._clock = clock

    @property
    def failed(self) -> frozenset[Version]:
        """Versions that failed to load from the repository: scans skip them until a caller loads one, or
        the next start."""
        return frozenset(self._failed)

    def loaded(self) -> list[LoadedModel]:
        return self._registry.loaded()

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded version asked for; ModelUnavailable (retry) while it is still loading, NotFound when no
        load of it is under way either."""
        try:
            model = self._registry.get(ref)
        except NotFound:
            self._refuse_loading(ref)
            raise
        transient = self._transient.get((model.info.name, model.info.version))
        if transient is not None:
            transient.used = self._clock()
        return model

    async def upload(
        self,
        name: str,
        version: int | None,
        chunks: AsyncIterator[bytes],
        sha256: str,
        load: bool,
        max_bytes: int,
    ) -> ModelInfo:
        """Stream an archive into the repository, prove it loads, then publish it; a refused archive, or a
        caller that hangs up, leaves nothing, and the previous version stays the newest."""
        self._refuse_transient_name(name)
        begin = asyncio.ensure_future(asyncio.to_thread(self._repository.begin_upload, name, version, max_bytes))
        try:
            upload = await asyncio.shield(begin)
        except asyncio.CancelledError:  # the folder may be made all the same: take it back once it is
            await asyncio.shield(_abort_once_begun(begin))
            raise
        try:
            async for chunk in chunks:
                await asyncio.to_thread(upload.write, chunk)  # hashing and disk writes stay off the event loop
        except BaseException:
            await asyncio.shield(asyncio.to_thread(upload.abort))
            raise
        # Verified, loaded and published as one step, or rolled back, even if the caller hangs up meanwhile.
        return await asyncio.shield(self._install(name, upload, sha256, load))

    async def load_new(self) -> list[ModelInfo]:
        """Load the newest version of every model in the repository, as TF Serving and Triton do; returns
        what it loaded now. Run at start and, when polling is on, every few seconds after."""
        return await self.load_found(await self.scan_new())

    async def scan_new(self) -> list[Version]:
        """The newest version of each model in the repository that is neither loaded, nor failed, nor loading
        already, nor unloaded by a caller; each is "loading" from now until `load_found` ends it, and the
        readiness of names with no version loaded says NOT_SERVING (so a readiness check knows them at once)."""
        skip = {(m.info.name, m.info.version) for m in self._registry.loaded()} | self._failed | set(self._loading)
        transient = frozenset(n for n, _ in self._transient)  # a copy: the scan runs in another thread
        found = await asyncio.to_thread(self._scan, skip, transient)
        now = self._clock()
        for key in found:
            self._loading[key] = now
        for name in sorted({name for name, _ in found}):
            await self._publish(name)
        return found

    async def load_found(self, found: list[Version]) -> list[ModelInfo]:
        """Load versions `scan_new` found, `load_concurrency` at a time; returns those loaded, in scan order.

        A model that fails to load is logged and told to the observer, and the others still load: one broken
        archive must not keep a replica from serving the rest. A version a caller unloaded stays unloaded,
        across restarts, until a caller loads it. After `stop_loading`, versions not yet started are let go.
        """
        results = await asyncio.gather(*(self._load_found(key) for key in found))
        return [info for info in results if info is not None]

    def stop_loading(self) -> None:
        """The server stops: loads under way finish, found versions not yet started are not loaded."""
        self._closing = True

    async def _load_found(self, key: Version) -> ModelInfo | None:
        name, version = key
        try:
            async with self._load_slots:
                if self._closing:
                    return None
                began = time.perf_counter()
                info = (await self._load(name, version)).info
            log.info("model %s:%d loaded in %.2fs", name, version, time.perf_counter() - began)
            return info
        except Exception as exc:
            self._failed.add(key)  # retried when asked for or at the next start, not every poll
            log.warning("model %s:%d did not load: %s", name, version, getattr(exc, "message", exc))
            return None
        finally:
            self._loading.pop(key, None)
            await self._publish(name)

    async def load(self, ref: ModelRef) -> ModelInfo:
        """A caller's load: also one that failed before, or that a caller unloaded."""
        self._refuse_transient_name(ref.name)
        loaded = await self._load(ref.name, ref.version)
        key = (loaded.info.name, loaded.info.version)
        self._failed.discard(key)
        await asyncio.to_thread(self._repository.set_unloaded, *key, False)
        await self._publish(key[0])
        return loaded.info

    async def unload(self, ref: ModelRef, remove: bool = False) -> ModelInfo:
        """Unload a version; with `remove`, delete its archive too. Otherwise it stays on disk, and stays
        unloaded (no scan or restart loads it) until a caller loads it again. A transient model's file goes
        either way, and the repository is not touched."""
        info = self._registry.unload(ref).info
        if (info.name, info.version) in self._transient:
            await self._drop_transient((info.name, info.version))
        elif remove:
            await asyncio.to_thread(self._repository.delete, info.name, info.version)
        else:
            await asyncio.to_thread(self._repository.set_unloaded, info.name, info.version, True)
        self._count()
        await self._publish(info.name)
        return info

    # -- transient models -------------------------------------------------------------------------------

    async def upload_transient(
        self, name: str, version: int | None, chunks: AsyncIterator[bytes], sha256: str, max_bytes: int
    ) -> ModelInfo:
        """Load an archive for a while without storing it: from a temporary folder outside the repository,
        removed when the model is unloaded, after `transient_seconds` without a call (`expire`), or when the
        server stops (`discard_transient`). The name may not be one the repository holds or a loaded model
        has, so no call can mistake one for the other."""
        check_name(name)
        chosen = check_version(version) if version else 1
        self._refuse_transient_name(name)
        stored = await asyncio.to_thread(self._repository.versions, name)
        if stored or any(m.info.name == name for m in self._registry.loaded()):
            raise AlreadyExists(
                f"Expected a transient model's name to be free; model '{name}' is loaded or stored in the "
                "repository. Choose another name."
            )
        key = (name, chosen)
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="layerscope-transient-"))
        self._transient[key] = _Transient(folder, self._clock())  # reserves the name from here on
        try:
            upload = await asyncio.to_thread(Upload, folder, chosen, max_bytes)
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(upload.write, chunk)
            except BaseException:
                await asyncio.shield(asyncio.to_thread(upload.abort))
                raise
        except BaseException:
            await asyncio.shield(self._drop_transient(key))
            raise
        # Loaded as one step even if the caller hangs up meanwhile: then it expires like an idle one.
        return await asyncio.shield(self._install_transient(key, upload, sha256))

    async def _install_transient(self, key: Version, upload: Upload, sha256: str) -> ModelInfo:
        try:
            staged = await asyncio.to_thread(upload.commit, sha256)
            loaded = await self._load(key[0], key[1], staged)
        except BaseException:
            await self._drop_transient(key)
            raise
        loaded.info = dataclasses.replace(loaded.info, transient=True)
        return loaded.info

    async def _drop_transient(self, key: Version) -> None:
        transient = self._transient.pop(key, None)
        if transient is not None:
            await asyncio.to_thread(shutil.rmtree, transient.folder, True)

    async def expire(self) -> list[ModelInfo]:
        """Unload the transient models no call has asked for in `transient_seconds` (a client that stopped
        before it unloaded its audit's model); returns them."""
        now = self._clock()
        idle = [key for key, t in self._transient.items() if now - t.used > self._transient_seconds]
        expired = []
        for name, version in idle:
            if self._is_loaded((name, version)):
                expired.append(await self.unload(ModelRef(name, version)))
                log.info("transient model %s:%d unloaded after %.0fs unused", name, version, self._transient_seconds)
        return expired

    def discard_transient(self) -> None:
        """Remove every transient model's file (the server stops; file work, call it from a thread)."""
        for key in list(self._transient):
            transient = self._transient.pop(key, None)
            if transient is not None:
                shutil.rmtree(transient.folder, ignore_errors=True)

    def _refuse_transient_name(self, name: str) -> None:
        if any(n == name for n, _ in self._transient):
            raise AlreadyExists(
                f"Model '{name}' is loaded as a transient model (an audit through the server); expected another "
                "name, or unload it first."
            )

    async def _publish(self, name: str) -> None:
        """Tell readiness whether `name` can answer calls now: a version of it is loaded."""
        if any(n == name for n, _ in self._transient):
            return
        await self._readiness.model(name, any(m.info.name == name for m in self._registry.loaded()))

    def _refuse_loading(self, ref: ModelRef) -> None:
        """UNAVAILABLE for a version still loading (the caller retries), where NOT_FOUND would say it is not
        there at all: at start a server answers calls while its repository's models load."""
        started = [t for (n, v), t in self._loading.items() if n == ref.name and ref.version in (None, v)]
        if started:
            raise ModelUnavailable(
                f"Expected a loaded model {ref.name!r}{'' if ref.version is None else f' version {ref.version}'}; "
                f"received a call while it is still loading ({self._clock() - min(started):.1f}s so far): retry "
                "shortly, or wait until the server's health for this model says SERVING."
            )

    def _is_loaded(self, key: Version) -> bool:
        return any((m.info.name, m.info.version) == key for m in self._registry.loaded())

    def _count(self) -> None:
        """Tell the observer how many models are loaded, transient ones left out (they are no one's models)."""
        self._observer.count(
            sum(1 for m in self._registry.loaded() if (m.info.name, m.info.version) not in self._transient)
        )

    def _scan(self, skip: set[Version], transient: frozenset[str] = frozenset()) -> list[Version]:
        """The newest version of each model, unless it is in `skip` or a caller unloaded it (file work); none
        named as a `transient` model is (a file copied in by hand under that name meanwhile)."""
        found = []
        for name in self._repository.names():
            if name in transient:
                continue
            versions = self._repository.versions(name)
            if versions and (name, versions[-1]) not in skip and not self._repository.is_unloaded(name, versions[-1]):
                found.append((name, versions[-1]))
        return found

    async def _install(self, name: str, upload: Upload, sha256: str, load: bool) -> ModelInfo:
        version = upload.version
        loaded: LoadedModel | None = None
        try:
            staged = await asyncio.to_thread(upload.commit, sha256)
            loaded = await self._load(name, version, staged)
            await asyncio.to_thread(upload.publish)
        except BaseException:
            if loaded is not None:  # loaded, but not published: no one may use a version that does not exist
                self._registry.unload(ModelRef(name, version))
                self._count()
            await asyncio.to_thread(upload.abort)
            raise
        if not load:
            await self.unload(ModelRef(name, version))
        else:
            await self._publish(name)
        return loaded.info

    async def _load(self, name: str, version: int | None, staged: Path | None = None) -> LoadedModel:
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(self._registry.load, name, version, staged)
        except Exception as exc:
            self._observer.failed(exc)
            raise
        self._observer.loaded(time.perf_counter() - started)
        self._count()
        return loaded


async def _abort_once_begun(begin: asyncio.Future[Upload]) -> None:
    try:
        upload = await begin
    except Exception:  # it failed by itself: nothing was made
        return
    await asyncio.to_thread(upload.abort)
