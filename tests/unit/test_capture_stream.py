"""How a capture's answer is cut into stream messages: summaries ride in the header when the caller reads them
there and they fit in one message with it; what does not fit follows in batches, none lost or repeated."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from layerscope.client._core import CaptureAssembler
from layerscope.service.domain.capture import CaptureResult
from layerscope.service.domain.runs import RunRecord
from layerscope.service.domain.summary import summarize
from layerscope.service.grpc.convert import capture_stream

RUN = RunRecord("r1", "m", 1, "0" * 64, "capture", datetime(2026, 1, 1, tzinfo=UTC), 4, "x", "CPU", 0.01)


def result(layers: int, units: int = 64) -> CaptureResult:
    rng = np.random.default_rng(0)
    summaries = {f"dense_{i}": {"activation": summarize(rng.normal(size=(4, units)))} for i in range(layers)}
    return CaptureResult(outputs={"y": rng.normal(size=(4, 2))}, summaries=summaries, batch_size=4)


@pytest.mark.parametrize(("layers", "chunk_bytes", "messages"), [(3, 2**20, 1), (40, 4096, 10)])
def test_summaries_in_the_header_when_they_fit_and_after_it_when_not(
    layers: int, chunk_bytes: int, messages: int
) -> None:
    captured = result(layers)
    stream = list(capture_stream(RUN, captured, chunk_bytes, batch_summaries=True, in_header=True))
    kinds = [m.WhichOneof("item") for m in stream]
    assert kinds[0] == "header" and set(kinds[1:]) <= {"summaries"}
    assert (len(stream) == 1) == (messages == 1) and len(stream) <= messages  # several to a message
    assert all(m.ByteSize() <= chunk_bytes for m in stream[1:])
    assembler = CaptureAssembler()
    for message in stream:
        assembler.add(message)
    read = assembler.result().summaries
    assert list(read) == list(captured.summaries)  # each once, in capture order
    for layer, kinds in captured.summaries.items():
        assert read[layer]["activation"].mean == pytest.approx(kinds["activation"].mean)


def test_a_header_too_full_for_the_summaries_sends_them_after_it() -> None:
    captured = result(2)
    captured.outputs["y"] = np.zeros((4, 2000))  # 64 KB of outputs in the header
    stream = list(capture_stream(RUN, captured, 32 * 1024, batch_summaries=True, in_header=True))
    assert [m.WhichOneof("item") for m in stream] == ["header", "summaries"]
    assert not stream[0].header.summaries.items
