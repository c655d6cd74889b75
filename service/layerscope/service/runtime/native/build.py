"""Building the fused statistics kernel (summary_op.cc) with g++ against this TensorFlow, into a private cache.

A wheel cannot carry a binary for every TensorFlow and CPU, so the kernel is compiled with the flags
`tf.sysconfig` gives, once per (source, TensorFlow, compiler flags, CPU), into a cache folder shared by the
processes of a machine, under a file lock so that audit workers started together build it once.

Loading a shared library runs its code, so the cache is trusted only as far as it is private: folders are
created owner-only (0700); a cache folder, or any folder above it, that another user owns or can write
(unless sticky, as /tmp) is refused; a library is loaded only when it is a regular file of this user that no
one else can write and its SHA-256 matches the record written beside it when it was built here. A library
without a record, or that does not match it (planted, left by an older version, cut short), is built again.
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
from collections.abc import Collection, Sequence
from pathlib import Path

import tensorflow as tf

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("summary_op.cc")
SOURCES = (SOURCE, SOURCE.with_name("binner.h"))
"""The kernel's source and the header it includes: a change to either is another kernel."""
FLAGS = ("-shared", "-fPIC", "-O3", "-march=native", "-ffp-contract=off", "-w")
"""-march=native: the cache key includes the CPU's flags, so a binary never meets another CPU (a prebuilt kernel,
which may, names a portable target instead: prebuilt.py); -ffp-contract=off: bin edges computed as NumPy
computes them, without fused multiply-adds."""

RECORD_SUFFIX = ".sha256"
"""The record of a built library, beside it: the SHA-256 of its bytes, written when it was built here."""


class BuildError(RuntimeError):
    """The compiler is missing or refused the source; the message carries its last lines."""


class UntrustedCache(BuildError):
    """The cache folder, or one above it, is not private to this user: nothing in it is loaded."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layerscope" / "ops"


def compiler() -> str:
    named = os.environ.get("CXX")
    if named:
        found = shutil.which(named)
        if not found:
            raise BuildError(f"expected CXX to name a C++ compiler; received {named!r}, which is not an executable")
        return found
    found = shutil.which("g++") or shutil.which("c++")
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
            log.info("building the fused statistics kernel (once per TensorFlow and CPU): %s", library)
            built = compile_library(cxx, FLAGS, folder)
            with tempfile.NamedTemporaryFile("w", dir=folder, suffix=RECORD_SUFFIX, delete=False) as record:
                record.write(digest(built) + "\n")
            os.replace(built, library)  # atomic: a reader sees no library or a whole one
            os.replace(record.name, _record(library))  # the record last: until it is there the library is not trusted
    return library


def private_folder(folder: Path) -> None:
    """Create `folder` (and what is missing above it) owner-only; refuse one that is not private to this
    user: owned by another (root excepted above it), or writable by group or others (sticky folders above it,
    as /tmp, excepted)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: checked below
            path.mkdir(mode=0o700)
    check_folder(folder, "the kernel cache", owners={os.geteuid()})


def check_folder(folder: Path, what: str, owners: Collection[int]) -> None:
    """Refuse `folder` unless it is a folder owned by one of `owners` that no one else can write, and every folder
    above it is writable only by this user or root (or sticky, as /tmp)."""
    me = os.geteuid()
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedCache(f"expected {what} {folder} to be a folder; received a link or a file")
    if info.st_uid not in owners or info.st_mode & 0o022:
        raise UntrustedCache(
            f"expected {what} {folder} to be owned by uid {_either(owners)} and writable by no one else; "
            f"received one owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}"
        )
    for parent in folder.parents:
        info = parent.stat()
        shared = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
        if info.st_uid not in (me, 0) or shared:
            raise UntrustedCache(
                f"expected every folder above {what} {folder} to be writable only by uid {me} or root; "
                f"received {parent} owned by uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}"
            )


def private_file(path: Path, owners: Collection[int]) -> bool:
    """A regular file (not a link) of one of `owners` that no one else can write."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid in owners and not info.st_mode & 0o022


def trusted(library: Path) -> bool:
    """A regular file of this user that no one else can write, matching the record written when it was built."""
    record = _record(library)
    if not all(private_file(path, {os.geteuid()}) for path in (library, record)):
        return False
    return record.read_text().strip() == digest(library)


def source_digest() -> str:
    """One SHA-256 over SOURCES, in order."""
    sha = hashlib.sha256()
    for path in SOURCES:
        sha.update(path.read_bytes())
    return sha.hexdigest()


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def compile_library(cxx: str, flags: Sequence[str], folder: Path) -> Path:
    """SOURCE compiled with `flags` and TensorFlow's, into a new file in `folder` (mode 0755: owner-writable
    only, as the trust checks expect); the caller records it and renames it into place."""
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".so", delete=False) as partial:
        target = Path(partial.name)
    command = [cxx, *flags, *tf.sysconfig.get_compile_flags(), str(SOURCE), "-o", str(target)]
    done = subprocess.run(
        [*command, *tf.sysconfig.get_link_flags()], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise BuildError(f"{Path(cxx).name} exited {done.returncode}: {tail}")
    os.chmod(target, 0o755)  # the temporary file is 0600
    return target


def cpu_flags() -> str:
    """The CPU's feature line from /proc/cpuinfo (`flags` on x86, `Features` on ARM)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")


def _record(library: Path) -> Path:
    return library.with_name(library.name + RECORD_SUFFIX)


def _either(owners: Collection[int]) -> str:
    return " or ".join(str(uid) for uid in sorted(owners))


def _key(compiler: str, compile_flags: list[str], link_flags: list[str]) -> str:
    sha = hashlib.sha256()
    for part in (source_digest().encode(), tf.__version__.encode(), compiler.encode(), sys.version.encode()):
        sha.update(part)
    for flag in (*FLAGS, *compile_flags, *link_flags):
        sha.update(flag.encode())
    sha.update(cpu_flags().encode())
    return f"tf{tf.__version__}-{platform.machine()}-{sha.hexdigest()[:16]}"
