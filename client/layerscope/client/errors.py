"""Errors raised by the client, one class per actionable status code.

LayerscopeError                 any failed call; .code (grpc.StatusCode) and .message
├── InvalidArgumentError        the request does not fit the model or the protocol
├── NotFoundError               no such model, version or run
├── AlreadyExistsError          a model version that is already stored (or being uploaded)
├── FailedPreconditionError     the server's state cannot serve the call yet (a reference still being made)
├── PermissionDeniedError       the token's role does not allow the call
├── UnauthenticatedError        no token or a wrong one
├── ResourceExhaustedError      a request over a server limit, or the server at capacity
├── UnavailableError            the server (or its database) cannot be reached; safe to retry later
├── DeadlineExceededError       the call took longer than its timeout (`retried_after`: the failure a retry
│                               that ran out of time was for, e.g. a model's worker that died)
├── DataLossError               an answer from the server that does not decode (a corrupt or cut stream)
└── InternalError               a server fault; the message names an incident in the server log

Mistakes the client catches before sending (a missing file to upload, an input dtype the wire cannot
carry) raise InvalidArgumentError too, with the path or dtype named, just as the server would. Any other
status (CANCELLED, UNKNOWN, ...) raises LayerscopeError itself.
"""

from __future__ import annotations

import grpc
from grpc import StatusCode


class LayerscopeError(Exception):
    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[LayerscopeError], tuple[StatusCode, str]]:
        return type(self), (self.code, self.message)  # picklable, e.g. out of a worker process

    @property
    def code_name(self) -> str:
        """The status code as audit reports write it: `invalid-argument`, `not-found`, `internal`."""
        return str(self.code.name).lower().replace("_", "-")


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


class FailedPreconditionError(LayerscopeError):
    pass


class UnavailableError(LayerscopeError):
    pass


class DeadlineExceededError(LayerscopeError):
    retried_after: LayerscopeError | None = None
    """Set when the time ran out on a retry: the failure (UNAVAILABLE) that the client retried after. The
    message names it too, and the error is chained to it (`__cause__`)."""


class DataLossError(LayerscopeError):
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
    StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    StatusCode.DATA_LOSS: DataLossError,
    StatusCode.INTERNAL: InternalError,
}


def translate(err: grpc.RpcError) -> LayerscopeError:
    code = err.code() if hasattr(err, "code") else StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return _BY_CODE.get(code, LayerscopeError)(code, details or "")


def invalid_argument(message: str) -> InvalidArgumentError:
    """A caller's mistake caught before anything was sent."""
    return InvalidArgumentError(StatusCode.INVALID_ARGUMENT, message)


def data_loss(message: str) -> DataLossError:
    """An answer from the server that cannot be decoded."""
    return DataLossError(StatusCode.DATA_LOSS, message)


def deadline_exceeded(message: str, retried_after: LayerscopeError | None = None) -> DeadlineExceededError:
    """A call out of time; `retried_after`: the failure of the attempt before, which the client retried."""
    error = DeadlineExceededError(StatusCode.DEADLINE_EXCEEDED, message)
    error.retried_after = retried_after
    return error
