"""Model versions are bounded by what every layer holds: the proto's int64 and the run store's int32."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError
from tests.conftest import ServerHandle
from tests.support import models

LARGEST = 2**31 - 1


@pytest.mark.parametrize("version", [2**63 - 1, 2**31])
def test_versions_above_the_store_s_range_are_refused(client: Client, tmp_path: Path, version: int) -> None:
    archive = models.save(models.dead_relu_model(), tmp_path, "healthy")
    with pytest.raises(InvalidArgumentError) as caught:
        client.upload_model("big-version", archive, version=version)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert f"Expected a model version from 1 to {LARGEST}; received {version}." in caught.value.message


def test_the_largest_version_serves_and_no_automatic_version_follows_it(
    client: Client, server: ServerHandle, tmp_path: Path
) -> None:
    archive = models.save(models.dead_relu_model(), tmp_path, "healthy")
    assert client.upload_model("last", archive, version=LARGEST).version == LARGEST
    with pytest.raises(InvalidArgumentError) as caught:
        client.upload_model("last", archive)  # the next automatic version would be 2**31
    assert "has used version 2147483647, the largest" in caught.value.message
    capture = client.capture("last", np.zeros((1, 4), "float32"))
    assert client.get_run(capture.run_id).model_version == LARGEST
    assert "last" in [m.name for m in client.list_models()]
    with pytest.raises(InvalidArgumentError) as caught:
        client.capture("last", np.zeros((1, 4), "float32"), version=2**40)
    assert f"from 1 to {LARGEST}" in caught.value.message
    # A folder past the range, copied in by hand, is never served (and never breaks a listing).
    (server.repository / "last" / str(2**63)).mkdir()
    (server.repository / "last" / str(2**63) / "model.keras").write_bytes(archive.read_bytes())
    assert client.load_model("last").version == LARGEST
    assert "last" in [m.name for m in client.list_models()]
