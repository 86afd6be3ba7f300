"""`binderq up`'s data directory and the proof that an answer comes from this start's API."""

from __future__ import annotations

import stat

from binderq.adapters.data_dir import (
    default_data_dir,
    forget_redis_data,
    load_secrets,
    prepare_data_dir,
    redis_dir,
)
from binderq.api import create_app
from binderq.api.deployment_proof import CHALLENGE_HEADER, PROOF_HEADER, deployment_proof
from binderq.cli import settings_for_up
from binderq.settings import Settings


def test_the_secrets_are_made_once_readable_by_their_owner_only_and_kept(tmp_path):
    data_dir = prepare_data_dir(tmp_path / "data")
    first = load_secrets(data_dir)
    assert load_secrets(data_dir) == first
    assert stat.S_IMODE((data_dir / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert len(first.secret_key) >= 32 and first.redis_password != first.operator_token


def test_up_settings_take_the_stored_secrets_unless_given_and_a_new_key_each_start(tmp_path):
    stored = load_secrets(prepare_data_dir(tmp_path))
    one = settings_for_up(Settings(), "127.0.0.1", 8000, stored)
    two = settings_for_up(Settings(), "127.0.0.1", 8000, stored)
    assert (one.secret_key, one.operator_token) == (stored.secret_key, stored.operator_token)
    assert one.deployment_key and one.deployment_key != two.deployment_key
    given = settings_for_up(Settings(operator_token="mine"), "127.0.0.1", 8000, stored)
    assert given.operator_token == "mine"


def test_fresh_forgets_redis_files_and_keeps_the_secrets(tmp_path):
    data_dir = prepare_data_dir(tmp_path)
    secrets = load_secrets(data_dir)
    (redis_dir(data_dir) / "appendonly.aof").write_text("*1\r\n")
    forget_redis_data(data_dir)
    assert list(redis_dir(data_dir).iterdir()) == []
    assert load_secrets(data_dir) == secrets


def test_the_default_data_dir_is_the_users_per_instance(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir("course") == tmp_path / "binderq" / "course"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir("course") == tmp_path / ".local/share/binderq/course"


def test_the_api_signs_a_challenge_with_its_key_on_every_answer(store, queue, proxy):
    settings = Settings(secret_key="k" * 32, deployment_key="d" * 64)
    client = create_app(settings, store=store, queue=queue, proxy=proxy).test_client()
    for path in ("/api/openapi.json", "/api/no-such-thing"):
        answer = client.get(path, headers={CHALLENGE_HEADER: "abc"})
        assert answer.headers[PROOF_HEADER] == deployment_proof("d" * 64, "abc")
        assert answer.headers[PROOF_HEADER] != deployment_proof("e" * 64, "abc")
    assert PROOF_HEADER not in client.get("/api/openapi.json").headers
    unkeyed = create_app(Settings(secret_key="k" * 32), store=store, queue=queue, proxy=proxy)
    assert PROOF_HEADER not in unkeyed.test_client().get(
        "/api/openapi.json", headers={CHALLENGE_HEADER: "abc"}).headers
