"""The floors, served by the same gunicorn configuration as the API:
/ping does nothing; /redis makes one Redis GET (the least any pooled launch must do)."""

import os

import redis
from flask import Flask

app = Flask("floor")
_redis = redis.Redis.from_url(os.environ["BINDERQ_REDIS_URL"])


@app.post("/ping")
def ping():
    return {"ok": True}, 201


@app.post("/redis")
def one_redis_get():
    return {"ok": _redis.get("binderq:floor") is None}, 201
