"""A kernel prebuilt elsewhere (an image's build stage) is loaded only under the cache's trust model.

The lookup runs on libraries from the stand-in compiler (the `cxx` fixture): what is checked is the record and
the files, not the kernel. One test builds the real kernel and loads it in a fresh interpreter that has no
compiler, as the image's runtime stage does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf

from layerscope.service.runtime.native import SummaryOpLoader, prebuilt
from layerscope.service.runtime.native.build import BuildError, cpu_flags
from layerscope.service.runtime.native.prebuilt import RECORD, find_prebuilt, prebuild, targets


def runnable() -> list[str]:
    """This machine's targets whose CPU features this CPU has, fastest first."""
    here = set(cpu_flags().partition(":")[2].split())
    return [target.name for target in targets() if set(target.cpu_features) <= here]


def edit_record(folder: Path, **changes: Any) -> None:
    path = folder / RECORD
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture()
def out(tmp_path: Path, cxx: str) -> Path:
    folder = tmp_path / "prebuilt"
    prebuild(folder, cxx)
    return folder


def test_the_fastest_target_this_cpu_runs_is_chosen(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(t.name for t in targets())
    assert find_prebuilt(out) == out / runnable()[0] / prebuilt.LIBRARY


def test_the_record_says_what_was_built(out: Path, cxx: str) -> None:
    first = targets()[0]
    record = json.loads((out / first.name / RECORD).read_text())
    assert record["schema"] == "layerscope.kernel/v1"
    assert record["tensorflow"] == tf.__version__
    assert record["target"] == first.name and record["cpu_features"] == list(first.cpu_features)
    assert record["compiler"] == cxx
    assert "-march=native" not in record["flags"], "a prebuilt kernel meets other CPUs"
    assert set(first.flags) <= set(record["flags"]) and "-ffp-contract=off" in record["flags"]
    assert record["tensorflow_compile_flags"] == tf.sysconfig.get_compile_flags()


def test_a_kernel_built_for_another_tensorflow_is_refused_naming_both_versions(out: Path) -> None:
    for folder in out.iterdir():
        edit_record(folder, tensorflow="2.16.1")
    with pytest.raises(BuildError, match=rf"built for TensorFlow 2\.16\.1; expected {tf.__version__}, the installed"):
        find_prebuilt(out)


def test_a_kernel_built_from_another_source_is_refused(out: Path) -> None:
    for folder in out.iterdir():
        edit_record(folder, source_sha256="0" * 64)
    with pytest.raises(BuildError, match=r"built from another summary_op\.cc than this layerscope's"):
        find_prebuilt(out)


def test_a_library_changed_after_it_was_built_is_refused(out: Path) -> None:
    for folder in out.iterdir():
        (folder / prebuilt.LIBRARY).write_bytes(b"\x7fELF planted")
    with pytest.raises(BuildError, match=r"SHA-256 does not match its record"):
        find_prebuilt(out)


def test_a_target_this_cpu_cannot_run_gives_way_to_the_next(out: Path) -> None:
    if len(targets()) < 2:
        pytest.skip("one target only on this architecture")
    first, second = targets()[:2]
    edit_record(out / first.name, cpu_features=[*first.cpu_features, "no_such_feature"])
    assert find_prebuilt(out) == out / second.name / prebuilt.LIBRARY
    edit_record(out / second.name, cpu_features=["no_such_feature"])
    with pytest.raises(BuildError, match=r"needs CPU features this CPU lacks: no_such_feature"):
        find_prebuilt(out)


def test_a_folder_others_can_write_is_refused(out: Path) -> None:
    for folder in out.iterdir():
        folder.chmod(0o777)  # anyone could have swapped the library and rewritten its record
    with pytest.raises(BuildError, match=r"writable by no one else; received one owned by uid \d+ with mode 777"):
        find_prebuilt(out)


def test_a_record_that_is_not_one_is_refused(out: Path) -> None:
    for folder in out.iterdir():
        (folder / RECORD).write_text("not json")
    with pytest.raises(BuildError, match=r"to be a layerscope\.kernel/v1 JSON record; it could not be read"):
        find_prebuilt(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_library_another_user_owns_is_refused(out: Path) -> None:
    for folder in out.iterdir():
        os.chown(folder / prebuilt.LIBRARY, 65534, 65534)
    with pytest.raises(BuildError, match=r"summary_op\.so to be a regular file of uid \d+ or root"):
        find_prebuilt(out)


def test_an_empty_folder_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no prebuilt kernel in .*native prebuild"):
        find_prebuilt(tmp_path / "none")


def test_an_unknown_target_is_refused_with_the_known_ones(tmp_path: Path, cxx: str) -> None:
    with pytest.raises(BuildError, match=r"expected targets among \[.*\] on this machine; received \['pentium'\]"):
        prebuild(tmp_path, cxx, ["pentium"])


def test_with_neither_a_compiler_nor_a_prebuilt_kernel_the_reason_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-compiler"))
    loader = SummaryOpLoader(tmp_path / "cache", prebuilt_dir=tmp_path / "none")
    assert loader.load() is None  # the TensorFlow-ops path
    assert "expected CXX to name a C++ compiler" in loader.reason
    assert f"no prebuilt kernel in {tmp_path / 'none'}" in loader.reason


LOAD_WITHOUT_A_COMPILER = """
import sys
from pathlib import Path
import numpy as np
from layerscope.service.runtime.native import SummaryOpLoader
loader = SummaryOpLoader(cache_dir=Path(sys.argv[1]) / "cache", prebuilt_dir=Path(sys.argv[1]) / "prebuilt")
module = loader.load()
assert module is not None, loader.reason
counts, *_ = module.layerscope_summary(np.array([[0.0, 1.0], [np.nan, 2.0]], "float32"), bins=4, sample=0)
print(loader.reason)
print(counts.numpy().tolist())
"""


@pytest.mark.timeout(660)  # the build's own 600 s, and the interpreter's start: pytest's 300 s would end it first
def test_the_real_kernel_prebuilt_here_loads_where_no_compiler_is(tmp_path: Path) -> None:
    """As an image does: prebuilt in a stage with g++, loaded by a process that finds none (CXX names nothing);
    fresh interpreters, since TensorFlow registers an op once per process."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    target = runnable()[-1]  # the most portable: one build, not all
    command = [sys.executable, "-m", "layerscope.service.runtime.native", "prebuild", "--target", target]
    built = subprocess.run(
        [*command, "--out", str(tmp_path / "prebuilt")], capture_output=True, text=True, timeout=600, env=environment
    )
    assert built.returncode == 0, built.stderr[-2000:]
    without = {**environment, "CXX": str(tmp_path / "no-compiler")}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_A_COMPILER, str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False, env=without,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    reason, counts = done.stdout.strip().splitlines()[-2:]
    assert reason.startswith(f"in use: {tmp_path / 'prebuilt' / target / prebuilt.LIBRARY} (prebuilt; not built here")
    assert counts == "[4, 1, 1, 0, 0, 3, -1]"
    assert not (tmp_path / "cache").exists(), "nothing is built or cached where there is no compiler"
