# syntax=docker/dockerfile:1.7
#
# The Colorizer service image. Two runtime targets from one file:
#
#   docker build -t colorizer:gpu .               # default (last stage): CUDA 13 + cuDNN 9, onnxruntime-gpu
#   docker build -t colorizer:cpu --target cpu .  # no CUDA at all: small, runs on any amd64/arm64 host
#
# Why the CUDA base and the onnxruntime-gpu pin go together: the onnxruntime-gpu wheel bundles neither CUDA
# nor cuDNN; it loads them from the system at run time, and only the major versions it was built against
# will do. onnxruntime-gpu 1.31.1 on PyPI is built with CUDA 13.0 (its capi/build_and_package_info.py says
# cuda_version = '13.0'; libonnxruntime_providers_cuda.so needs libcudart.so.13, libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10) and cuDNN 9 (its `cudnn` extra pins nvidia-cudnn-cu13~=9.0).
# The nvidia/cuda 13.0.x "cudnn-runtime" image ships exactly those libraries. CUDA minor versions are
# compatible, so any 13.x tag works; a CUDA 12 or cuDNN 8 image would silently fall back to the CPU.
# Change ORT_VERSION and CUDA_IMAGE together. The host needs an NVIDIA driver >= 580 (CUDA 13); see
# docs/DEPLOY.md.
ARG ORT_VERSION=1.31.1
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
# The GPU venv is built on the OS the CUDA image is built on, so its Python (3.12) is the same binary path
# and version at run time and the venv copies across unchanged, with no compiler in the final image.
ARG GPU_BUILD_IMAGE=ubuntu:24.04
ARG CPU_IMAGE=python:3.12-slim-bookworm


# ---- build-gpu: a venv holding the service and onnxruntime-gpu ---------------------------------------
FROM ${GPU_BUILD_IMAGE} AS build-gpu
ARG ORT_VERSION
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel needs: the training package (and torch) never enter the image.
COPY pyproject.toml README.md ./
COPY app ./app
# On linux/amd64 pyproject's marker already picks onnxruntime-gpu; naming it here only pins the version
# that matches CUDA_IMAGE.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . "onnxruntime-gpu==${ORT_VERSION}"


# ---- build-cpu: the same venv with the CPU build of onnxruntime ------------------------------------
FROM ${CPU_IMAGE} AS build-cpu
ARG ORT_VERSION
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
# On linux/amd64 pyproject picks onnxruntime-gpu (about 340 MB of CUDA kernels that cannot run here), so
# swap it for the CPU wheel of the same version; both install the same `onnxruntime` module. On arm64
# the marker already picks onnxruntime and the uninstall is a no-op.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && pip uninstall -y onnxruntime-gpu \
 && pip install "onnxruntime==${ORT_VERSION}"


# ---- cpu: runtime for hosts without a GPU ----------------------------------------------------------
# The runtime lines below are repeated in the gpu stage: the two stages start from different bases, and
# Dockerfile has no way to share steps between them.
FROM ${CPU_IMAGE} AS cpu
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COLORIZER_MODEL_PATH=/opt/colorizer/models/colorizer.onnx \
    COLORIZER_VIDEO_DIR=/var/lib/colorizer/videos \
    COLORIZER_HOST=0.0.0.0 \
    COLORIZER_PROVIDERS=cpu
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 colorizer \
 && useradd --system --uid 10001 --gid colorizer --no-create-home --shell /usr/sbin/nologin colorizer \
 && mkdir -p /var/lib/colorizer/videos \
 && chown colorizer:colorizer /var/lib/colorizer/videos
COPY --from=build-cpu /opt/venv /opt/venv
# The model is baked in (read-only, owned by root); mount another and set COLORIZER_MODEL_PATH to swap it.
# The int8 file beside it serves where the CPU has VNNI or AMX (COLORIZER_PRECISION, app/precision.py).
COPY models/colorizer.onnx models/colorizer.int8.onnx /opt/colorizer/models/
WORKDIR /opt/colorizer
USER 10001:10001
EXPOSE 8000
# Healthy = ready: 200 once the model is loaded and warm, 503 while draining. Python's urllib, because
# the image has no curl; urlopen raises on any non-2xx answer, which makes the check fail.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# `colorizer serve` (uvicorn inside) runs as PID 1 (exec form) and so receives SIGTERM itself: the app turns
# /readyz to 503 and drains in-flight work, bounded by COLORIZER_DRAIN_TIMEOUT_S, before exiting.
STOPSIGNAL SIGTERM
CMD ["colorizer", "serve"]


# ---- gpu (default): runtime on CUDA 13 + cuDNN 9 ---------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COLORIZER_MODEL_PATH=/opt/colorizer/models/colorizer.onnx \
    COLORIZER_VIDEO_DIR=/var/lib/colorizer/videos \
    COLORIZER_HOST=0.0.0.0 \
    COLORIZER_PROVIDERS=cuda,cpu
RUN groupadd --system --gid 10001 colorizer \
 && useradd --system --uid 10001 --gid colorizer --no-create-home --shell /usr/sbin/nologin colorizer \
 && mkdir -p /var/lib/colorizer/videos \
 && chown colorizer:colorizer /var/lib/colorizer/videos
COPY --from=build-gpu /opt/venv /opt/venv
# With the int8 file too: should CUDA fail to start, a VNNI CPU still gets the faster file.
COPY models/colorizer.onnx models/colorizer.int8.onnx /opt/colorizer/models/
WORKDIR /opt/colorizer
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["colorizer", "serve"]
