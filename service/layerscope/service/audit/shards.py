"""Which files one shard of a batch audit covers (`--shard I/N`, `--shard-by count|size`).

Shards run on machines that never talk to each other (a CI matrix, a Kubernetes Indexed Job), so each
computes the whole split from what it sees and keeps its own part. Both splits start from the sorted path
list and are deterministic: every file lands in exactly one shard as long as every machine sees the same
files (for `size`: the same files with the same sizes; the shard stamp lets `merge` check that).

- `count` (the default, DESIGN.md's contract): interleaved slices of the sorted list, `files[I::N]`; the
  shards differ by at most one file.
- `size`: greedy longest-processing-time by archive size: largest file first (ties: the sorted path order)
  into the shard with the least bytes so far (ties: the lower index). An audit's time grows with the model,
  so a batch with a few large models no longer leaves one shard running long after the others. The
  greedy split's fullest shard exceeds its emptiest by at most the smallest file in the fullest one, and
  its total is within 4/3 - 1/(3N) of the best possible split's.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ShardBy(StrEnum):
    """What `--shard` keeps equal across shards: the number of files, or their total size in bytes."""

    COUNT = "count"  # upper case: `count` would shadow str.count
    SIZE = "size"


@dataclass(frozen=True)
class Shard:
    """The I-th (0-based) of N shards."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str) -> Shard:
        match = re.fullmatch(r"(\d+)/(\d+)", spec)
        if not match or int(match[2]) == 0 or int(match[1]) >= int(match[2]):
            raise ValueError(f"Expected --shard I/N with 0 <= I < N (e.g. 0/4); received {spec!r}.")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def interleaved(items: Sequence[T], count: int) -> list[list[T]]:
    """All `count` shards of the (already sorted) `items`: shard i holds items[i::count]."""
    return [list(items[i::count]) for i in range(count)]


def balanced(items: Sequence[T], size: Callable[[T], int], count: int) -> list[list[T]]:
    """All `count` shards of the (already sorted) `items`, greedy by `size` (longest first); each shard keeps
    the items' order. Deterministic: equal sizes go in the order of `items`, equal loads to the lower index."""
    weights = [size(item) for item in items]
    largest_first = sorted(range(len(items)), key=lambda i: (-weights[i], i))
    loads = [(0, shard) for shard in range(count)]  # a heap of (bytes so far, index): sorted, so a heap
    members: list[list[int]] = [[] for _ in range(count)]
    for i in largest_first:
        load, shard = heapq.heappop(loads)
        members[shard].append(i)
        heapq.heappush(loads, (load + weights[i], shard))
    return [[items[i] for i in sorted(indices)] for indices in members]


def archive_size(path: Path) -> int:
    """Bytes on disk: a file's size, a folder's files together (a SavedModel folder is one entry), 0 for a path
    that is not there (its entry will say so; it costs no audit time)."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def split(files: Sequence[Path], count: int, by: ShardBy, sizes: Mapping[Path, int]) -> list[list[Path]]:
    """Every shard of the sorted `files`; `sizes` is read only for `by=size`."""
    ordered = sorted(files)
    if by is ShardBy.SIZE:
        return balanced(ordered, lambda path: sizes[path], count)
    return interleaved(ordered, count)


@dataclass(frozen=True)
class Selection:
    """One shard's files and the stamp its report carries."""

    files: list[Path]
    stamp: dict[str, Any] | None


def select(files: Sequence[Path], spec: str | None, by: ShardBy = ShardBy.COUNT) -> Selection:
    """The files of shard `spec` ("I/N"; None: all of them, unstamped); ValueError for a malformed spec."""
    if spec is None:
        return Selection(sorted(files), None)
    shard = Shard.parse(spec)
    ordered = sorted(files)
    sizes = {path: archive_size(path) for path in ordered} if by is ShardBy.SIZE else {}
    mine = split(ordered, shard.count, by, sizes)[shard.index]
    return Selection(mine, stamp(shard, by, ordered, sizes))


def stamp(shard: Shard, by: ShardBy, ordered: Sequence[Path], sizes: Mapping[Path, int]) -> dict[str, Any]:
    """What `merge` needs to tell that the shards split one batch the same way: `of` the number of files in
    the whole batch, `batch` a digest of what the split was computed from. The digest covers the files'
    names below their common folder and, for `size`, their sizes; not the folder itself, so shards that
    mount the same models at different paths still agree."""
    root = _common_folder(ordered)
    digest = hashlib.sha256()
    for path in ordered:
        name = path.relative_to(root).as_posix() if root is not None else path.as_posix()
        digest.update(f"{name}\0{sizes.get(path, '')}\n".encode())
    return {"index": shard.index, "count": shard.count, "by": by.value, "of": len(ordered), "batch": digest.hexdigest()}


def _common_folder(paths: Sequence[Path]) -> Path | None:
    """The deepest folder above every path; None when they share none (relative and absolute mixed)."""
    if not paths:
        return None
    parents = [p.parent for p in paths]
    common = parents[0]
    for parent in parents[1:]:
        while common != parent and common not in parent.parents:
            if common == common.parent:
                return None
            common = common.parent
    return common
