"""Domain errors. Each class names its gRPC status code as plain text (`status`), the one source of truth:
the transport turns it into a `grpc.StatusCode` (grpc/status.py) and audit reports use it as the error
code, so a local audit and a `--server` one name a failure alike. Domain code never imports grpc.

ServiceError            internal            a fault of the service itself
├── NotFound            not-found           a model, version or run that does not exist
├── InvalidInput        invalid-argument    a request or a file that does not fit what was expected
│   └── UnsafeModel     invalid-argument    an archive refused by the scanner before Keras saw it
├── AlreadyExists       already-exists      a model version that is stored or being uploaded
├── FailedPrecondition  failed-precondition a request the current state cannot serve (a reference from a window
│                                           judged against none)
├── LimitExceeded       resource-exhausted  a request larger than a configured bound
├── PermissionDenied    permission-denied   the caller's role does not allow the call
├── Unauthenticated     unauthenticated     no valid token
├── StoreUnavailable    unavailable         the database cannot be reached and the spool is full
├── ModelUnavailable    unavailable         a model's worker process died, is restarting, or is failed
├── Overloaded          resource-exhausted  too many calls in flight
├── DeadlineExceeded    deadline-exceeded   past the server's or a worker's deadline, or a stream left unread
└── Cancelled           cancelled           work stopped because its call already ended
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base class; its message says what was expected and what was received."""

    status: ClassVar[str] = "internal"
    """The gRPC status code, lower-case with dashes (`invalid-argument`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    status = "not-found"


class InvalidInput(ServiceError):
    status = "invalid-argument"


class UnsafeModel(InvalidInput):
    pass


class AlreadyExists(ServiceError):
    status = "already-exists"


class FailedPrecondition(ServiceError):
    status = "failed-precondition"


class LimitExceeded(ServiceError):
    status = "resource-exhausted"


class PermissionDenied(ServiceError):
    status = "permission-denied"


class Unauthenticated(ServiceError):
    status = "unauthenticated"


class StoreUnavailable(ServiceError):
    status = "unavailable"


class ModelUnavailable(ServiceError):
    status = "unavailable"


class DeadlineExceeded(ServiceError):
    status = "deadline-exceeded"


class Overloaded(ServiceError):
    status = "resource-exhausted"


class Cancelled(ServiceError):
    status = "cancelled"


class StartupError(Exception):
    """Not a call's error: the server cannot start (a port another process holds). `layerscope serve` prints
    its message as one line and exits 1; no gRPC status, since no call is answered."""
