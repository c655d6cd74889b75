"""The use cases (`Inspector`) on in-memory fakes of what they use: the models (ModelLifecycle's `get` and
`loaded`), an engine (the `Engine` protocol), the run store (`RunStore`) and the diagnoser. No server, no
model: what is refused before the engine runs, what is stored and when, and what the model's health shows.

inspector.py names the engine's types for type checking only, so importing it starts no TensorFlow (the fast
tier's guard in tests/conftest.py fails the run if it did).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from layerscope.service.domain.capture import CaptureReply, CaptureRequest, CaptureResult, check_full_size
from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.model_health import ModelHealth
from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.domain.runs import RunPage, RunQuery, RunRecord
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import summarize
from layerscope.service.domain.training import ProbeResult, ProbeStep, TrainingOptions
from layerscope.service.errors import Cancelled, InvalidInput, LimitExceeded, NotFound, Overloaded, ServiceError
from layerscope.service.settings import Settings
from layerscope.service.telemetry import Telemetry

REF = ModelRef("m")
X = np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3)
"""A batch of 4: the largest the fakes' settings allow."""
DENSE = LayerInfo("dense", "Dense", {}, ((None, 3),), ((None, 1000),), (), 3000)
"""Declares a wide output, so its full activations are too large for the byte limit by their shape alone."""


class FakeEngine:
    """The `Engine` protocol: records its calls; can fail, or hold a capture until its gate opens."""

    device = "CPU:0"
    inputs = (InputSpec("x", (None, 3), "float32"),)
    output_names = ["y"]  # noqa: RUF012 - the protocol's attribute
    output_specs = (InputSpec("y", (None, 1), "float32"),)

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    @property
    def layer_classes(self) -> list[tuple[str, str]]:
        return [("dense", "Dense"), ("relu", "ReLU")]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append("predict")
        return {"y": inputs["x"][:, :1]}

    def run(self, request: CaptureRequest) -> CaptureReply:
        """One call per Capture or Diagnose, as the engine protocol has it: the budget, the capture, the
        evidence and the probe asked for."""
        self.calls.append("run" + (f" probe {request.probe.steps}" if request.probe else ""))
        self.entered.set()
        self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        x = next(iter(request.inputs.values()))
        relu = np.maximum(x, 0)
        summaries = {"dense": {"activation": summarize(x)}, "relu": {"activation": summarize(relu)}}
        tensors = {"relu": {"activation": relu}} if request.selection.full else {}
        if request.max_full_bytes is not None:
            check_full_size(sum(t.nbytes for k in tensors.values() for t in k.values()), request.max_full_bytes)
        result = CaptureResult({"y": x[:, :1]}, summaries, tensors, {"dense": "Dense", "relu": "ReLU"}, len(x))
        probe = None
        if request.probe is not None:
            probe = ProbeResult(
                (ProbeStep(0, 1.0, {"dense": 0.5}), ProbeStep(1, 0.8)), "SGD(learning_rate=0.01)", "mse"
            )
        inputs = {"x": summarize(x)} if request.evidence else {}
        return CaptureReply(result, inputs, probe=probe)


@dataclass
class FakeModel:
    """What the Inspector reads of a `LoadedModel`; `health` is replaced as the Inspector observes it."""

    info: ModelInfo
    engine: FakeEngine
    description: ModelDescription
    health: ModelHealth


class FakeModels:
    """The part of `ModelLifecycle` the use cases call."""

    def __init__(self, *models: FakeModel) -> None:
        self._models = {(m.info.name, m.info.version): m for m in models}

    def get(self, ref: ModelRef) -> FakeModel:
        versions = sorted(v for n, v in self._models if n == ref.name)
        if not versions or (ref.version is not None and ref.version not in versions):
            raise NotFound(f"Expected a loaded model {ref.name!r}; received a name or version that is not loaded.")
        return self._models[(ref.name, ref.version or versions[-1])]

    def loaded(self) -> list[FakeModel]:
        return list(self._models.values())


