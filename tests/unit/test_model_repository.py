"""The model repository: names checked before they touch the disk, versions reserved, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerscope.service.errors import AlreadyExists, InvalidInput, NotFound
from layerscope.service.models.repository import ARCHIVE, ModelRepository


def test_uploads_in_flight_at_once_get_distinct_versions_and_both_are_kept(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    first = repository.begin_upload("digits", None, 1024)
    second = repository.begin_upload("digits", None, 1024)  # before the first commits
    assert (first.version, second.version) == (1, 2)
    first.write(b"first")
    second.write(b"second")
    second.commit()
    second.publish()
    first.commit()
    first.publish()
    assert repository.versions("digits") == [1, 2]
    assert repository.locate("digits", 1)[1].read_bytes() == b"first"
    assert repository.locate("digits")[1].read_bytes() == b"second"


def test_a_version_being_uploaded_cannot_be_asked_for_twice(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    pending = repository.begin_upload("digits", 3, 1024)
    with pytest.raises(AlreadyExists, match="is receiving another upload of version 3"):
        repository.begin_upload("digits", 3, 1024)
    pending.write(b"bytes")
    pending.commit()
    pending.publish()
    with pytest.raises(AlreadyExists, match="already has version 3"):
        repository.begin_upload("digits", 3, 1024)
    assert repository.begin_upload("digits", None, 1024).version == 4


def test_an_aborted_upload_leaves_nothing_and_frees_its_version(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    upload = repository.begin_upload("digits", None, 1024)
    upload.write(b"partial")
    upload.abort()
    assert not (tmp_path / "digits" / "1").exists()
    with pytest.raises(NotFound):
        repository.locate("digits")
    assert repository.begin_upload("digits", 1, 1024).version == 1


def test_a_restart_clears_what_a_crash_left_half_written(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    kept = repository.begin_upload("digits", None, 1024)
    kept.write(b"whole")
    kept.commit()
    kept.publish()
    repository.begin_upload("digits", None, 1024).write(b"half")  # the process dies here
    reopened = ModelRepository(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "digits",
        "digits/1",
        f"digits/1/{ARCHIVE}",
    ]
    assert reopened.begin_upload("digits", 2, 1024).version == 2


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 129, "nul\x00"])
def test_names_that_could_leave_the_repository_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="Expected a model name"):
        ModelRepository(tmp_path).begin_upload(name, None, 1024)
    assert list(tmp_path.iterdir()) == []


def test_a_deleted_version_is_gone_but_its_number_is_never_given_out_again(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    upload = repository.begin_upload("digits", None, 1024)
    upload.write(b"bytes")
    upload.commit()
    upload.publish()
    repository.delete("digits", 1)
    with pytest.raises(NotFound):
        repository.locate("digits", 1)
    with pytest.raises(AlreadyExists, match="had \\(and deleted; numbers are never reused\\) version 1"):
        repository.begin_upload("digits", 1, 1024)
    assert repository.begin_upload("digits", None, 1024).version == 2  # an upload, cut short by a "restart":
    assert ModelRepository(tmp_path).begin_upload("digits", None, 1024).version == 2  # 2 is free, 1 still is not
