"""The domain: records, errors and pure decisions. No Flask, Celery, Docker or Redis."""
