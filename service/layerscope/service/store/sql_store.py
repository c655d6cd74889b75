"""The run store: one transaction per run, idempotent by run id, domain dataclasses in and out.

Database connection failures become `StoreUnavailable`, the spool's cue to keep the run until the
database returns; rows never leave this module.

Conventions, the same on SQLite and PostgreSQL:

- Datetimes are stored and returned in UTC. A naive datetime given to the store (a run's `created_at`,
  a query's `since`/`until`, `prune`'s cutoff) is taken as UTC.
- A retried run stores nothing and returns False; the first write wins. A retry is recognised by what the
  run asked for (model name, version and sha256, kind, batch size, inputs, the captured layers and
  kinds in order), not by what it measured: a capture retried by its client is computed again, with
  another time and duration. The same run id asking for something else is refused (InvalidInput).
- `get_run` returns the run with its summaries and findings; `list_runs` returns findings but no
  summaries (a page of 500 runs of 200 layers would be 100,000 rows), so use `get_run` for those.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, contains_eager, sessionmaker

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.jsonable import jsonable
from layerscope.service.domain.runs import LayerSummaryRecord, RunPage, RunQuery, RunRecord
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.text import quoted
from layerscope.service.domain.training import ProbeResult, probe_from_data, probe_to_data
from layerscope.service.errors import InvalidInput, NotFound
from layerscope.service.store.engine import SQL_ASCII, text_codec
from layerscope.service.store.schema import Base, FindingRow, LayerSummaryRow, ModelRow, ProbeRow, RunRow
from layerscope.service.store.sessions import first_line, transaction

MAX_PAGE = 1000
"""The most runs one `list_runs` page may ask for; the transport may allow fewer."""

# Core tables: their columns' types are plain attributes (the ORM's go through a descriptor each time, which
# was a fifth of validating a run), and their inserts skip the ORM's bulk path.
_TABLES = Base.metadata.tables
_RUN, _MODEL = _TABLES["run"].c, _TABLES["model"].c
_SUMMARY, _FINDING = _TABLES["layer_summary"].c, _TABLES["finding"].c
_SUMMARY_INSERT = _TABLES["layer_summary"].insert()
_FINDING_INSERT = _TABLES["finding"].insert()
_PROBE_INSERT = _TABLES["probe"].insert()
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_SUPPORTED = ("sqlite", "postgresql")


class SqlRunStore:
    """Runs in a SQL database (SQLite or PostgreSQL), migrated beforehand by `migrations.migrate`."""

    def __init__(self, engine: sa.Engine, *, encoding: str = "UTF8") -> None:
        """`encoding`: the database's server encoding (`engine.server_encoding`). On SQL_ASCII its length
        limits count bytes, not characters, so text is measured in UTF-8 bytes before it is written; an
        encoding that holds only some characters (LATIN1, WIN1252, ...) has text checked against it. Either way
        a name the database would refuse is refused up front, saying why, not as a DataError."""
        if engine.dialect.name not in _SUPPORTED:
            raise ValueError(f"Expected a database of {_SUPPORTED}; received {engine.dialect.name!r}.")
        self._engine = engine
        self._text_rules = _TextRules(encoding == SQL_ASCII, text_codec(encoding), encoding)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._run_insert = _run_insert(engine.dialect.name)
        self._model_ids: dict[tuple[str, int, str], int] = {}
        """Model rows by (name, version, sha256): never deleted, so their ids are kept after the first run."""

    def _session(self) -> contextlib.AbstractContextManager[Session]:
        return transaction(self._sessions)

    # -- writing ----------------------------------------------------------------------------------------

    def validate(self, run: RunRecord) -> None:
        """Refuse a run whose values do not fit the schema (InvalidInput), without touching the database."""
        _validate(run, self._text_rules)

    def save_run(self, run: RunRecord) -> bool:
        """Store a run with its summaries and findings in one transaction.

        Returns True if stored now, False if the same run was already stored (a retry, by a client or
        by the spool after a write whose answer was lost); raises InvalidInput if another payload holds
        this run id, or if a value does not fit a column.
        """
        return self.save_runs([run])[0]

    def save_runs(self, runs: Sequence[RunRecord]) -> list[bool]:
        """Store several runs in one transaction, each answered as `save_run` answers it (the spool's writer
        replaying what accumulated). A transaction's own cost (a connection's checkout, the session, the
        commit: about 0.3 ms on SQLite, half of a small run's write) is paid once for all of them.

        All or nothing: when one run is refused (InvalidInput) none is stored, and the caller stores them one
        at a time to learn which."""
        for run in runs:
            _validate(run, self._text_rules)
        try:
            try:
                return self._save(runs)
            except sa_exc.IntegrityError:
                dropped = [self._model_ids.pop(_model_key(run), None) for run in runs]
                if all(model_id is None for model_id in dropped):
                    raise
                return self._save(runs)  # a model row it kept the id of is gone (the tables were emptied)
        except sa_exc.DataError as exc:  # a value this database cannot hold: the run never will be stored
            named = f"run '{runs[0].run_id}'" if len(runs) == 1 else f"one of {len(runs)} runs written together"
            raise InvalidInput(
                f"Expected values the run database can hold; it refused {named}: {first_line(exc)}"
            ) from exc

    def _save(self, runs: Sequence[RunRecord]) -> list[bool]:
        stored: list[bool] = []
        model_ids: dict[tuple[str, int, str], int] = {}
        summaries: list[dict[str, Any]] = []
        findings: list[dict[str, Any]] = []
        probes: list[dict[str, Any]] = []
        with self._session() as session:
            connection = session.connection()  # Core statements: the ORM's bulk path cost more than the rows
            for run in runs:
                model = _model_key(run)
                model_id = self._model_ids.get(model) or model_ids.get(model) or _model_id(session, run)
                model_ids[model] = model_id
                inserted = connection.execute(self._run_insert, _run_values(run, model_id)).scalar_one_or_none()
                if inserted is None:  # stored before: a retry, or another run under this id
                    stored.append(_check_retry(session, _run_row(session, run.run_id), run))
                    continue
                stored.append(True)
                summaries += _summary_rows(run)
                findings += _finding_rows(run)
                probes += [_probe_row(run)] if run.probe else []
            for statement, rows in ((_SUMMARY_INSERT, summaries), (_FINDING_INSERT, findings), (_PROBE_INSERT, probes)):
                if rows:
                    connection.execute(statement, rows)
        self._model_ids.update(model_ids)  # only once committed: a rolled-back model row must not be cached
        return stored

    def retried(self, run: RunRecord) -> bool:
        """Whether a run with this id is stored and asks for what `run` asks for (a retry: nothing to write).
        False when no run holds the id; InvalidInput, naming what differs, when another run does."""
        with self._session() as session:
            row = session.get(RunRow, run.run_id)
            if row is None:
                return False
            _check_retry(session, row, run)
            return True

    def prune(self, older_than: datetime) -> int:
        """Delete runs created before `older_than`, with their summaries and findings; returns how many.

        Deletes by subquery, not by a list of ids, so a first prune of a year of runs stays one statement
        per table (SQLite caps the number of bound parameters).
        """
        cutoff = _as_utc(older_than)
        old = sa.select(RunRow.run_id).where(RunRow.created_at < cutoff)
        with self._session() as session:
            connection = session.connection()
            for table in (LayerSummaryRow, FindingRow, ProbeRow):
                connection.execute(sa.delete(table).where(table.run_id.in_(old)))
            return connection.execute(sa.delete(RunRow).where(RunRow.created_at < cutoff)).rowcount

    # -- reading ----------------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        """The run with its summaries (in capture order) and findings; NotFound if no such run."""
        with self._session() as session:
            row = _run_row(session, run_id)
            return dataclasses.replace(_record(row, _summaries(session, run_id)), probe=_probe(session, run_id))

    def list_runs(self, query: RunQuery) -> RunPage:
        """Newest first (ties by run id), with findings but without summaries; keyset-paginated.

        `since` is inclusive, `until` exclusive. The page token is opaque to callers and holds the
        position of the last run returned, so runs saved meanwhile neither repeat nor shift a page.
        """
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidInput(f"Expected a page limit between 1 and {MAX_PAGE}; received {query.limit}.")
        for label, value in (("model name", query.model_name), ("finding code", query.finding_code)):
            if value is not None and "\x00" in value:
                raise InvalidInput(f"Expected a {label} without NUL characters; received {value[:40]!r}.")
        statement = _filtered(query).order_by(RunRow.created_at.desc(), RunRow.run_id.desc())
        with self._session() as session:
            rows = list(session.scalars(statement.limit(query.limit + 1)))
            token = _encode_token(rows[query.limit - 1]) if len(rows) > query.limit else None
            return RunPage(tuple(_record(r, ()) for r in rows[: query.limit]), token)


# -- writing helpers -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _TextRules:
    in_bytes: bool = False
    """Length limits count UTF-8 bytes (a SQL_ASCII database), not characters."""
    codec: str | None = None
    """The Python codec of a database encoding that holds only some characters; None: any text."""
    encoding: str = "UTF8"


def _validate(run: RunRecord, rules: _TextRules = _TextRules()) -> None:
    """Refuse what PostgreSQL would refuse, on SQLite too, with a message naming the field.

    Without this a too-long layer name fails only on PostgreSQL, as a DataError the transport cannot map.
    """
    text = functools.partial(_text, rules=rules)
    text("run_id", run.run_id, _RUN.run_id, empty=False)
    text("model_name", run.model_name, _MODEL.name, empty=False)
    text("model_sha256", run.model_sha256, _MODEL.sha256)
    text("kind", run.kind, _RUN.kind)
    text("device", run.device, _RUN.device)
    text("inputs", run.inputs, _RUN.inputs)
    _integer("model_version", run.model_version, _INT32)
    _integer("batch_size", run.batch_size, _INT32)
    for s in run.summaries:
        text("summary layer", s.layer, _SUMMARY.layer)
        text("summary kind", s.kind, _SUMMARY.kind)
        for name in ("count", "nan", "posinf", "neginf"):
            _integer(f"summary {name} of {s.layer!r}", getattr(s.summary, name), _INT64)
    for f in run.findings:
        text("finding code", f.code, _FINDING.code, empty=False)
        if f.severity not in tuple(Severity):
            raise InvalidInput(f"Expected a finding severity of {[str(s) for s in Severity]}; received {f.severity!r}.")
        for value in (*f.layers, f.message, f.suggestion):
            text(f"finding {f.code!r}", value, _FINDING.message)


def _text(label: str, value: str, column: Any, *, empty: bool = True, rules: _TextRules = _TextRules()) -> None:
    limit: int | None = column.type.length
    if not isinstance(value, str) or (not empty and not value):
        raise InvalidInput(f"Expected {label} as a non-empty string; received {value!r}.")
    if limit is not None:
        _fits(label, value, limit, rules.in_bytes)
    if rules.codec is not None:
        _encodable(label, value, rules)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise InvalidInput(f"Expected {label} without NUL characters; received {value[:40]!r}.")


def _fits(label: str, value: str, limit: int, in_bytes: bool) -> None:
    if len(value) > limit:
        raise InvalidInput(f"Expected {label} of at most {limit} characters; received {len(value)}: {value[:40]!r}...")
    if in_bytes and (size := len(value.encode())) > limit:  # few enough characters, too many bytes: say why
        raise InvalidInput(
            f"Expected {label} of at most {limit} bytes in UTF-8 (the run database's encoding is SQL_ASCII, "
            f"whose limits count bytes, not characters); received {len(value)} characters in {size} bytes: "
            f"{value[:40]!r}..."
        )


def _encodable(label: str, value: str, rules: _TextRules) -> None:
    assert rules.codec is not None
    try:
        value.encode(rules.codec)
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"Expected {label} in characters the run database's encoding {rules.encoding} can hold; received "
            f"{value[:40]!r}, whose {value[exc.start]!r} it cannot (a database created with ENCODING 'UTF8' "
            "holds any name)."
        ) from None


def _integer(label: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidInput(f"Expected {label} as an integer between 0 and {limit}; received {value!r}.")


def insert_statement(session: Session, table: Any) -> Any:
    """INSERT with ON CONFLICT support: both dialects spell it alike, through different constructs."""
    return _dialect_insert(session.get_bind().dialect.name, table)


def _dialect_insert(dialect: str, table: Any) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _model_key(run: RunRecord) -> tuple[str, int, str]:
    return run.model_name, run.model_version, run.model_sha256


def _model_id(session: Session, run: RunRecord) -> int:
    """The model row's id, created if needed; a concurrent creator of the same model is no error."""
    values = {"name": run.model_name, "version": run.model_version, "sha256": run.model_sha256}
    lookup = sa.select(ModelRow.id).filter_by(**values)
    if (found := session.scalar(lookup)) is not None:
        return found
    session.execute(insert_statement(session, ModelRow).values(**values).on_conflict_do_nothing())
    return session.scalars(lookup).one()


