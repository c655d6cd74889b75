"""The kernel's binner (runtime/native/binner.h) bins as NumPy does on every instruction-set path it has.

The kernel is built with -march=native, so the statistics tests exercise only this CPU's path. Here the
header is compiled alone (it needs no TensorFlow), once per level this CPU can run: native (AVX-512 where
present) and each level a prebuilt kernel targets (x86-64-v3: AVX2; x86-64-v2: the scalar path, as on ARM
and elsewhere the compiler's baseline), and each binary's histograms are
compared bin for bin with numpy.histogram on values placed on, and one float either side of, every edge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from layerscope.service.runtime.native.build import SOURCE, cpu_flags
from layerscope.service.runtime.native.prebuilt import PORTABLE_FLAGS, Target, targets

HARNESS = r"""
#include <cstdio>
#include <vector>
#include "binner.h"

// argv: bins low top; stdin: float32 values. Prints the histogram's counts, then the values left out.
int main(int argc, char** argv) {
  const int bins = std::atoi(argv[1]);
  const double low = std::atof(argv[2]), top = std::atof(argv[3]);
  std::vector<float> x;
  float v;
  while (std::fread(&v, sizeof v, 1, stdin) == 1) x.push_back(v);
  const layerscope::Binner binner(bins, low, top);
  std::vector<int64_t> tables(4 * (bins + 1), 0);
  for (size_t i = 0; i < x.size(); i += layerscope::kLanes) {
    const int n = static_cast<int>(std::min<size_t>(layerscope::kLanes, x.size() - i));
    binner.Add16(x.data() + i, n, tables.data());
  }
  const int64_t padding = (layerscope::kLanes - x.size() % layerscope::kLanes) % layerscope::kLanes;  // NaN
  for (int b = 0; b <= bins; ++b) {
    int64_t count = b == bins ? -padding : 0;
    for (int t = 0; t < 4; ++t) count += tables[t * (bins + 1) + b];
    std::printf("%lld ", static_cast<long long>(count));
  }
  return 0;
}
"""

LEVELS = {"native": Target("native", ("-march=native",), ()), **{target.name: target for target in targets()}}
"""This CPU's own build (as the kernel is built here) and every level a prebuilt kernel is compiled for."""


def compiler() -> str:
    found = shutil.which(os.environ.get("CXX", "g++"))
    if found is None:
        pytest.fail("no C++ compiler here, although the kernel needs one (g++)")
    return found


@pytest.fixture(scope="module", params=list(LEVELS))
def binner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = LEVELS[request.param]
    if not set(target.cpu_features) <= set(cpu_flags().partition(":")[2].split()):
        pytest.skip(f"this CPU cannot run {target.name}")
    folder = tmp_path_factory.mktemp(f"binner-{target.name}")
    (folder / "harness.cc").write_text(HARNESS)
    flags = [flag for flag in PORTABLE_FLAGS if flag not in ("-shared", "-fPIC")]
    command = [compiler(), *flags, *target.flags, f"-I{SOURCE.parent}", str(folder / "harness.cc")]
    built = subprocess.run([*command, "-o", str(folder / "binner")], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    return folder / "binner"


def histogram(binary: Path, values: np.ndarray, bins: int, low: float, top: float) -> tuple[list[int], int]:
    done = subprocess.run(
        [str(binary), str(bins), repr(low), repr(top)],
        input=values.astype(np.float32).tobytes(), capture_output=True, check=True,
    )  # fmt: skip
    counts = [int(c) for c in done.stdout.split()]
    return counts[:-1], counts[-1]


def around_edges(low: float, top: float, bins: int) -> np.ndarray:
    edges = np.histogram_bin_edges([], bins=bins, range=(low, top)).astype(np.float32)
    values = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, -np.float32(np.inf))])
    values = values[np.abs(values) >= np.finfo(np.float32).tiny]  # subnormals: TensorFlow reads them as zero
    return np.concatenate([values, [np.nan, np.inf, -np.inf]]).astype(np.float32)


RANGES = [
    (0.0, 1.0),
    (-3.7, 12.1),
    (999.96, 1000.04),
    (1e-30, 3e-30),
    (-3e38, 3e38),  # wider than the largest float: binned in double
    (1e30, 1e30 + 1e24),  # a constant tensor's range
    (-1.0, 1.0),
]


@pytest.mark.parametrize("bins", [32, 1, 7, 33, 100])
@pytest.mark.parametrize("low, top", RANGES)
def test_every_path_bins_values_on_and_beside_the_edges_as_numpy_does(
    binner: Path, bins: int, low: float, top: float
) -> None:
    low, top = float(np.float32(low)), top if top > float(np.float32(low)) else float(np.float32(low)) + 1.0
    x = around_edges(low, top, bins)
    counts, left_out = histogram(binner, x, bins, low, top)
    wide = x.astype(np.float64)  # NumPy would compare and bin a float32 array in float32
    inside = wide[np.isfinite(wide) & (wide >= low) & (wide <= top)]
    assert counts == np.histogram(inside, bins=bins, range=(low, top))[0].tolist()
    assert left_out == x.size - inside.size  # NaN, Inf and values outside the range


@pytest.mark.parametrize("seed", range(3))
def test_every_path_bins_random_values_as_numpy_does(binner: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(5000) ** 3 * 10.0 ** rng.uniform(-10, 10)).astype(np.float32)
    low, top = float(x.min()), float(x.max())
    counts, left_out = histogram(binner, x, 32, low, top)
    assert counts == np.histogram(x.astype(np.float64), bins=32, range=(low, top))[0].tolist() and left_out == 0
