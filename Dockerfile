FROM python:3.11-slim

# Zoo models (registry names) whose ImageNet weights are baked into the image's Keras cache at
# build time (the build needs internet), so the container then runs offline, e.g.
#   docker build --build-arg ZOO_MODELS="resnet50v2 mobilenet-0.25" -t camlens .
ARG ZOO_MODELS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/opt/keras \
    CAMLENS_HOST=0.0.0.0 \
    CAMLENS_PORT=8050 \
    CAMLENS_CACHE_DIR=/tmp/camlens

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN mkdir -p "$KERAS_HOME" && \
    if [ -n "$ZOO_MODELS" ]; then python -m models.zoo $ZOO_MODELS; fi && \
    useradd --create-home --uid 1000 camlens && chown -R camlens "$KERAS_HOME"

USER camlens
# The default model's first passes, kept in the image's cache folder (explain.kept): even a new
# container's first start loads them instead of tracing while its first visitor waits.
RUN python serve.py --keep-passes
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8050/healthz', timeout=4)"
# waitress (serve.py): whole requests are read before an app thread sees them; 413 over the size limit.
CMD ["python", "serve.py"]