def _run_insert(dialect: str) -> Any:
    """INSERT of a run row unless its id is taken, built once per store (building it took as long as running
    it). RETURNING, not rowcount: SQLAlchemy reports -1 rows for an INSERT through psycopg 3."""
    table = _TABLES["run"]
    return _dialect_insert(dialect, table).on_conflict_do_nothing(index_elements=["run_id"]).returning(table.c.run_id)


def _run_values(run: RunRecord, model_id: int) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "model_id": model_id,
        "kind": run.kind,
        "created_at": _as_utc(run.created_at),
        "batch_size": run.batch_size,
        "inputs": run.inputs,
        "device": run.device,
        "duration_seconds": run.duration_seconds,
    }


def _check_retry(session: Session, row: RunRow, offered: RunRecord) -> bool:
    """False when `offered` asks for what the stored run asked for; InvalidInput naming what differs."""
    layers = session.execute(
        sa.select(LayerSummaryRow.layer, LayerSummaryRow.kind)
        .where(LayerSummaryRow.run_id == row.run_id)
        .order_by(LayerSummaryRow.position)
    )
    stored = _request(row.model.name, row.model.version, row.model.sha256, row, [tuple(t) for t in layers])
    received = _request(
        offered.model_name,
        offered.model_version,
        offered.model_sha256,
        offered,
        [(s.layer, s.kind) for s in offered.summaries],
    )
    differing = [name for name in stored if stored[name] != received[name]]
    if differing:
        raise InvalidInput(
            f"Run '{offered.run_id}' is already stored for {stored['model']} ({row.kind}, batch "
            f"{row.batch_size}); expected a retry of that run, received another {', '.join(differing)}: "
            f"{received['model']} ({offered.kind}, batch {offered.batch_size}). Choose a new run id."
        )
    return False


