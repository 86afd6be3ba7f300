"""The module Celery workers and beat load: `celery -A binderq.workers.main worker`."""

from binderq.bootstrap import build_celery

app = build_celery()
