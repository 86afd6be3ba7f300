"""The floor: a trivial Flask endpoint, served by the same gunicorn configuration as the API."""

from flask import Flask

app = Flask("floor")


@app.post("/ping")
def ping():
    return {"ok": True}, 201
