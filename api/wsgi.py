"""Entry for gunicorn: `gunicorn api.wsgi:app`."""

from binderq.bootstrap import create_wsgi_app

app = create_wsgi_app()
