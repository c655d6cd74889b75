"""A model's life: stored in the repository, loaded, unloaded, removed; and the versions that failed to load.

Every step that touches the file system runs in a worker thread: the repository may be a shared network
volume (one per set of replicas), and reading it must never stall the event loop that answers calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.models.registry import LoadedModel, ModelRegistry
from layerscope.service.models.repository import ModelRepository, Upload

log = logging.getLogger(__name__)

Version = tuple[str, int]


class LoadObserver(Protocol):
    """Told of every load as it ends, and of the number of models loaded after each change (for metrics)."""

    def loaded(self, seconds: float) -> None: ...
    def failed(self, error: Exception) -> None: ...
    def count(self, models: int) -> None: ...


class ModelLifecycle:
    def __init__(self, repository: ModelRepository, registry: ModelRegistry, observer: LoadObserver) -> None:
        self._repository = repository
        self._registry = registry
        self._observer = observer
        self._failed: set[Version] = set()

    @property
    def failed(self) -> frozenset[Version]:
        """Versions that failed to load from the repository: scans skip them until a caller loads one, or
        the next start."""
        return frozenset(self._failed)

    def loaded(self) -> list[LoadedModel]:
        return self._registry.loaded()

    def get(self, ref: ModelRef) -> LoadedModel:
        return self._registry.get(ref)

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
        what it loaded now. Run at start and, when polling is on, every few seconds after.

        A model that fails to load is logged and told to the observer, and the others still load: one broken
        archive must not keep a replica from serving the rest. A version a caller unloaded stays unloaded,
        across restarts, until a caller loads it.
        """
        present = {(m.info.name, m.info.version) for m in self._registry.loaded()}
        loaded = []
        for name, version in await asyncio.to_thread(self._scan, present | self._failed):
            try:
                loaded.append((await self._load(name, version)).info)
            except Exception as exc:
                self._failed.add((name, version))  # retried when asked for or at the next start, not every poll
                log.warning("model %s:%d did not load: %s", name, version, getattr(exc, "message", exc))
        return loaded

    async def load(self, ref: ModelRef) -> ModelInfo:
        """A caller's load: also one that failed before, or that a caller unloaded."""
        loaded = await self._load(ref.name, ref.version)
        key = (loaded.info.name, loaded.info.version)
        self._failed.discard(key)
        await asyncio.to_thread(self._repository.set_unloaded, *key, False)
        return loaded.info

    async def unload(self, ref: ModelRef, remove: bool = False) -> ModelInfo:
        """Unload a version; with `remove`, delete its archive too. Otherwise it stays on disk, and stays
        unloaded (no scan or restart loads it) until a caller loads it again."""
        info = self._registry.unload(ref).info
        if remove:
            await asyncio.to_thread(self._repository.delete, info.name, info.version)
        else:
            await asyncio.to_thread(self._repository.set_unloaded, info.name, info.version, True)
        self._observer.count(len(self._registry.loaded()))
        return info

    def _scan(self, skip: set[Version]) -> list[Version]:
        """The newest version of each model, unless it is in `skip` or a caller unloaded it (file work)."""
        found = []
        for name in self._repository.names():
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
                self._observer.count(len(self._registry.loaded()))
            await asyncio.to_thread(upload.abort)
            raise
        if not load:
            await self.unload(ModelRef(name, version))
        return loaded.info

    async def _load(self, name: str, version: int | None, staged: Path | None = None) -> LoadedModel:
        started = time.perf_counter()
        try:
            loaded = await asyncio.to_thread(self._registry.load, name, version, staged)
        except Exception as exc:
            self._observer.failed(exc)
            raise
        self._observer.loaded(time.perf_counter() - started)
        self._observer.count(len(self._registry.loaded()))
        return loaded


async def _abort_once_begun(begin: asyncio.Future[Upload]) -> None:
    try:
        upload = await begin
    except Exception:  # it failed by itself: nothing was made
        return
    await asyncio.to_thread(upload.abort)
