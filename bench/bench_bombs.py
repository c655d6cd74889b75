"""Weightless bombs: peak memory and time of each, loaded and run with the declared-size bounds off (what
the server did before) and refused with them on (what it does now).

Each case runs in a child process of its own, so its peak resident memory (ru_maxrss) is its own; a watchdog
stops a child past --cap-gib, so a bomb cannot take a shared machine down with it.

Three parts:
- every weightless bomb of tests/security/test_weightless_bombs.py (the stateful-layer bomb among them):
  Keras load and one Predict at batch 1, vs `load_archive` with the default bounds;
- the batch-multiplied bomb: a model within every per-sample bound (30 M elements in one layer) and one
  Predict at batch 16, vs the call bound (`call_budget`, as the Inspector applies it before the model runs);
- work after the deadline (--deadline): a Predict of about 10 s whose caller gives up after 1 s, on a server
  in-process and with model workers: how long the server's processes stay busy after the caller got
  DEADLINE_EXCEEDED, and the CPU seconds they spend meanwhile.

    .venv/bin/python bench/bench_bombs.py [--cap-gib 3] [--timeout 120] [--deadline]
"""

from __future__ import annotations

import argparse
import contextlib
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
mode, path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
import keras
started = time.perf_counter()
outcome = "loaded and ran"
try:
    if mode == "before":
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        shape = [batch, *(1 if d is None else d for d in model.inputs[0].shape[1:])]
        model.predict(np.zeros(shape, model.inputs[0].dtype), verbose=0, batch_size=batch)
        outcome = f"loaded and ran at batch {batch}"
    else:
        from pathlib import Path
        from layerscope.service.models.registry import open_model
        from layerscope.service.models.budget import ModelBudget
        from layerscope.service.domain.call_budget import check_inputs
        loaded = open_model(Path(path), "bomb", 1)
        info = loaded.info
        x = {s.name: np.zeros((batch, *(1 if d is None else d for d in s.shape[1:])), s.dtype) for s in info.inputs}
        check_inputs("model 'bomb' version 1", info.sample_cost, info.inputs, ModelBudget().call_bounds(), x)
        loaded.engine.predict(x)
        outcome = f"loaded (max_batch_size {info.max_batch_size}) and ran at batch {batch}"
except Exception as exc:
    outcome = "refused: " + (getattr(exc, "message", None) or str(exc)).splitlines()[0][:110]
print(f"{time.perf_counter() - started:.2f}|{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}|{outcome}")
"""


def run_child(mode: str, archive: Path, cap_bytes: int, timeout: float, batch: int = 1) -> tuple[str, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(archive), str(batch)],
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
    parser.add_argument("--only", help="run only the bombs whose name contains this")
    parser.add_argument("--deadline", action="store_true", help="also measure work after the deadline")
    args = parser.parse_args()
    from tests.security.test_call_budget import repeat
    from tests.security.test_weightless_bombs import BOMBS

    cap = int(args.cap_gib * (1 << 30))
    cases = {name: (build, 1) for name, (build, _) in BOMBS.items()}
    cases["batch-16-of-30M-per-sample"] = (lambda folder: repeat(folder, 7_500_000, name="batch"), 16)
    print("| bomb | bounds | seconds | peak RSS MiB (child, incl. ~600 MiB of TensorFlow) | outcome |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, (build, batch) in sorted(cases.items()):
            if args.only and args.only not in name:
                continue
            (Path(folder) / name).mkdir()
            archive = build(Path(folder) / name)
            for mode, label in (("before", "off (before)"), ("after", "on (now)")):
                seconds, peak, outcome = run_child(mode, archive, cap, args.timeout, batch)
                print(f"| {name} ({archive.stat().st_size // 1024} KiB) | {label} | {seconds} | {peak} | {outcome} |")
        if args.deadline:
            print()
            print("| server | caller's deadline | busy after it (s) | CPU s after it | how it ended |")
            print("|---|---|---|---|---|")
            for workers in (False, True):
                print(after_the_deadline(Path(folder), workers))
    print(f"bench process peak: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


def after_the_deadline(folder: Path, workers: bool) -> str:
    """A Predict of about 10 s whose caller gives up after 1 s: how long the process running it (the server, or
    the model's worker) stays busy after DEADLINE_EXCEEDED, and the CPU seconds it spends meanwhile; with
    workers also what the restart costs (a fresh interpreter loading the model)."""
    import numpy as np

    from layerscope.client import Client, DeadlineExceededError
    from tests.security.test_work_after_deadline import slow_model
    from tests.support import models
    from tests.support.serve_process import serve_process

    env = {"LAYERSCOPE_ISOLATED_LOADING": "false", "LAYERSCOPE_MODEL_WORKERS": str(workers).lower()}
    images = np.random.default_rng(0).random((64, 128, 128, 3), dtype=np.float32)
    place = folder / f"deadline-{workers}"
    place.mkdir()
    with serve_process(place, env=env) as server:
        with Client(server.target, timeout=300) as patient:
            patient.upload_model("slow", models.save(slow_model(), place, "slow"))
            patient.predict("slow", images[:1])  # traced and warm
        runner = _workers(server.pid)[0] if workers else server.pid
        with Client(server.target, timeout=1.0) as impatient, contextlib.suppress(DeadlineExceededError):
            impatient.predict("slow", images)
        ended = time.monotonic()
        spent = last = _cpu(runner)
        quiet_since, now = None, ended
        while time.monotonic() - ended < 120:
            time.sleep(0.25)
            cpu, now = _cpu(runner), time.monotonic()
            if cpu < 0:  # the worker is gone
                quiet_since = now
                break
            busy, last = cpu - last > 0.25 * 0.3, cpu  # more than 30% of a core over the last quarter second
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now - 0.25
            elif now - quiet_since >= 1.0:
                break
        busy_for = (quiet_since or now) - ended
        how = "the traced function ran to its end"
        if workers:
            time.sleep(0.5)
            with Client(server.target, timeout=300) as patient:
                restarted = time.monotonic()
                patient.predict("slow", images[:1])  # waits for the restart
            new = _workers(server.pid)[0]
            how = (
                f"worker killed; its restart took {time.monotonic() - restarted + 0.5:.1f} s and "
                f"{_cpu(new):.1f} CPU s (a fresh interpreter loading the model)"
            )
    label = "model workers (grace 2 s)" if workers else "in-process"
    return f"| {label} | 1 s | {busy_for:.1f} | {last - spent:.1f} | {how} |"


def _workers(server: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if parent == server and b"layerscope.service.workers.main" in command:
                found.append(int(entry.name))
    return found


def _cpu(pid: int) -> float:
    """CPU seconds of a process, user and system; -1 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    if fields[0] == "Z":
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
