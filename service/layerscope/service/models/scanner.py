"""The archive scanner: reads a .keras zip as data, before Keras ever sees it, and refuses what is unsafe.

A Keras archive is a program: a Lambda layer carries marshalled bytecode, TFSMLayer loads a SavedModel
from any path, a registered custom object names code to import, and the zip itself can traverse paths or
expand into a bomb. Nothing here imports Keras or TensorFlow; everything is checked with zipfile and json.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from layerscope.service.errors import InvalidInput, UnsafeModel

REFUSED_CLASSES = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})
"""Layers that run code or load files of their own: never loaded on the server."""

ALLOWED_MODULES = re.compile(r"^(keras|keras\.(src\.)?[a-z_][a-z0-9_.]*)$")
"""Serialized objects must come from Keras itself."""

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_PATH_KEYS = frozenset({"filepath", "file_path", "path", "url", "uri", "file", "filename", "directory"})


@dataclass(frozen=True)
class ScanLimits:
    max_archive_bytes: int = 512 * 1024 * 1024
    max_members: int = 64
    max_expanded_bytes: int = 2 * 1024 * 1024 * 1024
    max_expansion_ratio: float = 200.0
    max_config_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_layers: int = 5000


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
    size = path.stat().st_size
    if size > limits.max_archive_bytes:
        raise UnsafeModel(f"Expected an archive of at most {limits.max_archive_bytes} bytes; received {size}.")
    sha256 = sha256_of(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_members(infos, limits)
            config = _read_json(archive, "config.json", limits)
            metadata = _read_json(archive, "metadata.json", limits) if "metadata.json" in archive.namelist() else {}
    except zipfile.BadZipFile as exc:
        raise InvalidInput(
            f"Expected a .keras zip archive with config.json; received a file that is not one ({exc})."
        ) from exc
    except (EOFError, zipfile.LargeZipFile, OSError, RuntimeError, NotImplementedError) as exc:
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


def _check_members(infos: list[zipfile.ZipInfo], limits: ScanLimits) -> None:
    if len(infos) > limits.max_members:
        raise UnsafeModel(f"Expected at most {limits.max_members} archive members; received {len(infos)}.")
    expanded = 0
    for info in infos:
        name = info.filename
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
    stack: list[tuple[Any, str]] = [(config, "config")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            _check_object(node, where, allow_custom)
            if "class_name" in node and isinstance(node.get("config"), dict):
                yield str(node["class_name"])
            for key, value in node.items():
                if isinstance(value, str):
                    _check_string(str(key), value, where)
                else:
                    stack.append((value, f"{where}.{key}"))
        elif isinstance(node, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(node))


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
            f"Expected only built-in Keras layers; received {label}, which runs code or loads files the server "
            "will not execute. Replace it with built-in layers, or audit the file locally with --custom-objects."
        )
    if allow_custom:
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


def _has_code(node: dict[str, Any]) -> bool:
    config = node.get("config")
    return isinstance(config, dict) and ("code" in config or "value" in config)


def _check_string(key: str, value: str, where: str) -> None:
    if _URL.match(value) or value.startswith("file:"):
        raise UnsafeModel(f"Expected no URLs in the model config; received {value[:80]!r} at {where}.{key}.")
    if key.lower() in _PATH_KEYS and value:
        raise UnsafeModel(f"Expected no file references in the model config; received {key}={value[:80]!r} at {where}.")
