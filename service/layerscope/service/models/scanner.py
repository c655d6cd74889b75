"""The archive scanner: reads a .keras zip as data, before Keras ever sees it, and refuses what is unsafe.

A Keras archive is a program: a Lambda layer carries marshalled bytecode, TFSMLayer loads a SavedModel
from any path, a registered custom object names code to import, and the zip itself can traverse paths or
expand into a bomb. Nothing here lets Keras read the archive; everything is checked with zipfile, json and
h5py (the weights file's declared dataset sizes, before Keras allocates them). Keras is imported only to
list its own modelling classes and functions (allowlist.py): every serialized object must be one of them.

Keras's safe_mode stops Lambda bytecode, but a config can still name any *exported* Keras function as a
`function` object (`keras.config.set_floatx`, `keras.distribution.set_distribution`, dataset downloaders),
and control-flow operations (`Switch`, `Cond`, ...) call the functions they are given while the graph is
rebuilt. So functions are admitted only from the modules that hold activations, losses, metrics,
initializers, regularizers and constraints, control-flow operations never, and a nested model's
`compile_config` (which Keras compiles even with compile=False) never.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from layerscope.service.errors import InvalidInput, UnsafeModel
from layerscope.service.models.allowlist import MARKERS, allow_list
from layerscope.service.models.formats import legacy_format

REFUSED_CLASSES = frozenset(
    {
        "Lambda",
        "TFSMLayer",
        "TorchModuleWrapper",
        "JaxLayer",
        "FlaxLayer",
        # keras.ops control flow: each calls the functions it is given while Keras rebuilds the graph.
        "Switch",
        "Cond",
        "Map",
        "Scan",
        "WhileLoop",
        "ForiLoop",
        "AssociativeScan",
        "VectorizedMap",
    }
)
"""Layers and operations that run code or load files of their own: never loaded on the server."""

FUNCTION_MODULES = re.compile(
    r"^(builtins|keras(\.src)?\.(activations|losses|metrics|initializers|regularizers|constraints)(\.[a-z_][a-z0-9_]*)*)$"
)
"""Where a serialized `function` may come from (`builtins` is how Keras writes its own activations and
losses, and resolves only among those). Any other exported function could change the process."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Control characters (newlines, ANSI escapes) in a name would forge lines and colours in logs and reports."""
ALLOWED_MEMBERS = re.compile(r"^(config\.json|metadata\.json|model\.weights\.(h5|npz)|assets/.+)$")
"""What a Keras 3 archive holds; anything else is only ballast Keras would unpack to disk."""

ALLOWED_DIRECTORIES = re.compile(r"^assets/([^/]+/)*$")
"""Directory entries: only folders of assets (zip writers add them; Keras unpacks them to disk)."""

ALLOWED_MODULES = re.compile(r"^(keras|keras\.(src\.)?[a-z_][a-z0-9_.]*)$")
"""Serialized objects must come from Keras itself."""

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_PATH_KEYS = frozenset(
    {"filepath", "file_path", "path", "url", "uri", "file", "filename", "directory", "vocabulary", "vocabulary_path"}
)
_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/])")


@dataclass(frozen=True)
class ScanLimits:
    max_archive_bytes: int = 512 * 1024 * 1024
    max_members: int = 64
    max_expanded_bytes: int = 2 * 1024 * 1024 * 1024
    max_expansion_ratio: float = 200.0
    max_config_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_layers: int = 5000
    max_weight_objects: int = 10_000
    """Groups and datasets in the weights file: four or five per layer, not tens of thousands of junk."""


@dataclass(frozen=True)
class ArchiveReport:
    sha256: str
    config: dict[str, Any]
    compile_config: dict[str, Any] | None
    keras_version: str | None
    layer_classes: tuple[str, ...]
    members: tuple[str, ...]


