"""Live-traffic monitoring on a real server: Predict traffic alone (no Capture call) yields windows, drift and
health; shifted traffic is named layer by layer, nearest the input first; sampled answers are exactly the
unsampled ones; NaN inputs are reported at once; the reference outlives a restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerscope.client import Client, FailedPreconditionError, InvalidArgumentError, MonitorStatus
from tests.conftest import ServerHandle, start_server
from tests.support import models
from tests.support.metrics import scrape

pytestmark = pytest.mark.slow

WINDOW = 1.0
REFERENCE = 30
LIVE = {
    "monitor_sample_rate": 1.0,
    "monitor_window_seconds": WINDOW,
    "monitor_reference_requests": REFERENCE,
    "monitor_cpu_budget": 1.0,  # every request sampled, whatever the load: the test decides the traffic
    "replica": "replica-a",
}


def images(rng: np.random.Generator, batch: int = 16, brightness: float = 0.0, contrast: float = 1.0) -> np.ndarray:
    return ((rng.random((batch, 8, 8, 1)) - 0.5) * contrast + 0.5 + brightness).astype("float32")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    tmp = tmp_path_factory.mktemp("live")
    (tmp / "repository" / "cnn" / "1").mkdir(parents=True)
    models.small_cnn().save(tmp / "repository" / "cnn" / "1" / "model.keras")
    handle = start_server(tmp, **LIVE)
    yield handle
    handle.stop()


def wait_for(condition: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds}s")


def serve_for(client: Client, seconds: float, make: Callable[[], np.ndarray]) -> int:
    """Predict traffic for `seconds`, as production would send it: no Capture, no Diagnose."""
    end, sent = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        client.predict("cnn", make())
        sent += 1
    return sent


def serve_until(
    client: Client, condition: Callable[[], Any], make: Callable[[], np.ndarray], seconds: float = 90
) -> Any:
    """Predict traffic until `condition` holds: how many requests a reference needs depends on how many the
    monitor could sample (none while the live capture is still being traced), not on a fixed time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        serve_for(client, 0.2, make)
        if value := condition():
            return value
    raise AssertionError(f"not within {seconds}s of traffic")


def next_window(client: Client, after: set[str]) -> Any:
    def closed() -> Any:
        return next((w for w in client.monitor("cnn").windows if w.window_id not in after), None)

    return wait_for(closed)


def test_predict_traffic_alone_gives_windows_drift_and_the_first_drifting_layer(live: ServerHandle) -> None:
    rng = np.random.default_rng(0)
    with Client(live.target, timeout=60) as client:
        status: MonitorStatus = serve_until(
            client, lambda: (s := client.monitor("cnn")).reference and s, lambda: images(rng)
        )
        assert status.reference is not None and status.reference.source == "traffic"
        assert status.reference.requests == REFERENCE and status.sample_rate == 1.0
        seen = {w.window_id for w in client.monitor("cnn").windows}

        for _ in range(3):  # stationary traffic: windows, and no layer drifting
            serve_for(client, WINDOW + 0.2, lambda: images(rng))
            window = next_window(client, seen)
            seen.add(window.window_id)
            if window.reference_id == status.reference.reference_id:
                assert window.first_drifting_layer is None, [(x.layer, x.drift_score) for x in window.layers]
                assert window.requests >= 5 and window.replica == "replica-a"

        drifting = None
        for _ in range(4):  # brighter images: the first convolution moves first, and is named first
            serve_for(client, WINDOW + 0.2, lambda: images(rng, brightness=0.4))
            window = next_window(client, seen)
            seen.add(window.window_id)
            if window.first_drifting_layer:
                drifting = window
                break
        assert drifting is not None, "brightness shift not detected within four windows"
        assert drifting.first_drifting_layer == "conv"
        assert drifting.layers[0].layer == "conv" and drifting.layers[0].drift_score >= 1.0

        samples = scrape(live.metrics_url)
        assert samples['layerscope_layer_drifting{layer="conv",model="cnn",version="1"}'] == 1.0
        assert samples['layerscope_model_first_drifting_layer{layer="conv",model="cnn",version="1"}'] == 1.0
        assert samples['layerscope_monitor_samples_total{model="cnn",version="1"}'] > REFERENCE
        # Health from live traffic, and only where it means something: no dead-unit series for pooling.
        assert 'layerscope_layer_dead_unit_fraction{layer="conv",model="cnn",version="1"}' in samples
        assert 'layerscope_layer_dead_unit_fraction{layer="pool",model="cnn",version="1"}' not in samples

        # A window reads as a run: GetRun and CompareRuns take its id.
        run = client.get_run(drifting.window_id)
        assert run.kind == "window" and "conv" in run.summaries
        comparison = client.compare(sorted(seen - {drifting.window_id})[0], drifting.window_id)
        assert {c.layer for c in comparison.changes} >= {"conv", "hidden"}