def retry_key(run: RunRecord) -> dict[str, Any]:
    """What a run asked for, as `_request` compares it: a retry of a run has the same key."""
    layers = [(s.layer, s.kind) for s in run.summaries]
    return _request(run.model_name, run.model_version, run.model_sha256, run, layers)


def _request(name: str, version: int, sha256: str, run: RunRow | RunRecord, layers: list[Any]) -> dict[str, Any]:
    """What a run asked for, which a retry repeats; its times and measurements may differ and are not compared.

    A retried capture is computed again (a lost answer, a client retrying with its run id), so it has
    another `created_at` and duration, and on a GPU its statistics may differ in the last bits.
    """
    return {
        "model": f"{name}:{version}",
        "model_sha256": sha256,
        "kind": run.kind,
        "batch_size": run.batch_size,
        "inputs": run.inputs,
        "layers": [tuple(pair) for pair in layers],
    }


def _summary_rows(run: RunRecord) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run.run_id,
            "position": i,
            "layer": s.layer,
            "kind": s.kind,
            "count": int(s.summary.count),
            "mean": float(s.summary.mean),
            "std": float(s.summary.std),
            "min": float(s.summary.min),
            "max": float(s.summary.max),
            "zero_fraction": float(s.summary.zero_fraction),
            "nan": int(s.summary.nan),
            "posinf": int(s.summary.posinf),
            "neginf": int(s.summary.neginf),
            "histogram": [int(h) for h in s.summary.histogram],
            "histogram_low": float(s.summary.histogram_range[0]),
            "histogram_high": float(s.summary.histogram_range[1]),
            "unit_activity": _json_floats(s.summary.unit_activity),
            "histogram_sample": s.summary.histogram_sample,
        }
        for i, s in enumerate(run.summaries)
    ]


