"""Domain errors to gRPC status codes: each error class names its code (`ServiceError.status`)."""

from __future__ import annotations

from grpc import StatusCode

from layerscope.service import errors


def status_for(exc: errors.ServiceError) -> StatusCode:
    """`invalid-argument` on the error class is StatusCode.INVALID_ARGUMENT; an unknown name is INTERNAL."""
    return StatusCode.__members__.get(exc.status.upper().replace("-", "_"), StatusCode.INTERNAL)