def test_sampled_predictions_are_exactly_the_unsampled_ones(live: ServerHandle, tmp_path: Path) -> None:
    x = images(np.random.default_rng(1), batch=8)
    quiet = start_server(tmp_path, monitor_sample_rate=0.0)
    try:
        (quiet.repository / "cnn" / "1").mkdir(parents=True)
        models.small_cnn().save(quiet.repository / "cnn" / "1" / "model.keras")
        with Client(live.target) as sampled, Client(quiet.target) as unsampled:
            unsampled.load_model("cnn")
            before = sampled.monitor("cnn").samples
            a, b = sampled.predict("cnn", x), unsampled.predict("cnn", x)
            assert wait_for(lambda: sampled.monitor("cnn").samples > before)
            assert a.keys() == b.keys()
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])
            with pytest.raises(FailedPreconditionError, match="LAYERSCOPE_MONITOR_SAMPLE_RATE=0"):
                unsampled.monitor("cnn")
    finally:
        quiet.stop()


def test_nan_inputs_are_reported_at_once_not_after_a_window(live: ServerHandle) -> None:
    with Client(live.target) as client:
        before = client.monitor("cnn").nonfinite_samples
        x = images(np.random.default_rng(2), batch=4)
        x[1, 2, 3, 0] = np.nan  # one NaN: this ReLU may turn it into 0 downstream; the input check still sees it
        client.predict("cnn", x)
        status = wait_for(lambda: (s := client.monitor("cnn")).nonfinite_samples > before and s, seconds=3)
        event = status.events[0]
        assert event.kind == "non-finite" and "<inputs>" in event.layers


def test_set_reference_takes_a_window_and_refuses_what_is_not_one(live: ServerHandle) -> None:
    with Client(live.target) as client:
        window = next(w for w in client.monitor("cnn").windows if w.reference_id)
        status = client.set_reference("cnn", window.window_id)
        assert status.reference is not None and status.reference.source == f"window:{window.window_id}"
        with pytest.raises(InvalidArgumentError, match="window limit >= 0"):
            client.monitor("cnn", limit=-1)
        with pytest.raises(Exception, match="no window has id"):
            client.set_reference("cnn", "w-does-not-exist")
        with pytest.raises(InvalidArgumentError, match="does not start with w- or h-"):
            client.capture("cnn", images(np.random.default_rng(3)), run_id="w-mine")


def test_the_reference_outlives_a_restart(tmp_path: Path) -> None:
    settings = {**LIVE, "monitor_reference_requests": 8}
    first = start_server(tmp_path, **settings)
    (first.repository / "cnn" / "1").mkdir(parents=True)
    models.small_cnn().save(first.repository / "cnn" / "1" / "model.keras")
    rng = np.random.default_rng(4)
    try:
        with Client(first.target) as client:
            client.load_model("cnn")
            reference = serve_until(client, lambda: client.monitor("cnn").reference, lambda: images(rng)).reference_id
            serve_for(client, WINDOW + 0.2, lambda: images(rng))
    finally:
        first.stop()  # the open window is closed and stored on the way out
    second = start_server(tmp_path, **settings)
    try:
        with Client(second.target) as client:
            status = client.monitor("cnn")
            assert status.reference is not None and status.reference.reference_id == reference
            assert status.windows, "windows stored before the restart are read back"
            serve_for(client, 0.3, lambda: images(rng))
            assert wait_for(lambda: client.monitor("cnn").samples > 0)
            assert client.monitor("cnn").reference.reference_id == reference  # type: ignore[union-attr]
    finally:
        second.stop()


