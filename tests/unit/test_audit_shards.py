"""`--shard I/N` and `--shard-by count|size`: every file in exactly one shard on machines that never talk, the size
split within the greedy algorithm's bounds, and `merge` refusing shards that did not split one batch one way."""

from __future__ import annotations

import itertools
from pathlib import Path
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerscope.service.audit import report
from layerscope.service.audit.shards import Shard, ShardBy, archive_size, balanced, interleaved, select, split

SIZES = st.lists(st.integers(min_value=0, max_value=10**9), max_size=60)
COUNTS = st.integers(min_value=1, max_value=12)


def names(count: int) -> list[str]:
    return [f"m{i:03d}.keras" for i in range(count)]


def loads(shards: list[list[str]], size: dict[str, int]) -> list[int]:
    return [sum(size[name] for name in shard) for shard in shards]


@given(SIZES, COUNTS, st.sampled_from(list(ShardBy)), st.randoms(use_true_random=False))
def test_every_file_is_in_exactly_one_shard_whatever_order_the_machine_lists_them(
    sizes: list[int], count: int, by: ShardBy, random: Random
) -> None:
    files = [Path("models") / name for name in names(len(sizes))]
    size = dict(zip(files, sizes, strict=True))
    shuffled = list(files)
    random.shuffle(shuffled)  # another machine's directory listing order
    shards = split(shuffled, count, by, size)
    assert len(shards) == count
    assert sorted(f for shard in shards for f in shard) == files  # each once, none lost, none added
    assert shards == split(files, count, by, size)  # the same split from any listing order
    assert all(shard == sorted(shard) for shard in shards)  # a shard audits in path order


@given(SIZES, COUNTS)
def test_the_fullest_shard_exceeds_the_emptiest_by_at_most_its_own_smallest_file(sizes: list[int], count: int) -> None:
    """The greedy bound: the last file put into the fullest shard went to the then emptiest one, and largest-first
    makes that file the fullest shard's smallest."""
    size = dict(zip(names(len(sizes)), sizes, strict=True))
    shards = balanced(list(size), size.__getitem__, count)
    totals = loads(shards, size)
    fullest = shards[totals.index(max(totals))]
    assert max(totals) - min(totals) <= min((size[n] for n in fullest), default=0)


@given(st.lists(st.integers(min_value=1, max_value=1000), max_size=8), st.integers(min_value=1, max_value=3))
def test_the_fullest_shard_is_within_four_thirds_of_the_best_split(sizes: list[int], count: int) -> None:
    """Graham's bound for longest-processing-time: at most (4/3 - 1/(3N)) times the optimum, found here by trying
    every assignment of a few files."""
    size = dict(zip(names(len(sizes)), sizes, strict=True))
    greedy = max(loads(balanced(list(size), size.__getitem__, count), size))
    best = min(
        max(sum(s for s, shard in zip(sizes, assignment, strict=True) if shard == i) for i in range(count))
        for assignment in itertools.product(range(count), repeat=len(sizes))
    )
    assert 3 * count * greedy <= (4 * count - 1) * best


@given(st.integers(min_value=0, max_value=60), COUNTS)
def test_count_shards_differ_by_at_most_one_file(files: int, count: int) -> None:
    sizes = [len(shard) for shard in interleaved(names(files), count)]
    assert max(sizes) - min(sizes) <= 1


def test_one_large_model_gets_a_shard_of_its_own_by_size_but_not_by_count() -> None:
    files = [Path(n) for n in ("a_large.keras", "b.keras", "c.keras", "d.keras")]
    size = {files[0]: 900, files[1]: 100, files[2]: 100, files[3]: 100}
    assert split(files, 2, ShardBy.SIZE, size) == [[files[0]], files[1:]]
    assert split(files, 2, ShardBy.COUNT, size) == [[files[0], files[2]], [files[1], files[3]]]


def test_equal_sizes_split_in_path_order_and_equal_loads_go_to_the_lower_shard() -> None:
    size = dict.fromkeys(["a", "b", "c", "d", "e"], 1)
    assert balanced(sorted(size), size.__getitem__, 2) == [["a", "c", "e"], ["b", "d"]]


