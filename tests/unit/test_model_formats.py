"""Files that are not a Keras 3 archive, and layers that run code: the refusal says what the file is and gives
advice that works when followed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import pytest

from layerscope.service.audit.model_audit import audit_file
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.errors import InvalidInput
from layerscope.service.models.scanner import scan_archive
from tests.support import models

CUSTOM_LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="first_hour")
class Doubler(keras.layers.Layer):
    """What the Lambda did, as a layer Keras can rebuild from its config."""

    def call(self, x):
        return x * 2.0
'''


def mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")], name="mlp")


def test_a_legacy_h5_file_is_named_as_such_and_the_suggested_conversion_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h5 = tmp_path / "legacy.h5"
    mlp().save(h5)
    audit = audit_file(h5, Diagnoser())
    assert audit["error"] is not None and audit["error"]["code"] == "invalid-argument"
    message = audit["error"]["message"]
    assert "legacy HDF5 (.h5)" in message and "zip" not in message
    command = message.split("python -c ", 1)[1].split(" (a file", 1)[0].strip('"')

    monkeypatch.chdir(tmp_path)
    exec(command, {})  # the advice's own code, as `python -c` would run it (here without a second TF start)
    converted = audit_file(tmp_path / "legacy.keras", Diagnoser())
    assert converted["error"] is None and converted["parameters"] == 15


def test_a_saved_model_folder_is_named_as_such_with_how_to_save_a_keras_file(tmp_path: Path) -> None:
    folder = tmp_path / "exported"
    mlp().export(folder, verbose=False)
    audit = audit_file(folder, Diagnoser())
    assert audit["error"] is not None and audit["error"]["code"] == "invalid-argument"
    assert "TensorFlow SavedModel folder" in audit["error"]["message"]
    assert "model.save('exported.keras')" in audit["error"]["message"]


def test_an_uploaded_h5_is_refused_without_the_servers_own_path(tmp_path: Path) -> None:
    stored = tmp_path / "repository" / "m" / "1" / "model.keras"  # where the server keeps an upload
    stored.parent.mkdir(parents=True)
    mlp().save(tmp_path / "legacy.h5")
    stored.write_bytes((tmp_path / "legacy.h5").read_bytes())
    with pytest.raises(InvalidInput, match=r"legacy HDF5 \(\.h5\)") as refused:
        scan_archive(stored)
    assert str(tmp_path) not in refused.value.message


def test_the_lambda_refusal_gives_advice_that_works_when_followed(tmp_path: Path) -> None:
    lambda_file = models.save(models.lambda_model(tmp_path / "ran"), tmp_path)
    (tmp_path / "ran").unlink()  # building the model in this test ran it; the audit must not
    refused = audit_file(lambda_file, Diagnoser(), trusted=True)  # --custom-objects does not admit it either
    assert refused["error"] is not None
    message = refused["error"]["message"]
    assert "not even with --custom-objects" in message and "register_keras_serializable" in message
    assert not (tmp_path / "ran").exists()

    # Following it: the code as a registered layer in a file that --custom-objects imports.
    layers_file = tmp_path / "my_layers.py"
    layers_file.write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location("first_hour_layers", layers_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = keras.Input((4,), name="x")
    rewritten = keras.Model(x, module.Doubler(name="double")(x), name="rewritten")
    audit = audit_file(models.save(rewritten, tmp_path), Diagnoser(), trusted=True)
    assert audit["error"] is None, audit["error"]