def scan_archive(path: Path, limits: ScanLimits | None = None, allow_custom: bool = False) -> ArchiveReport:
    """Check the archive and its config; raise InvalidInput (not an archive) or UnsafeModel (refused).

    `allow_custom` admits custom and registered objects: only for a local audit that imported trusted
    code with --custom-objects; the server never sets it.
    """
    limits = limits or ScanLimits()
    other_format = legacy_format(path, named=False)
    if other_format:
        raise InvalidInput(other_format)
    size = path.stat().st_size
    if size > limits.max_archive_bytes:
        raise UnsafeModel(f"Expected an archive of at most {limits.max_archive_bytes} bytes; received {size}.")
    sha256 = sha256_of(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_members(infos, limits, size, allow_custom)
            config = _read_json(archive, "config.json", limits)
            metadata = _read_json(archive, "metadata.json", limits) if "metadata.json" in archive.namelist() else {}
            if "model.weights.h5" in archive.namelist():
                _check_weights(archive, "model.weights.h5", limits)
            _check_integrity(archive)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(
            f"Expected a .keras zip archive with config.json; received a file that is not one ({exc})."
        ) from exc
    except (EOFError, zipfile.LargeZipFile, OSError, RuntimeError, NotImplementedError, zlib.error) as exc:
        raise InvalidInput(f"Expected a readable .keras zip archive; received a damaged one ({exc}).") from exc
    if not isinstance(config, dict):
        raise InvalidInput(f"Expected config.json to hold an object; received {type(config).__name__}.")
    classes = tuple(_check_config(config, allow_custom))
    if len(classes) > limits.max_layers:
        raise UnsafeModel(f"Expected at most {limits.max_layers} serialized objects; received {len(classes)}.")
    compile_config = config.get("compile_config")
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return ArchiveReport(
        sha256=sha256,
        config=config,
        compile_config=compile_config if isinstance(compile_config, dict) and compile_config else None,
        keras_version=str(version) if version else None,
        layer_classes=classes,
        members=tuple(i.filename for i in infos),
    )


def sha256_of(path: Path) -> str:
    """The archive's identity, read in blocks so a large file never sits in memory whole."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_members(infos: list[zipfile.ZipInfo], limits: ScanLimits, size: int, allow_custom: bool) -> None:
    if len(infos) > limits.max_members:
        raise UnsafeModel(f"Expected at most {limits.max_members} archive members; received {len(infos)}.")
    # The expansion ratio below trusts each member's declared compressed size; together they must fit
    # in the file, or the directory lies about them (a bomb that claims to be large when packed).
    packed = sum(i.compress_size for i in infos)
    if packed > size:
        raise UnsafeModel(
            f"Expected members whose compressed sizes fit in the archive's {size} bytes; received a "
            f"directory declaring {packed} (a zip bomb?)."
        )
    expanded = 0
    for info in infos:
        name = info.filename
        if not allow_custom and not (ALLOWED_DIRECTORIES if info.is_dir() else ALLOWED_MEMBERS).match(name):
            raise UnsafeModel(
                "Expected only config.json, metadata.json, model.weights.h5 (or .npz) and assets/ in the "
                f"archive; received {name!r}."
            )
        parts = PurePosixPath(name).parts
        if (
            name.startswith(("/", "\\"))
            or "\\" in name
            or "\x00" in name
            or ".." in parts
            or re.match(r"^[A-Za-z]:", name)
        ):
            raise UnsafeModel(f"Expected relative archive member names; received {name!r}.")
        expanded += info.file_size
        if (
            info.compress_size
            and info.file_size / info.compress_size > limits.max_expansion_ratio
            and info.file_size > 1 << 20
        ):
            raise UnsafeModel(
                f"Expected members that expand at most {limits.max_expansion_ratio:.0f}x; "
                f"received {name!r} expanding {info.file_size / info.compress_size:.0f}x (a zip bomb?)."
            )
    if expanded > limits.max_expanded_bytes:
        raise UnsafeModel(f"Expected at most {limits.max_expanded_bytes} bytes unpacked; received {expanded}.")


def _check_integrity(archive: zipfile.ZipFile) -> None:
    """Every member's checksum, before Keras unpacks assets: Keras leaves its temporary folder (and what it
    unpacked into it) behind when a member turns out to be damaged half-way through."""
    damaged = archive.testzip()
    if damaged is not None:
        raise InvalidInput(f"Expected archive members that match their checksums; received a damaged {damaged!r}.")


def _check_weights(archive: zipfile.ZipFile, member: str, limits: ScanLimits) -> None:
    """Every dataset's declared size, before Keras allocates it: a 2 KB file can declare 1 GiB of fill value."""
    import h5py  # type: ignore[import-untyped]  # a Keras dependency without type hints; only needed here

    declared = 0
    try:
        with _seekable(archive, member) as raw, h5py.File(raw, "r") as weights:
            datasets: list[Any] = []
            objects = 0

            def visit(_: str, item: Any) -> bool | None:
                nonlocal objects
                objects += 1
                if objects > limits.max_weight_objects:
                    return True  # stops the walk; refused below
                if isinstance(item, h5py.Dataset):
                    datasets.append(item)
                return None

            weights.visititems(visit)
            if objects > limits.max_weight_objects:
                raise UnsafeModel(
                    f"Expected at most {limits.max_weight_objects} groups and datasets in {member}; received more."
                )
            for dataset in datasets:
                size = int(dataset.size) * dataset.dtype.itemsize
                stored = int(dataset.id.get_storage_size())
                declared += size
                if size > 1 << 20 and size > stored * limits.max_expansion_ratio:
                    raise UnsafeModel(
                        f"Expected weights stored at most {limits.max_expansion_ratio:.0f}x smaller than they "
                        f"expand; received {dataset.name!r} declaring {size} bytes in {stored} (a bomb?)."
                    )
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(
            f"Expected {member} to be a readable HDF5 weights file; received a damaged one ({exc})."
        ) from exc
    if declared > limits.max_expanded_bytes:
        raise UnsafeModel(
            f"Expected at most {limits.max_expanded_bytes} bytes of weights; received {declared} declared."
        )


