"""`layerscope audit` as a new user meets it: merged shards keep their exit status and format, a report that
cannot be written is one line and exit 2, same-named files are told apart, the codes are discoverable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import pytest
from typer.testing import CliRunner

from layerscope.cli.app import app
from layerscope.cli.audit.names import short_names
from tests.support import models

RUNNER = CliRunner()


def mlp(name: str, units: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, name="dense")], name=name)


def softmax_one_unit() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    return keras.Model(x, keras.layers.Dense(1, activation="softmax", name="out")(x), name="softmax_one")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository in the TF Serving layout: every file is called model.keras."""
    root = tmp_path_factory.mktemp("repo")
    for name, model in (("alpha", mlp("alpha", 3)), ("beta", softmax_one_unit()), ("gamma", mlp("gamma", 2))):
        folder = root / name / "1"
        folder.mkdir(parents=True)
        models.save(model, folder, "model")
    return root


def run(*args: str, columns: int = 200) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, list(args), env={"COLUMNS": str(columns)})
    assert isinstance(result.exception, SystemExit | None), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def shards(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("shards")
    reports = []
    for i in range(2):
        report = folder / f"shard-{i}.json"
        code, _, _ = run("audit", str(repo), "--shard", f"{i}/2", "--format", "json", "--output", str(report), "-q")
        assert code in (0, 1)
        reports.append(report)
    return reports


def test_merge_exits_as_the_whole_audit_would(repo: Path, shards: list[Path]) -> None:
    whole = run("audit", str(repo), "--format", "json", "-q")[0]
    assert whole == 1  # softmax over one unit is an error
    assert run("audit", "merge", *map(str, shards))[0] == whole
    assert run("audit", "merge", *map(str, shards), "--fail-on", "error")[0] == 1
    assert run("audit", "merge", *map(str, shards), "--fail-on", "never")[0] == 0


def test_merge_writes_the_format_asked_for(shards: list[Path]) -> None:
    code, table, _ = run("audit", "merge", *map(str, shards), "--format", "table")
    assert code == 1
    assert "softmax-single-unit" in table and not table.lstrip().startswith("{")
    code, sarif, _ = run("audit", "merge", *map(str, shards), "--format", "sarif", "--fail-on", "never")
    assert code == 0 and json.loads(sarif)["version"] == "2.1.0"
    assert json.loads(run("audit", "merge", *map(str, shards))[1])["schema"] == "layerscope.audit/v1"


@pytest.mark.parametrize("where", ["missing/dir/r.json", "."])
def test_a_report_that_cannot_be_written_is_one_line_and_exit_2(repo: Path, tmp_path: Path, where: str) -> None:
    target = tmp_path / where
    for command in (["audit", str(repo / "alpha")], ["audit", "merge", str(repo / "none.json")]):
        code, _, err = run(*command, "--output", str(target), columns=80)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "--output" in lines[0] and "Traceback" not in err, err


def test_same_named_files_get_their_shortest_unique_path(repo: Path) -> None:
    code, table, err = run("audit", str(repo), "--fail-on", "never")
    assert code == 0
    for name in ("alpha/1/model", "beta/1/model", "gamma/1/model"):
        assert name in table
    slowest = next(line for line in err.splitlines() if line.startswith("slowest:"))
    assert "/1/model.keras" in slowest


def test_shortest_unique_paths() -> None:
    names = short_names(["r/a/1/model.keras", "r/b/1/model.keras", "r/b/2/model.keras", "x/solo.keras"])
    assert names == {
        "r/a/1/model.keras": "a/1/model.keras",
        "r/b/1/model.keras": "b/1/model.keras",
        "r/b/2/model.keras": "2/model.keras",
        "x/solo.keras": "solo.keras",
    }


@pytest.mark.parametrize("flag", [["--list-codes"], ["--explain"]])
def test_every_code_is_listed_with_its_severity(flag: list[str]) -> None:
    from layerscope.service.diagnosis.catalog import CATALOG

    code, out, _ = run("audit", *flag)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    listed = {row[0]: row[1] for row in rows if row and row[0] in CATALOG}
    assert listed == {c: info.severity.value for c, info in CATALOG.items()}


def test_an_unknown_code_suggests_close_ones() -> None:
    code, _, err = run("audit", "--explain", "dense-on-spatil")
    assert code == 2 and "dense-on-spatial" in err and "--list-codes" in err


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("layerscope ") and out.split()[1][0].isdigit()


def test_more_jobs_than_cores_warns_before_anything_runs(repo: Path, tmp_path: Path) -> None:
    cores = os.cpu_count() or 1
    missing = str(tmp_path / "none.npy")  # the audit stops there, after the warning, before any worker starts
    code, _, err = run("audit", str(repo / "alpha"), "--jobs", str(cores + 1), "--inputs", missing)
    assert code == 2
    assert f"--jobs {cores + 1} is more than the {cores} CPU cores" in err
    assert "CPU cores" not in run("audit", str(repo / "alpha"), "--jobs", str(cores), "--inputs", missing)[2]


def test_a_saved_model_folder_is_reported_with_how_to_convert_it(tmp_path: Path) -> None:
    mlp("exported", 2).export(tmp_path / "exported", verbose=False)
    code, out, _ = run("audit", str(tmp_path / "exported"), "--format", "json")
    assert code == 2
    (entry,) = json.loads(out)["models"]
    assert "TensorFlow SavedModel folder" in entry["error"]["message"] and ".keras" in entry["error"]["message"]
