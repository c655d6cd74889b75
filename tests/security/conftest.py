"""Fixtures shared by the kernel's trust tests (the cache built here, and kernels prebuilt elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def cxx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A compiler that builds a harmless library wherever `-o` says: the trust logic without the real build (a
    second each, where the real kernel takes 10-30 s)."""
    trivial = tmp_path / "trivial.c"
    trivial.write_text("int layerscope_stand_in(void) { return 1; }\n")
    script = tmp_path / "stand-in-cxx"
    script.write_text(
        "#!/bin/sh\nout=''; prev=''\n"
        'for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\n'
        f'exec gcc -shared -fPIC -o "$out" {trivial}\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("CXX", str(script))
    return str(script)
