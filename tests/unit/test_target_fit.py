"""Whether targets fit their loss (domain/targets.py): the check behind target-loss-mismatch, the refusal of a
gradient capture and a diagnosis that skips gradients it could not compute. Plain NumPy, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.targets import mismatched_targets, target_mismatch
from layerscope.service.domain.training import LossSpec, target_info

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 10, 32)
ONE_HOT = np.eye(10, dtype="float32")[LABELS]


def kind(loss: str, output: tuple[int | None, ...], y: np.ndarray) -> str | None:
    mismatch = target_mismatch(loss, output, target_info(y))
    return None if mismatch is None else mismatch.kind


def test_target_facts_say_whole_numbers_and_one_hot_rows() -> None:
    assert target_info(ONE_HOT).one_hot and target_info(ONE_HOT).fractional == 0.0
    assert not target_info(LABELS).one_hot
    assert not target_info(np.ones((4, 3), "float32")).one_hot  # rows of three 1s
    assert not target_info(np.zeros((4, 1), "float32")).one_hot  # one column is not a row of classes
    assert target_info(np.array([0.5, 2.0])).fractional == pytest.approx(0.5)
    assert target_info(np.array([np.nan, 1.0])).fractional == 0.0


@pytest.mark.parametrize(
    ("loss", "output", "y", "expected"),
    [
        # a sparse loss takes class indices of shape (N,) or (N, 1), in [0, classes)
        ("sparse_categorical_crossentropy", (None, 10), LABELS, None),
        ("sparse_categorical_crossentropy", (None, 10), LABELS.reshape(-1, 1).astype("float32"), None),
        ("sparse_categorical_crossentropy", (None, 10), ONE_HOT, "one-hot-with-sparse-loss"),
        ("sparse_categorical_crossentropy", (None, 10), LABELS + 3, "class-count"),
        ("sparse_categorical_crossentropy", (None, 10), LABELS - 1, "class-count"),
        ("sparse_categorical_crossentropy", (None, 10), LABELS / 3.0, "fractional-labels"),
        ("sparse_categorical_crossentropy", (None, 10), np.ones((32, 7), "float32"), "shape"),
        ("sparse_categorical_crossentropy", (None, None, 5), RNG.integers(0, 5, (32, 12)), None),  # per position
        ("sparse_categorical_crossentropy", (None,), LABELS, None),  # no class axis known: not judged
        # a categorical loss takes rows as wide as the output
        ("categorical_crossentropy", (None, 10), ONE_HOT, None),
        ("categorical_crossentropy", (None, 10), LABELS, "labels-with-categorical-loss"),
        ("categorical_crossentropy", (None, 10), LABELS.reshape(-1, 1), "labels-with-categorical-loss"),
        ("categorical_focal_crossentropy", (None, 10), np.ones((32, 7), "float32"), "shape"),
        ("categorical_crossentropy", (None, 1), np.ones((32,), "float32"), None),  # one trailing axis added
        # every other loss takes the output's shape, give or take one trailing axis of 1
        ("mean_squared_error", (None, 1), np.ones(32, "float32"), None),
        ("mean_squared_error", (None, 3), np.ones((32, 3, 1), "float32"), None),
        ("mean_squared_error", (None, 10), np.ones((32, 1), "float32"), "shape"),  # would broadcast, wrongly
        ("binary_crossentropy", (None, 1), ONE_HOT, "shape"),
        ("mean_absolute_error", (None, None, 4), np.ones((32, 9, 4), "float32"), None),
    ],
)
def test_what_fits_each_loss(loss: str, output: tuple[int | None, ...], y: np.ndarray, expected: str | None) -> None:
    assert kind(loss, output, y) == expected


def test_the_sentence_says_what_was_expected_and_received() -> None:
    mismatch = target_mismatch("sparse_categorical_crossentropy", (None, 10), target_info(ONE_HOT))
    assert mismatch is not None
    assert mismatch.sentence("classes") == (
        "The targets of output 'classes' do not fit its loss sparse_categorical_crossentropy: expected class "
        "indices of shape (32,) or (32, 1); received one-hot rows of shape (32, 10)."
    )
    assert "y.argmax(axis=-1)" in mismatch.fix


def test_every_output_is_checked_against_its_own_loss() -> None:
    outputs = (InputSpec("digit", (None, 10), "float32"), InputSpec("box", (None, 4), "float32"))
    losses = (LossSpec("sparse_categorical_crossentropy"), LossSpec("mean_squared_error"))
    fine = {"digit": target_info(LABELS), "box": target_info(np.ones((32, 4), "float32"))}
    assert mismatched_targets(outputs, losses, fine) == {}
    wrong = {"digit": target_info(ONE_HOT), "box": target_info(np.ones((32, 4), "float32"))}
    assert list(mismatched_targets(outputs, losses, wrong)) == ["digit"]
