"""The model repository on disk: `<root>/<name>/<version>/model.keras`, the TF Serving / Triton layout.

Callers name a model and a version, never a path: names are checked against a strict pattern before
they touch the file system, so no request can point the server at a file outside the repository.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from layerscope.service.domain.models import MAX_VERSION, check_version
from layerscope.service.domain.text import quoted
from layerscope.service.errors import AlreadyExists, InvalidInput, LimitExceeded, NotFound

ARCHIVE = "model.keras"
_PARTIAL = ".upload-"
_STAGED = ".staged-" + ARCHIVE
"""An uploaded archive whose bytes are verified, not yet proven to load: invisible to `versions`."""
_UNLOADED = ".unloaded"
_DELETED = ".deleted"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            "Expected a model name of 1-128 letters, digits, '.', '_' or '-' (starting with a letter or "
            f"digit); received {quoted(name)}."
        )
    return name


def _version_folder(name: str) -> bool:
    """A folder a version lives in; one named past MAX_VERSION (copied in by hand) is never served."""
    return name.isascii() and name.isdigit() and 0 < int(name) <= MAX_VERSION


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._clear_interrupted_uploads()

    def _clear_interrupted_uploads(self) -> None:
        """At start-up no upload is in progress: a partial or staged file, or an empty version folder, is a
        crash's; the version it would have been was never published, and the previous one stays newest."""
        for partial in [*self.root.glob(f"*/*/{_PARTIAL}*"), *self.root.glob(f"*/*/{_STAGED}")]:
            partial.unlink(missing_ok=True)
        for folder in self.root.glob("*/*"):
            if folder.is_dir() and folder.name.isdigit() and not any(folder.iterdir()):
                folder.rmdir()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))

    def versions(self, name: str) -> list[int]:
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if _version_folder(p.name) and (p / ARCHIVE).is_file())

    def locate(self, name: str, version: int | None = None) -> tuple[int, Path]:
        """The archive of `name` at `version` (newest when None)."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"Expected model '{name}' in the repository; received a name with no versions.")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise NotFound(f"Model '{name}' has versions {versions}; received a request for version {chosen}.")
        return chosen, self.root / name / str(chosen) / ARCHIVE

    def begin_upload(self, name: str, version: int | None, max_bytes: int) -> Upload:
        """Start writing an uploaded archive; nothing is visible until `Upload.commit`.

        The version folder is created exclusively, so it is the reservation: two uploads in flight never
        get the same version, whether they asked for it or were given the next free one.
        """
        check_name(name)
        if version is not None:
            check_version(version)
        (self.root / name).mkdir(exist_ok=True)
        while True:
            chosen = version or self._next_version(name)
            if chosen > MAX_VERSION:
                raise InvalidInput(
                    f"Expected a model with versions left to give; '{name}' has used version {MAX_VERSION}, the "
                    "largest. Upload it under a new name."
                )
            folder = self.root / name / str(chosen)
            try:
                folder.mkdir()
            except FileExistsError:
                if version is None:
                    continue  # another upload took this number a moment ago: take the next
                state = (
                    "already has"
                    if chosen in self.versions(name)
                    else "had (and deleted; numbers are never reused)"
                    if (folder / _DELETED).exists()
                    else "is receiving another upload of"
                )
                raise AlreadyExists(f"Model '{name}' {state} version {chosen}; expected a new version.") from None
            return Upload(folder, chosen, max_bytes)

    def _next_version(self, name: str) -> int:
        """One past every version folder, committed or still being uploaded."""
        taken = [int(p.name) for p in (self.root / name).iterdir() if _version_folder(p.name)]
        return max(taken, default=0) + 1

    def remove(self, name: str, version: int) -> None:
        """Take back a stored archive that failed to load, so the repository holds only loadable models."""
        folder = self._folder(name, version)
        (folder / ARCHIVE).unlink(missing_ok=True)
        (folder / _UNLOADED).unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def delete(self, name: str, version: int) -> None:
        """Delete a published version for good. Its folder stays as a tombstone, so the number is never
        given out again: stored runs refer to models by name and version."""
        folder = self._folder(name, version)
        (folder / _DELETED).touch()
        (folder / ARCHIVE).unlink(missing_ok=True)
        (folder / _UNLOADED).unlink(missing_ok=True)

    def set_unloaded(self, name: str, version: int, unloaded: bool) -> None:
        """Remember, across restarts, that a caller unloaded this version: loading at start (or by polling)
        leaves it alone until a caller loads it again."""
        marker = self._folder(name, version) / _UNLOADED
        if unloaded and marker.parent.is_dir():
            marker.touch()
        elif not unloaded:
            marker.unlink(missing_ok=True)

    def is_unloaded(self, name: str, version: int) -> bool:
        return (self._folder(name, version) / _UNLOADED).exists()

    def _folder(self, name: str, version: int) -> Path:
        return self.root / check_name(name) / str(version)


class Upload:
    """An archive being written: a temporary file renamed into place only when complete and verified."""

    def __init__(self, folder: Path, version: int, max_bytes: int) -> None:
        self.folder = folder
        self.version = version
        self._max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self._size = 0
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_PARTIAL)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        """Append a chunk; LimitExceeded as soon as the upload passes its byte limit, before it is written."""
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise LimitExceeded(
                f"Expected an archive of at most {self._max_bytes} bytes; received {self._size} bytes so far."
            )
        self._digest.update(chunk)
        self._file.write(chunk)

    def commit(self, sha256: str = "") -> Path:
        """Verify the bytes and stage them beside the version's archive; `publish` makes them the archive."""
        self._file.close()
        if self._size == 0:
            raise InvalidInput("Expected the bytes of a .keras archive after the header; received none.")
        if sha256 and self._digest.hexdigest() != sha256.lower():
            raise InvalidInput(f"Expected sha256 {sha256}; received an archive with {self._digest.hexdigest()}.")
        staged = self.folder / _STAGED
        os.replace(self._tmp, staged)
        return staged

    def publish(self) -> Path:
        """Make the staged archive this version's (an atomic rename): done only once it has loaded."""
        target = self.folder / ARCHIVE
        os.replace(self.folder / _STAGED, target)
        return target

    def abort(self) -> None:
        """Take back everything this upload wrote, published or not: the version never existed."""
        self._file.close()
        for leftover in (self._tmp, self.folder / _STAGED, self.folder / ARCHIVE, self.folder / _UNLOADED):
            leftover.unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
