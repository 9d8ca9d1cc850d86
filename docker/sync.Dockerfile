# The sync Lambda (container image). Build from the repository root:
#   docker build -f docker/sync.Dockerfile -t sagemaker-fastchat-sync .
FROM public.ecr.aws/lambda/python:3.11

COPY docker/requirements-sync.lock ${LAMBDA_TASK_ROOT}/requirements.lock
RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements.lock" --target "${LAMBDA_TASK_ROOT}"

COPY contract ${LAMBDA_TASK_ROOT}/contract
COPY stores ${LAMBDA_TASK_ROOT}/stores
COPY sync ${LAMBDA_TASK_ROOT}/sync
COPY telemetry ${LAMBDA_TASK_ROOT}/telemetry
# The rollout step Lambda (sync.rollout_step.lambda_handler, same image): its pure rules and its store.
COPY rollout ${LAMBDA_TASK_ROOT}/rollout

# Lambda runs the function as a non-root user; the handler is the one the local stack runs too.
CMD ["sync.handler.lambda_handler"]
