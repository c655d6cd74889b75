"""The client's results print in a line or two at model-zoo size: no screen of layer names, no output arrays."""

from __future__ import annotations

import numpy as np

from layerscope.client import Capture, InputSpec, LayerDetail, ModelInfo, Summary


def test_a_big_model_info_prints_in_one_short_line() -> None:
    blocks = [f"block_{i}_project_BN" for i in range(150)]
    layers = ("input_layer", "Conv1", "bn_Conv1", *blocks, "predictions")
    info = ModelInfo(
        name="mobilenetv2",
        version=3,
        sha256="ab" * 32,
        parameters=3_538_984,
        layers=layers,
        inputs=(InputSpec("input_layer", (None, 224, 224, 3), "float32"),),
        outputs=("predictions",),
        layer_details=tuple(LayerDetail(n, "Conv2D", (None, 7, 7, 32), 10) for n in layers),
    )
    text = repr(info)
    assert len(text) < 300 and "\n" not in text, text
    assert "parameters=3,538,984" in text and "layers=154 ('input_layer', 'Conv1', 'bn_Conv1', ..., " in text
    assert "'predictions')" in text and "inputs=[input_layer: float32 (None, 224, 224, 3)]" in text
    assert "LayerDetail" not in text and "sha256" not in text
    small = ModelInfo("tiny", 1, "x", 10, ("a", "b"), outputs=("out",), transient=True)
    assert "layers=('a', 'b')" in repr(small) and "transient=True" in repr(small)


def test_a_capture_prints_its_outputs_shapes_not_their_values() -> None:
    summary = Summary(1, 0.0, 1.0, -1.0, 1.0, 0.0, 0, 0, 0, (1,) * 32, (-1.0, 1.0))
    capture = Capture(
        run_id="r1",
        device="CPU",
        batch_size=32,
        duration_seconds=0.01234,
        outputs={"probabilities": np.random.default_rng(0).random((32, 1000), dtype="float32")},
        summaries={f"layer{i}": {"activation": summary, "kernel": summary} for i in range(100)},
        tensors={"conv1": {"activation": np.zeros((32, 112, 112, 32), "float32")}},
    )
    text = repr(capture)
    assert len(text) < 300 and "\n" not in text, text
    assert "outputs={'probabilities': float32 (32, 1000)}" in text
    assert "summaries=100 layers x ['activation', 'kernel']" in text and "tensors={'conv1': ['activation']}" in text
    assert "0." not in text.replace("duration_seconds=0.0123", "")  # no value of any array
