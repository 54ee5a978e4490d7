# The integr8s application image: web (gunicorn), worker (manage.py runworker), migrations.
#   docker build -t integr8s .
FROM python:3.13-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap: the local sandbox backend (docker-compose's worker). The kubernetes backend needs
# nothing from the image: its scripts run in their own pods.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md* ./
COPY integr8s ./integr8s
COPY accounts ./accounts
COPY executions ./executions
RUN pip install .

COPY manage.py ./
COPY templates ./templates
COPY static ./static
# collectstatic needs a secret key to load the settings: a throwaway one, gone with this layer.
RUN SECRET_KEY_FILE=/tmp/build-key python manage.py collectstatic --no-input -v 0 \
    && rm /tmp/build-key
# The default runtime's package set (numpy, pandas, matplotlib, ...: executions/runtime_packages/),
# which `make run` builds on first start: the worker's sandbox binds it read-only, the web lists it.
RUN SECRET_KEY_FILE=/tmp/build-key python manage.py build_runtimes --default \
    && rm -f /tmp/build-key

# The code is root-owned and read-only to the app user; the app writes only to /tmp and to
# /var/lib/integr8s, where it makes its secret key at first start unless SECRET_KEY is set
# (docker-compose.yml mounts a volume there; Kubernetes sets SECRET_KEY from a Secret).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp app \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/integr8s
USER 10001:10001
ENV HOME=/tmp \
    SECRET_KEY_FILE=/var/lib/integr8s/secret_key
EXPOSE 8000

# How it serves (ASGI: uvicorn under gunicorn; one process, keep-alive, timeouts):
# integr8s/gunicorn.py, shared with `manage.py serve` and the Kubernetes Deployment.
CMD ["gunicorn", "-c", "python:integr8s.gunicorn", "integr8s.asgi:application", \
     "--bind=0.0.0.0:8000"]
