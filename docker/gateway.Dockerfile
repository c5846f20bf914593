# syntax=docker/dockerfile:1
# Tempo Serve gateway: FastAPI + uvicorn, no torch / transformers / av.
# Build from the repo root:  docker build -f docker/gateway.Dockerfile -t tempo-serve-gateway .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TEMPO_HOST=0.0.0.0 \
    TEMPO_PORT=8000 \
    TEMPO_STORAGE_DIR=/var/lib/tempo/storage

# Same UID/GID as the worker image: both write the shared storage volume.
RUN groupadd --system --gid 10001 tempo \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/tempo --create-home --shell /usr/sbin/nologin tempo \
 && mkdir -p /var/lib/tempo/storage \
 && chown -R 10001:10001 /var/lib/tempo

WORKDIR /opt/tempo

# Dependencies first (cached layer): only the gateway's runtime deps.
COPY docker/requirements-gateway.txt /opt/tempo/requirements-gateway.txt
RUN pip install -r /opt/tempo/requirements-gateway.txt

# The project itself without its (worker) dependencies.
COPY pyproject.toml README* /opt/tempo/src/
COPY service /opt/tempo/src/service
COPY models /opt/tempo/src/models
COPY workers /opt/tempo/src/workers
RUN pip install --no-deps /opt/tempo/src \
 && rm -rf /opt/tempo/src \
 && python -c "import importlib.util as u, sys; bad=[m for m in ('torch','transformers','av','flash_attn') if u.find_spec(m)]; sys.exit('gateway image must not contain: %s' % bad if bad else 0)"

COPY docker/healthcheck.py /opt/tempo/healthcheck.py

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=6s --start-period=20s --retries=3 \
  CMD ["python", "/opt/tempo/healthcheck.py", "TEMPO_PORT", "8000", "/healthz"]
CMD ["tempo", "serve"]
