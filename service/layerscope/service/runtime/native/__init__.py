"""The fused statistics kernel (summary_op.cc): built from source against this TensorFlow at first use.

A wheel cannot carry a binary for every TensorFlow and CPU, so the kernel is compiled with the flags
`tf.sysconfig` gives, once per (source, TensorFlow, compiler flags, CPU), into a cache folder shared by the
processes of a machine, under a file lock so that audit workers started together build it once. Where no
compiler is found or the build fails, `load` says why in the log and returns None, and the engine uses its
TensorFlow-ops path: the same statistics, slower.

Loading a shared library runs its code, so the cache is trusted only as far as it is private: folders are
created owner-only (0700); a cache folder, or any folder above it, that another user owns or can write
(unless sticky, as /tmp) is refused, and the kernel falls back to TensorFlow ops; a library is loaded only
when it is a regular file of this user that no one else can write and its SHA-256 matches the record written
beside it when it was built here. A library without a record, or that does not match it (planted, left by an
older version, cut short), is built again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("summary_op.cc")
FLAGS = ("-shared", "-fPIC", "-O3", "-march=native", "-ffp-contract=off", "-w")
"""-march=native: the cache key includes the CPU's flags, so a binary never meets another CPU;
-ffp-contract=off: bin edges computed as NumPy computes them, without fused multiply-adds."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layerscope" / "ops"


class SummaryOpLoader:
    """Builds (or finds) and loads the kernel at most once per process; thread-safe.

    TensorFlow registers a loaded op for the whole process, so the loaded module is per process too; the
    loader is built by the composition root and handed to every engine.
    """

    def __init__(self, cache_dir: Path | None = None, enabled: bool = True) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.enabled = enabled
        self._lock = threading.Lock()
        self._loaded = False
        self._module: Any = None
        self.reason = "not loaded yet"
        """Why the kernel is not in use, for the log and for `layerscope serve`'s start-up line."""

    def load(self) -> Any:
        """The op module (with `layerscope_summary`), or None when it cannot be built here."""
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._module = self._load() if self.enabled else None
                if not self.enabled:
                    self.reason = "switched off (LAYERSCOPE_FUSED_STATISTICS=false)"
            return self._module

    def _load(self) -> Any:
        try:
            library = build(self.cache_dir)
            module = tf.load_op_library(str(library))
            if not hasattr(module, "layerscope_summary"):  # registered by another copy loaded in this process
                raise BuildError(f"{library} defines no LayerscopeSummary op here (another copy was loaded first)")
        except (OSError, subprocess.SubprocessError, tf.errors.OpError, BuildError) as error:
            self.reason = f"{type(error).__name__}: {error}"
            log.warning("fused statistics kernel unavailable (%s); using TensorFlow ops, which are slower", error)
            return None
        self.reason = f"in use ({library})"
        return module


class BuildError(RuntimeError):
    """The compiler is missing or refused the source; the message carries its last lines."""


class UntrustedCache(BuildError):
    """The cache folder, or one above it, is not private to this user: nothing in it is loaded."""


RECORD_SUFFIX = ".sha256"
"""The record of a built library, beside it: the SHA-256 of its bytes, written when it was built here."""


def compiler() -> str:
    found = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not found:
        raise BuildError("no C++ compiler found (install g++ or set CXX)")
    return found


def library_path(cache_dir: Path, cxx: str) -> Path:
    """Where the kernel built with `cxx` for this source, TensorFlow and CPU lives in `cache_dir`."""
    return cache_dir / _key(cxx, tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()) / "summary_op.so"


def build(cache_dir: Path) -> Path:
    """The path of a built kernel for this source, TensorFlow and CPU that may be loaded, compiling it if
    needed; UntrustedCache when the cache is not private to this user."""
    cxx = compiler()
    compile_flags, link_flags = tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()
    library = library_path(cache_dir, cxx)
    folder = library.parent
    private_folder(cache_dir)
    private_folder(folder)
    if trusted(library):
        return library
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key right now
        if not trusted(library):
            if library.exists() or library.is_symlink():
                log.warning(
                    "kernel cache: %s is not one this user built here (no matching record); building it", library
                )
            _compile(cxx, compile_flags, link_flags, folder, library)
    return library


def private_folder(folder: Path) -> None:
    """Create `folder` (and what is missing above it) owner-only; refuse one that is not private to this
    user: owned by another (root excepted above it), or writable by group or others (sticky folders above it,
    as /tmp, excepted)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: checked below
            path.mkdir(mode=0o700)
    me = os.geteuid()
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedCache(f"expected the kernel cache {folder} to be a folder; received a link or a file")
    if info.st_uid != me or info.st_mode & 0o022:
        raise UntrustedCache(
            f"expected the kernel cache {folder} to be owned by uid {me} and writable by no one else; received one "
            f"owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}"
        )
    for parent in folder.parents:
        info = parent.stat()
        shared = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
        if info.st_uid not in (me, 0) or shared:
            raise UntrustedCache(
                f"expected every folder above the kernel cache {folder} to be writable only by uid {me} or root; "
                f"received {parent} owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}"
            )


def trusted(library: Path) -> bool:
    """A regular file of this user that no one else can write, matching the record written when it was built."""
    record = library.with_name(library.name + RECORD_SUFFIX)
    for path in (library, record):
        try:
            info = path.lstat()
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return False
    return record.read_text().strip() == _digest(library)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _compile(compiler: str, compile_flags: list[str], link_flags: list[str], folder: Path, library: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".so", delete=False) as partial:
        target = Path(partial.name)
    command = [compiler, *FLAGS, *compile_flags, str(SOURCE), "-o", str(target), *link_flags]
    log.info("building the fused statistics kernel (once per TensorFlow and CPU): %s", library)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise BuildError(f"{Path(compiler).name} exited {done.returncode}: {tail}")
    os.chmod(target, 0o755)  # the temporary file is 0600; owner-writable only, as trusted() expects
    record = library.with_name(library.name + RECORD_SUFFIX)
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=RECORD_SUFFIX, delete=False) as partial_record:
        partial_record.write(_digest(target) + "\n")
    os.replace(target, library)  # atomic: a reader sees no library or a whole one
    os.replace(partial_record.name, record)  # the record last: until it is there the library is not trusted


def _key(compiler: str, compile_flags: list[str], link_flags: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), compiler.encode(), sys.version.encode()):
        digest.update(part)
    for flag in (*FLAGS, *compile_flags, *link_flags):
        digest.update(flag.encode())
    digest.update(_cpu_flags().encode())
    return f"tf{tf.__version__}-{platform.machine()}-{digest.hexdigest()[:16]}"


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