def _json_floats(values: tuple[float, ...]) -> list[float | None]:
    if all(map(math.isfinite, values)):  # nearly always: one pass in C instead of a call per unit
        return list(values)
    return [_json_float(a) for a in values]


def _json_float(value: float) -> float | None:
    """PostgreSQL's json refuses NaN and Infinity; unit activity is a fraction, so None marks a broken one."""
    number = float(value)
    return number if math.isfinite(number) else None


def _finding_rows(run: RunRecord) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run.run_id,
            "position": i,
            "code": f.code,
            "severity": Severity(f.severity).value,
            "layers": list(f.layers),
            "message": f.message,
            "suggestion": f.suggestion,
            "evidence": jsonable(f.evidence),
        }
        for i, f in enumerate(run.findings)
    ]


# -- reading helpers -------------------------------------------------------------------------------------


def _run_row(session: Session, run_id: str) -> RunRow:
    # An id PostgreSQL could not even compare (NUL) names no stored run.
    row = None if "\x00" in run_id else session.get(RunRow, run_id, populate_existing=True)
    if row is None:
        raise NotFound(f"Expected a stored run with id {quoted(run_id)}; received an id that is not stored.")
    return row


def _summaries(session: Session, run_id: str) -> tuple[LayerSummaryRecord, ...]:
    rows = session.scalars(
        sa.select(LayerSummaryRow).where(LayerSummaryRow.run_id == run_id).order_by(LayerSummaryRow.position)
    )
    return tuple(_summary(s) for s in rows)


