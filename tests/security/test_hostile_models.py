"""Hostile archives, built here, are refused before Keras sees them; nothing runs; the server keeps serving."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import grpc
import h5py
import keras
import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError
from tests.conftest import ServerHandle
from tests.support import models


def healthy_archive(folder: Path) -> Path:
    return models.save(models.dead_relu_model(), folder, "healthy")


def rewrite(source: Path, target: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy an archive member by member, letting `edit` change, add or remove members."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    edit(members)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def edit_config(edit: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:  # type: ignore[type-arg]
    def apply(members: dict[str, bytes]) -> None:
        config = json.loads(members["config.json"])
        edit(config)
        members["config.json"] = json.dumps(config).encode()

    return apply


def first_layer(config: dict) -> dict:  # type: ignore[type-arg]
    return config["config"]["layers"][-1]  # type: ignore[no-any-return]


def lambda_archive(folder: Path, marker: Path) -> Path:
    path = models.save(models.lambda_model(marker), folder, "lambda")
    marker.unlink(missing_ok=True)  # building the model in this test ran the payload once
    return path


def custom_object_archive(folder: Path, marker: Path) -> Path:
    @keras.saving.register_keras_serializable(package="evil")
    class Payload(keras.layers.Layer):
        def call(self, x):  # type: ignore[no-untyped-def, override]
            marker.write_text("executed")
            return x

    x = keras.Input((4,))
    path = models.save(keras.Model(x, Payload(name="payload")(x), name="custom"), folder, "custom")
    marker.unlink(missing_ok=True)
    return path


def tfsm_archive(folder: Path) -> Path:
    def make_tfsm(config: dict) -> None:  # type: ignore[type-arg]
        layer = first_layer(config)
        layer["class_name"] = "TFSMLayer"
        layer["config"]["filepath"] = "/etc/evil_saved_model"

    return rewrite(healthy_archive(folder), folder / "tfsm.keras", edit_config(make_tfsm))


def url_archive(folder: Path) -> Path:
    def point_at_url(config: dict) -> None:  # type: ignore[type-arg]
        first_layer(config)["config"]["kernel_initializer"] = {
            "module": "keras.initializers",
            "class_name": "Constant",
            "config": {"value": "https://evil.example/weights.bin"},
            "registered_name": None,
        }

    return rewrite(healthy_archive(folder), folder / "url.keras", edit_config(point_at_url))


def traversal_archive(folder: Path) -> Path:
    return rewrite(healthy_archive(folder), folder / "traversal.keras", lambda m: m.update({"../../evil.py": b"x"}))


def zip_bomb(folder: Path) -> Path:
    return rewrite(
        healthy_archive(folder), folder / "bomb.keras", lambda m: m.update({"assets/pad.bin": bytes(64 << 20)})
    )


def oversized_config(folder: Path) -> Path:
    def pad(config: dict) -> None:  # type: ignore[type-arg]
        config["padding"] = os.urandom(9 << 20).hex()  # 18 MiB that does not compress: not a bomb, just big

    return rewrite(healthy_archive(folder), folder / "big.keras", edit_config(pad))


def deep_config(folder: Path) -> Path:
    def nest(members: dict[str, bytes]) -> None:
        members["config.json"] = b'{"class_name": "Sequential", "config": ' + b"[" * 5000 + b"]" * 5000 + b"}"

    return rewrite(healthy_archive(folder), folder / "deep.keras", nest)


def truncated_archive(folder: Path) -> Path:
    data = healthy_archive(folder).read_bytes()
    target = folder / "truncated.keras"
    target.write_bytes(data[: len(data) // 2])
    return target


def not_an_archive(folder: Path) -> Path:
    target = folder / "text.keras"
    target.write_bytes(io.BytesIO(b"#!/bin/sh\nrm -rf /\n").getvalue())
    return target


def function(module: str, name: str) -> dict:  # type: ignore[type-arg]
    return {"module": module, "class_name": "function", "config": name, "registered_name": None}


def control_flow_archive(folder: Path) -> Path:
    """A keras.ops Switch calls the functions it is given while Keras rebuilds the graph, safe_mode or not."""

    def add_switch(config: dict) -> None:  # type: ignore[type-arg]
        tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": ["x", 0, 0]}}
        branch = function("keras.config", "set_floatx")
        config["config"]["layers"].append(
            {"module": "keras.src.ops.core", "class_name": "Switch", "config": {"name": "sw"}, "name": "sw",
             "registered_name": None, "inbound_nodes": [{"args": [tensor, [branch], "float16"], "kwargs": {}}]}
        )  # fmt: skip

    return rewrite(healthy_archive(folder), folder / "switch.keras", edit_config(add_switch))


def foreign_function_archive(folder: Path) -> Path:
    """Any exported Keras function can be named as an activation; only activations and the like may be."""

    def activate_with(config: dict) -> None:  # type: ignore[type-arg]
        first_layer(config)["config"]["activation"] = function("keras.config", "set_epsilon")

    return rewrite(healthy_archive(folder), folder / "foreign.keras", edit_config(activate_with))


def registered_function_archive(folder: Path) -> Path:
    def activate_with(config: dict) -> None:  # type: ignore[type-arg]
        first_layer(config)["config"]["activation"] = function("keras.activations", "evil>payload")

    return rewrite(healthy_archive(folder), folder / "registered.keras", edit_config(activate_with))


def nested_compile_archive(folder: Path) -> Path:
    """Keras compiles a nested model's compile_config even with compile=False."""

    def compile_inner(config: dict) -> None:  # type: ignore[type-arg]
        first_layer(config)["compile_config"] = {"loss": function("keras.losses", "mean_squared_error")}

    return rewrite(healthy_archive(folder), folder / "compiled.keras", edit_config(compile_inner))


