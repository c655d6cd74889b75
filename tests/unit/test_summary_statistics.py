"""On-device statistics against the NumPy reference, for both backends (the fused kernel, TensorFlow ops).

Exact statistics equal `domain.summarize`: counts, zeros, NaN/Inf, min and max to the bit, the histogram
bin for bin, unit activity value for value, mean and std to float32 precision. A sampled histogram says
how many values it binned, stays within its stated error of the exact one, and changes nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.capture.stats import activity_size, summarize_tensors, unpack
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import (
    HISTOGRAM_BINS,
    HISTOGRAM_SAMPLE,
    Summary,
    histogram_error_bound,
    summarize,
)
from layerscope.service.runtime.native import SummaryOpLoader


@pytest.fixture(scope="module")
def kernel() -> object:
    module = SummaryOpLoader().load()
    if module is None:
        pytest.fail("the fused statistics kernel did not build here although the test machine has a compiler")
    return module


def on_device(x: np.ndarray, fused: object | None, exact: bool) -> Summary:
    tensor = tf.constant(x)

    def run(masked: bool) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        function = tf.function(lambda t: summarize_tensors([t], masked, exact=exact, fused=fused), autograph=False)
        return function(tensor)  # type: ignore[no-any-return]

    packed, all_finite = run(masked=False)
    if not bool(all_finite):
        packed, _ = run(masked=True)
    counts, floats, histograms, activity = (np.asarray(p) for p in packed)
    return unpack((counts, floats, histograms, activity), [activity_size(tensor)])[0]


def normal(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(16, 24, 24, 12)).astype("float32")


def heavy_tailed(rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_cauchy(size=(64, 700)) * 100).astype("float32")


def all_zero(rng: np.random.Generator) -> np.ndarray:
    return np.zeros((40, 30, 30), "float32")


def with_nan_and_inf(rng: np.random.Generator) -> np.ndarray:
    x = np.maximum(rng.normal(size=(20, 50, 33)), 0).astype("float32")
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 300, replace=False)] = np.nan
    flat[rng.choice(flat.size, 200, replace=False)] = np.inf
    flat[rng.choice(flat.size, 100, replace=False)] = -np.inf
    return x


def channels_that_differ(rng: np.random.Generator) -> np.ndarray:
    """NHWC whose channel c is centred on c: a stride in step with the channels would see one of them."""
    return (rng.normal(size=(8, 32, 32, 16)) + np.arange(16)).astype("float32")


def relu_after_large_mean(rng: np.random.Generator) -> np.ndarray:
    """A mean far from zero next to a small spread: sum(x^2)/n - mean^2 would cancel to noise."""
    return (1000.0 + rng.normal(size=(30, 4000)) * 0.01).astype("float32")


def small_with_odd_units(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(7, 13)).astype("float32")


TENSORS: list[Callable[[np.random.Generator], np.ndarray]] = [
    normal,
    heavy_tailed,
    all_zero,
    with_nan_and_inf,
    channels_that_differ,
    relu_after_large_mean,
    small_with_odd_units,
]
BACKENDS = ["fused", "tensorflow"]


def backend(name: str, kernel: object) -> object | None:
    return kernel if name == "fused" else None


def assert_exact_fields_equal(got: Summary, want: Summary) -> None:
    assert (got.count, got.nan, got.posinf, got.neginf) == (want.count, want.nan, want.posinf, want.neginf)
    assert got.zero_fraction == pytest.approx(want.zero_fraction, abs=0)
    assert (got.min, got.max) == (np.float32(want.min), np.float32(want.max))
    assert got.unit_activity == pytest.approx(want.unit_activity, abs=1e-7)
    scale = max(abs(want.mean), want.std, 1e-30)
    assert got.mean == pytest.approx(want.mean, abs=2e-6 * scale)
    assert got.std == pytest.approx(want.std, rel=1e-4, abs=1e-6 * scale)


@pytest.mark.parametrize("make", TENSORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", BACKENDS)
def test_exact_statistics_equal_numpy(
    make: Callable[[np.random.Generator], np.ndarray], name: str, kernel: object
) -> None:
    x = make(np.random.default_rng(7))
    got, want = on_device(x, backend(name, kernel), exact=True), summarize(x)
    assert_exact_fields_equal(got, want)
    assert got.histogram == want.histogram
    assert got.histogram_range == pytest.approx(want.histogram_range, rel=1e-6)
    assert got.histogram_sample is None and not got.estimated


def on_and_beside_every_edge(low: float, high: float) -> np.ndarray:
    """Float32 values on each of NumPy's bin edges for this range and one float either side of it: where a
    binner that rounds its index differently from NumPy's puts a value in the neighbouring bin."""
    low32, high32 = np.float32(low), np.float32(high)
    top = float(high32) if high32 > low32 else float(low32) + max(1.0, abs(float(low32)) * 1e-6)
    edges = np.histogram_bin_edges([], bins=HISTOGRAM_BINS, range=(float(low32), top)).astype(np.float32)
    around = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, -np.float32(np.inf))])
    values = np.concatenate([[low32, high32], np.clip(around, low32, high32)]).astype(np.float32)
    # TensorFlow's CPU kernels read a subnormal as zero (NumPy does not): an edge at 0 is probed by 0 alone.
    values[np.abs(values) < np.finfo(np.float32).tiny] = 0.0
    return np.resize(values, (-(-values.size // 4) * 4,)).reshape(-1, 4)


EDGE_RANGES = {
    "unit": (0.0, 1.0),
    "uneven": (-3.7, 12.1),
    "far_from_zero": (999.96, 1000.04),
    "tiny": (1e-30, 3e-30),
    "wider_than_float": (-3e38, 3e38),  # binned in double: low - high overflows a float
    "huge_constant": (1e30, 1e30),
}


@pytest.mark.parametrize("bounds", EDGE_RANGES.values(), ids=EDGE_RANGES.keys())
@pytest.mark.parametrize("name", BACKENDS)
def test_values_on_and_beside_bin_edges_fall_in_numpys_bins(
    bounds: tuple[float, float], name: str, kernel: object
) -> None:
    x = on_and_beside_every_edge(*bounds)
    got, want = on_device(x, backend(name, kernel), exact=True), summarize(x)
    assert got.histogram == want.histogram
    assert sum(got.histogram) == x.size


@pytest.mark.parametrize("seed", range(4))
def test_the_kernel_bins_random_tensors_exactly_as_numpy_does(seed: int, kernel: object) -> None:
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-20, 20)
    x = ((rng.standard_normal((64, 300)) ** 3) * scale + rng.normal() * scale * 10).astype(np.float32)
    assert on_device(x, kernel, exact=True).histogram == summarize(x).histogram


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "sampled"])
@pytest.mark.parametrize("name", BACKENDS)
def test_tensors_summarized_together_equal_each_summarized_alone(exact: bool, name: str, kernel: object) -> None:
    rng = np.random.default_rng(5)
    arrays = [normal(rng), small_with_odd_units(rng), all_zero(rng), with_nan_and_inf(rng), np.float32(3.0)]
    tensors = [tf.constant(a) for a in arrays]
    fused = backend(name, kernel)

    def run(masked: bool) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        function = tf.function(
            lambda *ts: summarize_tensors(list(ts), masked, exact=exact, fused=fused), autograph=False
        )
        return function(*tensors)  # type: ignore[no-any-return]

    packed, all_finite = run(masked=False)
    if not bool(all_finite):
        packed, _ = run(masked=True)
    together = unpack(tuple(np.asarray(p) for p in packed), [activity_size(t) for t in tensors])  # type: ignore[arg-type]
    # With TensorFlow ops a NaN anywhere sends the whole group down the masked path, whose sums run in
    # another order: the same statistics to float precision, each in its own place.
    for got, want in zip(together, [on_device(np.asarray(a), fused, exact=exact) for a in arrays], strict=True):
        assert_exact_fields_equal(got, want)
        assert (got.histogram, got.histogram_sample) == (want.histogram, want.histogram_sample)


