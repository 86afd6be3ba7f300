"""Where git may go: no credentials in URLs, globally routable addresses only (embedded IPv4
unwrapped), and git pinned to the addresses that were checked."""

from __future__ import annotations

import ipaddress

import pytest

from binderq.adapters.git_source import GitSource, Pinned, pinned
from binderq.api import create_app
from binderq.domain.errors import InvalidInput
from binderq.domain.repos import address_problem, check_repo, embedded_ipv4
from tests.unit.conftest import OPERATOR


@pytest.mark.parametrize("url", [
    "https://user:hunter2@github.com/org/repo",
    "https://token@github.com/org/repo",
    "https://:hunter2@github.com/org/repo",
    "https://user%3Ahunter2@github.com/org/repo",
    "https://user%40x:hunter2@github.com/org/repo",
    "https://github.com%40evil.example/org/repo",
    "https://github.com%2F@evil.example/org/repo",
    "https://@github.com/org/repo",
    "git://user:hunter2@example.org/repo.git",
    "https://github.com\\@evil.example/org/repo",
])
def test_urls_with_credentials_or_encoded_authorities_are_refused_without_echoing_them(url):
    with pytest.raises(InvalidInput) as refused:
        check_repo(url, allow_local=True)
    (error,) = refused.value.errors
    assert error.field == "repo"
    assert "hunter2" not in error.message and "hunter2" not in refused.value.message


def test_a_build_with_credentials_is_422_and_nothing_is_stored(settings, store, queue, proxy):
    app = create_app(settings, store=store, queue=queue, proxy=proxy,
                     git=GitSource(allow_local=False, resolve_host=lambda host: ["8.8.8.8"]))
    answer = app.test_client().post("/api/builds", json={
        "repo": "https://reader:hunter2@example.org/org/repo", "ref": "main"}, headers=OPERATOR)
    assert answer.status_code == 422
    body = answer.get_json()
    assert body["errors"][0]["field"] == "repo" and "password" in body["errors"][0]["message"]
    assert "hunter2" not in answer.get_data(as_text=True)
    assert store.builds.recent(10) == [] and queue.sent == []


@pytest.mark.parametrize("url, why", [
    ("https://2130706433/repo", "usual form"),
    ("https://0x7f000001/repo", "usual form"),
    ("https://127.1/repo", "usual form"),
    ("https://example.org./repo", "not a host name"),
    ("https://example.org:99999/repo", "port"),
    ("https://bücher.example/repo", "not a host name"),
    ("https://[::ffff:169.254.169.254]/latest", "link-local"),
    ("https://100.100.100.200/latest/meta-data", "shared address space"),
])
def test_hosts_in_unusual_forms_are_refused(url, why):
    with pytest.raises(InvalidInput) as refused:
        check_repo(url, allow_local=False)
    assert why in refused.value.errors[0].message


