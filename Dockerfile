# syntax=docker/dockerfile:1
# Scenario Trigger Engine image. Build: docker build -t scenario-engine .  (docs/DEPLOY.md)
# Base images are pinned by tag only.

# ---- builder: build the project's wheel and install it into a self-contained venv ----
FROM python:3.12-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# rules.example.toml: the wheel installs it as /opt/scenario-engine/share/scenario-engine/.
COPY pyproject.toml README.md LICENSE rules.example.toml ./
COPY daemon ./daemon
COPY sql ./sql

# The wheel carries the package and its SQL migrations (see pyproject's force-include).
# With the fcm extra: the image serves every push provider, SCENARIO_PUSH_PROVIDER=fcm included.
RUN pip wheel --no-cache-dir --no-deps -w /wheels . \
 && python -m venv /opt/scenario-engine \
 && /opt/scenario-engine/bin/pip install --no-cache-dir "$(echo /wheels/scenario_engine-*.whl)[fcm]"

# ---- final: only the venv on a clean base, run as an unprivileged user ----
FROM python:3.12-slim

# Fixed uid/gid so volume permissions and Kubernetes runAsUser are predictable.
RUN groupadd --system --gid 10001 scenario \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin scenario

# Same path as in the builder: the venv's scripts have it in their shebang lines.
COPY --from=builder /opt/scenario-engine /opt/scenario-engine

# Status server listens on all interfaces inside the container (the host decides what to publish).
ENV SCENARIO_STATUS_HOST=0.0.0.0 \
    SCENARIO_LOG_FORMAT=json \
    PATH=/opt/scenario-engine/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001
EXPOSE 8089

# No curl in the slim image: probe /healthz with the venv's Python (honours SCENARIO_STATUS_PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SCENARIO_STATUS_PORT', '8089'), timeout=4)"]

ENTRYPOINT ["scenario-engine"]
CMD ["run"]
