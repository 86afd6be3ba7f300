"""The git adapter against real repositories made on disk (there is no network here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from binderq.adapters import git_source
from binderq.adapters.git_source import GitSource
from binderq.domain.errors import InvalidInput, RepositoryError
from tests.integration.conftest import git, init_repo


@pytest.fixture
def repo(tmp_path) -> Path:
    """main (two commits, tag v1 on the first), and branch other."""
    path = init_repo(tmp_path / "repo")
    (path / "requirements.txt").write_text("# none\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "one")
    git(path, "tag", "-a", "v1", "-m", "v1")
    (path / "README.md").write_text("two\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "two")
    git(path, "branch", "other", "HEAD~1")
    return path


@pytest.fixture
def source() -> GitSource:
    return GitSource(allow_local=True, timeout=30, max_bytes=1024**2)


def test_branches_tags_and_head_resolve_to_their_commits(repo, source):
    url = f"file://{repo}"
    assert source.resolve(url, "main") == git(repo, "rev-parse", "main")
    assert source.resolve(url, "HEAD") == git(repo, "rev-parse", "HEAD")
    assert source.resolve(url, "v1") == git(repo, "rev-parse", "v1^{commit}")
    assert source.resolve(url, "other") == git(repo, "rev-parse", "main~1")
    commit = git(repo, "rev-parse", "main~1")
    assert source.resolve(url, commit) == commit


def test_an_unknown_ref_or_repository_is_a_clear_error(repo, source, tmp_path):
    with pytest.raises(RepositoryError, match="no branch or tag 'nope'"):
        source.resolve(f"file://{repo}", "nope")
    with pytest.raises(RepositoryError, match="ls-remote failed"):
        source.resolve(f"file://{tmp_path}/missing", "main")


def test_one_commit_is_fetched_shallowly(repo, source, tmp_path):
    commit = git(repo, "rev-parse", "main~1")
    checkout = source.fetch(f"file://{repo}", commit, tmp_path / "checkout")
    assert (checkout / "requirements.txt").exists() and not (checkout / "README.md").exists()
    assert git(checkout, "rev-parse", "HEAD") == commit
    assert git(checkout, "rev-list", "--count", "HEAD") == "1"


def test_a_repository_larger_than_the_limit_is_refused(repo, tmp_path):
    (repo / "big.bin").write_bytes(b"x" * (2 * 1024**2))
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "big")
    source = GitSource(allow_local=True, max_bytes=1024**2)
    with pytest.raises(RepositoryError, match="larger than the limit of 1 MiB"):
        source.fetch(f"file://{repo}", git(repo, "rev-parse", "HEAD"), tmp_path / "co")


def test_a_symlink_out_of_the_repository_is_refused(repo, source, tmp_path):
    (repo / "passwords").symlink_to("/etc/passwd")
    (repo / "inside").symlink_to("README.md")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "links")
    with pytest.raises(RepositoryError, match="symlink passwords points outside"):
        source.fetch(f"file://{repo}", git(repo, "rev-parse", "HEAD"), tmp_path / "co")


@pytest.mark.parametrize("repo_url", [
    "ext::sh -c touch% {sentinel}",
    "--upload-pack=touch {sentinel}",
    "-oProxyCommand=touch {sentinel}",
    "ssh://-oProxyCommand=touch%20{sentinel}/x",
])
def test_hostile_urls_never_start_git(repo_url, source, tmp_path):
    sentinel = tmp_path / "pwned"
    with pytest.raises(InvalidInput):
        source.resolve(repo_url.format(sentinel=sentinel), "main")
    assert not sentinel.exists()


@pytest.mark.parametrize("ref", ["--upload-pack=touch {sentinel}", "-bx", ".."])
def test_hostile_refs_never_start_git(ref, repo, source, tmp_path):
    sentinel = tmp_path / "pwned"
    with pytest.raises(InvalidInput):
        source.resolve(f"file://{repo}", ref.format(sentinel=sentinel))
    assert not sentinel.exists()


def test_local_repositories_need_the_operator_setting(repo):
    with pytest.raises(InvalidInput) as refused:
        GitSource(allow_local=False).resolve(f"file://{repo}", "main")
    assert "file://" in refused.value.errors[0].message


def test_a_name_that_resolves_to_this_machine_or_metadata_is_refused():
    for address in ("127.0.0.1", "169.254.169.254", "10.1.2.3", "::1"):
        source = GitSource(allow_local=False, resolve_host=lambda host, a=address: [a])
        with pytest.raises(InvalidInput) as refused:
            source.resolve("https://innocent.example/repo.git", "main")
        assert f"resolves to {address}" in refused.value.errors[0].message


def test_a_fetch_is_stopped_once_it_outgrows_the_limit(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(git_source, "SIZE_CHECK_EVERY", 0.02)
    (repo / "noise.bin").write_bytes(os.urandom(48 * 1024**2))  # incompressible
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "noise")
    source = GitSource(allow_local=True, max_bytes=1024**2)
    dest = tmp_path / "co"
    with pytest.raises(RepositoryError, match="larger than the limit of 1 MiB"):
        source.fetch(f"file://{repo}", git(repo, "rev-parse", "HEAD"), dest)
    assert not (dest / "noise.bin").exists()  # stopped while fetching, before any checkout
    assert git_source._folder_bytes(dest) < 24 * 1024**2
