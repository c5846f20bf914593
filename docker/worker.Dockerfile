# syntax=docker/dockerfile:1
# Tempo Serve GPU worker: CUDA runtime + CUDA torch (+ optional prebuilt flash-attn wheel).
# Build from the repo root:
#   docker build -f docker/worker.Dockerfile -t tempo-serve-worker .
#   docker build -f docker/worker.Dockerfile --build-arg FLASH_ATTN_WHEEL=https://.../flash_attn-...whl .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

# torch must match constraints.txt (checked by tests/test_deploy_docker.py); the CUDA build
# comes from the PyTorch index, the rest from PyPI.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# URL or path of a prebuilt flash-attn wheel matching torch/CUDA/python. Empty = skip (SDPA is used).
ARG FLASH_ATTN_WHEEL=""

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/hf \
    TEMPO_DEVICE=cuda \
    TEMPO_WORKER_METRICS_PORT=9100 \
    TEMPO_STORAGE_DIR=/var/lib/tempo/storage \
    TEMPO_MODEL_PATH=/models/Tempo-6B \
    TEMPO_SVLM_PATH=/models/Qwen3-VL-2B-Instruct

# gcc + python3-dev: torch.compile (TEMPO_COMPILE_KERNELS) builds Triton's kernel launchers with them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# Same UID/GID as the gateway image: both write the shared storage volume.
RUN groupadd --system --gid 10001 tempo \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/tempo --create-home --shell /usr/sbin/nologin tempo \
 && mkdir -p /var/lib/tempo/storage /models \
 && chown -R 10001:10001 /var/lib/tempo

WORKDIR /opt/tempo

COPY constraints.txt /opt/tempo/constraints.txt
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && if [ -n "${FLASH_ATTN_WHEEL}" ]; then \
      pip install --no-deps "${FLASH_ATTN_WHEEL}"; \
    else \
      echo "FLASH_ATTN_WHEEL not set: flash-attn skipped, attention uses SDPA"; \
    fi

COPY pyproject.toml README* /opt/tempo/src/
COPY service /opt/tempo/src/service
COPY models /opt/tempo/src/models
COPY workers /opt/tempo/src/workers
# torch is already satisfied by the CUDA build above (constraints pin the same version).
RUN pip install -c /opt/tempo/constraints.txt /opt/tempo/src \
 && rm -rf /opt/tempo/src \
 && python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"

COPY docker/healthcheck.py /opt/tempo/healthcheck.py

USER 10001:10001
EXPOSE 9100
# Loading Tempo-6B + the SVLM takes a while: generous start period.
HEALTHCHECK --interval=30s --timeout=6s --start-period=600s --retries=3 \
  CMD ["python", "/opt/tempo/healthcheck.py", "TEMPO_WORKER_METRICS_PORT", "9100", "/healthz"]
# On SIGTERM the worker stops taking jobs and finishes its batch: give it time (compose
# stop_grace_period / k8s terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
CMD ["tempo", "worker"]
