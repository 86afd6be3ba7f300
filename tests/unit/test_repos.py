"""Hostile repository URLs and refs are refused before any git process could start."""

from __future__ import annotations

import pytest

from binderq.domain.errors import InvalidInput
from binderq.domain.repos import check_ref, check_repo


@pytest.mark.parametrize("url", [
    "https://github.com/binder-examples/requirements",
    "https://gitlab.com/group/sub/project.git",
    "git://example.org/repo.git",
    "https://8.8.8.8/repo.git",
])
def test_public_https_and_git_urls_are_accepted(url):
    assert check_repo(url, allow_local=False) == url


@pytest.mark.parametrize("url, why", [
    ("--upload-pack=touch /tmp/pwned", "git option"),
    ("-oProxyCommand=touch /tmp/pwned", "git option"),
    ("https://github.com/x/y --upload-pack=touch /tmp/pwned", "git option"),
    ("ext::sh -c touch% /tmp/pwned", "remote helpers"),
    ("ssh://-oProxyCommand=touch%20/tmp/pwned/x", "only https"),
    ("git@github.com:x/y.git", "only https"),
    ("http://example.org/repo.git", "only https"),
    ("file:///etc", "file://"),
    ("/srv/repos/private", "local paths"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://127.0.0.1:2375/containers", "this machine"),
    ("https://[::1]/repo", "this machine"),
    ("https://localhost/repo", "this machine"),
    ("https://10.0.0.5/repo", "private"),
    ("https://0.0.0.0/repo", "this machine"),
    ("https://example.org/" + "a" * 3000, "at most"),
    ("", "at most"),
    ("https://example.org/repo\n--upload-pack=x", "git option"),
])
def test_hostile_urls_are_422_naming_the_reason(url, why):
    with pytest.raises(InvalidInput) as refused:
        check_repo(url, allow_local=False)
    (error,) = refused.value.errors
    assert error.field == "repo" and why in error.message


def test_local_repositories_only_when_the_operator_allows_them():
    assert check_repo("file:///srv/repo", allow_local=True)
    assert check_repo("/srv/repo", allow_local=True)
    with pytest.raises(InvalidInput):
        check_repo("ext::sh -c id", allow_local=True)  # never, setting or not


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x-y", "a" * 40, "HEAD"])
def test_ordinary_refs_are_accepted(ref):
    assert check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["-bx", "..", "main..evil", "a b", "x\nmain", "", "x" * 300,
                                 "--upload-pack=id", "ref~1", "HEAD^", "a:b", "@{-1}",
                                 "/main", "main/", "x.lock", "dir/.hidden"])
def test_hostile_or_malformed_refs_are_refused(ref):
    with pytest.raises(InvalidInput) as refused:
        check_ref(ref)
    assert refused.value.errors[0].field == "ref"
