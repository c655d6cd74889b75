"""Every domain error maps to a definite status code; nothing falls through to UNKNOWN."""

from __future__ import annotations

import grpc
import pytest

from layerscope.service import errors
from layerscope.service.grpc.status import status_for

EXPECTED = {
    errors.ServiceError: grpc.StatusCode.INTERNAL,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnsafeModel: grpc.StatusCode.INVALID_ARGUMENT,
    errors.LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
}


def all_subclasses(cls: type) -> set[type]:
    return {cls} | {s for c in cls.__subclasses__() for s in all_subclasses(c)}


@pytest.mark.parametrize("cls", sorted(all_subclasses(errors.ServiceError), key=str))
def test_every_domain_error_has_its_status_and_keeps_its_message(cls: type[errors.ServiceError]) -> None:
    error = cls("expected X; received Y")
    assert status_for(error) == EXPECTED[cls]
    assert error.message == "expected X; received Y"


@pytest.mark.parametrize("cls", sorted(all_subclasses(errors.ServiceError), key=str))
def test_the_status_name_on_each_class_is_a_real_grpc_code_in_the_audit_spelling(
    cls: type[errors.ServiceError],
) -> None:
    # A typo would silently fall back to INTERNAL; audit reports write the name as it stands here.
    assert cls.status == EXPECTED[cls].name.lower().replace("_", "-")
