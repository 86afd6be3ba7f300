"""Entry for the Procfile's Celery processes: `celery -A workers.worker worker -Q ...`."""

from binderq.workers.main import app  # noqa: F401
