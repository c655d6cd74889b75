"""The layerscope client library.

from layerscope.client import Client
with Client("localhost:50051") as c:
    c.load_model("digits")
    cap = c.capture("digits", x, layers="*", full=["conv2d"])
"""

from layerscope.client._async import AsyncClient
from layerscope.client._sync import Client
from layerscope.client.errors import (
    AlreadyExistsError,
    DataLossError,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    LayerscopeError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from layerscope.client.types import (
    Capture,
    Comparison,
    Finding,
    InputSpec,
    LayerChange,
    LayerDetail,
    ModelInfo,
    Report,
    Run,
    RunPage,
    Summary,
)

__all__ = [
    "AlreadyExistsError",
    "AsyncClient",
    "Capture",
    "Client",
    "Comparison",
    "DataLossError",
    "DeadlineExceededError",
    "Finding",
    "InputSpec",
    "InternalError",
    "InvalidArgumentError",
    "LayerChange",
    "LayerDetail",
    "LayerscopeError",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "Report",
    "ResourceExhaustedError",
    "Run",
    "RunPage",
    "Summary",
    "UnauthenticatedError",
    "UnavailableError",
]
