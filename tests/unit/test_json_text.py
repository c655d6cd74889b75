"""The store's JSON text: orjson writes it where it can, and json and orjson read each other's text back to the
same values."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerscope.service.store import json_text

FINITE = st.floats(allow_nan=False, allow_infinity=False)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | FINITE | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(VALUES)
def test_finite_values_read_back_unchanged_by_either_reader(value: object) -> None:
    written = json_text.dumps(value)
    assert json_text.loads(written) == value == json.loads(written)
    assert json_text.loads(json.dumps(value)) == value  # spool files and rows written before orjson


@pytest.mark.parametrize("odd", [math.inf, -math.inf])
def test_non_finite_values_keep_json_tokens_when_the_caller_says_so(odd: float) -> None:
    written = json_text.dumps({"loss": [1.0, odd]}, finite=False)
    assert "Infinity" in written
    assert json_text.loads(written) == {"loss": [1.0, odd]}


def test_nan_written_by_json_is_read_back_as_nan() -> None:
    assert math.isnan(json_text.loads(json.dumps([math.nan]))[0])


@pytest.mark.parametrize("value", [{"count": 2**70}, {"layer": "dense\udc80"}])
def test_what_orjson_refuses_is_written_by_json(value: dict[str, object]) -> None:
    assert json_text.loads(json_text.dumps(value)) == value
