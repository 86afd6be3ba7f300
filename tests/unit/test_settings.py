"""Settings read from BINDERQ_* variables, and the settings of the processes we start."""

from __future__ import annotations

import pytest

from binderq.cli import settings_for_up
from binderq.settings import Settings, SettingsError

SECRET = {"BINDERQ_SECRET_KEY": "k" * 32}


def test_settings_come_from_binderq_variables_with_types():
    settings = Settings.from_env({
        "BINDERQ_MAX_SERVERS": "7", "BINDERQ_ALLOW_LOCAL_REPOS": "true",
        "BINDERQ_LAUNCH_TIMEOUT": "2.5", "DOCKER_HOST": "unix:///x.sock",
        "BINDERQ_LAUNCH_AUTH": "open", **SECRET,
    })
    assert settings.max_servers == 7
    assert settings.allow_local_repos is True
    assert settings.launch_timeout == 2.5
    assert settings.docker_host == "unix:///x.sock"
    assert settings.launch_auth == "open"


def test_unset_variables_keep_the_documented_defaults():
    settings = Settings.from_env(SECRET)
    assert settings.publish_ip == "127.0.0.1"
    assert settings.launch_auth == "token"
    assert settings.allow_local_repos is False


@pytest.mark.parametrize("environ, word", [
    ({"BINDERQ_MAX_SERVERS": "many"}, "BINDERQ_MAX_SERVERS"),
    ({"BINDERQ_LAUNCH_AUTH": "maybe"}, "BINDERQ_LAUNCH_AUTH"),
    ({"BINDERQ_PUBLISH_IP": "0.0.0.0"}, "BINDERQ_PUBLISH_IP"),
    ({"BINDERQ_MAX_SERVERS": "0"}, "BINDERQ_MAX_SERVERS"),
    ({"BINDERQ_LAUNCH_CONCURRENCY": "0"}, "BINDERQ_LAUNCH_CONCURRENCY"),
    ({"BINDERQ_ENGINE_CALLS": "-1"}, "BINDERQ_ENGINE_CALLS"),
])
def test_bad_settings_are_refused_naming_the_variable(environ, word):
    with pytest.raises(SettingsError, match=word):
        Settings.from_env({**SECRET, **environ})


@pytest.mark.parametrize("secret", [None, "", "x" * 31, "ü" * 15])
def test_a_missing_or_short_secret_key_is_refused_naming_it(secret):
    environ = {} if secret is None else {"BINDERQ_SECRET_KEY": secret}
    with pytest.raises(SettingsError, match="BINDERQ_SECRET_KEY must be at least 32 bytes"):
        Settings.from_env(environ)
    with pytest.raises(SettingsError, match="BINDERQ_SECRET_KEY"):
        Settings(secret_key=secret or "").validate()


def test_binderq_up_makes_a_long_secret_key_but_refuses_a_short_given_one():
    made = settings_for_up(Settings.from_env({}, secret_required=False), "127.0.0.1", 8000)
    assert len(made.secret_key.encode()) >= 32
    made.validate()
    with pytest.raises(SettingsError, match="BINDERQ_SECRET_KEY"):
        Settings.from_env({"BINDERQ_SECRET_KEY": "short"}, secret_required=False)
    with pytest.raises(SettingsError, match="BINDERQ_SECRET_KEY"):
        settings_for_up(Settings(secret_key="short"), "127.0.0.1", 8000)


def test_settings_pass_to_child_processes_unchanged():
    settings = Settings(max_servers=3, allow_local_repos=True, docker_host="tcp://127.0.0.1:1",
                        launch_timeout=2.5, secret_key="k" * 32)
    env = settings.to_env({"BINDERQ_STALE": "x", "PATH": "/bin"})
    assert "BINDERQ_STALE" not in env and env["PATH"] == "/bin"
    assert Settings.from_env(env) == settings


def test_gunicorn_keeps_idle_sockets_longer_than_the_proxy_reuses_them():
    from binderq import gunicorn_conf

    proxy_idle_socket_seconds = 5  # Node's http agent, under configurable-http-proxy
    assert gunicorn_conf.keepalive > proxy_idle_socket_seconds
    assert gunicorn_conf.worker_class == "gthread"
