"""A (re)started server loads the newest version of every model in its repository before it says SERVING."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from layerscope.client import Client, NotFoundError
from tests.conftest import start_server
from tests.support import models


def put(repository: Path, name: str, version: int, archive: Path) -> None:
    """Copy, then rename into place: a poll never sees half a file (operators should do the same)."""
    folder = repository / name / str(version)
    folder.mkdir(parents=True)
    shutil.copy(archive, folder / ".model.keras.partial")
    (folder / ".model.keras.partial").rename(folder / "model.keras")


def test_the_newest_version_of_each_model_is_loaded_and_a_broken_one_is_skipped(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    mlp = models.save(models.dead_relu_model(), tmp_path)
    cnn = models.save(models.small_cnn(), tmp_path)
    put(repository, "digits", 1, mlp)
    put(repository, "digits", 2, cnn)
    put(repository, "tiny", 1, mlp)
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.keras").write_text("not an archive")
    (repository / "empty").mkdir()
    server = start_server(tmp_path)
    try:
        with Client(server.target) as c:
            assert c.health() == "SERVING"
            assert sorted((m.name, m.version) for m in c.list_models()) == [("digits", 2), ("tiny", 1)]
            assert c.predict("digits", np.zeros((1, 8, 8, 1), "float32"))["probabilities"].shape == (1, 3)
        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        assert "layerscope_models_loaded 2.0" in metrics
        assert 'layerscope_model_load_failures_total{reason="InvalidInput"} 1.0' in metrics
    finally:
        server.stop()


def test_loading_at_start_can_be_switched_off(tmp_path: Path) -> None:
    put(tmp_path / "repository", "tiny", 1, models.save(models.dead_relu_model(), tmp_path))
    server = start_server(tmp_path, load_at_start=False)
    try:
        with Client(server.target) as c:
            assert c.health() == "SERVING" and c.list_models() == []
            assert c.load_model("tiny").version == 1
    finally:
        server.stop()


def test_polling_loads_what_appears_later_but_never_what_was_unloaded_or_failed(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    mlp = models.save(models.dead_relu_model(), tmp_path)
    server = start_server(tmp_path, repository_poll_seconds=0.2)
    try:
        with Client(server.target) as c:
            assert c.list_models() == []
            put(repository, "late", 1, mlp)  # another replica's upload on a shared volume
            (repository / "broken" / "1").mkdir(parents=True)
            (repository / "broken" / "1" / "model.keras").write_text("not an archive")
            assert wait_for(lambda: [(m.name, m.version) for m in c.list_models()] == [("late", 1)])
            c.unload_model("late")
            time.sleep(1.0)  # five polls
            assert c.list_models() == []
            put(repository, "late", 2, mlp)  # a new version is new: polling takes it
            assert wait_for(lambda: [(m.name, m.version) for m in c.list_models()] == [("late", 2)])
        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        assert 'layerscope_model_load_failures_total{reason="InvalidInput"} 1.0' in metrics  # tried once, not per poll
    finally:
        server.stop()


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_a_version_a_caller_unloaded_stays_unloaded_across_restarts_until_loaded_again(tmp_path: Path) -> None:
    put(tmp_path / "repository", "tiny", 1, models.save(models.dead_relu_model(), tmp_path))

    def restarted() -> list[tuple[str, int]]:
        server = start_server(tmp_path)
        try:
            with Client(server.target) as c:
                return [(m.name, m.version) for m in c.list_models()]
        finally:
            server.stop()

    server = start_server(tmp_path)
    try:
        with Client(server.target) as c:
            assert [m.name for m in c.list_models()] == ["tiny"]
            c.unload_model("tiny")  # e.g. `audit --server` unloading what it uploaded
    finally:
        server.stop()
    assert restarted() == []
    server = start_server(tmp_path)
    try:
        with Client(server.target) as c:
            assert c.load_model("tiny").version == 1
    finally:
        server.stop()
    assert restarted() == [("tiny", 1)]


def test_unload_with_remove_deletes_the_archive_for_good(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with Client(server.target) as c:
            assert c.upload_model("gone", models.save(models.dead_relu_model(), tmp_path)).version == 1
            assert c.unload_model("gone", remove=True).version == 1
            assert c.list_models() == []
            with pytest.raises(NotFoundError, match="'gone'"):
                c.load_model("gone")
            assert not list((server.repository / "gone").rglob("*.keras"))
            assert c.upload_model("gone", models.save(models.dead_relu_model(), tmp_path)).version == 2
    finally:
        server.stop()
