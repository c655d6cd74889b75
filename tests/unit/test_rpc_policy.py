"""The table of per-call policy (service/grpc/methods.py): every RPC the server answers has an entry, the
client's retry policy is the table's `retried` column, and the entries say what the server has always done."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import layerscope.oip
import layerscope.v1
from layerscope.client._core import RETRIED, SERVICE_CONFIG
from layerscope.service.errors import PermissionDenied, Unauthenticated
from layerscope.service.grpc.auth import TokenPolicy
from layerscope.service.grpc.methods import (
    HEALTH,
    INSPECTOR,
    MAIN,
    OIP,
    POLICIES,
    REFLECTION,
    REFLECTION_V1,
    REFLECTION_V1ALPHA,
    UPLOADS,
    Role,
    path,
    policy_of,
)


def generated_services() -> Iterator[ServiceDescriptor]:
    """Every service in the generated modules (client/layerscope/v1, client/layerscope/oip) and the health and
    reflection services the server registers."""
    for package in (layerscope.v1, layerscope.oip):
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.endswith("_pb2"):
                yield from importlib.import_module(
                    f"{package.__name__}.{module.name}"
                ).DESCRIPTOR.services_by_name.values()
    yield health_pb2.DESCRIPTOR.services_by_name["Health"]
    yield reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]


SERVED = {path(s.full_name, m.name): m for s in generated_services() for m in s.methods}
NO_DESCRIPTOR_HERE = {path(REFLECTION_V1, "ServerReflectionInfo")}
"""grpc.reflection.v1 is listed for a grpcio-reflection that serves it; the installed one carries no descriptor."""


def test_every_rpc_of_every_service_has_a_policy() -> None:
    assert {INSPECTOR, OIP, HEALTH, REFLECTION_V1ALPHA} <= {p.split("/")[1] for p in SERVED}
    missing = sorted(set(SERVED) - set(POLICIES))
    assert not missing, f"add these methods to the table in service/layerscope/service/grpc/methods.py: {missing}"


def test_every_policy_names_a_real_rpc() -> None:
    assert sorted(set(POLICIES) - set(SERVED) - NO_DESCRIPTOR_HERE) == []


def retried_by_the_client() -> set[str]:
    """The methods the client retries (its own loop, `layerscope.client._core.Attempts`)."""
    return {path(service, method) for service, method in RETRIED}


def test_the_client_retries_exactly_what_the_table_says() -> None:
    """The client may not import the service (it is a leaf), so its RETRIED is a copy of the column."""
    assert retried_by_the_client() == {p for p, policy in POLICIES.items() if policy.retried}
    assert "retryPolicy" not in SERVICE_CONFIG  # the channel's own retries would hide what they retried after


@pytest.mark.parametrize("method_path", sorted(SERVED))
def test_only_calls_counted_in_the_main_pool_get_the_deadline(method_path: str) -> None:
    policy, method = policy_of(method_path), SERVED[method_path]
    assert policy.deadline == (policy.pool == MAIN and not method.client_streaming)
    if method.client_streaming:
        assert policy.pool in (UPLOADS, REFLECTION)


def open_methods() -> set[str]:
    return {p for p, policy in POLICIES.items() if policy.role is None}


def test_open_calls_are_health_reflection_and_the_server_probes() -> None:
    expected = {p for p in POLICIES if p.split("/")[1] in (HEALTH, REFLECTION_V1ALPHA, REFLECTION_V1)}
    assert open_methods() == expected | {path(OIP, "ServerLive"), path(OIP, "ServerReady")}


def test_roles_of_the_inspector_service() -> None:
    guarded = ("UploadModel", "LoadModel", "UnloadModel", "Diagnose", "SetReference")
    needs = {m: POLICIES[path(INSPECTOR, m)].role for m in guarded}
    assert needs == {
        "UploadModel": Role.ADMIN,
        "LoadModel": Role.ADMIN,
        "UnloadModel": Role.ADMIN,
        "Diagnose": Role.AUDITOR,
        "SetReference": Role.ADMIN,
    }
    others = {p for p in POLICIES if p.startswith(f"/{INSPECTOR}/")} - {path(INSPECTOR, m) for m in needs}
    assert {POLICIES[p].role for p in others} == {Role.READER}


def test_probes_are_outside_every_cap_and_model_ready_still_needs_a_token() -> None:
    probes = {p for p, policy in POLICIES.items() if policy.outside_caps}
    assert probes == {
        path(HEALTH, "Check"),
        path(HEALTH, "Watch"),
        path(OIP, "ServerLive"),
        path(OIP, "ServerReady"),
        path(OIP, "ModelReady"),
    }
    assert POLICIES[path(OIP, "ModelReady")].role is Role.READER
    assert POLICIES[path(OIP, "ModelReady")].why


def test_a_method_missing_from_the_table_is_a_readers_call_with_the_deadline() -> None:
    unary, upload = policy_of("/x.Y/Z"), policy_of("/x.Y/Z", client_streaming=True)
    assert (unary.role, unary.pool, unary.deadline, unary.retried) == (Role.READER, MAIN, True, False)
    assert (upload.role, upload.pool, upload.deadline) == (Role.READER, UPLOADS, False)


def test_tokens_are_checked_against_the_table() -> None:
    tokens = TokenPolicy({"r": "reader", "a": "auditor", "x": "admin"})
    tokens.check(HEALTH, "Check", None)
    tokens.check(OIP, "ServerReady", None)
    with pytest.raises(Unauthenticated):
        tokens.check(OIP, "ModelReady", None)
    tokens.check(OIP, "ModelReady", "Bearer r")
    with pytest.raises(PermissionDenied, match="Diagnose needs the auditor role; this token has the reader role"):
        tokens.check(INSPECTOR, "Diagnose", "Bearer r")
    tokens.check(INSPECTOR, "Diagnose", "Bearer a")
    with pytest.raises(PermissionDenied, match="UploadModel needs the admin role"):
        tokens.check(INSPECTOR, "UploadModel", "Bearer a")
    tokens.check(INSPECTOR, "UploadModel", "Bearer x")
