# syntax=docker/dockerfile:1
# initsvc image: a virtualenv built in one stage, copied into a slim runtime that runs as a
# non-root user.
#
#   docker build -t initsvc:cpu .                                    # CPU torch (the default)
#   docker build --build-arg TORCH_VARIANT=cu128 -t initsvc:cuda .   # CUDA 12.8 torch wheels
#   docker run --rm -p 8000:8000 initsvc:cpu
#   docker run --rm -p 8000:8000 --gpus all initsvc:cuda            # needs the NVIDIA container toolkit
#
# TORCH_VARIANT picks PyTorch's wheel index: "cpu", or a CUDA build such as "cu126" / "cu128".
# The CUDA wheels carry their own CUDA runtime; the host provides only the driver.
# Same bits across replicas need the same torch version, device type and GPU model (SPEC §3).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from PyTorch's own index: PyPI's default torch wheel is the CUDA build, several GiB.
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# The rest of the pinned dependencies from PyPI (torch is already satisfied), then the package.
RUN pip install --no-cache-dir .

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="initsvc" \
      org.opencontainers.image.description="Initialized neural-network weights over HTTP, bit-identical to torch.nn.init"
RUN groupadd --system --gid 10001 initsvc \
    && useradd --system --uid 10001 --gid initsvc --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin initsvc
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INITSVC_SHUTDOWN_TIMEOUT_S=30
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# No curl in slim images: the healthcheck is Python's own urllib.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# Exec form: the server is PID 1 and gets SIGTERM itself. It stops admitting work (503, /readyz
# fails), lets in-flight responses finish for up to INITSVC_SHUTDOWN_TIMEOUT_S seconds (Kubernetes'
# terminationGracePeriodSeconds must exceed it plus the preStop sleep), then exits.
CMD ["initsvc", "serve", "--host", "0.0.0.0", "--port", "8000"]
