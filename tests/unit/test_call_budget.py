"""The batch bound of a call, as plain arithmetic: the largest batch from what one sample declares."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.service.domain.call_budget import (
    CallBounds,
    SampleCost,
    check_call,
    check_inputs,
    input_scale,
    probe_rows,
)
from layerscope.service.domain.description import InputSpec
from layerscope.service.errors import LimitExceeded

BOUNDS = CallBounds(max_batch_size=1024, max_layer_bytes=1 << 30, max_total_bytes=16 << 30)


def test_the_largest_batch_is_the_tightest_of_three_bounds() -> None:
    assert BOUNDS.largest_batch(None) == 1024
    assert BOUNDS.largest_batch(SampleCost("tiny", 40, 100)) == 1024
    assert BOUNDS.largest_batch(SampleCost("wide", 120_000_000, 130_000_000)) == 8  # the 30 M floats
    assert BOUNDS.largest_batch(SampleCost("deep", 1000, 4 << 30)) == 4  # all layers together bind
    assert BOUNDS.largest_batch(SampleCost("huge", (1 << 30) + 1, (1 << 30) + 1)) == 0


def test_the_reason_names_the_bound_that_binds() -> None:
    assert "LAYERSCOPE_MAX_BATCH_SIZE=1024" in BOUNDS.why(SampleCost("tiny", 40, 100))
    assert "largest layer output 'wide' declares 120000000 bytes" in BOUNDS.why(SampleCost("wide", 120_000_000, 1))
    assert "LAYERSCOPE_MAX_CALL_TOTAL_BYTES" in BOUNDS.why(SampleCost("deep", 1000, 4 << 30))


def test_a_call_past_the_largest_batch_is_refused_naming_it() -> None:
    cost = SampleCost("wide", 120_000_000, 130_000_000)
    check_call("model 'm' version 1", cost, BOUNDS, 8)
    with pytest.raises(LimitExceeded) as caught:
        check_call("model 'm' version 1", cost, BOUNDS, 16)
    assert caught.value.status == "resource-exhausted"
    assert caught.value.message.startswith("Expected a batch of at most 8 rows for model 'm' version 1: its largest")
    advice = "Send smaller batches (ListModels gives each model's max_batch_size)."
    assert caught.value.message.endswith(f"received 16. {advice}")


def test_an_unmeasured_model_is_bounded_only_by_the_batch_bound_checked_elsewhere() -> None:
    check_call("model 'm' version 1", None, BOUNDS, 1 << 20)


def test_free_dimensions_scale_the_declared_work() -> None:
    specs = (InputSpec("tokens", (None, None), "int32"), InputSpec("mask", (None, 4), "float32"))
    inputs = {"tokens": np.zeros((2, 50), "int32"), "mask": np.zeros((2, 4), "float32")}
    assert input_scale(specs, inputs) == 50
    assert input_scale(specs[1:], {"anything": np.zeros((2, 4), "float32")}) == 1  # one input: its name is free
    cost = SampleCost("embedded", 1 << 20, 1 << 21)  # 1 MiB per sample at length 1: 1024 rows
    check_inputs("model 'm' version 1", cost, specs, BOUNDS, {"tokens": np.zeros((20, 50), "int32")})
    with pytest.raises(LimitExceeded, match=r"received 21 rows at 50 times the declared size, 20 rows at most"):
        check_inputs("model 'm' version 1", cost, specs, BOUNDS, {"tokens": np.zeros((21, 50), "int32")})


def test_probe_rows_shrink_to_fit_and_refuse_below_the_least() -> None:
    specs = (InputSpec("x", (None, 4), "float32"),)
    assert probe_rows("m", None, specs, BOUNDS, (3, 24), 32) == 24
    assert probe_rows("m", SampleCost("wide", 120_000_000, 1), specs, BOUNDS, (3, 24), 32) == 8
    free = (InputSpec("tokens", (None, None), "int32"),)  # the probes put 32 in the free dimension
    assert probe_rows("m", SampleCost("emb", 1 << 20, 1 << 20), free, BOUNDS, (3, 24), 32) == 24
    with pytest.raises(LimitExceeded, match=r"received 3 rows at 32 times the declared size, 2 rows at most\. Send in"):
        probe_rows("m", SampleCost("emb", 1 << 24, 1 << 24), free, BOUNDS, (3, 24), 32)  # 64 / 32 = 2 < 3
