"""Domain errors. The transport maps each class to a status code in one table (grpc/status.py).

ServiceError
├── NotFound            a model, version or run that does not exist
├── InvalidInput        a request or a file that does not fit what was expected
│   └── UnsafeModel     an archive refused by the scanner before Keras saw it
├── LimitExceeded       a request larger than a configured bound
├── PermissionDenied    the caller's role does not allow the call
├── Unauthenticated     no valid token
├── StoreUnavailable    the database cannot be reached and the spool is full
└── Overloaded          too many calls in flight
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; its message says what was expected and what was received."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    pass


class InvalidInput(ServiceError):
    pass


class UnsafeModel(InvalidInput):
    pass


class LimitExceeded(ServiceError):
    pass


class PermissionDenied(ServiceError):
    pass


class Unauthenticated(ServiceError):
    pass


class StoreUnavailable(ServiceError):
    pass


class Overloaded(ServiceError):
    pass
