"""Every domain error maps to a definite status code; nothing falls through to UNKNOWN."""

from __future__ import annotations

import grpc
import pytest

from layerscope.service import errors
from layerscope.service.grpc.status import status_for

EXPECTED = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnsafeModel: grpc.StatusCode.INVALID_ARGUMENT,
    errors.LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def all_subclasses(cls: type) -> set[type]:
    return {cls} | {s for c in cls.__subclasses__() for s in all_subclasses(c)}


@pytest.mark.parametrize("cls", sorted(all_subclasses(errors.ServiceError) - {errors.ServiceError}, key=str))
def test_every_domain_error_has_its_status_and_keeps_its_message(cls: type[errors.ServiceError]) -> None:
    error = cls("expected X; received Y")
    assert status_for(error) == EXPECTED[cls]
    assert error.message == "expected X; received Y"
