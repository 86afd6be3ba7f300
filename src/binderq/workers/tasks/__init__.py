"""Celery tasks, one module per resource: each takes ids, re-reads state, calls a service."""