class FakeStore:
    """A `RunStore` in a dict."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}

    def validate(self, run: RunRecord) -> None:
        pass

    def save_run(self, run: RunRecord, fresh: bool = False) -> bool:
        stored = run.run_id not in self.runs
        self.runs.setdefault(run.run_id, run)
        return stored

    def get_run(self, run_id: str) -> RunRecord:
        if run_id not in self.runs:
            raise NotFound(f"Expected a stored run; received an unknown id {run_id!r}.")
        return self.runs[run_id]

    def list_runs(self, query: RunQuery) -> RunPage:
        return RunPage(list(self.runs.values())[: query.limit], None)


class FakeDiagnoser:
    """No rules of its own (the health gauges use the default thresholds); answers with the findings given."""

    rules = ()

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def diagnose(self, description: ModelDescription, evidence: Any = None) -> list[Finding]:
        return list(self.findings)


@dataclass
class Rig:
    inspector: Any
    model: FakeModel
    engine: FakeEngine
    store: FakeStore
    diagnoser: FakeDiagnoser
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def inspector() -> ModuleType:
    from layerscope.service import inspector

    return inspector


@pytest.fixture()
def rig(inspector: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Rig:
    engine = FakeEngine()
    info = ModelInfo(
        "m",
        1,
        "a" * 64,
        3000,
        ("dense", "relu"),
        engine.inputs,
        ("y",),
        output_specs=(InputSpec("y", (None, 1), "float32"),),
    )
    description = ModelDescription("m", (DENSE,), engine.inputs, ("y",), 3000)
    model = FakeModel(info, engine, description, ModelHealth("m", 1))
    store, diagnoser, registry = FakeStore(), FakeDiagnoser(), CollectorRegistry()
    settings = Settings(max_batch_size=4, max_queue_per_model=1, max_tensor_bytes=4096, probe_steps=2)
    use_cases = inspector.Inspector(settings, FakeModels(model), store, diagnoser, Telemetry(registry))
    return Rig(use_cases, model, engine, store, diagnoser, registry)


def capture(rig: Rig, x: np.ndarray = X, run_id: str = "", **kwargs: Any) -> Any:
    return rig.inspector.capture(REF, {"x": x}, kwargs.pop("selection", Selection()), run_id, 0, **kwargs)


# -- what is stored, and when --------------------------------------------------------------------------------------


async def test_a_capture_is_stored_once_it_has_succeeded(rig: Rig) -> None:
    outcome = await capture(rig, run_id="mine")
    assert rig.engine.calls == ["run"]
    assert rig.store.runs == {"mine": outcome.run}
    run = outcome.run
    assert (run.kind, run.model_name, run.model_version, run.model_sha256) == ("capture", "m", 1, "a" * 64)
    assert (run.batch_size, run.device, run.inputs) == (4, "CPU:0", "x: float32[4, 3]")
    assert {(s.layer, s.kind) for s in run.summaries} == {("dense", "activation"), ("relu", "activation")}
    assert rig.metric("layerscope_capture_duration_seconds_count", model="m") == 1


async def test_a_run_without_an_id_gets_a_fresh_one(rig: Rig) -> None:
    first, second = await capture(rig), await capture(rig)
    assert first.run.run_id != second.run.run_id and set(rig.store.runs) == {first.run.run_id, second.run.run_id}


@pytest.mark.parametrize("use_case", ["capture", "diagnose"])
async def test_an_engine_that_raises_stores_nothing_changes_no_health_and_frees_its_place(
    rig: Rig, use_case: str
) -> None:
    rig.engine.fail = RuntimeError("the device fell over")
    call: Callable[[], Any] = (
        (lambda: capture(rig)) if use_case == "capture" else (lambda: rig.inspector.diagnose(REF, {"x": X}, ""))
    )
    with pytest.raises(RuntimeError, match="fell over"):
        await call()
    assert rig.store.runs == {}
    assert rig.model.health == ModelHealth("m", 1)
    rig.engine.fail = None
    await call()  # the queue (one place per model here) was released
    assert len(rig.store.runs) == 1


async def test_a_capture_whose_caller_left_while_it_ran_stores_no_run(rig: Rig) -> None:
    """The run is stored in the capture's own thread: a caller told CANCELLED or DEADLINE_EXCEEDED while the
    engine ran (the transport sets the call's flag) gets no run stored in its name."""
    from layerscope.service import cancellation

    flag = cancellation.start_call()
    rig.engine.gate.clear()
    call = asyncio.ensure_future(capture(rig, run_id="gone"))
    await asyncio.to_thread(rig.engine.entered.wait, 5)
    flag.set()  # the deadline passes while the engine runs
    rig.engine.gate.set()
    with pytest.raises(Cancelled):
        await call
    assert rig.store.runs == {}
    cancellation.start_call()  # a new call: the same use case stores its run
    assert (await capture(rig, run_id="next")).run.run_id in rig.store.runs


# -- admission: refused before the engine runs -------------------------------------------------------------------


@pytest.mark.parametrize("use_case", ["predict", "capture", "diagnose"])
async def test_a_batch_over_the_limit_is_refused_before_the_engine_runs(rig: Rig, use_case: str) -> None:
    big = np.zeros((5, 3), "float32")
    calls = {
        "predict": lambda: rig.inspector.predict(REF, {"x": big}),
        "capture": lambda: capture(rig, big),
        "diagnose": lambda: rig.inspector.diagnose(REF, {"x": big}, ""),
    }
    with pytest.raises(LimitExceeded) as refused:
        await calls[use_case]()
    assert refused.value.message == "Expected a batch of at most 4 for input 'x'; received 5."
    assert rig.engine.calls == [] and rig.store.runs == {}


async def test_a_full_model_queue_refuses_before_the_engine_runs_and_after_the_batch_check(rig: Rig) -> None:
    rig.engine.gate.clear()
    first = asyncio.ensure_future(capture(rig, run_id="first"))
    await asyncio.to_thread(rig.engine.entered.wait, 5)  # the first call holds the model's only place
    with pytest.raises(Overloaded) as refused:
        await capture(rig, run_id="second")
    assert refused.value.message == (
        "Model 'm' version 1 has 1 calls queued or running, its limit; expected fewer concurrent calls. Retry later."
    )
    with pytest.raises(Overloaded):
        await rig.inspector.diagnose(REF, None, "third")
    assert rig.metric("layerscope_rejected_rpcs_total", reason="model_queue") == 2
    # The cheaper checks come first: a call the queue would refuse is refused for its batch or its names.
    with pytest.raises(LimitExceeded, match="received 5"):
        await capture(rig, np.zeros((5, 3), "float32"))
    with pytest.raises(InvalidInput, match="match none"):
        await capture(rig, selection=Selection(layers=("conv*",)))
    assert rig.metric("layerscope_rejected_rpcs_total", reason="model_queue") == 2
    assert rig.engine.calls == ["run"], "only the first call reached the engine"
    rig.engine.gate.set()
    await first
    assert set(rig.store.runs) == {"first"}


REFUSALS: dict[str, tuple[type[ServiceError], Callable[[Rig], Any], tuple[str, ...]]] = {
    "run id": (
        InvalidInput,
        lambda rig: capture(rig, run_id="x" * 200),
        ("Expected a run id of at most 128 printable characters", "received 200 characters"),
    ),
    "negative byte limit": (
        InvalidInput,
        lambda rig: rig.inspector.capture(REF, {"x": X}, Selection(), "", -1),
        ("Expected max_tensor_bytes >= 0", "received -1"),
    ),
    "no inputs": (
        InvalidInput,
        lambda rig: rig.inspector.capture(REF, {}, Selection(), "", 0),
        ("Expected at least one input tensor; received none.",),
    ),
    "unknown layer": (
        InvalidInput,
        lambda rig: capture(rig, selection=Selection(layers=("conv*",))),
        ("Expected `layers` patterns that name layers of the model; received ['conv*']",),
    ),
    "full tensors too large by their shapes": (
        LimitExceeded,
        lambda rig: capture(rig, selection=Selection(full=("dense",))),
        ("Expected full tensors of at most 4096 bytes per capture", "the layers asked for hold 16000 bytes"),
    ),
    "targets without inputs": (
        InvalidInput,
        lambda rig: rig.inspector.diagnose(REF, None, "", TrainingOptions(targets={"y": X[:, :1]})),
        ("Expected inputs x with the targets y", "received none"),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refusals_say_what_was_expected_and_what_was_received(rig: Rig, case: str) -> None:
    error, call, fragments = REFUSALS[case]
    with pytest.raises(error) as refused:
        await call(rig)
    for fragment in fragments:
        assert fragment in refused.value.message
    assert rig.store.runs == {} and rig.engine.calls == []


# -- what the model's health shows ---------------------------------------------------------------------------------


async def test_an_ad_hoc_capture_never_sets_the_live_layer_health(rig: Rig) -> None:
    """The per-layer gauges describe production traffic (live monitoring's windows), not the last caller: one
    all-zero batch from a notebook must not read as a dead layer."""
    await capture(rig)
    assert rig.model.health.layers == () and rig.model.health.findings == {}
    assert [h.layers for h in rig.inspector.model_health()] == [()]


async def test_a_diagnosis_counts_its_findings_and_a_later_capture_keeps_them(rig: Rig) -> None:
    finding = Finding("dead-units", Severity.WARNING, ("relu",), "Units never fire.", "Lower the learning rate.")
    rig.diagnoser.findings = [finding, replace(finding, layers=("dense",))]
    outcome = await rig.inspector.diagnose(REF, {"x": X}, "d1")
    assert outcome.findings == rig.diagnoser.findings and rig.store.runs["d1"].findings == tuple(outcome.findings)
    assert rig.model.health.findings == {("dead-units", "warning"): 2}
    assert rig.metric("layerscope_findings_total", model="m", code="dead-units", severity="warning") == 2
    await capture(rig)
    assert rig.model.health.findings == {("dead-units", "warning"): 2}, "a capture runs no rules: findings stay"


async def test_a_diagnosis_without_inputs_probes_with_generated_ones(rig: Rig) -> None:
    outcome = await rig.inspector.diagnose(REF, None, "")
    assert outcome.inputs_used.startswith("probe inputs: 24 rows per input")
    assert outcome.run.kind == "diagnose" and outcome.run.batch_size == 24
    assert rig.engine.calls == ["run"]


async def test_a_diagnosis_with_targets_stores_its_probe_and_the_gradient_norms(rig: Rig) -> None:
    outcome = await rig.inspector.diagnose(REF, {"x": X}, "", TrainingOptions(targets={"y": X[:, :1]}))
    assert rig.engine.calls == ["run probe 2"], "the settings' probe_steps when the caller names none"
    assert outcome.run.probe is not None and outcome.run.probe.optimizer == "SGD(learning_rate=0.01)"
    assert rig.store.runs[outcome.run.run_id].probe == outcome.run.probe
    assert rig.model.health.gradient_norms == {"dense": 0.5}
