"""The HTML report at real size, checked in a real Chromium: a summary first, worst models first, long lists
folded, flagged layers with their histograms, and a page whose height stays bounded for a deep model."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import pytest
from typer.testing import CliRunner

from layerscope.cli.app import app
from tests.support import models

BLOCKS = 60
"""Dense -> BatchNormalization -> ReLU blocks: 180 layers, and a bias-before-batchnorm finding naming 60.
A deeper model draws the same bounded page; its audit would only cost the suite more time tracing."""


def deep_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((16,), name="features")
    for i in range(BLOCKS):
        x = keras.layers.Dense(8, name=f"block_{i:03d}_a_rather_long_dense_layer_name")(x)
        x = keras.layers.BatchNormalization(name=f"block_{i:03d}_bn")(x)
        x = keras.layers.ReLU(name=f"block_{i:03d}_relu")(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="softmax", name="head")(x), name="deep")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A small zoo in the repository layout (every file model.keras), one of them deep, one not a model."""
    root = tmp_path_factory.mktemp("zoo")
    for name, model in (("deep", deep_model()), ("small", models.small_cnn()), ("dead", models.dead_relu_model())):
        (root / name / "1").mkdir(parents=True)
        models.save(model, root / name / "1", "model")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.keras").write_bytes(b"not a model")
    html = root / "report.html"
    runner = CliRunner()
    document = root / "report.json"
    result = runner.invoke(app, ["audit", str(root), "--format", "json", "--output", str(document), "-q"])
    assert result.exit_code == 2, result.output  # the broken file
    # The same report as HTML, without auditing again: `merge` of the one report renders it.
    result = runner.invoke(app, ["audit", "merge", str(document), "--format", "html", "--output", str(html), "-q"])
    assert result.exit_code == 2, result.output
    return html, json.loads(document.read_text())


@pytest.fixture(scope="module")
def page(report: tuple[Path, dict[str, Any]]) -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: scripts/install_chromium.sh installs chromium")
        pytest.skip("chromium is not installed (scripts/install_chromium.sh)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        view = browser.new_page(viewport={"width": 1280, "height": 900})
        view.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        view.on("pageerror", lambda exc: errors.append(str(exc)))
        view.on("request", lambda r: requests.append(r.url))
        view.goto(report[0].as_uri())
        yield view
        browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # self-contained


def test_the_summary_comes_first_worst_first_and_counts_every_file(page: Any, report: Any) -> None:
    _, doc = report
    summary = page.locator("table[aria-label='summary'] tr")
    rows = [summary.nth(i).inner_text().split("\t") for i in range(1, summary.count())]
    # Worst first (not audited, then errors), alphabetical within a severity.
    assert [r[0] for r in rows] == [f"{name}/1/model.keras" for name in ("broken", "dead", "deep", "small")]
    assert [r[1] for r in rows][:2] == ["not audited", "error"]
    assert "4 models · 3 audited · 1 not audited" in page.inner_text("p")
    headings = [h.split()[0] for h in page.locator("h2").all_inner_texts()]
    assert headings == [r[0] for r in rows]  # sections in the same order
    assert page.locator("h2").first.get_attribute("title") == doc["models"][0]["source"]  # full path on hover


def test_long_layer_lists_are_folded_and_the_layer_list_is_closed(page: Any, report: Any) -> None:
    _, doc = report
    (deep,) = [m for m in doc["models"] if "deep" in m["source"]]
    (named,) = [f["layers"] for f in deep["findings"] if f["code"] == "bias-before-batchnorm"]
    assert len(named) >= BLOCKS
    finding = page.locator(".finding:has-text('bias-before-batchnorm')")
    assert f"and {len(named) - 8} more layers" in finding.inner_text()
    assert finding.locator("details").evaluate("d => d.open") is False
    dead_units = sum(f["code"] == "dead-units" for f in deep["findings"])
    if dead_units > 3:  # one finding per layer: three shown, the rest folded
        assert page.locator(f"summary:has-text('{dead_units - 3} more dead-units findings')").count() == 1
    layer_list = page.locator(f"details:has(summary:text-is('All {len(deep['layers'])} layers'))")
    assert layer_list.count() == 1 and layer_list.evaluate("d => d.open") is False


def test_flagged_layers_show_their_histograms_and_full_names_on_hover(page: Any) -> None:
    flagged = page.locator("table[aria-label='flagged layers']").nth(1)  # the deep model's, after dead's
    assert flagged.locator("svg[aria-label^='histogram of']").count() >= 1
    first_row = flagged.locator("tr").nth(1).inner_text()
    assert "head" in first_row  # its error shows before the warnings and the info rows
    name = "block_000_a_rather_long_dense_layer_name"
    assert page.locator(f"td.name[title='{name}']").count() >= 1
    strip_titles = page.locator("svg[aria-label='layers by depth'] title").all_text_contents()
    assert any(name in t and "Dense" in t for t in strip_titles)


def test_a_deep_models_report_stays_bounded_in_height(page: Any, tmp_path: Path) -> None:
    height = page.evaluate("document.documentElement.scrollHeight")
    artifacts = Path(os.environ.get("LAYERSCOPE_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "audit-report-large.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot} ({height} px for 4 models, one of 181 layers)")
    assert height < 4500
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # nothing spills sideways
