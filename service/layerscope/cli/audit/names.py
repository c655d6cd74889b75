"""How a report names a model file: its file name, or, when several files share it (`repo/*/1/model.keras`),
the shortest trailing part of its path that tells it apart (`resnet50/1/model.keras`)."""

from __future__ import annotations

from collections.abc import Iterable
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
