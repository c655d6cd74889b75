"""Prebuilt kernels: built once where a compiler is (an image's build stage), loaded where none is.

`python -m layerscope.service.runtime.native prebuild` compiles the kernel for the installed TensorFlow into
this environment's `share/layerscope/ops/<target>/`, one folder per portable CPU target (x86-64-v3 with
AVX2 first, x86-64-v2 for older CPUs): a prebuilt kernel may run on another machine than the one that built
it, so it is built for a named instruction-set level, never -march=native. Beside each library a JSON record
says what was built: the library's SHA-256, the source's, the TensorFlow version, the target with the CPU
features it needs, the compiler and every flag.

The trust model is the cache's, for files that root installed: a prebuilt kernel is loaded only when the
library and its record are regular files of this user or root that no one else can write, in a folder no one
else can write (and every folder above it writable only by this user or root), the library matches the
recorded SHA-256, and the record names this source, this TensorFlow, this machine's architecture and only CPU
features this CPU has. A kernel built for another TensorFlow is refused, naming both versions.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from layerscope.service.runtime.native.build import (
    FLAGS,
    BuildError,
    UntrustedCache,
    check_folder,
    compile_library,
    cpu_flags,
    digest,
    private_file,
    source_digest,
)

SCHEMA = "layerscope.kernel/v1"
LIBRARY = "summary_op.so"
RECORD = "summary_op.json"
PORTABLE_FLAGS = tuple(flag for flag in FLAGS if flag != "-march=native")
REBUILD = "python -m layerscope.service.runtime.native prebuild"


@dataclass(frozen=True)
class Target:
    """A CPU level a prebuilt kernel is compiled for: its compiler flags, and the /proc/cpuinfo features a CPU
    must have to run it."""

    name: str
    flags: tuple[str, ...]
    cpu_features: tuple[str, ...]


_X86_64_V2 = ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")
# The x86-64 psABI levels, as /proc/cpuinfo spells the features (abm is LZCNT).
TARGETS: dict[str, tuple[Target, ...]] = {
    "x86_64": (
        Target(
            "x86-64-v3",
            ("-march=x86-64-v3",),
            (*_X86_64_V2, "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
        ),
        Target("x86-64-v2", ("-march=x86-64-v2",), _X86_64_V2),
    ),
}
GENERIC = (Target("generic", (), ()),)
"""Other architectures: the compiler's baseline for the machine."""


def targets(machine: str | None = None) -> tuple[Target, ...]:
    """The targets prebuilt for `machine` (this one by default), fastest first."""
    return TARGETS.get(machine or platform.machine(), GENERIC)


def default_prebuilt_dir() -> Path:
    """This environment's own: a virtual environment copied whole (an image's /opt/layerscope) carries it."""
    return Path(sys.prefix) / "share" / "layerscope" / "ops"


def prebuild(out_dir: Path, cxx: str, names: Collection[str] = ()) -> list[Path]:
    """Compile the kernel for the targets of this machine (those named, or all) into `out_dir/<target>/`, each
    with its record; the libraries built, fastest target first."""
    known = targets()
    unknown = sorted(set(names) - {target.name for target in known})
    if unknown:
        raise BuildError(f"expected targets among {[t.name for t in known]} on this machine; received {unknown}")
    chosen = [target for target in known if not names or target.name in names]
    return [_prebuild_one(out_dir / target.name, cxx, target) for target in chosen]


def _prebuild_one(folder: Path, cxx: str, target: Target) -> Path:
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    flags = (*PORTABLE_FLAGS, *target.flags)
    built = compile_library(cxx, flags, folder)
    record = {
        "schema": SCHEMA,
        "library_sha256": digest(built),
        "source_sha256": source_digest(),
        "tensorflow": tf.__version__,
        "machine": platform.machine(),
        "target": target.name,
        "cpu_features": list(target.cpu_features),
        "compiler": cxx,
        "compiler_version": _version(cxx),
        "flags": list(flags),
        "tensorflow_compile_flags": tf.sysconfig.get_compile_flags(),
        "tensorflow_link_flags": tf.sysconfig.get_link_flags(),
    }
    partial = folder / f".{RECORD}.partial"
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.chmod(0o644)
    library = folder / LIBRARY
    os.replace(built, library)
    os.replace(partial, folder / RECORD)  # the record last: until it is there the library is not trusted
    return library


def find_prebuilt(prebuilt_dir: Path) -> Path:
    """The first prebuilt kernel in `prebuilt_dir` this process may load, fastest target first; BuildError naming
    why each candidate was refused when none may be."""
    candidates = _candidates(prebuilt_dir)
    if not candidates:
        raise BuildError(f"no prebuilt kernel in {prebuilt_dir} (build one where a compiler is: `{REBUILD}`)")
    refusals = []
    for folder in candidates:
        try:
            return _verified(folder)
        except BuildError as refused:
            refusals.append(str(refused))
    raise BuildError("no prebuilt kernel may be loaded: " + "; ".join(refusals))


def _candidates(prebuilt_dir: Path) -> list[Path]:
    order = [target.name for target in targets()]
    found = [record.parent for record in prebuilt_dir.glob(f"*/{RECORD}")] if prebuilt_dir.is_dir() else []
    return sorted(found, key=lambda folder: (order.index(folder.name) if folder.name in order else len(order), folder))


def _verified(folder: Path) -> Path:
    """The library in `folder` when the trust checks above pass; BuildError (UntrustedCache for ownership and
    modes) saying which failed otherwise."""
    library, record_path = folder / LIBRARY, folder / RECORD
    owners = {os.geteuid(), 0}
    check_folder(folder, "the prebuilt kernel folder", owners)
    for path in (library, record_path):
        if not private_file(path, owners):
            raise UntrustedCache(
                f"expected {path} to be a regular file of uid {os.geteuid()} or root that no one else can write"
            )
    problems = _mismatches(_read(record_path), library)
    if problems:
        raise BuildError(f"prebuilt kernel {library}: " + "; ".join(problems))
    return library


def _read(record_path: Path) -> dict[str, Any]:
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        message = f"expected {record_path} to be a {SCHEMA} JSON record; it could not be read: {error}"
        raise BuildError(message) from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise BuildError(f"expected {record_path} to be a {SCHEMA} record; received {str(record)[:80]!r}")
    return record


def _mismatches(record: dict[str, Any], library: Path) -> list[str]:
    """What keeps this process from loading the recorded library; empty when nothing does."""
    problems = []
    if record.get("tensorflow") != tf.__version__:
        problems.append(
            f"built for TensorFlow {record.get('tensorflow')}; expected {tf.__version__}, the installed one "
            f"(rebuild it: `{REBUILD}`)"
        )
    if record.get("source_sha256") != source_digest():
        problems.append(f"built from another summary_op.cc than this layerscope's (rebuild it: `{REBUILD}`)")
    if record.get("machine") != platform.machine():
        problems.append(f"built for {record.get('machine')}; expected {platform.machine()}, this machine")
    missing = sorted(set(record.get("cpu_features") or ()) - set(cpu_flags().partition(":")[2].split()))
    if missing:
        problems.append(f"its target {record.get('target')} needs CPU features this CPU lacks: {', '.join(missing)}")
    if record.get("library_sha256") != digest(library):
        problems.append("its SHA-256 does not match its record (changed since it was built)")
    return problems


def _version(cxx: str) -> str:
    done = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"
