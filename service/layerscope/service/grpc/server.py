"""The gRPC server factory: services, health, reflection; returns the bound port so tests can use port 0."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from layerscope.oip import grpc_predict_v2_pb2_grpc
from layerscope.service import ports
from layerscope.service.errors import StartupError
from layerscope.service.grpc.admission import AdmissionLimits
from layerscope.service.grpc.auth import TokenPolicy
from layerscope.service.grpc.interceptors import AuthInterceptor, ServiceInterceptor
from layerscope.service.grpc.methods import HEALTH, INSPECTOR, OIP, REFLECTION_V1ALPHA
from layerscope.service.grpc.oip import OpenInferenceServicer
from layerscope.service.grpc.servicer import InspectorServicer
from layerscope.service.inspector import Inspector
from layerscope.service.settings import Settings
from layerscope.service.telemetry import Telemetry
from layerscope.v1 import inspector_pb2_grpc

MODELS_SERVICE = "layerscope.models"
"""Health service name: SERVING once every model found in the repository at start has loaded (or failed)."""
MODEL_SERVICE_PREFIX = "layerscope.model."
"""Health service name of one model, `layerscope.model.<name>`: SERVING while a version of it is loaded."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The server's grpc.health.v1 statuses, by service name:

    - "", `layerscope.v1.Inspector`, `inference.GRPCInferenceService`: SERVING once the server answers calls
      (database migrated, repository scanned), while the repository's models may still be loading; NOT_SERVING
      before, and again while it drains on shutdown.
    - `layerscope.models`: SERVING once the models found at start have loaded or failed (a readiness check
      that must wait for every model); it stays SERVING as later loads come and go.
    - `layerscope.model.<name>`: NOT_SERVING from the scan that found it until a version of it is loaded,
      and again once none is; an unknown name answers NOT_FOUND, as the protocol says.

    The Open Inference Protocol's ServerReady says what `layerscope.models` says, and false while draining
    (`ready`); ServerLive is true while the server answers at all.
    """

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()  # starts out SERVING: `starting` must come first
        self._answering = False
        self._models_loaded = False

    @property
    def ready(self) -> bool:
        """The Open Inference Protocol's ServerReady: answering calls and the models found at start loaded (or
        failed), as Triton's strict readiness has it; not while draining on shutdown."""
        return self._answering and self._models_loaded

    async def starting(self) -> None:
        self._answering = self._models_loaded = False
        for name in ("", INSPECTOR, OIP, MODELS_SERVICE):
            await self.servicer.set(name, _NOT_SERVING)

    async def serving(self) -> None:
        self._answering = True
        for name in ("", INSPECTOR, OIP):
            await self.servicer.set(name, _SERVING)

    async def models_loaded(self) -> None:
        self._models_loaded = True
        await self.servicer.set(MODELS_SERVICE, _SERVING)

    async def draining(self) -> None:
        self._answering = False
        await self.servicer.enter_graceful_shutdown()

    async def model(self, name: str, serving: bool) -> None:
        """`Readiness` of the model lifecycle."""
        await self.servicer.set(MODEL_SERVICE_PREFIX + name, _SERVING if serving else _NOT_SERVING)


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    health: Health

    async def serving(self) -> None:
        await self.health.serving()

    async def stop(self, grace: float) -> None:
        await self.health.draining()
        await self.server.stop(grace)


async def start_server(
    settings: Settings, inspector: Inspector, telemetry: Telemetry, status: Health | None = None
) -> Running:
    """Bind and start the gRPC server: layerscope's Inspector and the Open Inference Protocol on one port,
    with health and reflection, every call through the service and auth interceptors (TLS when configured).

    Health answers NOT_SERVING until the caller's `Running.serving()`, so a load balancer sends no calls
    before the server can answer them. The returned port is the bound one (settings' port 0: a free port).
    """
    server = grpc.aio.server(
        # Outermost first: metrics see every call, including those auth refuses.
        interceptors=[
            ServiceInterceptor(telemetry, settings.max_concurrent_rpcs, admission_limits(settings)),
            AuthInterceptor(TokenPolicy(settings.tokens)),
        ],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it (ports.py)
        ],
    )
    status = status or Health()
    inspector_pb2_grpc.add_InspectorServicer_to_server(InspectorServicer(inspector, settings.chunk_bytes), server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        OpenInferenceServicer(inspector, version("layerscope"), lambda: status.ready), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(status.servicer, server)
    reflection.enable_server_reflection((INSPECTOR, OIP, HEALTH, REFLECTION_V1ALPHA), server)
    address = f"{settings.host}:{settings.port}"
    credentials = server_credentials(settings)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio's "Failed to bind to address"
        raise StartupError(ports.in_use("gRPC", settings.host, settings.port, "--port", "LAYERSCOPE_PORT")) from exc
    await status.starting()  # not ready until the caller says so
    await server.start()
    return Running(server, port, status)


def admission_limits(settings: Settings) -> AdmissionLimits:
    """The interceptor's admission limits and deadlines, read from the settings."""
    return AdmissionLimits(
        max_concurrent=settings.max_concurrent_rpcs,
        max_uploads=settings.max_concurrent_uploads,
        max_reflection=settings.max_reflection_streams,
        max_streams_per_caller=settings.max_streams_per_caller,
        call_timeout=settings.call_timeout_seconds,
        stream_idle=settings.stream_idle_seconds,
        upload_idle=settings.upload_idle_seconds,
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("Expected both tls_cert_file and tls_key_file for TLS; received only one of them.")
    pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)
