"""gunicorn's settings for the API: `gunicorn -c python:binderq.gunicorn_conf ...`.

The Procfile, `binderq up` and the benchmarks all load this module, so they serve alike.
"""

import os

from binderq.logs import gunicorn_log_config
from binderq.settings import Settings

# Threads, not processes, per connection: a client following a stream or polling holds a
# thread, and two processes use both cores.
worker_class = "gthread"
workers = 2
threads = 32

# Longer than configurable-http-proxy keeps idle upstream sockets (Node's agent: 5 s).
# With gunicorn's default of 2 s, the proxy reuses sockets gunicorn is closing, and every
# few requests fail with "socket hang up" (a 503 to the user).
keepalive = 75

# gunicorn 24+ opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl): every
# gunicorn of the machine (two deployments, the tests' several APIs) would share it, and
# each start takes it from the last. binderq does not use it.
control_socket_disable = True

# gunicorn's own lines in BINDERQ_LOG_FORMAT, as the app's (binderq/logs.py).
logconfig_dict = gunicorn_log_config(os.environ.get("BINDERQ_LOG_FORMAT", Settings.log_format))