def vocabulary_path_archive(folder: Path) -> Path:
    def read_passwd(config: dict) -> None:  # type: ignore[type-arg]
        first_layer(config)["config"]["vocabulary"] = "/etc/passwd"

    return rewrite(healthy_archive(folder), folder / "vocabulary.keras", edit_config(read_passwd))


def stray_member_archive(folder: Path) -> Path:
    return rewrite(healthy_archive(folder), folder / "stray.keras", lambda m: m.update({"payload.py": b"import os"}))


def lying_directory_archive(folder: Path) -> Path:
    """64 MiB of zeros packed by bzip2 into a few bytes, the central directory claiming 32 MiB packed: the
    declared ratio looks harmless, but Keras would write the whole 64 MiB to disk on every load."""
    target = rewrite(healthy_archive(folder), folder / "lying.keras", lambda m: None)
    size = 64 << 20
    with zipfile.ZipFile(target, "a") as archive:
        info = zipfile.ZipInfo("assets/pad.bin")
        info.compress_type = zipfile.ZIP_BZIP2
        archive.writestr(info, bytes(size))
    data = bytearray(target.read_bytes())
    entry = data.rfind(b"PK\x01\x02")  # the central-directory record of the member just added
    struct.pack_into("<I", data, entry + 20, size // 2)
    target.write_bytes(bytes(data))
    return target


def weights_bomb_archive(folder: Path) -> Path:
    """A weights file of a few KB that declares 256 MiB of fill value: memory Keras would allocate."""
    bomb = io.BytesIO()
    with h5py.File(bomb, "w") as weights:
        weights.create_dataset("layers/dense/vars/0", shape=(64 << 20,), dtype="float32")
    return rewrite(
        healthy_archive(folder),
        folder / "weights-bomb.keras",
        lambda m: m.update({"model.weights.h5": bomb.getvalue()}),
    )


def exported(module: str, name: str) -> dict:  # type: ignore[type-arg]
    """An exported Keras function written as if it were a class: Keras resolves it and returns the function."""
    return {"module": module, "class_name": name, "config": {}, "registered_name": None}


CONFIG_SETTERS = {
    "floatx": ("keras.config", "set_floatx"),
    "epsilon": ("keras.config", "set_epsilon"),
    "image-data-format": ("keras.config", "set_image_data_format"),
    "dtype-policy": ("keras.config", "set_dtype_policy"),
    "distribution": ("keras.distribution", "set_distribution"),
}


def setter_as_activation(setter: tuple[str, str]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        def activate_with(config: dict) -> None:  # type: ignore[type-arg]
            first_layer(config)["config"]["activation"] = exported(*setter)

        return rewrite(healthy_archive(folder), folder / "setter.keras", edit_config(activate_with))

    return build


def setter_in_node_kwargs(setter: tuple[str, str]) -> Callable[[Path], Path]:
    """A function handed to a layer's call through its inbound node: kwargs may carry tensors and values only."""

    def build(folder: Path) -> Path:
        x = keras.Input((4,), name="x")
        functional = models.save(keras.Model(x, keras.layers.Dense(2, name="out")(x)), folder, "functional")

        def call_with(config: dict) -> None:  # type: ignore[type-arg]
            call = {"module": setter[0], "class_name": "function", "config": setter[1], "registered_name": None}
            first_layer(config)["inbound_nodes"][0]["kwargs"]["training"] = call

        return rewrite(functional, folder / "kwargs.keras", edit_config(call_with))

    return build


def control_character_name_archive(folder: Path) -> Path:
    """A layer name that would forge a line in the server log, coloured."""

    def rename(config: dict) -> None:  # type: ignore[type-arg]
        first_layer(config)["config"]["name"] = "out\n2026-01-01 INFO admin logged in \x1b[31m"

    return rewrite(healthy_archive(folder), folder / "log-forger.keras", edit_config(rename))


def junk_directories_archive(folder: Path) -> Path:
    target = rewrite(healthy_archive(folder), folder / "junk-dirs.keras", lambda m: None)
    with zipfile.ZipFile(target, "a") as archive:
        for i in range(20):
            archive.writestr(zipfile.ZipInfo(f"junk/{i}/"), b"")
    return target


def junk_datasets_archive(folder: Path) -> Path:
    """Ten thousand empty groups and a dataset: each costs Keras (and h5py) a look-up, none holds a weight."""
    junk = io.BytesIO()
    with h5py.File(junk, "w") as weights:
        group = weights.create_group("junk")
        group.create_dataset("0", data=np.zeros(1, "float32"))
        for i in range(1, 10_001):
            group.create_group(str(i))
    weights_file = {"model.weights.h5": junk.getvalue()}
    return rewrite(healthy_archive(folder), folder / "junk-h5.keras", lambda m: m.update(weights_file))


def damaged_asset_archive(folder: Path) -> Path:
    """An asset whose bytes fail their checksum: Keras would unpack it half-way and leave its folder behind."""
    target = rewrite(healthy_archive(folder), folder / "damaged-asset.keras", lambda m: None)
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr("assets/big.bin", os.urandom(1 << 16))
    data = bytearray(target.read_bytes())
    data[data.find(b"assets/big.bin") + 200] ^= 0xFF  # inside the member's (stored, incompressible) data
    target.write_bytes(bytes(data))
    return target


NOT_A_ZIP = "Expected a .keras zip archive with config.json; received a file that is not one (File is not a zip file)"

CORPUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "control-flow-op": (control_flow_archive, "received Switch 'sw', which runs code"),
    "foreign-function": (foreign_function_archive, "received 'set_epsilon' from module 'keras.config'"),
    "registered-function": (registered_function_archive, "received 'evil>payload' from module 'keras.activations'"),
    "nested-compile-config": (nested_compile_archive, "compile config only for the whole model"),
    "vocabulary-path": (vocabulary_path_archive, "received vocabulary='/etc/passwd'"),
    "stray-member": (stray_member_archive, "assets/ in the archive; received 'payload.py'"),
    "lying-zip-directory": (lying_directory_archive, "a directory declaring"),
    "weights-bomb": (weights_bomb_archive, "declaring 268435456 bytes"),
    "tfsm-layer": (tfsm_archive, "TFSMLayer"),
    **{
        f"exported-{case}-as-activation": (setter_as_activation(setter), f"received {setter[1]} from module")
        for case, setter in CONFIG_SETTERS.items()
    },
    **{
        f"exported-{case}-in-node-kwargs": (setter_in_node_kwargs(setter), "tensors and plain values only")
        for case, setter in CONFIG_SETTERS.items()
    },
    "control-character-name": (control_character_name_archive, "without control characters"),
    "junk-directories": (junk_directories_archive, "received 'junk/0/'"),
    "junk-hdf5-datasets": (junk_datasets_archive, "Expected at most 10000 groups and datasets in model.weights.h5"),
    "damaged-asset": (damaged_asset_archive, "match their checksums; received a damaged 'assets/big.bin'"),
    "url-in-config": (url_archive, "https://evil.example"),
    "path-traversal": (traversal_archive, "../../evil.py"),
    "zip-bomb": (zip_bomb, "zip bomb"),
    "oversized-config": (oversized_config, "config.json of at most"),
    "deep-config": (deep_config, "nested at most"),
    # Half an archive has lost its central directory: to zipfile (and so to the scanner) it is no zip at all.
    "truncated": (truncated_archive, NOT_A_ZIP),
    "not-an-archive": (not_an_archive, NOT_A_ZIP),
}


def assert_still_serving(client: Client) -> None:
    assert client.health() == "SERVING"
    assert [m.name for m in client.list_models()] == ["healthy"]
    assert client.predict("healthy", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)


@pytest.fixture(scope="module")
def guarded_client(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Client:
    c = Client(server.target, timeout=60)
    c.upload_model("healthy", healthy_archive(tmp_path_factory.mktemp("healthy")))
    return c


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_archives_are_refused_with_a_clear_message(
    case: str, guarded_client: Client, server: ServerHandle, tmp_path: Path
) -> None:
    build, expected = CORPUS[case]
    with pytest.raises(InvalidArgumentError) as caught:
        guarded_client.upload_model(case, build(tmp_path))
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.message
    assert not (server.repository / case).exists() or not any((server.repository / case).rglob("*.keras"))
    assert_keras_config_unchanged()  # at load: no payload changed the process
    assert_still_serving(guarded_client)  # which sends a Predict
    assert_keras_config_unchanged()


def assert_keras_config_unchanged() -> None:
    """The server runs in this process here: its Keras config is the one read."""
    assert (keras.config.floatx(), keras.config.epsilon()) == ("float32", 1e-7)
    assert keras.config.image_data_format() == "channels_last"
    assert keras.config.dtype_policy().name == "float32"
    assert keras.distribution.distribution() is None


CODE_CARRIERS: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "lambda": (
        lambda_archive,
        ("Expected only built-in Keras layers; received Lambda 'payload', which runs code",),
    ),
    "custom-object": (
        custom_object_archive,
        (
            f"Expected objects from Keras itself; received Payload 'payload' from module {__name__!r}",
            "Custom objects are not loaded on the server.",
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CODE_CARRIERS))
def test_code_in_an_archive_is_never_executed(case: str, guarded_client: Client, tmp_path: Path) -> None:
    build, expected = CODE_CARRIERS[case]
    marker = tmp_path / "marker.txt"
    path = build(tmp_path, marker)
    with pytest.raises(InvalidArgumentError) as caught:
        guarded_client.upload_model("trojan", path)
    for text in expected:
        assert text in caught.value.message, caught.value.message
    assert not marker.exists()
    assert_still_serving(guarded_client)
