"""gunicorn settings, kept for running camlens under gunicorn BEHIND a proxy that buffers whole
request bodies (nginx does by default): `gunicorn --config gunicorn.conf.py app:server`.

`make serve` and the Docker image use serve.py (waitress) instead: gunicorn's threaded worker hands
a connection to an app thread once its headers are in, and the thread then waits for the body, so
as many stalled clients as threads stop the server (README "Production serving" has the numbers).

One worker holds its own copy of every loaded model, so workers cost memory; threads share
them, and TensorFlow releases the GIL while it computes. Hence few workers, several threads.
Override with WEB_CONCURRENCY (workers) and CAMLENS_THREADS, or GUNICORN_CMD_ARGS.
"""
import os

# 127.0.0.1 unless told otherwise, as the README says (the Docker image sets CAMLENS_HOST=0.0.0.0).
bind = f"{os.environ.get('CAMLENS_HOST', '127.0.0.1')}:{os.environ.get('CAMLENS_PORT', '8050')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("CAMLENS_THREADS", "4"))
timeout = 300  # long explanations run as background jobs, but a cold model load can take a while
accesslog = "-"
