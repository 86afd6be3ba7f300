"""Tokens that are not ASCII (UTF-8 text, or raw latin-1 bytes in a header) are bad
credentials, 401, at every door; never a 500."""

from __future__ import annotations

import pytest

from binderq.domain.tokens import is_server_token, tokens_match
from tests.fakes import FakeGit
from tests.helpers import assert_error_format, ready_staging

BAD_TOKENS = ["ünïcode", "token-\xff\xfe-latin-1", "日本語", "\x00\x01"]
CALLS = [
    ("get", "/api/servers/abcdef012345"),
    ("delete", "/api/servers/abcdef012345"),
    ("get", "/api/stagings"),
    ("post", "/api/stagings/demo/servers"),
    ("get", "/api/builds"),
    ("post", "/api/spawn/"),
    ("get", "/build/gh/org/repo/main"),
]


@pytest.fixture(params=["token", "open"])
def staged(request, app, store, queue, runtime):
    settings = app.extensions["binderq"].settings.with_changes(default_staging="demo",
                                                                 launch_auth=request.param)
    app.extensions["binderq"] = app.extensions["binderq"].__class__(
        settings=settings,
        store=store, queue=queue, proxy=None, git=FakeGit())
    ready_staging(store, queue, runtime, public=True)


@pytest.mark.parametrize("token", BAD_TOKENS)
@pytest.mark.parametrize("method, url", CALLS)
def test_a_non_ascii_token_in_the_header_is_401(client, staged, method, url, token):
    # As a WSGI server hands on raw header bytes: decoded as latin-1.
    environ = {"HTTP_AUTHORIZATION": "token " + token.encode("utf-8").decode("latin-1")}
    response = getattr(client, method)(url, environ_overrides=environ)
    assert_error_format(response, 401)


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_a_non_ascii_token_in_the_query_of_the_binderhub_door_is_401(client, staged, token):
    assert_error_format(client.get("/build/gh/org/repo/main", query_string={"token": token}),
                        401)


def test_token_comparisons_take_any_text():
    assert not is_server_token("k" * 32, "abc", "ünïcode")
    assert not tokens_match("operator", "ünïcode")
