"""The module Celery workers and beat load: `celery -A binderq.workers.main worker`."""

from binderq.settings import Settings
from binderq.workers.app import make_celery

app = make_celery(Settings.from_env())  # the only place the workers read the environment