def _seekable(archive: zipfile.ZipFile, member: str) -> IO[bytes]:
    """The member as a file h5py can seek in cheaply. zipfile's own reader (Python 3.11) serves a backward
    seek by reading again from the member's start, so walking a weights file took seconds per hundred MB,
    and minutes for one of many small objects. A stored member is read in place; a compressed one is copied
    out once."""
    info = archive.getinfo(member)
    if info.compress_type == zipfile.ZIP_STORED and isinstance(archive.filename, str):
        with open(archive.filename, "rb") as raw:
            raw.seek(info.header_offset)
            header = raw.read(30)
        if header[:4] == b"PK\x03\x04":
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            return io.BufferedReader(_Window(archive.filename, start, info.file_size), 1 << 16)
    copy = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115  # the caller closes it; RAM to 64 MiB
    with archive.open(member) as raw_member:
        shutil.copyfileobj(raw_member, copy, 1 << 20)
    copy.seek(0)
    return copy


class _Window(io.RawIOBase):
    """`size` bytes of a file from `start`, seekable: a stored zip member, read where it lies."""

    def __init__(self, path: str, start: int, size: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115  # closed with the window
        self._start, self._size, self._position = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        self._file.seek(self._start + self._position)
        got = self._file.readinto(memoryview(buffer)[:wanted])
        self._position += got
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


def _read_json(archive: zipfile.ZipFile, member: str, limits: ScanLimits) -> Any:
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise InvalidInput(f"Expected a Keras 3 archive holding {member}; received one without it.") from None
    if info.file_size > limits.max_config_bytes:
        raise UnsafeModel(f"Expected {member} of at most {limits.max_config_bytes} bytes; received {info.file_size}.")
    with archive.open(info) as f:
        raw = f.read(limits.max_config_bytes + 1)
    if len(raw) > limits.max_config_bytes:
        raise UnsafeModel(f"Expected {member} of at most {limits.max_config_bytes} bytes; received more.")
    _check_depth(raw, limits.max_json_depth, member)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"Expected {member} to be JSON; received text that is not ({exc}).") from exc


def _check_depth(raw: bytes, limit: int, member: str) -> None:
    """Nesting depth counted on the raw text (outside strings), before the parser can recurse on it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                raise UnsafeModel(f"Expected {member} nested at most {limit} deep; received deeper nesting.")
        elif byte in (0x7D, 0x5D):
            depth -= 1


def _check_config(config: dict[str, Any], allow_custom: bool) -> Iterator[str]:
    """Every serialized object must be a Keras built-in; yields the class names of the layers seen."""
    stack: list[tuple[Any, str, str]] = [(config, "config", "")]
    while stack:
        node, where, key = stack.pop()
        if isinstance(node, str):  # an item of a list: a token of an inline vocabulary may well start with "/"
            _check_string(key, node, where, in_list=True)
        elif isinstance(node, dict):
            _check_object(node, where, allow_custom)
            if "class_name" in node and isinstance(node.get("config"), dict):
                yield str(node["class_name"])
            if "compile_config" in node and node is not config and node["compile_config"] and not allow_custom:
                raise UnsafeModel(
                    f"Expected a compile config only for the whole model; received one for a nested model at {where} "
                    "(Keras would compile it even with compile=False). Save the inner model uncompiled."
                )
            for k, value in node.items():
                if isinstance(value, str):
                    _check_string(str(k), value, f"{where}.{k}")
                    if k == "name":
                        _check_name(value, f"{where}.{k}")
                else:
                    stack.append((value, f"{where}.{k}", str(k)))
        elif isinstance(node, list):
            stack.extend((value, f"{where}[{i}]", key) for i, value in enumerate(node))


CODE_ADVICE = (
    "Replace it with built-in layers, or move its code into a keras.layers.Layer subclass decorated with "
    "@keras.saving.register_keras_serializable(), save the model again, and audit that file locally with "
    "--custom-objects FILE.py (the file defining the class)."
)


def _advice_for(class_name: str) -> str:
    """Advice that works: a Lambda's bytecode is never run, but the same code as a registered layer is."""
    if class_name == "TFSMLayer":
        return "Save the Keras model that the SavedModel came from as a .keras file and audit that instead."
    return CODE_ADVICE


