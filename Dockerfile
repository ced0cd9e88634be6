# syntax=docker/dockerfile:1
# The Tributary worker image (docker-compose.yml builds it as tributary-worker).
#
#   build stage:   the project's wheel, from the source tree (pip wheel --no-deps)
#   runtime stage: a virtualenv with that wheel and its dependencies, git for the
#                  checkouts, a non-root user, and a HEALTHCHECK on the worker
#
# tests/deploy/test_image.py runs the same steps without Docker: it builds the wheel
# from the same files (.dockerignore applied), installs it into a fresh virtualenv,
# starts `tributary worker` from it against a Temporal dev server (with the development
# sandbox unimportable) and publishes once.

ARG PYTHON_IMAGE=python:3.13.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The repository less .dockerignore (tests, benchmarks, deploy files, the development
# sandbox, local state); pyproject.toml decides what goes into the wheel.
COPY . .
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
# git: checkouts of the authoring repository and the sync branches (GitPython).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/tributary \
    && /opt/tributary/bin/pip install --no-cache-dir /wheels/tributary-*.whl
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/tributary \
        --shell /usr/sbin/nologin tributary \
    && mkdir -p /var/lib/tributary/cache /home/tributary/.kube \
    && chown -R tributary:tributary /var/lib/tributary /home/tributary
ENV PATH=/opt/tributary/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRIBUTARY_CACHE=/var/lib/tributary/cache
USER tributary:tributary
WORKDIR /var/lib/tributary
# Prometheus metrics (the SDK's and tributary_*).
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["tributary", "worker", "--check"]
ENTRYPOINT ["tributary"]
CMD ["worker"]
