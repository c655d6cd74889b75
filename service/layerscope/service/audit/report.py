"""The `layerscope.audit/v1` document: built the same way for a local audit and one through a server, merged
from shard reports, and scored into the exit status a CI gate reads.

Its shape is a fixed contract (schema, models[source, sha256, parameters, error, findings, layers]); fields
are only ever added (tool, totals, shard), never renamed or removed. This module is the only place that spells
it. Entries are plain JSON data, so audit processes can hand them back. It reads findings, summaries and
model descriptions through protocols, so the service's own objects (a local audit) and the client's (an
audit through a server) describe a model with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from layerscope.service.domain.jsonable import jsonable

SCHEMA = "layerscope.audit/v1"
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
SEVERITIES = ("error", "warning", "info")

Entry = dict[str, Any]
Document = dict[str, Any]


class FindingLike(Protocol):
    """A finding as the service's rules make it or as the client receives it."""

    @property
    def code(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def layers(self) -> Sequence[str]: ...
    @property
    def message(self) -> str: ...
    @property
    def suggestion(self) -> str: ...
    @property
    def evidence(self) -> Mapping[str, Any]: ...


class StatsLike(Protocol):
    """An activation summary, from the service's capture or from a stored run."""

    @property
    def mean(self) -> float: ...
    @property
    def std(self) -> float: ...
    @property
    def min(self) -> float: ...
    @property
    def max(self) -> float: ...
    @property
    def zero_fraction(self) -> float: ...
    @property
    def nan(self) -> int: ...
    @property
    def posinf(self) -> int: ...
    @property
    def neginf(self) -> int: ...
    @property
    def histogram(self) -> Sequence[int]: ...
    @property
    def histogram_range(self) -> tuple[float, float]: ...
    @property
    def histogram_sample(self) -> int | None: ...


class LayerDetailLike(Protocol):
    """A layer as loading describes it: the service's `LayerDetail` or the client's."""

    @property
    def name(self) -> str: ...
    @property
    def class_name(self) -> str: ...
    @property
    def output_shape(self) -> Sequence[int | None]: ...


class ModelInfoLike(Protocol):
    """A loaded model as the service's registry or the client's `upload_model` describes it."""

    @property
    def parameters(self) -> int: ...
    @property
    def layer_details(self) -> Sequence[LayerDetailLike]: ...


def finding(f: FindingLike) -> dict[str, Any]:
    return {
        "code": f.code,
        "severity": str(f.severity),
        "layers": list(f.layers),
        "message": f.message,
        "suggestion": f.suggestion,
        "evidence": jsonable(f.evidence),
    }


def layer(name: str, class_name: str, output_shape: Sequence[int | None], stats: StatsLike | None) -> dict[str, Any]:
    """One layer row. Beside the contract's keys, `histogram` holds the activation's value histogram (the bins
    the capture already computes: counts over `range`), which the HTML report draws for flagged layers."""
    activation = None
    histogram = None
    if stats is not None:
        histogram = {
            "counts": [int(c) for c in stats.histogram],
            "range": [float(v) for v in stats.histogram_range],
            # Set when the counts bin a fixed sample of this many values (an estimate), null when they bin all.
            "sample": stats.histogram_sample,
        }
        activation = {
            "mean": stats.mean,
            "std": stats.std,
            "min": stats.min,
            "max": stats.max,
            "zero_fraction": stats.zero_fraction,
            "nan": stats.nan,
            "inf": stats.posinf + stats.neginf,
        }
    return {
        "name": name,
        "class": class_name,
        "output_shape": list(output_shape),
        "activation": activation,
        "histogram": histogram,
    }


class ProbeStepLike(Protocol):
    @property
    def step(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def gradient_norms(self) -> Mapping[str, float]: ...
    @property
    def update_ratios(self) -> Mapping[str, float]: ...
    @property
    def dead_fractions(self) -> Mapping[str, float]: ...
    @property
    def saturated_fractions(self) -> Mapping[str, float]: ...


class ProbeLike(Protocol):
    """A training probe, from the service's diagnosis or as the client receives it."""

    @property
    def steps(self) -> Sequence[ProbeStepLike]: ...
    @property
    def optimizer(self) -> str: ...
    @property
    def loss(self) -> str: ...


def probe(p: ProbeLike) -> dict[str, Any]:
    """`{"optimizer", "loss", "steps": [{"step", "loss", "gradient_norms", ...}]}`; a non-finite number is
    written as the string "nan", "inf" or "-inf" (JSON has no such numbers)."""
    return {
        "optimizer": p.optimizer,
        "loss": p.loss,
        "steps": [
            {
                "step": s.step,
                "loss": _number(s.loss),
                "gradient_norms": {k: _number(v) for k, v in s.gradient_norms.items()},
                "update_ratios": {k: _number(v) for k, v in s.update_ratios.items()},
                "dead_fractions": dict(s.dead_fractions),
                "saturated_fractions": dict(s.saturated_fractions),
            }
            for s in p.steps
        ],
    }


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def entry(
    source: str,
    sha256: str,
    parameters: int,
    findings: Iterable[FindingLike],
    layers: Iterable[dict[str, Any]],
    seconds: float,
    training_probe: ProbeLike | None = None,
) -> Entry:
    """One audited model; `probe` only when a training probe ran (`--targets`)."""
    result: Entry = {
        "source": source,
        "sha256": sha256,
        "parameters": parameters,
        "error": None,
        "findings": [finding(f) for f in findings],
        "layers": list(layers),
        "seconds": round(seconds, 3),
    }
    if training_probe is not None:
        result["probe"] = probe(training_probe)
    return result


def described(
    source: str,
    sha256: str,
    info: ModelInfoLike,
    activations: Mapping[str, StatsLike],
    findings: Iterable[FindingLike],
    seconds: float,
    training_probe: ProbeLike | None = None,
) -> Entry:
    """One audited model: every layer loading described, each with its activation summary from the diagnosis'
    capture when it has one (keyed by layer name)."""
    layers = (layer(d.name, d.class_name, d.output_shape, activations.get(d.name)) for d in info.layer_details)
    return entry(source, sha256, info.parameters, findings, layers, seconds, training_probe)


def failed(source: str, sha256: str, code: str, message: str, seconds: float) -> Entry:
    """One model that could not be audited: `code` is a gRPC status name (`invalid-argument`, `internal`),
    the same whether the audit ran here or through a server."""
    return {
        "source": source,
        "sha256": sha256,
        "parameters": 0,
        "error": {"code": code, "message": message},
        "findings": [],
        "layers": [],
        "seconds": round(seconds, 3),
    }


def document(entries: Iterable[Entry], shard: Mapping[str, Any] | None = None) -> Document:
    """The document: its schema, the tool that wrote it, totals over the models, and the models in order; a
    shard's report also carries its `shard` stamp (`shards.stamp`), which `merge` checks."""
    models = list(entries)
    doc: Document = {"schema": SCHEMA, "tool": tool(), "totals": totals(models), "models": models}
    if shard is not None:
        doc["shard"] = dict(shard)
    return doc


def tool() -> dict[str, str]:
    """The program that wrote the document (a merge is written by the merging one)."""
    try:
        release = version("layerscope")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "unknown"
    return {"name": "layerscope", "version": release}


def totals(models: Sequence[Entry]) -> dict[str, Any]:
    """What a CI step or a dashboard reads first: how many models, how many audited, clean, and the findings by
    severity (`not_audited` models have an `error` and no findings)."""
    audited = [m for m in models if not m["error"]]
    return {
        "models": len(models),
        "audited": len(audited),
        "not_audited": len(models) - len(audited),
        "clean": sum(1 for m in audited if not m["findings"]),
        "findings": {s: sum(f["severity"] == s for m in models for f in m["findings"]) for s in SEVERITIES},
    }


class MergeRefused(ValueError):
    """Shard reports that do not join into one document; the message says which and why."""


def merge(reports: Iterable[tuple[str, Any]]) -> Document:
    """Join shard reports (name, parsed JSON) into one document sorted by source. Refused: a report of another
    schema, shards that did not split one batch the same way or leave one out, and a model in two shards."""
    docs = list(reports)
    for name, doc in docs:
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema != SCHEMA:
            raise MergeRefused(f"expected schema {SCHEMA} in {name}; received {schema!r}")
    _check_shards([(name, doc.get("shard")) for name, doc in docs])  # first: it names the cause of an overlap
    models: dict[str, Entry] = {}
    for _, doc in docs:
        for model in doc["models"]:
            if model["source"] in models:
                raise MergeRefused(f"{model['source']} appears in two shard reports; expected each once")
            models[model["source"]] = model
    return document(models[source] for source in sorted(models))


def _check_shards(stamps: Sequence[tuple[str, Mapping[str, Any] | None]]) -> None:
    """Stamped shard reports must split one batch one way, each shard once; when every report is a stamped
    shard, all N must be there: a missing shard's models would silently leave the gate. Reports without a
    stamp (a whole audit, or one written before stamps) are joined as they are."""
    stamped = [(name, stamp) for name, stamp in stamps if stamp is not None]
    if not stamped:
        return
    first_name, first = stamped[0]
    seen: dict[int, str] = {}
    for name, stamp in stamped:
        if _batch_of(stamp) != _batch_of(first):
            raise MergeRefused(
                f"expected shards of one batch split one way; {name} is {_described(stamp)} but {first_name} is "
                f"{_described(first)} (every shard needs the same files, N and --shard-by)"
            )
        if stamp["index"] in seen:
            raise MergeRefused(
                f"{seen[stamp['index']]} and {name} are both shard {stamp['index']}/{stamp['count']}; expected each "
                "shard once"
            )
        seen[stamp["index"]] = name
    missing = sorted(set(range(first["count"])) - set(seen))
    if missing and len(stamped) == len(stamps):
        names = ", ".join(f"{i}/{first['count']}" for i in missing)
        raise MergeRefused(
            f"expected all {first['count']} shard reports of the batch of {first['of']} files; received "
            f"{len(stamped)}, shard {names} missing (its models would be left out of the gate)"
        )


def _batch_of(stamp: Mapping[str, Any]) -> tuple[Any, ...]:
    return stamp["count"], stamp["by"], stamp["of"], stamp["batch"]


def _described(stamp: Mapping[str, Any]) -> str:
    return f"shard {stamp['index']}/{stamp['count']} by {stamp['by']} of {stamp['of']} files ({stamp['batch'][:12]})"


def exit_status(doc: Document, fail_on: str) -> int:
    """2 when a model could not be audited, 1 on findings at or above `fail_on`, else 0."""
    models = doc["models"]
    if any(m["error"] for m in models):
        return 2
    if fail_on == "never":
        return 0
    threshold = SEVERITY_RANK[fail_on]
    hit = any(SEVERITY_RANK[f["severity"]] >= threshold for m in models for f in m["findings"])
    return 1 if hit else 0
