#!/usr/bin/env python
"""The container's health check: the standard grpc.health.v1 Check, as load balancers and the kubelet ask it.

Exit 0 only while the server says SERVING: it says NOT_SERVING until its models are scanned and the schema is
verified, and again while it drains on SIGTERM. Plaintext on 127.0.0.1 at LAYERSCOPE_PORT: with TLS on, rely on
the orchestrator's probes instead. The image's HEALTHCHECK and compose's healthcheck both run this file; the
Kubernetes probes ask the same service with the kubelet's built-in gRPC probe (tests/deploy checks they agree).
"""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ANSWER_SECONDS = 3.0
"""Below the HEALTHCHECK's --timeout, so a slow answer is reported as such rather than the check being killed."""


def main() -> int:
    target = f"127.0.0.1:{os.environ.get('LAYERSCOPE_PORT', '50051')}"
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=ANSWER_SECONDS
            )
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}: {error.details()}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
