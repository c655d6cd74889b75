"""Roles and the calls each may make. Pure policy: the transport reads tokens, this decides."""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping

from layerscope.service.errors import PermissionDenied, Unauthenticated


class Role(enum.IntEnum):
    """Ordered: each role may do what the roles below it may."""

    READER = 1
    AUDITOR = 2
    ADMIN = 3


OPEN = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
"""Services anyone may call: load balancers and grpcurl need them before they hold a token."""

OPEN_METHODS = frozenset(
    {("inference.GRPCInferenceService", "ServerLive"), ("inference.GRPCInferenceService", "ServerReady")}
)
"""Single methods anyone may call: the Open Inference Protocol's probes, which Kubernetes and KServe send bare."""

REQUIRED: Mapping[str, Role] = {
    "UploadModel": Role.ADMIN,
    "LoadModel": Role.ADMIN,
    "UnloadModel": Role.ADMIN,
    "Diagnose": Role.AUDITOR,
    "CompareRuns": Role.READER,
    "SetReference": Role.ADMIN,  # decides what live traffic is judged against, so what may page someone
}
"""The role a method needs; every method not listed needs READER."""


class TokenPolicy:
    """Bearer tokens mapped to roles. With no tokens configured, every caller is an admin (local use)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = {token: Role[role.upper()] for token, role in tokens.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def role_of(self, authorization: str | None) -> Role:
        if not self.enabled:
            return Role.ADMIN
        if not authorization:
            raise Unauthenticated("Expected an 'authorization: Bearer <token>' header; received none.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(f"Expected 'Bearer <token>' in the authorization header; received '{scheme} ...'.")
        for known, role in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return role
        raise Unauthenticated("Expected a known bearer token; received one this server does not accept.")

    def check(self, service: str, method: str, authorization: str | None) -> None:
        if service in OPEN or (service, method) in OPEN_METHODS:
            return
        role = self.role_of(authorization)
        needed = REQUIRED.get(method, Role.READER)
        if role < needed:
            raise PermissionDenied(
                f"{method} needs the {needed.name.lower()} role; this token has the {role.name.lower()} role."
            )
