"""Shared fixtures: real Keras models saved to real archives, and a real server on a free port."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


@dataclass
class ServerHandle:
    """A layerscope server running in its own thread and event loop, as a real process would."""

    app: Any
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    repository: Path
    database_url: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.app.metrics_port}/metrics"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(grace=1.0), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def start_server(tmp: Path, **overrides: Any) -> ServerHandle:
    from layerscope.service import app as application
    from layerscope.service.settings import Settings

    repository = tmp / "repository"
    database_url = overrides.pop("database_url", f"sqlite:///{tmp / 'runs.db'}")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        model_repository=repository,
        database_url=database_url,
        spool_dir=overrides.pop("spool_dir", tmp / "spool"),
        # A child-process trial load costs seconds per upload; its own test turns it on.
        isolated_loading=overrides.pop("isolated_loading", False),
        **overrides,
    )
    loop = asyncio.new_event_loop()
    started: Future[Any] = Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(application.start(settings))
        task.add_done_callback(
            lambda t: started.set_exception(t.exception()) if t.exception() else started.set_result(t.result())  # type: ignore[arg-type]
        )
        loop.run_forever()

    thread = threading.Thread(target=run, name="layerscope-test-server", daemon=True)
    thread.start()
    return ServerHandle(started.result(timeout=120), loop, thread, repository, database_url)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("server"))
    yield handle
    handle.stop()


@pytest.fixture()
def client(server: ServerHandle) -> Iterator[Any]:
    from layerscope.client import Client

    with Client(server.target, timeout=120) as c:
        yield c
