"""gunicorn settings for `make serve` and the Docker image.

One worker holds its own copy of every loaded model, so workers cost memory; threads share
them, and TensorFlow releases the GIL while it computes. Hence few workers, several threads.
Override with WEB_CONCURRENCY (workers) and CAMLENS_THREADS, or GUNICORN_CMD_ARGS.
"""
import os

bind = f"{os.environ.get('CAMLENS_HOST', '0.0.0.0')}:{os.environ.get('CAMLENS_PORT', '8050')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("CAMLENS_THREADS", "4"))
timeout = 300  # long explanations run as background jobs, but a cold model load can take a while
accesslog = "-"
