# The FastChat side: one image, one role per task-definition command:
#   controller | worker | api | web   (see CloudFormation/fastchat-template.yaml)
# Build from the repository root: docker build -f docker/runtime.Dockerfile -t sagemaker-fastchat .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_FORMAT=json \
    GRADIO_ANALYTICS_ENABLED=False \
    HEALTHCHECK_URL=http://127.0.0.1:8000/health

WORKDIR /app
COPY docker/requirements.lock /app/requirements.lock
RUN pip install --no-cache-dir -r /app/requirements.lock

COPY pyproject.toml README.md /app/
COPY contract /app/contract
COPY sync /app/sync
COPY runtime /app/runtime
COPY telemetry /app/telemetry
COPY sagemaker_fastchat /app/sagemaker_fastchat
COPY arena /app/arena
COPY stores /app/stores
COPY rollout /app/rollout
RUN pip install --no-cache-dir --no-deps /app \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 /var/spool/sagemaker-fastchat  # the arena's vote spool (a task volume)

USER 10001
EXPOSE 8000 8001
# Each role overrides the URL (HEALTHCHECK_URL) in its task definition; the API's is the default.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "sagemaker-fastchat healthcheck \"$HEALTHCHECK_URL\""]
# SIGTERM lets uvicorn finish in-flight streams (graceful shutdown, up to the task's stopTimeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sagemaker-fastchat"]
CMD ["api", "--host", "0.0.0.0"]
