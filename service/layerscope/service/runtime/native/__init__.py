"""The fused statistics kernel (summary_op.cc): built from source against this TensorFlow at first use.

A wheel cannot carry a binary for every TensorFlow and CPU, so the kernel is compiled with the flags
`tf.sysconfig` gives, once per (source, TensorFlow, compiler flags, CPU), into a cache folder shared by the
processes of a machine, under a file lock so that audit workers started together build it once. Where no
compiler is found or the build fails, `load` says why in the log and returns None, and the engine uses its
TensorFlow-ops path: the same statistics, slower.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
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


def build(cache_dir: Path) -> Path:
    """The path of a built kernel for this source, TensorFlow and CPU, compiling it if needed."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise BuildError("no C++ compiler found (install g++ or set CXX)")
    compile_flags, link_flags = tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()
    folder = cache_dir / _key(compiler, compile_flags, link_flags)
    library = folder / "summary_op.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key right now
        if not library.exists():
            _compile(compiler, compile_flags, link_flags, folder, library)
    return library


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
    os.replace(target, library)  # atomic: a reader sees no library or a whole one


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
