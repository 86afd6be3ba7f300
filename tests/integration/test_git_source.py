"""The git adapter against real repositories made on disk (there is no network here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from binderq.adapters import git_source
from binderq.adapters.git_source import GitSource
from binderq.domain.errors import InvalidInput, RepositoryError
from binderq.processes import free_port
from tests.integration.conftest import git, init_repo
from tests.integration.git_servers import git_daemon, smart_http


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


def test_a_huge_compressible_file_is_refused_before_anything_is_written(repo, tmp_path):
    # 100 MiB of zeros: a pack of about 100 KB, which once wrote 382 MiB under a 20 MiB limit.
    with open(repo / "zeros.bin", "wb") as zeros:
        zeros.truncate(100 * 1024**2)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "zeros")
    (repo / "zeros.bin").unlink()
    source = GitSource(allow_local=True, max_bytes=20 * 1024**2)
    dest = tmp_path / "co"
    with pytest.raises(RepositoryError) as refused:
        source.fetch(f"file://{repo}", git(repo, "rev-parse", "HEAD"), dest)
    assert str(refused.value) == "the repository's files are 100 MiB, over the 20 MiB limit"
    assert not (dest / "zeros.bin").exists()
    assert _disk_usage(dest) < 2 * 1024**2


def _disk_usage(folder: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks: a sparse file counts as written)."""
    return sum(os.lstat(os.path.join(parent, name)).st_blocks * 512
               for parent, _, names in os.walk(folder) for name in names)


def test_files_are_checked_out_byte_for_byte_whatever_gitattributes_asks(repo, source,
                                                                        tmp_path):
    # ident expands each $Id$ to 46 bytes and eol=crlf doubles a file of newlines: either
    # would write more than the blob sizes that were checked.
    (repo / ".gitattributes").write_text("*.txt ident text eol=crlf\n")
    (repo / "ids.txt").write_text("$Id$\n" * 1000)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "attributes")
    checkout = source.fetch(f"file://{repo}", git(repo, "rev-parse", "HEAD"), tmp_path / "co")
    assert (checkout / "ids.txt").read_bytes() == b"$Id$\n" * 1000


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


# -- servers on loopback: redirects, and git connecting to the address that was checked ----


@pytest.fixture
def served(tmp_path):
    """Two bare repositories of different histories under one root: 'repo.git' where the
    checked address serves, and the same name where a second lookup would lead."""
    roots = {}
    for name, word in (("checked", "checked"), ("rebound", "rebound")):
        work = init_repo(tmp_path / f"{name}-work")
        (work / "WHO").write_text(word)
        git(work, "add", ".")
        git(work, "commit", "--quiet", "-m", word)
        roots[name] = tmp_path / name
        roots[name].mkdir()
        git(tmp_path, "clone", "--quiet", "--bare", str(work), str(roots[name] / "repo.git"))
    return {name: (root, git(root / "repo.git", "rev-parse", "main"))
            for name, root in roots.items()}


def test_git_follows_no_redirect(served):
    root, commit = served["checked"]
    source = GitSource(allow_local=True, timeout=30)
    with smart_http(root, "127.0.0.1", redirects={"/moved/": "/"}) as port:
        assert source.resolve(f"http://127.0.0.1:{port}/repo.git", "main") == commit
        with pytest.raises(RepositoryError, match="ls-remote failed"):
            source.resolve(f"http://127.0.0.1:{port}/moved/repo.git", "main")


def test_https_and_http_fetches_connect_to_the_checked_address_only(served, tmp_path):
    # "localhost" would resolve to 127.0.0.1 (curl knows it itself), where another server
    # serves another history: git must go to 127.0.0.2, the address that was checked.
    (checked_root, checked), (rebound_root, _) = served["checked"], served["rebound"]
    port = free_port("127.0.0.1")
    looked_up = []
    source = GitSource(allow_local=True, timeout=30,
                       resolve_host=lambda host: looked_up.append(host) or ["127.0.0.2"])
    with smart_http(rebound_root, "127.0.0.1", port), smart_http(checked_root, "127.0.0.2",
                                                                 port):
        url = f"http://localhost:{port}/repo.git"
        assert source.resolve(url, "main") == checked
        checkout = source.fetch(url, checked, tmp_path / "co")
    assert (checkout / "WHO").read_text() == "checked"
    assert looked_up == ["localhost", "localhost"]  # once per git run, then pinned


def test_git_protocol_fetches_connect_to_the_checked_address_only(served, tmp_path):
    (checked_root, checked), (rebound_root, _) = served["checked"], served["rebound"]
    port = free_port("127.0.0.1")
    source = GitSource(allow_local=True, timeout=30, resolve_host=lambda host: ["127.0.0.2"])
    with git_daemon(rebound_root, "127.0.0.1", port), git_daemon(checked_root, "127.0.0.2",
                                                                 port):
        url = f"git://localhost:{port}/repo.git"
        assert source.resolve(url, "main") == checked
        checkout = source.fetch(url, checked, tmp_path / "co")
    assert (checkout / "WHO").read_text() == "checked"


def test_a_checked_name_that_resolves_to_a_private_address_starts_no_git(served):
    root, _ = served["checked"]
    source = GitSource(allow_local=True, resolve_host=lambda host: ["127.0.0.2", "10.0.0.1"])
    with smart_http(root, "127.0.0.2") as port, pytest.raises(InvalidInput) as refused:
        source.resolve(f"http://localhost:{port}/repo.git", "main")
    assert "resolves to 10.0.0.1" in refused.value.errors[0].message
