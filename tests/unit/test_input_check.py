"""A caller's inputs against the model's, by name and value (domain/inputs.py), as Predict, Capture and
Diagnose check them before anything runs. Plain NumPy, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.inputs import UNNAMED_INPUT, check_inputs
from layerscope.service.errors import InvalidInput

IMAGE = (InputSpec("image", (None, 4, 4, 1), "float32"),)
TWO = (InputSpec("image", (None, 4), "float32"), InputSpec("tokens", (None, 3), "int32"))
X = np.zeros((2, 4, 4, 1), "float32")


def test_an_unknown_input_name_is_refused_naming_the_expected_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_inputs("digits", IMAGE, {"img": X})
    assert (
        caught.value.message == "Model 'digits' expects inputs ['image']; received ['img']: 'img' is not one of them."
    )
    with pytest.raises(InvalidInput, match=r"received \['image', 'extra'\]: 'extra' is not one of them"):
        check_inputs("digits", IMAGE, {"image": X, "extra": X})
    with pytest.raises(InvalidInput, match=r"'a', 'b' are not of them"):
        check_inputs("two", TWO, {"a": X, "b": X})


def test_the_model_names_and_an_unnamed_tensor_are_accepted() -> None:
    check_inputs("digits", IMAGE, {"image": X})
    check_inputs("digits", IMAGE, {UNNAMED_INPUT.format(0): X})  # by position: the one input
    check_inputs("two", TWO, {"image": np.zeros((2, 4), "float32"), "tokens": np.zeros((2, 3), "int32")})


def test_a_conversion_that_keeps_every_value_is_made_one_that_would_not_is_refused() -> None:
    check_inputs("digits", IMAGE, {"image": np.random.default_rng(0).random((2, 4, 4, 1))})  # float64: fine
    big = np.full((2, 4, 4, 1), 1e39)
    with pytest.raises(InvalidInput, match=r"received float64 with values up to 1e\+39, past float32's largest"):
        check_inputs("digits", IMAGE, {"image": big})
    tokens = np.zeros((2, 3), "int64")
    check_inputs("two", TWO, {"image": np.zeros((2, 4), "float32"), "tokens": tokens + 7})
    wraps = r"expects dtype int32 .*received int64 with values in \[4294967296, 4294967296\]: they would wrap"
    with pytest.raises(InvalidInput, match=wraps):
        check_inputs("two", TWO, {"image": np.zeros((2, 4), "float32"), "tokens": tokens + 2**32})
