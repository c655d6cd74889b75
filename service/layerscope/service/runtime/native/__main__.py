"""`python -m layerscope.service.runtime.native prebuild|check`: the kernel for an installation without a compiler.

`prebuild [--out DIR] [--target T]...` compiles the kernel for the installed TensorFlow, for every portable CPU
target of this machine (or those named), into DIR (default: this environment's share/layerscope/ops), where a
server that finds no compiler looks for it; an image's build stage runs it. `check` loads the kernel as the
server would, says how it came, and exits 1 when it is not in use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from layerscope.service.runtime.native import SummaryOpLoader
from layerscope.service.runtime.native.build import BuildError, compiler
from layerscope.service.runtime.native.prebuilt import default_prebuilt_dir, prebuild


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layerscope.service.runtime.native", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("prebuild", help="compile the kernel for this TensorFlow, per portable CPU target")
    build.add_argument("--out", type=Path, default=default_prebuilt_dir(), help="default: %(default)s")
    build.add_argument("--target", action="append", default=[], help="only this target (repeatable); default: all")
    commands.add_parser("check", help="load the kernel as the server would; exit 1 when it is not in use")
    arguments = parser.parse_args(argv)
    if arguments.command == "prebuild":
        return _prebuild(arguments.out, arguments.target)
    return _check()


def _prebuild(out: Path, names: list[str]) -> int:
    try:
        libraries = prebuild(out, compiler(), names)
    except (OSError, BuildError) as error:
        print(f"prebuild failed: {error}", file=sys.stderr)
        return 1
    for library in libraries:
        print(f"built {library}")
    return 0


def _check() -> int:
    loader = SummaryOpLoader()
    in_use = loader.load() is not None
    print(f"fused statistics kernel {loader.reason}")
    return 0 if in_use else 1


if __name__ == "__main__":
    sys.exit(main())