@pytest.mark.parametrize("spec", ["3/3", "1/0", "-1/2", "1", "a/b", " 0/2"])
def test_a_malformed_shard_says_what_was_expected(spec: str) -> None:
    with pytest.raises(ValueError, match=r"Expected --shard I/N with 0 <= I < N \(e\.g\. 0/4\); received "):
        Shard.parse(spec)


def batch(root: Path, sizes: dict[str, int]) -> list[Path]:
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * size)
    return [root / name for name in sizes]


def test_archive_size_reads_files_folders_and_missing_paths(tmp_path: Path) -> None:
    large, _ = batch(tmp_path, {"large.keras": 300, "saved/variables/data": 40})
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"y" * 2)
    sizes = [archive_size(large), archive_size(tmp_path / "saved"), archive_size(tmp_path / "gone.keras")]
    assert sizes == [300, 42, 0]


def test_shards_stamp_the_batch_so_the_same_files_elsewhere_agree_and_other_files_do_not(tmp_path: Path) -> None:
    sizes = {"a.keras": 5, "b.keras": 9, "sub/c.keras": 3}
    here, there = batch(tmp_path / "here", sizes), batch(tmp_path / "mnt" / "there", sizes)
    stamps = [select(files, "1/2", ShardBy.SIZE).stamp for files in (here, there)]
    assert stamps[0] == stamps[1] == {"index": 1, "count": 2, "by": "size", "of": 3, "batch": stamps[0]["batch"]}
    (tmp_path / "mnt" / "there" / "b.keras").write_bytes(b"x" * 10)  # a machine with another copy of one model
    assert select(there, "1/2", ShardBy.SIZE).stamp != stamps[0]
    assert select(here, None, ShardBy.SIZE).stamp is None  # a whole audit is no shard


def shard_reports(files: list[Path], count: int, by: ShardBy) -> list[tuple[str, report.Document]]:
    reports = []
    for i in range(count):
        chosen = select(files, f"{i}/{count}", by)
        entries = [report.failed(str(f), "", "invalid-argument", "not a zip", 0.0) for f in chosen.files]
        reports.append((f"shard-{i}.json", report.document(entries, chosen.stamp)))
    return reports


def test_merge_joins_every_shard_and_refuses_a_missing_one_or_shards_of_two_splits(tmp_path: Path) -> None:
    files = batch(tmp_path, {"a.keras": 50, "b.keras": 7, "c.keras": 8, "d.keras": 9})
    by_size = shard_reports(files, 3, ShardBy.SIZE)
    assert [m["source"] for m in report.merge(by_size)["models"]] == sorted(map(str, files))
    assert "shard" not in report.merge(by_size)  # the merged document is the whole batch
    with pytest.raises(report.MergeRefused, match=r"expected all 3 shard reports of the batch of 4 files; received 2,"):
        report.merge(by_size[:2])
    by_count = shard_reports(files, 3, ShardBy.COUNT)
    with pytest.raises(report.MergeRefused, match=r"expected shards of one batch split one way; shard-1\.json is "):
        report.merge([by_size[0], by_count[1], by_size[2]])  # one machine left out --shard-by size
    twice = by_size[1][1] | {"models": []}  # the same shard audited twice (its models would repeat)
    with pytest.raises(report.MergeRefused, match=r"shard-1\.json and again\.json are both shard 1/3"):
        report.merge([*by_size, ("again.json", twice)])


def test_reports_without_a_stamp_join_as_before(tmp_path: Path) -> None:
    files = batch(tmp_path, {"a.keras": 5, "b.keras": 6})
    (first, one), (_, two) = shard_reports(files, 2, ShardBy.COUNT)
    del one["shard"]
    assert len(report.merge([(first, one)])["models"]) == 1  # a report written before stamps: no count to check
    whole = report.document([report.failed("z.keras", "", "internal", "boom", 0.0)])
    assert len(report.merge([("whole.json", whole), ("shard-1.json", two)])["models"]) == 2
