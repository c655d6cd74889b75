"""Runs as stored (never raw tensors), how they are queried, and the `RunStore` protocol the SQL store and
the spool in front of it both satisfy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from layerscope.service.domain.findings import Finding
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.training import ProbeResult
from layerscope.service.errors import InvalidInput

MAX_RUN_ID = 128
"""The longest run id a caller may choose (the width of the stored column)."""


RESERVED_PREFIXES = ("w-", "h-")
"""Run ids of this shape name monitoring windows (closed, or rolled up into hours), which GetRun and
CompareRuns also read."""


def check_run_id(run_id: str) -> str:
    """A caller's run id, checked before any work is done for it (empty: the server picks one)."""
    if len(run_id) > MAX_RUN_ID or not run_id.isprintable():  # NUL and other controls are not printable
        raise InvalidInput(
            f"Expected a run id of at most {MAX_RUN_ID} printable characters; "
            f"received {len(run_id)} characters: {run_id[:40]!r}."
        )
    if run_id.startswith(RESERVED_PREFIXES):
        raise InvalidInput(
            f"Expected a run id that does not start with {' or '.join(RESERVED_PREFIXES)} (the ids of monitoring "
            f"windows); received {run_id[:40]!r}."
        )
    return run_id


@dataclass(frozen=True)
class LayerSummaryRecord:
    layer: str
    kind: str
    summary: Summary


@dataclass(frozen=True)
class RunRecord:
    """One capture or diagnosis, as stored: never raw tensors."""

    run_id: str
    model_name: str
    model_version: int
    model_sha256: str
    kind: str
    """"capture" or "diagnose"."""
    created_at: datetime
    batch_size: int
    inputs: str
    """A description of the inputs: caller-given shapes and dtypes, or the probe distributions used."""
    device: str
    duration_seconds: float
    summaries: tuple[LayerSummaryRecord, ...] = ()
    findings: tuple[Finding, ...] = ()
    probe: ProbeResult | None = None
    """The training probe of a diagnosis with targets."""


@dataclass(frozen=True)
class RunQuery:
    model_name: str | None = None
    model_version: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    finding_code: str | None = None
    limit: int = 20
    page_token: str | None = None


@dataclass(frozen=True)
class RunPage:
    runs: Sequence[RunRecord]
    next_page_token: str | None


class RunStore(Protocol):
    """Where runs are kept: the SQL store, or the spool in front of it."""

    def validate(self, run: RunRecord) -> None:
        """Raise InvalidInput if `save_run` would refuse this run for its content (never for an outage)."""

    def save_run(self, run: RunRecord, fresh: bool = False) -> bool:
        """Store (or accept for storing) a run; False for a retry of one stored before. `fresh`: the server
        chose its id, so no stored run can hold it."""
        ...

    def get_run(self, run_id: str) -> RunRecord: ...
    def list_runs(self, query: RunQuery) -> RunPage: ...
