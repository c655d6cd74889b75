"""The layerscope client library.

    import numpy as np
    from layerscope.client import Client

    with Client("localhost:50051") as c:
        c.upload_model("digits", "examples/models/healthy_cnn.keras")
        x = np.random.rand(32, 28, 28, 1).astype("float32")
        cap = c.capture("digits", x, layers="*", full=["conv1"])
        cap.tensors["conv1"]["activation"].shape  # (32, 26, 26, 8)

Every failure raises a `LayerscopeError` subclass (see `layerscope.client.errors`).
"""

from layerscope.client._async import AsyncClient
from layerscope.client._sync import Client
from layerscope.client.errors import (
    AlreadyExistsError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
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
    LayerWindowHealth,
    ModelInfo,
    MonitorEvent,
    MonitorReference,
    MonitorStatus,
    MonitorWindow,
    Probe,
    ProbeChange,
    ProbeStep,
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
    "FailedPreconditionError",
    "Finding",
    "InputSpec",
    "InternalError",
    "InvalidArgumentError",
    "LayerChange",
    "LayerDetail",
    "LayerWindowHealth",
    "LayerscopeError",
    "ModelInfo",
    "MonitorEvent",
    "MonitorReference",
    "MonitorStatus",
    "MonitorWindow",
    "NotFoundError",
    "PermissionDeniedError",
    "Probe",
    "ProbeChange",
    "ProbeStep",
    "Report",
    "ResourceExhaustedError",
    "Run",
    "RunPage",
    "Summary",
    "UnauthenticatedError",
    "UnavailableError",
]