def _check_object(node: dict[str, Any], where: str, allow_custom: bool = False) -> None:
    class_name = node.get("class_name")
    if class_name is None:
        return
    if not isinstance(class_name, str):
        raise InvalidInput(f"Expected class_name to be a string at {where}; received {type(class_name).__name__}.")
    layer = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
    label = f"{class_name} '{layer}'" if layer else str(class_name)
    if class_name in REFUSED_CLASSES or (class_name in ("__lambda__", "function") and _has_code(node)):
        raise UnsafeModel(
            f"Expected only built-in Keras layers; received {label}, which runs code or loads files that "
            f"layerscope never executes, not even with --custom-objects. {_advice_for(class_name)}"
        )
    if allow_custom:
        return
    if ".inbound_nodes[" in where and class_name not in MARKERS:
        raise UnsafeModel(
            f"Expected a layer's inbound-node arguments to carry tensors and plain values only; received {label} "
            f"from module {node.get('module')!r} at {where}."
        )
    if class_name == "function":
        _check_function(node, where)  # Keras writes its own functions with module "builtins"
        return
    if class_name in MARKERS:
        return
    module = node.get("module")
    if module is not None and not (isinstance(module, str) and ALLOWED_MODULES.match(module)):
        raise UnsafeModel(
            f"Expected objects from Keras itself; received {label} from module {module!r} at {where}. "
            "Custom objects are not loaded on the server."
        )
    registered = node.get("registered_name")
    if registered is not None and registered != class_name and not str(registered).startswith("keras"):
        raise UnsafeModel(
            f"Expected only built-in Keras objects; received the registered custom object {registered!r} "
            f"at {where}. Custom objects are not loaded on the server."
        )
    for field in ("class_name", "registered_name"):
        if ">" in str(node.get(field) or ""):  # `package>name`: how a registered custom object is named
            raise UnsafeModel(
                f"Expected only built-in Keras objects; received the registered custom object {node.get(field)!r} "
                f"at {where}. Custom objects are not loaded on the server."
            )
    if not allow_list(REFUSED_CLASSES).admits_class(module, class_name):
        raise UnsafeModel(
            "Expected a Keras layer, operation, initializer, regularizer, constraint, activation, loss, metric, "
            f"optimizer or dtype policy; received {label} from module {module!r} at {where}, which Keras would "
            "resolve to something else (a function that can change the server for every model)."
        )


def _check_function(node: dict[str, Any], where: str) -> None:
    module, name = node.get("module"), node.get("config")
    if (
        not (isinstance(module, str) and FUNCTION_MODULES.match(module))
        or not (isinstance(name, str) and _IDENTIFIER.match(name))
        or name not in allow_list(REFUSED_CLASSES).functions
    ):
        raise UnsafeModel(
            "Expected functions only from Keras's activations, losses, metrics, initializers, regularizers or "
            f"constraints; received {name!r} from module {module!r} at {where}. Other functions are not run on "
            "the server."
        )


def _check_name(name: str, where: str) -> None:
    if _CONTROL.search(name):
        raise UnsafeModel(
            f"Expected names without control characters (newlines, escapes); received {name[:80]!r} at {where}."
        )


def _has_code(node: dict[str, Any]) -> bool:
    config = node.get("config")
    return isinstance(config, dict) and ("code" in config or "value" in config)


def _check_string(key: str, value: str, where: str, in_list: bool = False) -> None:
    if _URL.match(value) or value.startswith("file:"):
        raise UnsafeModel(f"Expected no URLs in the model config; received {value[:80]!r} at {where}.")
    if not in_list and ((key.lower() in _PATH_KEYS and value) or _ABSOLUTE.match(value)):
        raise UnsafeModel(f"Expected no file references in the model config; received {key}={value[:80]!r} at {where}.")
