"""The Inspector service: each method converts the request, awaits the application, converts the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from layerscope.client import codec
from layerscope.service.domain.text import quoted
from layerscope.service.errors import InvalidInput
from layerscope.service.grpc import convert, monitor_convert
from layerscope.service.inspector import Inspector
from layerscope.v1 import capture_pb2, diagnosis_pb2, inspector_pb2_grpc, models_pb2, monitor_pb2, runs_pb2

Context: TypeAlias = grpc.aio.ServicerContext


class InspectorServicer(inspector_pb2_grpc.InspectorServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, inspector: Inspector, chunk_bytes: int = codec.CHUNK_BYTES) -> None:
        self._inspector = inspector
        self._chunk_bytes = chunk_bytes

    async def UploadModel(
        self, requests: AsyncIterator[models_pb2.UploadModelRequest], context: Context
    ) -> models_pb2.ModelInfo:
        first = await anext(aiter(requests), None)
        if first is None or not first.HasField("header"):
            raise InvalidInput("Expected an UploadHeader as the first message; received a chunk or nothing.")
        header = first.header

        async def chunks() -> AsyncIterator[bytes]:
            async for request in requests:
                if not request.HasField("chunk"):
                    raise InvalidInput("Expected archive chunks after the header; received a second header.")
                yield request.chunk

        info = await self._inspector.upload_model(
            header.name, header.version or None, chunks(), header.sha256, header.load, header.transient
        )
        return convert.model_info(info)

    async def LoadModel(self, request: models_pb2.LoadModelRequest, context: Context) -> models_pb2.ModelInfo:
        return convert.model_info(await self._inspector.load_model(convert.model_ref(request.model)))

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Context
    ) -> models_pb2.ListModelsResponse:
        return models_pb2.ListModelsResponse(models=[convert.model_info(m) for m in self._inspector.list_models()])

    async def UnloadModel(
        self, request: models_pb2.UnloadModelRequest, context: Context
    ) -> models_pb2.UnloadModelResponse:
        info = await self._inspector.unload_model(convert.model_ref(request.model), remove=request.remove)
        return models_pb2.UnloadModelResponse(model=convert.model_info(info))

    async def Predict(self, request: models_pb2.PredictRequest, context: Context) -> models_pb2.PredictResponse:
        info, outputs = await self._inspector.predict(convert.model_ref(request.model), convert.inputs(request.inputs))
        return models_pb2.PredictResponse(model=convert.model_info(info), outputs=convert.tensors(outputs))

    async def Capture(
        self, request: capture_pb2.CaptureRequest, context: Context
    ) -> AsyncIterator[capture_pb2.CaptureResponse]:
        outcome = await self._inspector.capture(
            convert.model_ref(request.model),
            convert.inputs(request.inputs),
            convert.selection(request),
            request.run_id,
            request.max_tensor_bytes,
            convert.statistics(request),
            convert.capture_training(request),
        )
        batched, in_header = request.batch_summaries, request.summaries_in_header
        for message in convert.capture_stream(outcome.run, outcome.result, self._chunk_bytes, batched, in_header):
            yield message

    async def Diagnose(
        self, request: diagnosis_pb2.DiagnoseRequest, context: Context
    ) -> diagnosis_pb2.DiagnoseResponse:
        arrays = convert.inputs(request.inputs) if request.inputs else None
        outcome = await self._inspector.diagnose(
            convert.model_ref(request.model), arrays, request.run_id, convert.diagnose_training(request)
        )
        return diagnosis_pb2.DiagnoseResponse(
            run_id=outcome.run.run_id,
            findings=[convert.finding(f) for f in outcome.findings],
            inputs_used=outcome.inputs_used,
            probe=convert.probe(outcome.run.probe) if outcome.run.probe else None,
        )

    async def ListRuns(self, request: runs_pb2.ListRunsRequest, context: Context) -> runs_pb2.ListRunsResponse:
        page = await self._inspector.list_runs(convert.run_query(request))
        return runs_pb2.ListRunsResponse(
            runs=[convert.run(r, with_summaries=False) for r in page.runs],
            next_page_token=page.next_page_token or "",
        )

    async def GetRun(self, request: runs_pb2.GetRunRequest, context: Context) -> runs_pb2.Run:
        if not request.run_id:
            raise InvalidInput("Expected a run_id; received an empty one.")
        return convert.run(await self._inspector.get_run(request.run_id))

    async def CompareRuns(self, request: runs_pb2.CompareRunsRequest, context: Context) -> runs_pb2.CompareRunsResponse:
        if not request.run_a or not request.run_b:
            raise InvalidInput(f"Expected two run ids; received {quoted(request.run_a)} and {quoted(request.run_b)}.")
        return convert.comparison(await self._inspector.compare_runs(request.run_a, request.run_b))

    async def GetMonitor(self, request: monitor_pb2.GetMonitorRequest, context: Context) -> monitor_pb2.MonitorStatus:
        limit = monitor_convert.window_limit(request.limit)
        return monitor_convert.status(await self._inspector.monitor_status(convert.model_ref(request.model), limit))

    async def SetReference(
        self, request: monitor_pb2.SetReferenceRequest, context: Context
    ) -> monitor_pb2.MonitorStatus:
        ref = convert.model_ref(request.model)
        return monitor_convert.status(await self._inspector.set_reference(ref, request.run_id or None))
