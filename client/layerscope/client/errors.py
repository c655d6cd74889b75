"""Errors raised by the client, one class per actionable status code.

LayerscopeError                 any failed call; .code (grpc.StatusCode) and .message
├── InvalidArgumentError        the request does not fit the model or the protocol
├── NotFoundError               no such model, version or run
├── AlreadyExistsError
├── PermissionDeniedError       the token's role does not allow the call
├── UnauthenticatedError        no token or a wrong one
├── ResourceExhaustedError      a request over a server limit, or the server at capacity
├── UnavailableError            the server (or its database) cannot be reached; safe to retry later
├── DeadlineExceededError       the call took longer than its timeout
└── InternalError               a server fault; the message names an incident in the server log
"""

from __future__ import annotations

import grpc
from grpc import StatusCode


class LayerscopeError(Exception):
    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgumentError(LayerscopeError):
    pass


class NotFoundError(LayerscopeError):
    pass


class AlreadyExistsError(LayerscopeError):
    pass


class PermissionDeniedError(LayerscopeError):
    pass


class UnauthenticatedError(LayerscopeError):
    pass


class ResourceExhaustedError(LayerscopeError):
    pass


class UnavailableError(LayerscopeError):
    pass


class DeadlineExceededError(LayerscopeError):
    pass


class InternalError(LayerscopeError):
    pass


_BY_CODE: dict[StatusCode, type[LayerscopeError]] = {
    StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    StatusCode.NOT_FOUND: NotFoundError,
    StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    StatusCode.INTERNAL: InternalError,
}


def translate(err: grpc.RpcError) -> LayerscopeError:
    code = err.code() if hasattr(err, "code") else StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return _BY_CODE.get(code, LayerscopeError)(code, details or "")
