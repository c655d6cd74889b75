"""Weightless bombs: peak memory and time of each, loaded and run with the declared-size bounds off (what
the server did before) and refused with them on (what it does now).

Each case runs in a child process of its own, so its peak resident memory (ru_maxrss) is its own; a watchdog
stops a child past --cap-gib, so a bomb cannot take a shared machine down with it.

    .venv/bin/python bench/bench_bombs.py [--cap-gib 3] [--timeout 120]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = """
import sys, time, resource
import numpy as np
mode, path = sys.argv[1], sys.argv[2]
import keras
started = time.perf_counter()
outcome = "loaded and ran"
try:
    if mode == "before":
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        shape = [1 if d is None else d for d in model.inputs[0].shape]
        model.predict(np.zeros(shape, model.inputs[0].dtype), verbose=0)
    else:
        from layerscope.service.models.loader import load_archive
        load_archive(__import__("pathlib").Path(path), "bomb")
except Exception as exc:
    outcome = "refused: " + (getattr(exc, "message", None) or str(exc)).splitlines()[0][:90]
print(f"{time.perf_counter() - started:.2f}|{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}|{outcome}")
"""


def run_child(mode: str, archive: Path, cap_bytes: int, timeout: float) -> tuple[str, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(archive)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    started = time.monotonic()
    peak = 0
    while process.poll() is None:
        rss = _rss(process.pid)
        peak = max(peak, rss)
        if rss > cap_bytes or time.monotonic() - started > timeout:
            process.kill()
            process.wait()
            why = f"> {cap_bytes >> 30} GiB" if rss > cap_bytes else f"> {timeout:.0f} s"
            return f"{time.monotonic() - started:.1f}", f"{peak >> 20}", f"stopped by the bench ({why})"
        time.sleep(0.05)
    out = (process.stdout.read() if process.stdout else "").strip().splitlines()
    seconds, peak_mib, outcome = out[-1].split("|", 2) if out else ("?", str(peak >> 20), "no output")
    return seconds, peak_mib, outcome


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap-gib", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    from tests.security.test_weightless_bombs import BOMBS

    cap = int(args.cap_gib * (1 << 30))
    print("| bomb | bounds | seconds | peak RSS MiB (child, incl. ~600 MiB of TensorFlow) | outcome |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, (build, _) in sorted(BOMBS.items()):
            archive = build(Path(folder) / name if (Path(folder) / name).mkdir() is None else Path(folder))
            for mode, label in (("before", "off (before)"), ("after", "on (now)")):
                seconds, peak, outcome = run_child(mode, archive, cap, args.timeout)
                print(f"| {name} ({archive.stat().st_size // 1024} KiB) | {label} | {seconds} | {peak} | {outcome} |")
    print(f"bench process peak: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
