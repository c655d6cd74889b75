"""One table of per-call policy: for every RPC the server answers, who may call it, which admission pool counts
it, whether the server's own deadline ends it, and whether clients retry it.

`auth.TokenPolicy` reads the role, the interceptor reads the pool and the deadline (`admission.Admission`
counts the pools). The client is a leaf that may not import the service, so its retry policy
(`layerscope.client._core.RETRIED`) is its own copy of the `retried` column; tests/unit/test_rpc_policy.py
checks that the copy matches and that every method of every service below has an entry.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

from layerscope.oip import grpc_predict_v2_pb2
from layerscope.v1 import inspector_pb2


class Role(enum.IntEnum):
    """Ordered: each role may do what the roles below it may."""

    READER = 1
    AUDITOR = 2
    ADMIN = 3


INSPECTOR: str = inspector_pb2.DESCRIPTOR.services_by_name["Inspector"].full_name
OIP: str = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_V1ALPHA: str = reflection.SERVICE_NAME
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
"""Served by grpcio-reflection releases that register both versions; listed so such an upgrade changes nothing."""

MAIN, UPLOADS, REFLECTION = "calls", "uploads", "reflection streams"
"""The admission pools (their names appear in refusals): MAIN is the `max_concurrent_rpcs` cap, UPLOADS and
REFLECTION have small caps of their own (`max_concurrent_uploads`, `max_reflection_streams`)."""


@dataclass(frozen=True)
class Policy:
    role: Role | None
    """The least role the caller's token needs when tokens are configured; None: open, no token needed."""
    pool: str | None
    """The admission pool its calls are counted in; None: a probe, counted in no pool, never refused for load."""
    deadline: bool
    """True: the server ends the call after `call_timeout_seconds`. False: no whole-call deadline (probes and
    health watches last as long as their client; uploads and reflection are bounded per message instead)."""
    retried: bool
    """The client retries it on UNAVAILABLE within the call's timeout (safe: it changes nothing, or the same thing
    again); a retry that runs out of time raises DEADLINE_EXCEEDED naming the UNAVAILABLE it retried after."""
    why: str = ""
    """The reason for an entry that is not the plain case (a reader's call, in MAIN, with a deadline)."""

    @property
    def outside_caps(self) -> bool:
        """Never refused for load: no pool counts it (the per-caller stream limit does not apply either)."""
        return self.pool is None


def _call(role: Role | None = Role.READER, *, retried: bool = False, why: str = "") -> Policy:
    """The plain case: counted in MAIN and bounded by `call_timeout_seconds`."""
    return Policy(role, MAIN, deadline=True, retried=retried, why=why)


def _probe(role: Role | None, *, retried: bool = False, why: str) -> Policy:
    """Outside every cap and without a deadline: answered from memory, or as long as its client watches."""
    return Policy(role, None, deadline=False, retried=retried, why=why)


def _own_pool(role: Role | None, pool: str, why: str) -> Policy:
    """A client stream in a small pool of its own, bounded per message (`upload_idle_seconds`) rather than by
    one deadline; never retried (the client's messages are spent)."""
    return Policy(role, pool, deadline=False, retried=False, why=why)


_BARE_PROBE = "Kubernetes and KServe probe it without credentials; answered from memory, never refused for load."

_TABLE: dict[str, dict[str, Policy]] = {
    INSPECTOR: {
        "UploadModel": _own_pool(Role.ADMIN, UPLOADS, "A client stream as long as the file."),
        "LoadModel": _call(Role.ADMIN, retried=True, why="Retried: loading a loaded version returns it unchanged."),
        "ListModels": _call(retried=True),
        "UnloadModel": _call(Role.ADMIN, why="Not retried: a retry after a lost answer would meet NOT_FOUND."),
        "Predict": _call(retried=True),
        "Capture": _call(why="Not retried: it stores a run (a retry is the caller's, with its run_id)."),
        "Diagnose": _call(Role.AUDITOR, why="Stores a run and may run a training probe; not retried, as Capture."),
        "ListRuns": _call(retried=True),
        "GetRun": _call(retried=True),
        "CompareRuns": _call(why="A read, so it could be retried; the client has never retried it."),
        "GetMonitor": _call(retried=True),
        "SetReference": _call(
            Role.ADMIN,
            why="Decides what live traffic is judged against, and so what may page someone. Not retried: a new "
            "reference from traffic (no id) started twice would throw away the requests collected in between.",
        ),
    },
    # Called by KServe's and tritonclient's clients, which have retry policies of their own; layerscope's client
    # does not call this service.
    OIP: {
        "ServerLive": _probe(None, why=_BARE_PROBE),
        "ServerReady": _probe(None, why=_BARE_PROBE),
        "ModelReady": _probe(
            Role.READER,
            why="Needs a reader's token: the answer tells whether a model of a given name is loaded, which "
            "ListModels and ModelMetadata tell only readers (infrastructure probes the server with ServerLive, "
            "ServerReady and Health, never a model by name). Outside the caps all the same: answered from memory, "
            "and a client polling for its model must get the answer, not RESOURCE_EXHAUSTED, while captures fill "
            "the server.",
        ),
        "ServerMetadata": _call(why="Needs a token: it names the server and its version."),
        "ModelMetadata": _call(),
        "ModelInfer": _call(),
    },
    HEALTH: {
        "Check": _probe(None, retried=True, why="Load balancers and kubelets call it bare, under any load."),
        "Watch": _probe(None, retried=True, why="A load balancer's watch lasts for hours; bare like Check."),
        "List": _call(
            None,
            retried=True,
            why="Open like the rest of Health; grpcio's aio HealthServicer does not implement it (UNIMPLEMENTED), "
            "so it is counted like any call.",
        ),
    },
    REFLECTION_V1ALPHA: {
        "ServerReflectionInfo": _own_pool(None, REFLECTION, "grpcurl needs it before it holds a token."),
    },
    REFLECTION_V1: {
        "ServerReflectionInfo": _own_pool(None, REFLECTION, "As in grpc.reflection.v1alpha."),
    },
}

POLICIES: Mapping[str, Policy] = {
    f"/{service}/{method}": policy for service, methods in _TABLE.items() for method, policy in methods.items()
}
"""Every RPC's policy by its path, `/package.Service/Method`, as gRPC names the call."""


def path(service: str, method: str) -> str:
    return f"/{service}/{method}"


def policy_of(method_path: str, client_streaming: bool = False) -> Policy:
    """The policy of a call by its path. A method missing from the table (the policy test forbids one among
    the services above) needs a reader's token and is counted in MAIN, or in UPLOADS when it streams from the
    client; only MAIN calls get the deadline."""
    known = POLICIES.get(method_path)
    if known is not None:
        return known
    if client_streaming:
        return Policy(Role.READER, UPLOADS, deadline=False, retried=False)
    return _call()
