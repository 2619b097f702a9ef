# Images for docker-compose.yml: `base` runs liftline (worker, ingest, CLI);
# `autoscaler` adds the docker CLI and its compose plugin for --backend compose.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY liftline ./liftline
# starlette + uvicorn: the HTTP ingest service.
RUN pip install --no-cache-dir . starlette uvicorn \
 && useradd --create-home --uid 10001 liftline
USER liftline
CMD ["liftline", "--help"]

FROM base AS autoscaler
USER root
COPY --from=docker:27-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=docker:27-cli /usr/local/libexec/docker/cli-plugins/docker-compose \
     /usr/local/libexec/docker/cli-plugins/docker-compose
CMD ["liftline", "autoscale", "--backend", "compose", "--service", "worker"]
