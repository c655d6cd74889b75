"""The fused statistics kernel (summary_op.cc): built for this machine where a compiler is, prebuilt where none is.

Where a C++ compiler is found, the kernel is built from source against this TensorFlow at first use and kept in
a private cache (build.py). Where none is (a container image's runtime stage), or the build fails, or the cache
is not private, a kernel prebuilt for the installed TensorFlow is loaded from this environment's
`share/layerscope/ops` if one is there and passes the same trust checks (prebuilt.py). Where neither is, `load`
says why in the log and returns None, and the engine uses its TensorFlow-ops path: the same statistics, slower.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path
from typing import Any

import tensorflow as tf

from layerscope.service.runtime.native.build import (
    RECORD_SUFFIX,
    BuildError,
    UntrustedCache,
    build,
    default_cache_dir,
    library_path,
    trusted,
)
from layerscope.service.runtime.native.prebuilt import default_prebuilt_dir, find_prebuilt

__all__ = [
    "RECORD_SUFFIX",
    "BuildError",
    "SummaryOpLoader",
    "UntrustedCache",
    "build",
    "library_path",
    "trusted",
]

log = logging.getLogger(__name__)

_FAILURES = (OSError, subprocess.SubprocessError, BuildError)


class SummaryOpLoader:
    """Builds (or finds) and loads the kernel at most once per process; thread-safe.

    TensorFlow registers a loaded op for the whole process, so the loaded module is per process too; the
    loader is built by the composition root and handed to every engine.
    """

    def __init__(self, cache_dir: Path | None = None, enabled: bool = True, prebuilt_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.prebuilt_dir = prebuilt_dir or default_prebuilt_dir()
        self.enabled = enabled
        self._lock = threading.Lock()
        self._loaded = False
        self._module: Any = None
        self.reason = "not loaded yet"
        """Why the kernel is not in use, for the log and for `layerscope serve`'s start-up line."""

    def load(self) -> Any:
        """The op module (with `layerscope_summary`), or None when it cannot be built or found here."""
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._module = self._load() if self.enabled else None
                if not self.enabled:
                    self.reason = "switched off (LAYERSCOPE_FUSED_STATISTICS=false)"
            return self._module

    def _load(self) -> Any:
        try:
            library, how = self._locate()
            module = tf.load_op_library(str(library))
            if not hasattr(module, "layerscope_summary"):  # registered by another copy loaded in this process
                raise BuildError(f"{library} defines no LayerscopeSummary op here (another copy was loaded first)")
        except (*_FAILURES, tf.errors.OpError) as error:
            self.reason = f"{type(error).__name__}: {error}"
            log.warning("fused statistics kernel unavailable (%s); using TensorFlow ops, which are slower", error)
            return None
        self.reason = f"in use: {library} ({how})"
        return module

    def _locate(self) -> tuple[Path, str]:
        """The library to load and how it came: built here, or prebuilt where that is not possible."""
        try:
            return build(self.cache_dir), "built here"
        except _FAILURES as error:
            not_built = f"{type(error).__name__}: {error}"
        try:
            return find_prebuilt(self.prebuilt_dir), f"prebuilt; not built here: {not_built}"
        except BuildError as no_prebuilt:
            raise BuildError(f"not built here ({not_built}), and {no_prebuilt}") from None