def _filtered(query: RunQuery) -> sa.Select[RunRow]:
    """The runs a query selects, before ordering and paging."""
    statement = sa.select(RunRow).join(RunRow.model).options(contains_eager(RunRow.model))
    if query.model_name is not None:
        statement = statement.where(ModelRow.name == query.model_name)
    if query.model_version is not None:
        statement = statement.where(ModelRow.version == query.model_version)
    if query.since is not None:
        statement = statement.where(RunRow.created_at >= _as_utc(query.since))
    if query.until is not None:
        statement = statement.where(RunRow.created_at < _as_utc(query.until))
    if query.finding_code is not None:
        has_code = sa.select(FindingRow.run_id).where(FindingRow.code == query.finding_code)
        statement = statement.where(RunRow.run_id.in_(has_code))
    if query.page_token:
        created, run_id = _decode_token(query.page_token)
        # The first condition is implied by the second; it gives the planner a range on the index.
        statement = statement.where(
            RunRow.created_at <= created,
            sa.or_(RunRow.created_at < created, RunRow.run_id < run_id),
        )
    return statement


def _summary(row: LayerSummaryRow) -> LayerSummaryRecord:
    return LayerSummaryRecord(
        row.layer,
        row.kind,
        Summary(
            count=row.count,
            mean=row.mean,
            std=row.std,
            min=row.min,
            max=row.max,
            zero_fraction=row.zero_fraction,
            nan=row.nan,
            posinf=row.posinf,
            neginf=row.neginf,
            histogram=tuple(int(h) for h in row.histogram),
            histogram_range=(row.histogram_low, row.histogram_high),
            unit_activity=tuple(math.nan if a is None else float(a) for a in row.unit_activity),
            histogram_sample=row.histogram_sample,
        ),
    )


def _record(row: RunRow, summaries: tuple[LayerSummaryRecord, ...]) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        model_name=row.model.name,
        model_version=row.model.version,
        model_sha256=row.model.sha256,
        kind=row.kind,
        created_at=_as_utc(row.created_at),
        batch_size=row.batch_size,
        inputs=row.inputs,
        device=row.device,
        duration_seconds=row.duration_seconds,
        summaries=summaries,
        findings=tuple(_finding(f) for f in row.findings),
    )


def _probe_row(run: RunRecord) -> dict[str, Any]:
    probe = run.probe or ProbeResult((), "", "")
    return {
        "run_id": run.run_id,
        "optimizer": probe.optimizer[:128],
        "loss": probe.loss[:512],
        "data": json.dumps(probe_to_data(probe), allow_nan=True),
    }


def _probe(session: Session, run_id: str) -> ProbeResult | None:
    row = session.get(ProbeRow, run_id)
    return None if row is None else probe_from_data(json.loads(row.data))


def _finding(row: FindingRow) -> Finding:
    evidence: Mapping[str, Any] = dict(row.evidence)
    return Finding(row.code, Severity(row.severity), tuple(row.layers), row.message, row.suggestion, evidence)


def _as_utc(value: datetime) -> datetime:
    """UTC, tz-aware. Naive values are UTC already: SQLite hands them back so, and callers are told so.

    SQLite stores a datetime as text without its offset, so an aware value in another zone must be
    converted before it is written or compared, or 14:00+02:00 would sort as 14:00 UTC.
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _encode_token(row: RunRow) -> str:
    return base64.urlsafe_b64encode(f"{_as_utc(row.created_at).isoformat()}|{row.run_id}".encode()).decode()


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        created, run_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return _as_utc(datetime.fromisoformat(created)), run_id
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise InvalidInput(f"Expected a page token from a previous ListRuns answer; received {quoted(token)}.") from exc
