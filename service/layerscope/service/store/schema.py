"""The tables: model, run, layer_summary, finding, probe. Summaries and findings only, never raw tensors.

Every constraint and index has an explicit or convention-made name, so a migration written against one
dialect names the same objects on the other. Column lengths here are the limits `repository` checks
before writing: PostgreSQL enforces them, SQLite does not, and both must refuse the same runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Real(sa.TypeDecorator[float]):
    """A double that keeps NaN on SQLite too.

    SQLite stores a bound NaN as NULL, which a NOT NULL column then refuses: a run with one NaN statistic
    (a float32 overflow on the device, say) would fail to save and block the spool behind it. Bound as the
    text 'NaN', the REAL column keeps it as text (it is not a number SQLite can convert), and it reads back
    as NaN. PostgreSQL's double precision holds NaN natively, so there the value passes through.
    """

    impl = sa.Float
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[float | None], Any] | None:
        # Replaces the impl's processor on SQLite: that one is float(), which would turn 'NaN' back into NaN.
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: float | None) -> Any:
            if value is None:
                return None
            number = float(value)
            return "NaN" if math.isnan(number) else number

        return process

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> float | None:
        return None if value is None else float(value)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: sa.JSON, list[Any]: sa.JSON}


class ModelRow(Base):
    """One row per model archive: a version re-uploaded with other bytes (another sha256) is another model."""

    __tablename__ = "model"
    __table_args__ = (sa.UniqueConstraint("name", "version", "sha256", name="uq_model_name_version_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64))


class RunRow(Base):
    """One capture or diagnosis. `run_id` is chosen by the client or server, which makes a retry harmless.

    `(model_id, created_at)` serves "the newest runs of this model", `created_at` alone the unfiltered list
    and pruning. Summaries are `lazy="raise"`: listing never loads them by accident, reading asks for them.
    """

    __tablename__ = "run"
    __table_args__ = (
        sa.Index("ix_run_model_created", "model_id", "created_at"),
        sa.Index("ix_run_created", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("model.id"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    batch_size: Mapped[int]
    inputs: Mapped[str] = mapped_column(sa.Text)
    device: Mapped[str] = mapped_column(sa.String(128))
    duration_seconds: Mapped[float] = mapped_column(Real)

    model: Mapped[ModelRow] = relationship(lazy="joined")
    summaries: Mapped[list[LayerSummaryRow]] = relationship(
        cascade="all, delete-orphan", order_by="LayerSummaryRow.position", lazy="raise"
    )
    findings: Mapped[list[FindingRow]] = relationship(
        cascade="all, delete-orphan", order_by="FindingRow.position", lazy="selectin"
    )
    probe: Mapped[ProbeRow | None] = relationship(cascade="all, delete-orphan", lazy="raise")


class LayerSummaryRow(Base):
    """One `Summary` of one tensor of one layer; `position` keeps the capture's order."""

    __tablename__ = "layer_summary"

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("run.run_id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    layer: Mapped[str] = mapped_column(sa.String(512))
    kind: Mapped[str] = mapped_column(sa.String(64))
    count: Mapped[int] = mapped_column(sa.BigInteger)
    mean: Mapped[float] = mapped_column(Real)
    std: Mapped[float] = mapped_column(Real)
    min: Mapped[float] = mapped_column(Real)
    max: Mapped[float] = mapped_column(Real)
    zero_fraction: Mapped[float] = mapped_column(Real)
    nan: Mapped[int] = mapped_column(sa.BigInteger)
    posinf: Mapped[int] = mapped_column(sa.BigInteger)
    neginf: Mapped[int] = mapped_column(sa.BigInteger)
    histogram: Mapped[list[Any]]
    histogram_low: Mapped[float] = mapped_column(Real)
    histogram_high: Mapped[float] = mapped_column(Real)
    unit_activity: Mapped[list[Any]]
    histogram_sample: Mapped[int | None] = mapped_column(sa.BigInteger)
    """Set when the histogram binned a sample of this many values (an estimate); NULL when it binned all."""


class FindingRow(Base):
    """One diagnosis finding; `ix_finding_code` serves "runs with finding X"."""

    __tablename__ = "finding"
    __table_args__ = (sa.Index("ix_finding_code", "code"),)

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("run.run_id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str] = mapped_column(sa.String(16))
    layers: Mapped[list[Any]]
    message: Mapped[str] = mapped_column(sa.Text)
    suggestion: Mapped[str] = mapped_column(sa.Text)
    evidence: Mapped[dict[str, Any]]


class ProbeRow(Base):
    """The training probe of a diagnosis with targets: one row per run, its steps as JSON text.

    Text, not a JSON column: a probe that diverged holds NaN and Inf, which PostgreSQL's json type refuses;
    Python's json module writes and reads them as the tokens NaN and Infinity.
    """

    __tablename__ = "probe"

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("run.run_id", ondelete="CASCADE"), primary_key=True)
    optimizer: Mapped[str] = mapped_column(sa.String(128))
    loss: Mapped[str] = mapped_column(sa.String(512))
    data: Mapped[str] = mapped_column(sa.Text)


class MonitorWindowRow(Base):
    """A closed window of sampled traffic (or an hour of them, rolled up); its per-layer sums as JSON text."""

    __tablename__ = "monitor_window"
    __table_args__ = (sa.Index("ix_monitor_window_model", "model_name", "model_version", "ended_at"),)

    window_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(sa.String(128))
    model_version: Mapped[int] = mapped_column(sa.Integer)
    replica: Mapped[str] = mapped_column(sa.String(128))
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    reference_id: Mapped[str | None] = mapped_column(sa.String(80))
    resolution: Mapped[str] = mapped_column(sa.String(16))
    requests: Mapped[int] = mapped_column(sa.Integer)
    first_drifting: Mapped[str | None] = mapped_column(sa.String(512))
    data: Mapped[str] = mapped_column(sa.Text)


class MonitorReferenceRow(Base):
    """The reference of one model version: one for every replica, kept across restarts."""

    __tablename__ = "monitor_reference"

    model_name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    reference_id: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    source: Mapped[str] = mapped_column(sa.String(160))
    requests: Mapped[int] = mapped_column(sa.Integer)
    data: Mapped[str] = mapped_column(sa.Text)
