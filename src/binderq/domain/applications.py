"""What kind of web application a staging serves, how binderq knows it is ready, and who
checks its token. Pure: no I/O.

A staging's `kind` says what its server's url points at: a Jupyter notebook server
(`notebook`, the default), a Jupyter Kernel Gateway (`kernel-gateway`: a Thebe-style page
talks to `{url}api/kernels`), or any other web application (`web`). Its `probe` says how to
tell that the server is ready; by default the kind's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KIND_NOTEBOOK = "notebook"
KIND_KERNEL_GATEWAY = "kernel-gateway"
KIND_WEB = "web"
KINDS = (KIND_NOTEBOOK, KIND_KERNEL_GATEWAY, KIND_WEB)

TOKEN_PLACEHOLDER = "{token}"

# The notebook command used when a notebook staging names none (Notebook 6 and Jupyter
# Server alike accept these NotebookApp options).
NOTEBOOK_COMMAND = (
    "python3", "-m", "notebook", "--ip=0.0.0.0", "--port={port}", "--no-browser",
    "--NotebookApp.base_url={base_url}", "--NotebookApp.token={token}",
)
# Jupyter Kernel Gateway 3's options; it checks the token itself (auth_token).
KERNEL_GATEWAY_COMMAND = (
    "jupyter", "kernelgateway", "--KernelGatewayApp.ip=0.0.0.0",
    "--KernelGatewayApp.port={port}", "--KernelGatewayApp.base_url={base_url}",
    "--KernelGatewayApp.auth_token={token}",
)
_DEFAULT_COMMANDS = {KIND_NOTEBOOK: NOTEBOOK_COMMAND, KIND_KERNEL_GATEWAY: KERNEL_GATEWAY_COMMAND}
# A page on the allowed site: the notebook answers its preflights itself; Kernel Gateway
# names the headers and methods a page may use only when told (its JSON, its token).
_ALLOW_ORIGIN_OPTIONS = {
    KIND_NOTEBOOK: ("--NotebookApp.allow_origin={origin}",),
    KIND_KERNEL_GATEWAY: ("--KernelGatewayApp.allow_origin={origin}",
                          "--KernelGatewayApp.allow_headers=Authorization,Content-Type",
                          "--KernelGatewayApp.allow_methods=GET,POST,PATCH,DELETE,OPTIONS"),
}


@dataclass(frozen=True)
class Probe:
    """How a server is known to be ready. jupyter: its notebook answers `api/status` with
    the token (and reports its activity); http: GET of this path under the server's
    base_url answers 2xx or 3xx; tcp: the port accepts a connection and keeps it."""

    jupyter: bool = False
    http: str | None = None
    tcp: bool = False

    def describe(self) -> str:
        if self.http is not None:
            return f"GET {{base_url}}{self.http}"
        if self.tcp:
            return "a TCP connection to its port"
        return "Jupyter's {base_url}api/status"


JUPYTER_STATUS = Probe(jupyter=True)
# Kernel Gateway answers GET {base_url}api (its version) to the holder of its token.
_DEFAULT_PROBES = {KIND_NOTEBOOK: JUPYTER_STATUS, KIND_KERNEL_GATEWAY: Probe(http="api"),
                   KIND_WEB: Probe(tcp=True)}


def readiness_probe(kind: str, probe: dict[str, Any] | None) -> Probe:
    """The probe a staging's servers are checked with: its own, else its kind's."""
    if probe and probe.get("http") is not None:
        return Probe(http=str(probe["http"]))
    if probe and probe.get("tcp"):
        return Probe(tcp=True)
    return _DEFAULT_PROBES.get(kind, JUPYTER_STATUS)


def reports_jupyter_activity(kind: str) -> bool:
    """Whether servers of kind answer Jupyter's api/status (with last_activity). The others'
    activity comes from the proxy's route alone."""
    return kind == KIND_NOTEBOOK


def server_command(kind: str, command: list[str] | None, *,
                   allow_origin: str = "") -> list[str] | None:
    """The command a server of kind runs (placeholders not yet filled): the staging's own,
    else its kind's default (with the CORS origin, when one is set), else None (the
    image's own command)."""
    if command:
        return list(command)
    default = _DEFAULT_COMMANDS.get(kind)
    if default is None:
        return None
    rendered = list(default)
    if allow_origin:
        rendered += [option.replace("{origin}", allow_origin)
                     for option in _ALLOW_ORIGIN_OPTIONS[kind]]
    return rendered


def token_env(kind: str, token: str) -> dict[str, str]:
    """Environment that hands the server its token, for apps that read it from there."""
    env = {"JUPYTER_TOKEN": token}  # read by Jupyter Server and many start scripts
    if kind == KIND_KERNEL_GATEWAY:
        env["KG_AUTH_TOKEN"] = token  # Kernel Gateway's auth_token, whatever the command
    return env


def unchecked_token_problem(kind: str, command: list[str] | None,
                            public_url_is_secret: bool) -> str | None:
    """Why a staging would serve anyone who has its url, or None.

    The proxy checks no token: a notebook and a Kernel Gateway check theirs; a `web` app
    can only if its command passes it ({token}). Without that, the operator must say that
    the url itself is the secret."""
    if kind != KIND_WEB or public_url_is_secret:
        return None
    if command and any(TOKEN_PLACEHOLDER in arg for arg in command):
        return None
    return ("a web staging whose command does not pass {token} to the app serves anyone who "
            "has its url: give a command that uses {token} (and an app that checks it), or "
            'set "public_url_is_secret": true to accept that (see docs/applications.md)')
