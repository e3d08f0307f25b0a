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
# Same bits across replicas need the same torch version, device type and GPU model (docs/api.md).
#
# Without the internet (no Docker Hub, no PyPI, no download.pytorch.org), three build arguments
# point elsewhere; their defaults are the public sources above:
#   BASE_IMAGE       any image with python3 (>= 3.11) and its venv module, used by both stages,
#                    e.g. a Debian bookworm root file system made by debootstrap and `docker import`
#   PIP_INDEX_URL / TORCH_INDEX_URL   a reachable mirror of PyPI / of PyTorch's wheel index
#   WHEELS + PIP_NO_INDEX=1           a folder of wheels inside the build context (default
#                    deploy/wheels, empty) and no index at all: torch, every dependency, setuptools
#
#   pip download --dest deploy/wheels --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
#   pip download --dest deploy/wheels --find-links deploy/wheels . setuptools   # the rest
#   docker build --build-arg BASE_IMAGE=bookworm-python:local --build-arg PIP_NO_INDEX=1 -t initsvc:cpu .
#
# No "# syntax=" line: BuildKit would fetch that frontend from Docker Hub, and the builtin one (or
# the classic builder) reads everything here.

ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim

FROM ${BASE_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_NO_INDEX=0
ARG WHEELS=deploy/wheels
# pip reads PIP_INDEX_URL and PIP_NO_INDEX from the build arguments above; /wheels is always a
# source too (empty unless WHEELS has wheels in it).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/wheels \
    PYTHONDONTWRITEBYTECODE=1
COPY ${WHEELS} /wheels
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from PyTorch's own index: PyPI's default torch wheel is the CUDA build, several GiB.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# The rest of the pinned dependencies from PyPI (torch is already satisfied), then the package.
RUN pip install --no-cache-dir .

FROM ${BASE_IMAGE} AS runtime
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
