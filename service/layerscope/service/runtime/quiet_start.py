"""Start TensorFlow without its native start-up chatter on stderr.

TensorFlow's C++ side writes a dozen lines while it loads and first looks for devices (oneDNN notes, CPU
feature hints, `cuInit` failures on a machine without a GPU), before absl logging is set up, so
TF_CPP_MIN_LOG_LEVEL does not reach them. They say nothing a user asked for; the server logs the devices
it found as one line instead. What was written is kept and shown only if the start fails.

This module imports nothing heavy itself: the TensorFlow import happens inside `start_tensorflow`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file while the block runs; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:  # the chatter may explain the failure
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))


def start_tensorflow() -> list[str]:
    """Import TensorFlow and Keras and initialise the devices quietly; the GPUs found (empty: CPU only).

    A TF_CPP_MIN_LOG_LEVEL the user set is kept; otherwise later native messages below errors stay quiet too.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_muted():
        import keras  # noqa: F401 - Keras loads TensorFlow's second native library

        from layerscope.service.runtime.device import configure_devices, initialise_devices

        gpus = configure_devices()
        initialise_devices()
    return gpus
