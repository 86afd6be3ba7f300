"""The adapters and the fakes offer what the services' protocols ask: each method, callable
the way the protocol declares it (nothing else checks this: no type checker runs)."""

from __future__ import annotations

import inspect

import pytest

from binderq.adapters.chp_proxy import ChpProxy
from binderq.adapters.docker_builder import DockerBuilder
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.adapters.git_source import GitSource
from binderq.services.ports import Builder, Proxy, Repositories, Runtime
from tests.fakes import FakeBuilder, FakeGit, FakeProxy, FakeRuntime


def _methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")]


def _call_as_declared(declared: inspect.Signature) -> tuple[list, dict]:
    """Arguments as a service passes them: required ones by position, the rest by name."""
    args, kwargs = [], {}
    for parameter in declared.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            kwargs["extra"] = object()
        elif parameter.kind is parameter.KEYWORD_ONLY or parameter.default is not parameter.empty:
            kwargs[parameter.name] = object()
        elif parameter.kind is not parameter.VAR_POSITIONAL:
            args.append(object())
    return args, kwargs


@pytest.mark.parametrize("protocol, implementation", [
    (Runtime, DockerRuntime), (Runtime, FakeRuntime), (Proxy, ChpProxy), (Proxy, FakeProxy),
    (Builder, DockerBuilder), (Builder, FakeBuilder), (Repositories, GitSource),
    (Repositories, FakeGit),
])
def test_an_implementation_takes_every_call_its_protocol_declares(protocol, implementation):
    assert _methods(protocol)
    for name in _methods(protocol):
        args, kwargs = _call_as_declared(inspect.signature(getattr(protocol, name)))
        offered = inspect.signature(getattr(implementation, name))
        offered.bind(*args, **kwargs)  # TypeError if a service's call would not fit
