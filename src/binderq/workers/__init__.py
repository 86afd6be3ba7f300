"""The Celery side: the app built from Settings and the task table, and the thin tasks."""