# Python 3.11's is_global says True for several of these (6to4, NAT64, IPv4-compatible,
# multicast); the rule must not.
@pytest.mark.parametrize("address, allowed", [
    ("8.8.8.8", True),
    ("140.82.121.4", True),
    ("2606:4700::6810:84e5", True),
    ("::ffff:8.8.8.8", True),            # mapped, to a global address
    ("2002:808:808::1", True),           # 6to4 of a global address
    ("64:ff9b::808:808", True),          # NAT64 of a global address
    ("100.64.0.1", False),               # shared address space (RFC 6598)
    ("100.100.100.200", False),          # a cloud's metadata service lives here
    ("169.254.169.254", False),
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.1.1", False),
    ("192.0.0.1", False),
    ("192.0.2.1", False),
    ("198.18.0.1", False),
    ("192.88.99.1", False),              # deprecated 6to4 relay anycast
    ("0.1.2.3", False),
    ("224.0.0.1", False),                # multicast (is_global in 3.11)
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("::", False),
    ("::1", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("fd00:ec2::254", False),            # a cloud's IPv6 metadata service
    ("ff02::1", False),                  # multicast (is_global in 3.11)
    ("2001:db8::1", False),
    ("::ffff:10.0.0.1", False),          # IPv4-mapped
    ("::ffff:127.0.0.1", False),
    ("::ffff:100.64.0.1", False),
    ("::10.0.0.1", False),               # IPv4-compatible (is_global in 3.11)
    ("::8.8.8.8", False),                # deprecated, whatever it embeds
    ("::ffff:0:10.0.0.1", False),        # IPv4-translated
    ("2002:a00:1::1", False),            # 6to4 of 10.0.0.1 (is_global in 3.11)
    ("2002:a9fe:a9fe::", False),         # 6to4 of 169.254.169.254
    ("2002:7f00:1::", False),            # 6to4 of 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ("64:ff9b::a00:1", False),           # NAT64 of 10.0.0.1 (is_global in 3.11)
    ("64:ff9b::a9fe:a9fe", False),       # NAT64 of 169.254.169.254
    ("64:ff9b::6440:1", False),          # NAT64 of 100.64.0.1
    ("64:ff9b:1::a00:1", False),         # local-use NAT64 (RFC 8215)
    ("100::1", False),                   # discard-only
])
def test_only_globally_routable_addresses_pass(address, allowed):
    assert (address_problem(ipaddress.ip_address(address)) is None) is allowed


def test_embedded_ipv4_addresses_are_unwrapped():
    assert str(embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))) == "169.254.169.254"
    assert str(embedded_ipv4(ipaddress.ip_address("2002:a00:1::"))) == "10.0.0.1"
    assert str(embedded_ipv4(ipaddress.ip_address("::ffff:10.0.0.1"))) == "10.0.0.1"
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("10.0.0.1")) is None


def test_loopback_passes_only_with_local_repositories_allowed():
    assert address_problem(ipaddress.ip_address("127.0.0.2"), allow_loopback=True) is None
    assert address_problem(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    assert check_repo("http://localhost:8080/repo.git", allow_local=True)
    with pytest.raises(InvalidInput):
        check_repo("http://localhost:8080/repo.git", allow_local=False)


def test_a_name_resolving_to_a_wrapped_private_address_is_refused():
    for address in ("64:ff9b::a9fe:a9fe", "100.100.100.200", "2002:a00:1::1"):
        source = GitSource(allow_local=False, resolve_host=lambda host, a=address: [a])
        with pytest.raises(InvalidInput) as refused:
            source.resolve("https://innocent.example/repo.git", "main")
        assert f"resolves to {address}" in refused.value.errors[0].message


@pytest.mark.parametrize("url, addresses, expected", [
    ("https://example.org/r.git", ["93.184.215.14"],
     Pinned("https://example.org/r.git",
            ("-c", "http.curloptResolve=example.org:443:93.184.215.14"))),
    ("https://Example.org:8443/r.git", ["93.184.215.14", "2606:2800:21f:cb07::1"],
     Pinned("https://Example.org:8443/r.git", (
         "-c", "http.curloptResolve=example.org:8443:93.184.215.14,[2606:2800:21f:cb07::1]"))),
    ("http://localhost/r.git", ["127.0.0.2"],
     Pinned("http://localhost/r.git", ("-c", "http.curloptResolve=localhost:80:127.0.0.2"))),
    ("git://example.org/r.git", ["93.184.215.14"], Pinned("git://93.184.215.14:9418/r.git")),
    ("git://example.org:9000/r.git", ["2606:2800:21f:cb07::1"],
     Pinned("git://[2606:2800:21f:cb07::1]:9000/r.git")),
    ("https://93.184.215.14/r.git", ["93.184.215.14"], Pinned("https://93.184.215.14/r.git")),
    ("file:///srv/r.git", [], Pinned("file:///srv/r.git")),
])
def test_git_is_told_the_checked_addresses(url, addresses, expected):
    assert pinned(url, addresses) == expected


def test_resolve_pins_git_to_the_address_its_check_saw(monkeypatch):
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # a rebinding resolver
    source = GitSource(allow_local=False, resolve_host=lambda host: next(answers))
    ran = []
    monkeypatch.setattr(source, "_git", lambda *args, **_: ran.append(args) or "")
    with pytest.raises(Exception, match="no branch or tag"):
        source.resolve("https://example.org/r.git", "main")
    (args,) = ran
    assert args[:2] == ("-c", "http.curloptResolve=example.org:443:93.184.215.14")
    assert "https://example.org/r.git" in args
    assert "-c" in source._config() and "http.followRedirects=false" in source._config()