@pytest.mark.parametrize("make", TENSORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", BACKENDS)
def test_a_sampled_histogram_is_marked_and_within_its_stated_error(
    make: Callable[[np.random.Generator], np.ndarray], name: str, kernel: object
) -> None:
    x = make(np.random.default_rng(11))
    got, want = on_device(x, backend(name, kernel), exact=False), summarize(x)
    assert_exact_fields_equal(got, want)  # only the histogram is ever estimated
    assert got.histogram_range == pytest.approx(want.histogram_range, rel=1e-6)
    if not got.estimated:  # small tensors are binned in full (TF ops: up to a few times the sample size)
        assert x.size <= (HISTOGRAM_SAMPLE if name == "fused" else 8 * HISTOGRAM_SAMPLE)
        assert got.histogram == want.histogram
        return
    assert got.estimated and got.histogram_sample == sum(got.histogram)
    finite = want.count - want.nan - want.posinf - want.neginf
    assert HISTOGRAM_SAMPLE * 0.9 <= got.histogram_sample <= min(finite, 2 * HISTOGRAM_SAMPLE)
    shares = np.asarray(got.histogram) / got.histogram_sample
    truth = np.asarray(want.histogram) / max(finite, 1)
    assert np.abs(shares - truth).max() <= histogram_error_bound(got.histogram_sample)


@pytest.mark.parametrize("make", [normal, channels_that_differ], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", BACKENDS)
def test_large_tensors_are_sampled_by_both_backends(
    make: Callable[[np.random.Generator], np.ndarray], name: str, kernel: object
) -> None:
    x = make(np.random.default_rng(12))
    got = on_device(x, backend(name, kernel), exact=False)
    assert got.estimated and HISTOGRAM_SAMPLE <= got.histogram_sample <= 2 * HISTOGRAM_SAMPLE


def test_both_backends_sample_and_bin_alike_on_small_tensors_and_agree_on_large_ones(kernel: object) -> None:
    x = normal(np.random.default_rng(3))
    fused, ops = on_device(x, kernel, exact=False), on_device(x, None, exact=False)
    bound = histogram_error_bound(min(fused.histogram_sample or 0, ops.histogram_sample or 0))
    assert (
        np.abs(
            np.asarray(fused.histogram) / sum(fused.histogram) - np.asarray(ops.histogram) / sum(ops.histogram)
        ).max()
        <= 2 * bound
    )


def tiny_cnn() -> keras.Model:
    keras.utils.set_random_seed(4)
    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, keras.layers.Dense(4, activation="softmax", name="head")(x), name="tiny")


def test_the_engine_uses_the_kernel_on_the_cpu_where_a_compiler_exists() -> None:
    assert shutil.which("g++") or shutil.which("c++"), "CI machines have a compiler; the fused path must run there"
    assert CaptureEngine(tiny_cnn()).fused_statistics


def test_a_failed_build_falls_back_to_tensorflow_ops_with_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fused = CaptureEngine(tiny_cnn())
    assert fused.fused_statistics
    monkeypatch.setenv("CXX", "/bin/false")  # a compiler that always fails: the real failure path, not a mock
    loader = SummaryOpLoader(cache_dir=tmp_path)
    assert loader.load() is None and "exited 1" in loader.reason
    x = np.random.default_rng(5).normal(size=(6, 32, 32, 3)).astype("float32")
    fallback = CaptureEngine(tiny_cnn(), summary_op=loader)
    assert not fallback.fused_statistics
    selection = Selection(kinds=frozenset({"activation"}))
    a = fallback.capture({"image": x}, selection, statistics="exact").summaries["conv"]["activation"]
    b = fused.capture({"image": x}, selection, statistics="exact").summaries["conv"]["activation"]
    assert a.histogram == b.histogram and a.unit_activity == b.unit_activity and a.zero_fraction == b.zero_fraction


def test_statistics_none_returns_full_tensors_and_no_summaries() -> None:
    model = tiny_cnn()
    x = np.random.default_rng(6).normal(size=(5, 32, 32, 3)).astype("float32")
    engine = CaptureEngine(model)
    result = engine.capture({"image": x}, Selection(full=("conv",)), statistics="none")
    assert result.summaries == {}
    assert set(result.tensors) == {"conv"} and set(result.tensors["conv"]) == {"activation", "kernel", "bias"}
    conv = keras.Model(model.inputs, model.get_layer("conv").output)
    np.testing.assert_allclose(result.tensors["conv"]["activation"], conv(x), rtol=1e-5, atol=1e-6)
    assert result.classes == {"conv": "Conv2D"}


def test_the_default_capture_samples_only_large_tensors_and_exact_bins_all() -> None:
    x = np.random.default_rng(8).normal(size=(64, 32, 32, 3)).astype("float32")
    engine = CaptureEngine(tiny_cnn())
    selection = Selection(kinds=frozenset({"activation", "kernel"}))
    sampled = engine.capture({"image": x}, selection).summaries
    exact = engine.capture({"image": x}, selection, statistics="exact").summaries
    assert sampled["conv"]["activation"].estimated  # 64 x 30 x 30 x 8 values
    assert not sampled["head"]["activation"].estimated  # 64 x 4
    assert not sampled["conv"]["kernel"].estimated  # weights are summarised once, in full
    assert not exact["conv"]["activation"].estimated
    assert sum(exact["conv"]["activation"].histogram) == exact["conv"]["activation"].count


def test_an_unknown_statistics_level_is_refused_by_name() -> None:
    from layerscope.service.errors import InvalidInput

    x = np.zeros((1, 32, 32, 3), "float32")
    with pytest.raises(
        InvalidInput, match=r"Expected statistics among \['sampled', 'exact', 'none'\]; received 'fast'"
    ):
        CaptureEngine(tiny_cnn()).capture({"image": x}, Selection(), statistics="fast")


BUILD_IN_A_FRESH_PROCESS = """
import sys
from pathlib import Path
import numpy as np
from layerscope.service.runtime.native import SummaryOpLoader
loader = SummaryOpLoader(cache_dir=Path(sys.argv[1]))
module = loader.load()
assert module is not None, loader.reason
counts, *_ = module.layerscope_summary(np.array([[0.0, 1.0], [np.nan, 2.0]], "float32"), bins=4, sample=0)
print(counts.numpy().tolist())
"""


@pytest.mark.slow
@pytest.mark.timeout(660)  # the build's own 600 s, and the interpreter's start: pytest's 300 s would end it first
def test_the_kernel_builds_from_source_into_an_empty_cache(tmp_path: Path) -> None:
    """What a fresh machine does at first use, in a fresh interpreter (the shared cache would hide a broken
    build, and TensorFlow registers an op once per process)."""
    done = subprocess.run(
        [sys.executable, "-c", BUILD_IN_A_FRESH_PROCESS, str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[4, 1, 1, 0, 0, 3, -1]"
    assert [p.name for p in tmp_path.glob("*/summary_op.so")] == ["summary_op.so"]
