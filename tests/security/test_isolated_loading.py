"""Each archive is first loaded in a child process: what breaks or hangs there never reaches the server."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError
from layerscope.service.errors import InvalidInput, LimitExceeded
from layerscope.service.models.isolation import trial_load
from tests.conftest import start_server
from tests.support import models


def weights_damaged(folder: Path) -> Path:
    """Config and metadata intact (the scanner passes it), weights file replaced by garbage."""
    good = models.save(models.dead_relu_model(), folder, "good")
    target = folder / "damaged.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            out.writestr(name, b"\x89HDF garbage" if name.endswith(".h5") else source.read(name))
    return target


def test_the_server_loads_through_a_trial_in_a_child_process(tmp_path: Path) -> None:
    server = start_server(tmp_path, isolated_loading=True)
    try:
        with Client(server.target, timeout=120) as c:
            assert c.upload_model("good", models.save(models.dead_relu_model(), tmp_path)).version == 1
            with pytest.raises(InvalidArgumentError, match="Keras refused it"):
                c.upload_model("damaged", weights_damaged(tmp_path))
            assert c.health() == "SERVING"
            assert c.predict("good", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
    finally:
        server.stop()


def test_a_trial_that_does_not_finish_in_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LimitExceeded, match="within 0 s"):
        trial_load(models.save(models.dead_relu_model(), tmp_path), timeout=0.01)


def test_a_trial_of_a_damaged_archive_names_the_reason(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="Keras refused it"):
        trial_load(weights_damaged(tmp_path), timeout=120)
