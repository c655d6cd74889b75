"""Bearer tokens and their roles. The transport reads tokens, this decides; the role each call needs is
its entry in the table of per-call policy (methods.py)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from layerscope.service.errors import PermissionDenied, Unauthenticated
from layerscope.service.grpc.methods import Role, path, policy_of

__all__ = ["Role", "TokenPolicy"]


class TokenPolicy:
    """Bearer tokens mapped to roles. With no tokens configured, every caller is an admin (local use)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = {token: Role[role.upper()] for token, role in tokens.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def role_of(self, authorization: str | None) -> Role:
        """The role of the caller's `authorization` header (`Bearer <token>`), compared in constant time;
        Unauthenticated without one, or with a token this server does not know."""
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
        """Return when the caller may make this call: an open one, or a token with at least the method's
        role (methods.py); raise Unauthenticated or PermissionDenied otherwise."""
        needed = policy_of(path(service, method)).role
        if needed is None:  # open: health, reflection, the Open Inference Protocol's server probes
            return
        role = self.role_of(authorization)
        if role < needed:
            raise PermissionDenied(
                f"{method} needs the {needed.name.lower()} role; this token has the {role.name.lower()} role."
            )
