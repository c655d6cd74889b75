"""The native kernel cache trusts nothing it did not build, in a folder no one else can write.

On main an existing `summary_op.so` at the predictable cache key was taken as built and loaded into the
server, so a library planted there ran its constructor in the server process. Here a stand-in compiler
(gcc on a trivial C file, through CXX: the `cxx` fixture in conftest.py) keeps each test to a second; a planted
library writes a marker from its constructor if it is ever loaded.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from layerscope.service.runtime import native
from layerscope.service.runtime.native import SummaryOpLoader, UntrustedCache

PLANTED = """
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen("%s", "w");
    if (f) { fputs("loaded", f); fclose(f); }
}
"""


def plant(library: Path, marker: Path) -> bytes:
    """A library whose constructor writes `marker`, compiled to `library`; returns its bytes."""
    library.parent.mkdir(parents=True, exist_ok=True)
    source = library.with_name("planted.c")
    source.write_text(PLANTED % marker)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    source.unlink()
    return library.read_bytes()


def record(library: Path) -> Path:
    return library.with_name(library.name + native.RECORD_SUFFIX)


def test_a_library_planted_at_the_cache_key_is_never_loaded(tmp_path: Path, cxx: str) -> None:
    cache = tmp_path / "cache"
    library = native.library_path(cache, cxx)
    marker = tmp_path / "constructor-ran"
    planted = plant(library, marker)
    loader = SummaryOpLoader(cache)
    loader.load()  # builds again (no record of building it here), then loads what it built
    assert not marker.exists(), "the planted library was loaded: its constructor ran in the server"
    assert library.read_bytes() != planted
    assert record(library).read_text().strip() == hashlib.sha256(library.read_bytes()).hexdigest()


def test_a_library_that_no_longer_matches_its_record_is_built_again(tmp_path: Path, cxx: str) -> None:
    cache = tmp_path / "cache"
    built = native.build(cache)
    assert native.trusted(built)
    marker = tmp_path / "constructor-ran"
    plant(built, marker)  # swapped after it was built, keeping the old record
    assert not native.trusted(built)
    assert native.build(cache) == built and native.trusted(built)
    assert not marker.exists()


def test_the_cache_is_created_owner_only(tmp_path: Path, cxx: str) -> None:
    cache = tmp_path / "a" / "b" / "cache"
    library = native.build(cache)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", cache, library.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert library.stat().st_mode & 0o022 == 0 and record(library).stat().st_mode & 0o022 == 0


def test_a_cache_others_can_write_is_refused_even_with_a_forged_record(tmp_path: Path, cxx: str) -> None:
    cache = tmp_path / "cache"
    library = native.library_path(cache, cxx)
    marker = tmp_path / "constructor-ran"
    planted = plant(library, marker)
    record(library).write_text(hashlib.sha256(planted).hexdigest())  # whoever can write can forge a record
    cache.chmod(0o777)
    with pytest.raises(UntrustedCache, match=r"to be owned by uid \d+ and writable by no one else; .* mode 777"):
        native.build(cache)
    loader = SummaryOpLoader(cache)
    assert loader.load() is None  # the TensorFlow-ops path: same statistics, slower
    assert "UntrustedCache" in loader.reason and not marker.exists()


def test_a_folder_above_the_cache_that_others_can_write_is_refused(tmp_path: Path, cxx: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could rename the cache away and put their own in its place
    with pytest.raises(UntrustedCache, match="every folder above the kernel cache"):
        native.build(shared / "cache")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /tmp: others cannot rename what this user made in it
    assert native.trusted(native.build(sticky / "cache"))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_cache_another_user_owns_is_refused(tmp_path: Path, cxx: str) -> None:
    cache = tmp_path / "cache"
    library = native.library_path(cache, cxx)
    marker = tmp_path / "constructor-ran"
    planted = plant(library, marker)
    record(library).write_text(hashlib.sha256(planted).hexdigest())
    for path in (cache, library.parent, library, record(library)):
        os.chown(path, 65534, 65534)
    loader = SummaryOpLoader(cache)
    assert loader.load() is None
    assert "owned by uid 65534" in loader.reason and not marker.exists()
