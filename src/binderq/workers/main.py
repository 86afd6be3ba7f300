"""The module Celery workers and beat load: `celery -A binderq.workers.main worker`."""

import sys

from binderq.settings import Settings, SettingsError
from binderq.workers.app import make_celery

try:
    _settings = Settings.from_env()  # the only place the workers read the environment
except SettingsError as error:  # refuse to start, saying which setting is at fault
    sys.exit(f"binderq worker: {error}")
app = make_celery(_settings)
