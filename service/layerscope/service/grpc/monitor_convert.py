"""Live-traffic monitoring as protobuf messages (pure conversions, like `convert`)."""

from __future__ import annotations

import math

import numpy as np

from layerscope.service.errors import InvalidInput
from layerscope.service.grpc.convert import timestamp
from layerscope.service.monitoring.drift import Reference
from layerscope.service.monitoring.model_monitor import MonitorEvent
from layerscope.service.monitoring.monitor import MonitorStatus
from layerscope.service.monitoring.window import LayerWindow, Window
from layerscope.v1 import monitor_pb2

DEFAULT_WINDOWS = 12
MAX_WINDOWS = 500


def window_limit(limit: int) -> int:
    """The windows a GetMonitor returns: 0 means the default; more than MAX_WINDOWS are not sent at once."""
    if limit < 0:
        raise InvalidInput(f"Expected a window limit >= 0 (0: {DEFAULT_WINDOWS}); received {limit}.")
    return min(limit or DEFAULT_WINDOWS, MAX_WINDOWS)


def status(value: MonitorStatus) -> monitor_pb2.MonitorStatus:
    collected, needed = value.reference_progress
    message = monitor_pb2.MonitorStatus(
        model_name=value.model,
        model_version=value.version,
        sample_rate=value.sample_rate,
        samples=value.samples,
        skipped=value.skipped,
        nonfinite_samples=value.nonfinite_samples,
        reference_collected=collected,
        reference_needed=needed,
        windows=[window(w, value.reference) for w in value.windows],
        events=[event(e) for e in value.events],
    )
    if value.reference is not None:
        message.reference.CopyFrom(reference(value.reference))
    if value.open_window is not None:
        message.open_window.CopyFrom(window(value.open_window, value.reference))
    return message


def reference(value: Reference) -> monitor_pb2.MonitorReference:
    return monitor_pb2.MonitorReference(
        reference_id=value.reference_id,
        created_at=timestamp(value.created_at),
        source=value.source,
        requests=value.requests,
        layers=list(value.layers),
    )


def window(value: Window, judged_by: Reference | None) -> monitor_pb2.MonitorWindow:
    drifting = value.drifting
    return monitor_pb2.MonitorWindow(
        window_id=value.window_id,
        replica=value.replica,
        started=timestamp(value.started),
        ended=timestamp(value.ended),
        requests=value.requests,
        reference_id=value.reference_id or "",
        resolution=value.resolution,
        first_drifting_layer=drifting[0] if drifting else "",
        input_nonfinite=value.input_nonfinite,
        layers=[layer(name, value, judged_by) for name in value.layers],
    )


def layer(name: str, value: Window, judged_by: Reference | None) -> monitor_pb2.LayerWindowHealth:
    sums: LayerWindow = value.layers[name]
    drift = value.drift.get(name)
    message = monitor_pb2.LayerWindowHealth(
        layer=name,
        non_finite=sums.nan + sums.posinf + sums.neginf,
        activation_rms=math.sqrt(sums.squares / sums.finite) if sums.finite else 0.0,
        mean=sums.mean,
        std=sums.std,
        requests=sums.requests,
    )
    if drift is not None:
        message.drift_score = drift.score
        message.drifting = drift.drifting
        message.statistic = drift.statistic
        message.threshold = drift.threshold
        message.drift_part = drift.part
    reference_layer = judged_by.layers.get(name) if judged_by else None
    if reference_layer is not None and reference_layer.dead_unit_fraction is not None and sums.positions:
        message.dead_unit_fraction = float(np.mean(sums.unit_activity <= 0.0))
    return message


def event(value: MonitorEvent) -> monitor_pb2.MonitorEvent:
    return monitor_pb2.MonitorEvent(
        at=timestamp(value.at), kind=value.kind, layers=list(value.layers), message=value.message
    )
