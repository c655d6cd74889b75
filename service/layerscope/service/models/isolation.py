"""Load an archive once in a throwaway process before the server loads it.

Keras parses weights with native code; an archive that crashes the loader or never finishes loading must
cost a child process, not the server. The child loads exactly as the server will (safe_mode, no compile)
and reports through its exit status; the server loads the archive itself only when the child succeeded.

    python -m layerscope.service.models.isolation ARCHIVE
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from layerscope.service.errors import InvalidInput, LimitExceeded

LOAD_FAILED = 3


def trial_load(path: Path, timeout: float) -> None:
    """Raise InvalidInput if loading crashes or fails in a child process, LimitExceeded if it hangs.

    The child's temporary files go to a folder of its own, removed on every path: Keras leaves what it
    unpacked behind when it refuses an archive, and a killed child cleans up nothing.
    """
    with tempfile.TemporaryDirectory(prefix="layerscope-trial-", ignore_cleanup_errors=True) as scratch:
        _trial(path, timeout, scratch)


def _trial(path: Path, timeout: float, scratch: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "TMPDIR": scratch}  # no GPU
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(path)], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise LimitExceeded(
            f"Expected the archive to load within {timeout:.0f} s; loading it in an isolated process did not finish."
        ) from exc
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise InvalidInput(f"Expected a loadable archive; loading it crashed the isolated loader ({name}).")
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    reason = lines[-1][:400] if lines else f"exit status {done.returncode}"
    raise InvalidInput(f"Expected a loadable Keras 3 archive; Keras refused it: {reason}")


def _main(path: str) -> int:
    import keras

    try:
        keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # reported to the parent, which turns it into InvalidInput
        print(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}", file=sys.stderr)
        return LOAD_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
