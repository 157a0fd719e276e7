"""``python -m tests.deploy.grpc_health HOST PORT``: exit 0 when the Dagster gRPC server there is SERVING.

The same standard gRPC health query as ``dagster api grpc-health-check`` (service ``DagsterApi``), without
importing Dagster: the cluster test polls it while a code server starts, and the CLI cost over a second
of CPU per look, the grpc package alone a tenth of that.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "DagsterApi"


def serving(host: str, port: int, timeout_s: float = 10) -> bool:
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout_s
            )
        except grpc.RpcError as error:
            print(f"{host}:{port}: {error.code().name}", file=sys.stderr)
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


if __name__ == "__main__":
    sys.exit(0 if serving(sys.argv[1], int(sys.argv[2])) else 1)
