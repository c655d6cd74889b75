"""Monitoring answers as client types (no I/O: the sync and async clients share it)."""

from __future__ import annotations

from datetime import UTC

from layerscope.client.types import (
    LayerWindowHealth,
    MonitorEvent,
    MonitorReference,
    MonitorStatus,
    MonitorWindow,
)
from layerscope.v1 import monitor_pb2


def status(m: monitor_pb2.MonitorStatus) -> MonitorStatus:
    return MonitorStatus(
        model=m.model_name,
        version=m.model_version,
        sample_rate=m.sample_rate,
        samples=m.samples,
        skipped=dict(m.skipped),
        nonfinite_samples=m.nonfinite_samples,
        reference=reference(m.reference) if m.HasField("reference") else None,
        reference_progress=(m.reference_collected, m.reference_needed),
        windows=tuple(window(w) for w in m.windows),
        events=tuple(MonitorEvent(e.at.ToDatetime(UTC), e.kind, tuple(e.layers), e.message) for e in m.events),
        open_window=window(m.open_window) if m.HasField("open_window") else None,
    )


def reference(r: monitor_pb2.MonitorReference) -> MonitorReference:
    return MonitorReference(r.reference_id, r.created_at.ToDatetime(UTC), r.source, r.requests, tuple(r.layers))


def window(w: monitor_pb2.MonitorWindow) -> MonitorWindow:
    return MonitorWindow(
        window_id=w.window_id,
        replica=w.replica,
        started=w.started.ToDatetime(UTC),
        ended=w.ended.ToDatetime(UTC),
        requests=w.requests,
        reference_id=w.reference_id,
        resolution=w.resolution,
        first_drifting_layer=w.first_drifting_layer or None,
        input_nonfinite=w.input_nonfinite,
        layers=tuple(
            LayerWindowHealth(
                layer=x.layer,
                drift_score=x.drift_score,
                drifting=x.drifting,
                drift_part=x.drift_part,
                dead_unit_fraction=x.dead_unit_fraction if x.HasField("dead_unit_fraction") else None,
                non_finite=x.non_finite,
                activation_rms=x.activation_rms,
                mean=x.mean,
                std=x.std,
                requests=x.requests,
            )
            for x in w.layers
        ),
    )
