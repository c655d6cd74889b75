"""The one table from domain errors to gRPC status codes."""

from __future__ import annotations

from grpc import StatusCode

from layerscope.service import errors

STATUS: dict[type[errors.ServiceError], StatusCode] = {
    errors.ServiceError: StatusCode.INTERNAL,
    errors.NotFound: StatusCode.NOT_FOUND,
    errors.InvalidInput: StatusCode.INVALID_ARGUMENT,
    errors.UnsafeModel: StatusCode.INVALID_ARGUMENT,
    errors.LimitExceeded: StatusCode.RESOURCE_EXHAUSTED,
    errors.PermissionDenied: StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: StatusCode.UNAUTHENTICATED,
    errors.StoreUnavailable: StatusCode.UNAVAILABLE,
    errors.Overloaded: StatusCode.RESOURCE_EXHAUSTED,
}


def status_for(exc: errors.ServiceError) -> StatusCode:
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)