def layerscope(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("layerscope")), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_monitor_command_shows_layers_drift_and_the_first_drifting_layer(live: ServerHandle) -> None:
    shown = layerscope("monitor", "cnn", "--server", live.target, "--once")
    assert shown.returncode == 0, shown.stderr
    assert "cnn v1" in shown.stdout and "sampling 100%" in shown.stdout
    assert all(layer in shown.stdout for layer in ("conv", "pool", "hidden", "probabilities"))
    as_json = layerscope("monitor", "cnn", "--server", live.target, "--format", "json")
    status = json.loads(as_json.stdout)
    assert status["model"] == "cnn" and status["windows"] and status["reference"]["requests"] > 0
    missing = layerscope("monitor", "nope", "--server", live.target, "--once")
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_export_writes_windows_and_runs_that_tensorboard_reads(live: ServerHandle, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with Client(live.target) as client:
        client.capture("cnn", images(np.random.default_rng(5)))
        windows = len(client.monitor("cnn", limit=500).windows)
    done = layerscope("export", "tensorboard", "cnn", "--server", live.target, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"wrote {windows} windows" in done.stdout
    written = EventAccumulator(str(tmp_path / "cnn" / "windows"), size_guidance={"histograms": 0, "scalars": 0})
    written.Reload()
    tags = written.Tags()
    assert {"drift/conv", "drift/hidden", "dead_unit_fraction/conv"} <= set(tags["scalars"])
    assert "activation/conv" in tags["histograms"]
    assert len(written.Scalars("drift/conv")) == windows
    drift = [event.value for event in written.Scalars("drift/conv")]
    assert max(drift) >= 1.0  # the brightness shift of the first test, as TensorBoard will plot it
    runs = EventAccumulator(str(tmp_path / "cnn" / "runs"), size_guidance={"histograms": 0})
    runs.Reload()
    assert "activation/conv" in runs.Tags()["histograms"] and "kernel/conv" in runs.Tags()["histograms"]


def test_replicas_share_one_reference_and_read_as_one_model(tmp_path: Path) -> None:
    """Two servers behind one Service, one database: the reference is set once (by whichever replica is first)
    and the other adopts it; windows record their replica, and either replica lists both."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = {**LIVE, "monitor_reference_requests": 8, "database_url": database}
    a = start_server(tmp_path / "a", **{**settings, "replica": "a"})
    b = start_server(tmp_path / "b", **{**settings, "replica": "b"})
    rng = np.random.default_rng(6)
    try:
        for handle in (a, b):
            (handle.repository / "cnn" / "1").mkdir(parents=True)
            models.small_cnn().save(handle.repository / "cnn" / "1" / "model.keras")
        with Client(a.target) as first, Client(b.target) as second:
            first.load_model("cnn")
            second.load_model("cnn")
            reference = serve_until(first, lambda: first.monitor("cnn").reference, lambda: images(rng)).reference_id
            serve_for(second, WINDOW + 0.3, lambda: images(rng))
            assert wait_for(lambda: (r := second.monitor("cnn").reference) and r.reference_id == reference)
            serve_for(first, WINDOW + 0.3, lambda: images(rng))
            replicas = wait_for(lambda: {w.replica for w in second.monitor("cnn", limit=50).windows} >= {"a", "b"})
            assert replicas
    finally:
        a.stop()
        b.stop()


def test_the_export_renders_in_a_real_tensorboard_in_chromium(live: ServerHandle, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: scripts/install_chromium.sh installs chromium")
        pytest.skip("chromium is not installed (scripts/install_chromium.sh)")
    done = layerscope("export", "tensorboard", "cnn", "--server", live.target, "--out", str(tmp_path / "tb"))
    assert done.returncode == 0, done.stderr
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "tb"), "--host", "127.0.0.1",
         "--port", "0", "--load_fast", "false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = wait_for_line(board, re.compile(r"(http://127\.0\.0\.1:\d+/)"))
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "#scalars")
            page.get_by_text("drift/conv", exact=True).first.wait_for(timeout=60_000)
            page.goto(url + "#histograms")
            page.get_by_text("activation/conv", exact=True).first.wait_for(timeout=60_000)
            assert page.locator("svg, canvas").count() > 0
            browser.close()
    finally:
        board.terminate()
        board.wait(timeout=30)


def wait_for_line(process: subprocess.Popen[str], pattern: re.Pattern[str], seconds: float = 120) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := pattern.search(line):
            return match[1]
    raise AssertionError("TensorBoard did not start:\n" + "".join(seen))
