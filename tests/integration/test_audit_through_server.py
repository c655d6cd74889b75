"""`layerscope audit --server` loads each model transiently: the server's repository stays as it was, its runs are
kept as audit runs, and no metric, alert series or live monitoring counts them."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from layerscope.cli.app import app
from layerscope.client import AlreadyExistsError, Client, FailedPreconditionError, NotFoundError
from tests.conftest import ServerHandle, start_server
from tests.integration.test_load_at_start import put
from tests.support import models
from tests.support.metrics import scrape

X = np.random.default_rng(0).random((8, 8, 8, 1), dtype="float32")


@pytest.fixture(scope="module")
def temp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The server's temporary folder (a process-wide setting: the server runs in this process)."""
    folder = tmp_path_factory.mktemp("tmp")
    before, tempfile.tempdir = tempfile.tempdir, str(folder)
    yield folder
    tempfile.tempdir = before


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, temp: Path) -> Iterator[ServerHandle]:
    """A server with one production model, every one of whose Predict calls is sampled."""
    tmp = tmp_path_factory.mktemp("audited")
    put(tmp / "repository", "digits", 1, models.save(models.small_cnn(), tmp))
    handle = start_server(tmp, monitor_sample_rate=1.0, monitor_reference_requests=5)
    yield handle
    handle.stop()
    assert list(temp.iterdir()) == []  # no transient model's file outlives the server


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    models.save(models.small_cnn(), folder)
    models.save(models.nan_model(), folder)  # an error finding: non-finite weights
    return folder


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def model_series(samples: dict[str, float], model: str) -> list[str]:
    return [s for s in samples if f'model="{model}' in s]


def test_an_audit_through_the_server_leaves_the_server_as_it_was(served: ServerHandle, zoo: Path, temp: Path) -> None:
    with Client(served.target, timeout=120) as c:
        for _ in range(3):
            c.predict("digits", X)
        before = {"repository": tree(served.repository), "models": [(m.name, m.version) for m in c.list_models()]}
        metrics_before = scrape(served.metrics_url)

        result = CliRunner().invoke(app, ["audit", str(zoo), "--format", "json", "--server", served.target])
        document = json.loads(result.stdout)
        assert result.exit_code == 1, result.output  # the NaN model's error finding
        assert {f["code"] for m in document["models"] for f in m["findings"]} >= {"non-finite"}

        assert tree(served.repository) == before["repository"]  # no version, tombstone or empty folder
        assert [(m.name, m.version) for m in c.list_models()] == before["models"]
        assert list(temp.iterdir()) == []
        runs = [r for r in c.runs(limit=50) if r.model_name.startswith("audit-")]
        assert sorted(r.kind for r in runs) == ["audit", "audit"]  # kept, and told apart from production runs
        assert {r.model_name.rsplit("-", 1)[0] for r in runs} == {"audit-small_cnn", "audit-nan_model"}

    metrics = scrape(served.metrics_url)
    assert model_series(metrics, "audit-") == []  # no findings, health, capture-time or monitoring series
    assert not [s for s in metrics if s.startswith("layerscope_findings_total")]
    assert metrics["layerscope_models_loaded"] == 1
    assert metrics['layerscope_model_info{model="digits",version="1"}'] == 1  # the dashboard lists it
    sampled = 'layerscope_monitor_samples_total{model="digits",version="1"}'
    assert metrics[sampled] == metrics_before[sampled] > 0  # Diagnose is not live traffic: nothing sampled


def test_a_transient_model_is_served_but_never_stored_monitored_or_counted(
    served: ServerHandle, tmp_path: Path, temp: Path
) -> None:
    archive = models.save(models.small_cnn(), tmp_path)
    with Client(served.target, timeout=120) as c:
        before = tree(served.repository)
        samples = scrape(served.metrics_url)['layerscope_monitor_samples_total{model="digits",version="1"}']
        info = c.upload_model("scratch", archive, transient=True)
        assert info.transient and (info.name, info.version) == ("scratch", 1)
        assert {m.name: m.transient for m in c.list_models()} == {"digits": False, "scratch": True}
        assert len(list(temp.iterdir())) == 1 and tree(served.repository) == before
        np.testing.assert_allclose(c.predict("scratch", X)["probabilities"], c.predict("digits", X)["probabilities"])
        with pytest.raises(FailedPreconditionError, match="transient"):
            c.monitor("scratch")
        assert c.get_run(c.diagnose("scratch").run_id).kind == "audit"
        assert c.capture("scratch", X).run_id and c.runs("scratch", limit=1)[0].kind == "audit"
        with pytest.raises(AlreadyExistsError, match="loaded as a transient model"):
            c.upload_model("scratch", archive)  # into the repository: the name is taken
        with pytest.raises(AlreadyExistsError, match="loaded or stored"):
            c.upload_model("digits", archive, transient=True)
        metrics = scrape(served.metrics_url)
        assert model_series(metrics, "scratch") == []
        assert metrics['layerscope_monitor_samples_total{model="digits",version="1"}'] == samples + 1
        c.unload_model("scratch")
        with pytest.raises(NotFoundError):
            c.predict("scratch", X)
        assert list(temp.iterdir()) == [] and tree(served.repository) == before
