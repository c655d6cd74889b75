"""How a report names a model file: its file name, or, when several files share it (`repo/*/1/model.keras`),
the shortest trailing part of its path that tells it apart (`resnet50/1/model.keras`); and how it folds a long
list of layer names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePath


def short_names(sources: Iterable[str]) -> dict[str, str]:
    """source -> the shortest unique trailing path (at least the file name); a source given twice keeps it all."""
    parts = {source: PurePath(source).parts or (source,) for source in sources}
    names: dict[str, str] = {}
    for source, own in parts.items():
        for k in range(1, len(own) + 1):
            tail = own[-k:]
            if all(other[-k:] != tail for s, other in parts.items() if s != source):
                names[source] = "/".join(tail)
                break
        else:
            names[source] = source
    return names


def display_name(name: str) -> str:
    """The name without `.keras` (every model file has it), as the table and summary print it."""
    return name.removesuffix(".keras")


SHOWN_LAYER_NAMES = 8
"""Layer names a finding lists before the rest fold away (the table and the HTML alike)."""


def folded(layers: Sequence[str], shown: int = SHOWN_LAYER_NAMES) -> str:
    """`a, b, c` or, past `shown` names, the first ones and how many more (the JSON report has them all)."""
    if len(layers) <= shown:
        return ", ".join(layers)
    rest = len(layers) - shown
    return ", ".join(layers[:shown]) + f", … and {rest} more layer" + ("" if rest == 1 else "s")


def plural(count: int, noun: str) -> str:
    """`1 model`, `2 models`, `0 errors`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
