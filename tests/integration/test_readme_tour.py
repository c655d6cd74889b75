"""README.md's "A short tour" runs as written: every Python and shell block, in order, against a real server.

The first block starts the server (`layerscope serve --port 50051 ...`): here an in-process server on free
ports stands in for it, and the tour's ports (50051 for gRPC, 9464 for metrics) are replaced by the ones it
got. Everything else runs as printed: the Python blocks in one namespace, as in one interpreter session; each
shell line in bash, `.venv/bin/layerscope` being this interpreter's `layerscope` command; all in a scratch
folder that holds `examples/` as the repository does, so relative paths and written files work as they would
in a fresh clone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerHandle, start_server

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
GRPC_PORT, METRICS_PORT = "50051", "9464"


def tour_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block under "## A short tour", in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A short tour\n", 1)[1].split("\n## ", 1)[0]
    return [(m[1], m[2]) for m in FENCE.finditer(section)]


def shell_lines(code: str) -> list[str]:
    """Each command of a shell block (comments and blank lines left out)."""
    return [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_tour_has_the_blocks_this_test_runs() -> None:
    languages = [language for language, _ in tour_blocks()]
    assert languages[0] == "bash" and set(languages) == {"bash", "python"} and languages.count("python") >= 2
    (serve,) = shell_lines(tour_blocks()[0][1])
    assert serve.startswith(f".venv/bin/layerscope serve --port {GRPC_PORT} --metrics-port {METRICS_PORT} ")


@pytest.fixture()
def tour_server(tmp_path: Path) -> Any:
    handle = start_server(tmp_path / "server")
    yield handle
    handle.stop()


@pytest.mark.timeout(1500)
def test_every_block_of_the_tour_runs_as_written(tour_server: ServerHandle, tmp_path: Path) -> None:
    port, metrics = str(tour_server.app.port), str(tour_server.app.metrics_port)
    work = tmp_path / "clone"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    layerscope = f"{shlex.quote(sys.executable)} -m layerscope.cli"
    env = {**os.environ, "COLUMNS": "160", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def ported(code: str) -> str:
        return code.replace(f":{GRPC_PORT}", f":{port}").replace(f":{METRICS_PORT}", f":{metrics}")

    namespace: dict[str, Any] = {"__name__": "__tour__"}
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    here = Path.cwd()
    for language, code in tour_blocks()[1:]:  # the first starts the server: the fixture's stands in for it
        if language == "python":
            os.chdir(work)
            try:
                exec(compile(ported(code), "README.md", "exec"), namespace)
            finally:
                os.chdir(here)
            continue
        for line in shell_lines(code):
            command = ported(line).replace(".venv/bin/layerscope", layerscope)
            # The commands that talk to a server default to localhost:50051: its stand-in's port, as the
            # README says (`LAYERSCOPE_SERVER`).
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=work,
                env={**env, "LAYERSCOPE_SERVER": f"localhost:{port}"},
                capture_output=True,
                text=True,
                timeout=600,
            )
            text = done.stdout + done.stderr
            assert "Traceback" not in text and "internal" not in text.lower(), f"{line}\n{text}"
            # Exit 1 is an audit's "errors found" (the examples hold broken models on purpose); 2 would be a
            # model it could not audit, and anything else a failure.
            assert done.returncode in (0, 1), f"{line}\nexit {done.returncode}\n{text}"
            outputs[line] = done

    # What the tour promised along the way.
    report = namespace["report"]
    assert report.probe is not None and len(report.probe.steps) == 6
    assert "target-loss-mismatch" not in {f.code for f in report.findings}
    assert namespace["cap"].tensors["conv1"]["activation"].shape == (32, 26, 26, 8)
    targets = next(done for line, done in outputs.items() if "--targets y.npy" in line)
    assert targets.returncode == 0 and "healthy_cnn" in targets.stdout
    merged = next(done for line, done in outputs.items() if "audit merge" in line)
    assert "audited 5 of 5 models" in merged.stderr  # the summary line, under the table
    assert (work / "r.html").is_file() and any((work / "tb").rglob("events.out.tfevents.*"))
    assert "layerscope_rpcs_total" in next(done for line, done in outputs.items() if line.startswith("curl")).stdout
    assert json.loads(next(done for line, done in outputs.items() if "runs --format json" in line).stdout)["runs"]
    with namespace["Client"](f"localhost:{port}") as c:  # the last block unloaded and removed it
        assert "digits" not in {m.name for m in c.list_models()}
    assert not (tour_server.repository / "digits" / "1" / "model.keras").exists()  # its folder: a tombstone
