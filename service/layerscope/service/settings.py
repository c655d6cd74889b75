"""The one typed configuration of the service, read once by the composition root."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field also reads `LAYERSCOPE_<FIELD>` from the environment; explicit arguments win."""

    model_config = SettingsConfigDict(env_prefix="LAYERSCOPE_", frozen=True)

    host: str = Field("127.0.0.1", description="Address the gRPC server binds.")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus /metrics port; 0 picks one.")
    metrics_host: str | None = Field(
        None,
        description="Address /metrics binds; None: `host`. /metrics has no authentication and names models and "
        "layers: bind it where only the scraper reaches (127.0.0.1, a pod-internal address).",
    )
    model_repository: Path = Field(Path("models"), description="<dir>/<name>/<version>/model.keras")
    database_url: str = Field("sqlite:///layerscope.db", description="SQLAlchemy URL of the run store.")

    max_message_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest request message.")
    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="Largest uploaded archive.")
    max_batch_size: int = Field(1024, gt=0, description="Largest batch a Predict/Capture may send.")
    max_call_layer_bytes: int = Field(
        1 << 30,
        gt=0,
        description="Bytes one layer output may hold for a whole call (batch x its declared bytes per sample); "
        "lowers each model's largest batch (ListModels' max_batch_size).",
    )
    max_call_total_bytes: int = Field(
        16 << 30,
        gt=0,
        description="Bytes every layer output of one call may hold together (batch x the model's declared bytes "
        "per sample); lowers each model's largest batch too.",
    )
    max_tensor_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="Largest total of full tensors one Capture may stream."
    )
    chunk_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=3 * 1024 * 1024, description="Bytes per tensor chunk.")
    max_concurrent_rpcs: int = Field(64, gt=0, description="RPCs in flight before new ones are refused.")
    max_concurrent_uploads: int = Field(4, gt=0, description="Uploads in flight (their own pool, outside the RPC cap).")
    max_reflection_streams: int = Field(8, gt=0, description="Server-reflection streams open (their own pool).")
    max_streams_per_caller: int = Field(
        16, gt=0, description="Streams one caller (token, or peer address without one) may hold open at once."
    )
    stream_idle_seconds: float = Field(
        30.0, gt=0, description="How long a streamed response may wait for a client that does not read it."
    )
    upload_idle_seconds: float = Field(30.0, gt=0, description="How long an upload may wait for its next chunk.")
    max_queue_per_model: int = Field(8, gt=0, description="Calls queued or running per model before refusal.")
    load_at_start: bool = Field(
        True,
        description="Load the newest version of every model in the repository at start (behind SERVING: health's "
        "layerscope.models says when they are all loaded, layerscope.model.<name> each one).",
    )
    load_concurrency: int | None = Field(
        None,
        gt=0,
        description="Models loaded at once at start and by repository polls; None: the CPUs this process may use "
        "(with model workers, at most max_workers).",
    )
    repository_poll_seconds: float | None = Field(
        None, gt=0, description="Also load new newest versions found in the repository this often; None: only at start."
    )
    transient_model_seconds: float = Field(
        900.0,
        gt=0,
        description="A transient model (an upload with `transient` set, as `layerscope audit --server` makes) is "
        "unloaded and its file removed after this long without a call.",
    )
    isolated_loading: bool = Field(True, description="Load each archive in a child process first.")
    load_timeout_seconds: float = Field(120.0, gt=0, description="How long that trial load may take.")
    max_model_layers: int = Field(1000, gt=0, description="Layers a model may declare (refused before loading).")
    max_model_parameters: int = Field(
        250_000_000, gt=0, description="Parameters a model may declare, counted from its config before loading."
    )
    max_layer_output_elements: int = Field(
        1 << 25, gt=0, description="Elements one layer output may declare per sample."
    )
    max_total_output_elements: int = Field(
        1 << 31, gt=0, description="Elements all layer outputs together may declare per sample."
    )
    max_input_elements: int = Field(
        1 << 22, gt=0, description="Elements one model input may declare per sample; bounds Diagnose's probes too."
    )
    call_timeout_seconds: float = Field(
        600.0, gt=0, description="Server-side deadline of every call (uploads excepted), whatever the client asks."
    )
    max_layer_series: int = Field(200, gt=0, description="Cap on per-layer health series per model.")
    fused_statistics: bool = Field(
        True,
        description="Compute CPU capture statistics with the fused kernel (built with g++ at first use; where no "
        "compiler is, one prebuilt for this TensorFlow in the environment's share/layerscope/ops).",
    )
    kernel_cache_dir: Path | None = Field(
        None, description="Where the built kernel is kept; None: $XDG_CACHE_HOME/layerscope/ops (~/.cache/...)."
    )
    probe_steps: int = Field(5, ge=0, le=1000, description="Training-probe steps of a Diagnose with targets.")
    max_probe_steps: int = Field(50, gt=0, le=1000, description="Most training-probe steps a Diagnose may ask for.")
    max_probe_bytes: int = Field(
        2 << 30,
        gt=0,
        description="Bytes a model's kept training probe may hold (a clone of its weights and the optimizer's "
        "slots: about 3x the weights with Adam); a Diagnose whose probe would hold more is refused.",
    )
    probe_idle_seconds: float = Field(
        300.0, gt=0, description="A model's kept training probe is let go after this long unused."
    )
    model_workers: bool = Field(
        True,
        description="Run inference in worker processes (crash and memory isolation): a model that segfaults, "
        "aborts or exhausts memory costs its worker, never the server. False runs inference in the server's "
        "process (tests, a single trusted model). models_per_worker says how models share workers.",
    )
    models_per_worker: int = Field(
        4,
        gt=0,
        description="Small model versions from the repository that share one worker process (one TensorFlow "
        "runtime, about 0.5 GB, instead of one each); a crash restarts the shared worker, and the model whose "
        "call crashed it moves to a worker of its own. 1: a process per model. Uploaded models and archives over "
        "shared_worker_max_archive_bytes always get their own.",
    )
    shared_worker_max_archive_bytes: int = Field(
        64 * 2**20, gt=0, description="Archives larger than this get a worker process of their own."
    )
    max_workers: int = Field(
        8,
        gt=0,
        description="Worker processes running at once (each holds TensorFlow, about 0.5 GB, and its models): past "
        "it the least recently used idle worker is parked, its models still loaded, and started again by its next "
        "call.",
    )
    worker_memory_limit_bytes: int | None = Field(
        None, gt=0, description="Memory a model worker may add after loading its model (RLIMIT_AS); None: no limit."
    )
    worker_call_timeout_seconds: float = Field(
        300.0, gt=0, description="Per-call deadline in a model worker; past it the worker is killed and restarted."
    )
    worker_abandon_grace_seconds: float | None = Field(
        2.0,
        ge=0,
        description="How long a model worker may go on with a call that has ended (cancelled, past its deadline) "
        "before it is stopped and restarted (not counted as a crash); None: it runs on to its own deadline.",
    )
    worker_gpu_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Share of each GPU's memory one model worker may take; None: grow on demand."
    )
    worker_max_crashes: int = Field(
        5, gt=0, description="Worker stops within worker_crash_window_seconds that mark a model failed."
    )
    worker_crash_window_seconds: float = Field(300.0, gt=0, description="The window of worker_max_crashes.")
    grace_seconds: float = Field(10.0, ge=0, description="Time in-flight calls get on shutdown.")

    tokens: dict[str, Literal["reader", "auditor", "admin"]] = Field(
        default_factory=dict,
        description='Bearer tokens and their roles, as JSON: {"<token>": "admin"}. Empty: no authentication.',
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: serve TLS when set.")
    tls_key_file: Path | None = Field(None, description="PEM private key of the certificate.")
    tls_client_ca_file: Path | None = Field(None, description="PEM CA bundle: require client certificates (mTLS).")
    spool_dir: Path = Field(Path("layerscope-spool"), description="Where finished runs wait while the DB is down.")
    spool_max_runs: int = Field(1000, gt=0, description="Runs the spool holds before captures are refused.")
    spool_replay_seconds: float = Field(5.0, gt=0, description="How often spooled runs are retried.")
    run_write_delay_seconds: float = Field(
        0.02,
        ge=0,
        le=5,
        description="How long the run writer waits, once a run is accepted, before writing it to the database: the "
        "answer goes out first, without the writer competing for the server's interpreter, and runs accepted "
        "meanwhile are written in the same turn. Readers never see the delay (a run is found in the spool, a "
        "listing waits for the writer).",
    )
    retention_days: float | None = Field(None, gt=0, description="Prune runs older than this; None keeps all.")
    monitor_sample_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of each model's Predict and ModelInfer requests run through the capture path to watch "
        "its layers (deterministic: 0.05 is every 20th request); 0 switches live-traffic monitoring off.",
    )
    monitor_sample_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description='Per-model sample rates overriding the default, as JSON: {"digits": 0.5}.'
    )
    monitor_window_seconds: float = Field(
        300.0, gt=0, description="A monitoring window closes (and is judged for drift) after this long."
    )
    monitor_reference_requests: int = Field(
        200, ge=2, description="Sampled requests after load that make a model version's reference, unless set."
    )
    monitor_false_alarms_per_week: float = Field(
        1.0,
        gt=0,
        description="Drift false alarms a model may raise per week on stationary traffic (sets the test's level).",
    )
    monitor_cpu_budget: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Share of wall time sampled requests may spend in the capture path (over the last 10 s); past "
        "it sampling skips and counts what it skipped.",
    )
    replica: str = Field(
        default_factory=socket.gethostname, description="This server's name in stored monitoring windows."
    )
