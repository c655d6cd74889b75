"""Bearer tokens with roles, TLS and mutual TLS, against real servers on free ports."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from layerscope.client import Client, PermissionDeniedError, UnauthenticatedError, UnavailableError
from layerscope.oip import grpc_predict_v2_pb2 as oip
from layerscope.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.conftest import ServerHandle, start_server
from tests.support import models

TOKENS = {"admin-secret": "admin", "auditor-secret": "auditor", "reader-secret": "reader"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("guarded"), tokens=TOKENS)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.save(models.dead_relu_model(), tmp_path_factory.mktemp("auth-archive"))


def test_a_reader_cannot_upload_but_an_admin_can(guarded: ServerHandle, archive: Path) -> None:
    with Client(guarded.target, token="reader-secret") as reader:
        with pytest.raises(PermissionDeniedError) as caught:
            reader.upload_model("guarded", archive)
        assert "UploadModel needs the admin role; this token has the reader role" in caught.value.message
    with Client(guarded.target, token="admin-secret") as admin:
        assert admin.upload_model("guarded", archive).version == 1
    with Client(guarded.target, token="reader-secret") as reader:
        assert reader.predict("guarded", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
        with pytest.raises(PermissionDeniedError, match="Diagnose needs the auditor role"):
            reader.diagnose("guarded")
    with Client(guarded.target, token="auditor-secret") as auditor:
        assert auditor.diagnose("guarded").by_code("dead-units")


def test_no_token_or_an_unknown_token_is_unauthenticated_but_health_stays_open(guarded: ServerHandle) -> None:
    with Client(guarded.target) as anonymous:
        assert anonymous.health() == "SERVING"
        with pytest.raises(UnauthenticatedError, match="received none"):
            anonymous.list_models()
    with Client(guarded.target, token="guess") as guesser, pytest.raises(UnauthenticatedError):
        guesser.list_models()


def test_open_inference_probes_are_open_but_its_other_calls_need_a_token(guarded: ServerHandle) -> None:
    """Kubernetes and KServe probe ServerLive/ServerReady without credentials; metadata is not theirs to read."""
    with grpc.insecure_channel(guarded.target) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(oip.ServerLiveRequest()).live
        assert stub.ServerReady(oip.ServerReadyRequest()).ready
        with pytest.raises(grpc.RpcError) as caught:
            stub.ServerMetadata(oip.ServerMetadataRequest())
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        metadata = stub.ServerMetadata(
            oip.ServerMetadataRequest(), metadata=[("authorization", "Bearer reader-secret")]
        )
        assert metadata.name == "layerscope"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))  # fmt: skip
    return d


def test_tls_and_mutual_tls(pki: Path, tmp_path: Path) -> None:
    ca = (pki / "ca.pem").read_bytes()
    tls = start_server(tmp_path / "tls", tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key")
    try:
        with Client(tls.target, tls=grpc.ssl_channel_credentials(root_certificates=ca)) as c:
            assert c.health() == "SERVING"
        with Client(tls.target, timeout=5) as plaintext, pytest.raises(UnavailableError):
            plaintext.health()
    finally:
        tls.stop()

    mutual = start_server(
        tmp_path / "mtls",
        tls_cert_file=pki / "server.pem",
        tls_key_file=pki / "server.key",
        tls_client_ca_file=pki / "ca.pem",
    )
    try:
        with_cert = grpc.ssl_channel_credentials(
            ca, (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
        )
        with Client(mutual.target, tls=with_cert) as c:
            assert c.health() == "SERVING"
        without_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        with Client(mutual.target, tls=without_cert, timeout=5) as c, pytest.raises(UnavailableError):
            c.health()
    finally:
        mutual.stop()
