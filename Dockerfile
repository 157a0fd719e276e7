# The code location image: the project with its Postgres, Kubernetes and object-store extras, serving its
# definitions over gRPC on port 4000. The same image runs the code server (Helm user deployment,
# Dagster+ Hybrid code location) and the run workers the K8sRunLauncher or the Dagster+ agent start.
#
#   docker build -t nbpro-pipeline:0.1.0 .
#   docker run --rm -p 4000:4000 nbpro-pipeline:0.1.0          # then point a workspace's grpc_server at it
#
# No secret is baked in: RIVYA_API_KEY / ODIROUTER_API_KEY come from the environment at run time
# (Kubernetes secrets, Dagster+ environment variables). See "Scaling out" in the README.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/nbpro

# Sources the package build needs, then the install: one layer for the code and its dependencies.
COPY pyproject.toml README.md ./
COPY nbpro_pipeline ./nbpro_pipeline
COPY assets_defs ./assets_defs
RUN pip install ".[postgres,k8s,s3,gcs]"

# Example prompt tables (the default NBPRO_PROMPT_SOURCES) and the workspace files.
COPY examples ./examples
COPY workspace.yaml dagster_cloud.yaml ./

# An instance file for runs started from this image outside Kubernetes (docker compose, a VM); the Helm
# chart and the Dagster+ agent mount their own at DAGSTER_HOME.
ENV DAGSTER_HOME=/opt/dagster/dagster_home \
    NBPRO_STORAGE_ROOT=/data/nbpro
COPY deploy/dagster.yaml /opt/dagster/dagster_home/dagster.yaml

# Run as an unprivileged user that owns the default storage root (mount a volume or use s3://… there).
RUN useradd --create-home --uid 10001 nbpro \
    && mkdir -p /data/nbpro \
    && chown -R nbpro /data/nbpro /opt/dagster/dagster_home
USER nbpro

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "assets_defs.definitions", "--location-name", "nbpro-pipeline"]
