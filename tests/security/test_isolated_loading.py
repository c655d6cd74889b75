"""Each archive is first loaded in a child process: what breaks or hangs there never reaches the server."""

from __future__ import annotations

import io
import os
import re
import sys
import time
import types
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError, ResourceExhaustedError
from layerscope.service.errors import InvalidInput, LimitExceeded
from layerscope.service.models import isolation, loader
from layerscope.service.models.isolation import trial_load
from layerscope.service.models.repository import ARCHIVE
from layerscope.service.settings import Settings
from tests.conftest import ServerHandle, start_server
from tests.support import models

CHILD_REFUSED = re.escape("Expected a loadable Keras 3 archive; Keras refused it: ")
"""Only the child's refusal reads so: the server's own load names the model ("archive for model 'x'; Keras ...")."""
TRIAL_TIMEOUT = 120.0


def weights_damaged(folder: Path) -> Path:
    """Config and metadata intact and a well-formed HDF5 file (the scanner passes it), but one holding
    none of the model's variables: only Keras, loading it, finds out."""
    good = models.save(models.dead_relu_model(), folder, "good")
    empty = io.BytesIO()
    with h5py.File(empty, "w") as weights:
        weights.create_group("layers")
    target = folder / "damaged.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            out.writestr(name, empty.getvalue() if name.endswith(".h5") else source.read(name))
    return target


def spy_on_trials(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, float]]:
    """Record every trial the server's loader asks for (it runs in this process), then run it for real."""
    calls: list[tuple[Path, float]] = []

    def recording(path: Path, timeout: float) -> None:
        calls.append((Path(path), timeout))
        trial_load(path, timeout)

    monkeypatch.setattr(loader, "trial_load", recording)
    return calls


def stored(server: ServerHandle, name: str, version: int = 1) -> Path:
    return server.repository / name / str(version) / ARCHIVE


def staged(server: ServerHandle, name: str, version: int = 1) -> Path:
    return server.repository / name / str(version) / f".staged-{ARCHIVE}"


def test_the_server_loads_through_a_trial_in_a_child_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trials = spy_on_trials(monkeypatch)
    server = start_server(tmp_path, isolated_loading=True, load_timeout_seconds=TRIAL_TIMEOUT)
    try:
        with Client(server.target, timeout=120) as c:
            assert c.upload_model("good", models.save(models.dead_relu_model(), tmp_path)).version == 1
            # The trial loads the uploaded bytes before they are published as the version's archive.
            assert trials == [(staged(server, "good"), TRIAL_TIMEOUT)]
            assert stored(server, "good").is_file() and not staged(server, "good").exists()
            with pytest.raises(InvalidArgumentError, match=CHILD_REFUSED):
                c.upload_model("damaged", weights_damaged(tmp_path))
            assert trials[1:] == [(staged(server, "damaged"), TRIAL_TIMEOUT)]
            assert not stored(server, "damaged").exists() and not staged(server, "damaged").exists()
            assert c.health() == "SERVING"
            assert c.predict("good", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
            assert len(trials) == 2, "a trial runs once per upload, not per request"
    finally:
        server.stop()


def fake_interpreter(folder: Path, pid_file: Path) -> Path:
    """Stands in for the child's Python: crashes on model 'crasher', hangs on 'sleeper', passes the rest."""
    script = folder / "fake-python"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, pathlib, signal, sys, time\n"
        "model = pathlib.PurePath(sys.argv[-1]).parts[-3]  # repository/<name>/<version>/model.keras\n"
        "if model == 'crasher':\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "if model == 'sleeper':\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(3600)\n"
        "sys.exit(0)\n"
    )
    script.chmod(0o755)
    return script


def wait_for(path: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.05)
    return path.read_text()


def test_a_child_that_crashes_or_hangs_costs_the_upload_not_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "sleeper.pid"
    monkeypatch.setattr(isolation, "sys", types.SimpleNamespace(executable=str(fake_interpreter(tmp_path, pid_file))))
    trials = spy_on_trials(monkeypatch)
    server = start_server(tmp_path, isolated_loading=True, load_timeout_seconds=6)
    try:
        with Client(server.target, timeout=120) as c, ThreadPoolExecutor(1) as pool:
            archive = models.save(models.dead_relu_model(), tmp_path)
            assert c.upload_model("good", archive).version == 1
            with pytest.raises(InvalidArgumentError, match=re.escape("crashed the isolated loader (SIGSEGV)")):
                c.upload_model("crasher", archive)
            assert c.health() == "SERVING"

            hanging = pool.submit(c.upload_model, "sleeper", archive)
            pid = int(wait_for(pid_file, 30))
            # While the child hangs, the server answers.
            assert c.health() == "SERVING"
            assert c.predict("good", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
            with pytest.raises(ResourceExhaustedError, match=re.escape("to load within 6 s")):
                hanging.result(timeout=60)
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # killed and reaped, not left behind

            assert [path for path, _ in trials] == [staged(server, n) for n in ("good", "crasher", "sleeper")]
            assert {timeout for _, timeout in trials} == {6.0}
            assert not stored(server, "crasher").exists() and not stored(server, "sleeper").exists()
            assert c.health() == "SERVING"
            assert [m.name for m in c.list_models()] == ["good"]
            assert c.predict("good", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
    finally:
        server.stop()


def test_a_server_loads_in_isolation_unless_told_otherwise() -> None:
    assert Settings.model_fields["isolated_loading"].default is True


def test_a_trial_that_does_not_finish_in_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded, match="within 0 s"):
        trial_load(models.save(models.dead_relu_model(), tmp_path), timeout=0.01)


def test_a_trial_of_a_damaged_archive_names_the_reason(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=CHILD_REFUSED):
        trial_load(weights_damaged(tmp_path), timeout=120)
