"""The command line's verbs for a running service: build, stage, launch, pool, servers, stop,
logs and tokens speak the HTTP API at --url (BINDERQ_URL) with BINDERQ_TOKEN. Progress goes
to stderr, results to stdout; --json prints the API's answer as it came."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from binderq.client import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    FINAL_BUILD_STATUSES,
    FINAL_SERVER_STATUSES,
    FINAL_STAGING_STATUSES,
    ApiError,
    BinderqClient,
)

DEFAULT_URL = "http://127.0.0.1:8000"
# Seconds each GET of a server waits for its next status (?wait=), instead of polling.
SERVER_WAIT = 20
out = Console(highlight=False, soft_wrap=True)
progress = Console(stderr=True, highlight=False)


class Context:
    """What every verb shares: the client, and whether to print JSON."""

    def __init__(self, url: str, token: str, as_json: bool, timeout: float) -> None:
        self.client = BinderqClient(url, token)
        self.as_json = as_json
        self.timeout = timeout

    def result(self, body: Any, human: Callable[[Any], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(body, indent=2, sort_keys=True))
        else:
            human(body)

    def status(self, message: str) -> None:
        if not self.as_json:
            progress.print(f"[dim]{message}[/dim]")


def api_options(verb: Callable) -> Callable:
    """--url, --json and --timeout on a verb, and ApiError as one line and its exit code."""
    @click.option("--url", envvar="BINDERQ_URL", default=DEFAULT_URL, show_default=True,
                  help="the service (BINDERQ_URL); the token comes from BINDERQ_TOKEN")
    @click.option("--json", "as_json", is_flag=True, help="print the API's JSON answer")
    @click.option("--timeout", type=float, default=600, show_default=True,
                  help="seconds to wait for a build, staging or launch to finish")
    @wraps(verb)
    def with_client(url: str, as_json: bool, timeout: float, **arguments: Any) -> None:
        # Only from the environment: a token on the command line shows in `ps`.
        token = os.environ.get("BINDERQ_TOKEN", "")
        try:
            verb(Context(url, token, as_json, timeout), **arguments)
        except ApiError as error:
            retry = f" (retry after {error.retry_after} s)" if error.retry_after else ""
            click.echo(f"binderq: {error}{retry}", err=True)
            sys.exit(error.exit_code)
    return with_client


def register(group: click.Group) -> None:
    """Add the API verbs to the `binderq` command."""
    for verb in (build, stage, launch, pool, servers, stop, logs, tokens):
        group.add_command(verb)


# -- build and logs -------------------------------------------------------------------------


@click.command()
@click.argument("repo")
@click.option("--ref", default="HEAD", show_default=True, help="branch, tag or commit")
@click.option("--stage", "staging_name", metavar="NAME",
              help="stage the image under NAME once built (operator)")
@click.option("--public", is_flag=True, help="with --stage: anyone may launch it")
@click.option("--no-wait", is_flag=True, help="answer once the build is queued")
@api_options
def build(ctx: Context, repo: str, ref: str, staging_name: str | None, public: bool,
          no_wait: bool) -> None:
    """Build REPO at --ref; stream its log until it ends."""
    staging = {"name": staging_name, "public": public} if staging_name else None
    requested = ctx.client.request_build(repo, ref, staging)
    if requested.get("cached"):
        ctx.status(f"built before: {requested['image']}")
    elif not no_wait:
        requested = _follow(ctx, requested["id"])
    if requested["status"] in ("failed", "cancelled"):
        ctx.result(requested, _print_build)
        sys.exit(EXIT_FAILED)
    staged = _wait_until_staged(ctx, staging_name) if staging_name and not no_wait else {}
    ctx.result(requested, _print_build)
    if staged.get("status") == "failed":
        click.echo(f"binderq: staging {staging_name} failed: {staged.get('error')}", err=True)
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("build_id")
@click.option("--follow", "-f", is_flag=True, help="stream the log until the build ends")
@api_options
def logs(ctx: Context, build_id: str, follow: bool) -> None:
    """Print a build's log."""
    if not follow:
        click.echo(ctx.client.build_log(build_id), nl=False)
        return
    finished = _follow(ctx, build_id, to=out)
    if finished["status"] in ("failed", "cancelled"):
        sys.exit(EXIT_FAILED)


def _follow(ctx: Context, build_id: str, to: Console = progress) -> dict:
    """Stream the build's log (to stderr unless told) until it is final; the build."""
    build_now = ctx.client.build(build_id)
    while build_now["status"] not in FINAL_BUILD_STATUSES:
        for event in ctx.client.follow_build_log(build_id):
            if event.kind == "phase":
                to.print(f"[bold]{event.data['phase']}[/bold] {event.data.get('message', '')}")
            elif event.kind == "log":
                to.out(event.data.get("line", ""), highlight=False)
            elif event.kind == "done":
                build_now = event.data
        build_now = ctx.client.build(build_id)  # the stream ended: final, or follow again
    return build_now


def _print_build(build: dict) -> None:
    line = f"build {build['id']} {build['status']}"
    if build.get("image"):
        line += f": {build['image']}"
    if build.get("error"):
        line += f": {build['error']}"
    out.print(line)


# -- stagings -------------------------------------------------------------------------------


@click.command()
@click.argument("name")
@click.option("--image", help="the image to stage (or in --file)")
@click.option("--file", "from_file", type=click.File(), help="staging fields as JSON")
@click.option("--public/--private", default=None, help="whether anyone may launch it")
@click.option("--no-wait", is_flag=True, help="answer before the staging is ready")
@api_options
def stage(ctx: Context, name: str, image: str | None, from_file, public: bool | None,
          no_wait: bool) -> None:
    """Stage an image as NAME (create or replace); wait until it is ready."""
    fields = json.load(from_file) if from_file else {}
    if image:
        fields["image"] = image
    if public is not None:
        fields["public"] = public
    staging = ctx.client.put_staging(name, fields)
    if not no_wait:
        staging = _wait_until_staged(ctx, name)
    ctx.result(staging, lambda s: out.print(
        f"staging {s['name']} {s['status']}: {s.get('image')}"
        + (f": {s['error']}" if s.get("error") else "")))
    if staging["status"] == "failed":
        sys.exit(EXIT_FAILED)


def _wait_until_staged(ctx: Context, name: str) -> dict:
    """The staging once ready or failed (a build stages after it succeeds: until then the
    staging may not exist yet)."""
    def read() -> dict:
        try:
            return ctx.client.staging(name)
        except ApiError as error:
            if error.exit_code != EXIT_NOT_FOUND:
                raise
            return {"name": name, "status": "not yet staged"}

    return ctx.client.wait_for(read, FINAL_STAGING_STATUSES, timeout=ctx.timeout,
                               on_change=lambda now: ctx.status(f"staging {name}: "
                                                                f"{now['status']}"))


# -- servers --------------------------------------------------------------------------------


@click.command()
@click.argument("staging")
@click.option("--no-wait", is_flag=True, help="answer before the server is ready")
@api_options
def launch(ctx: Context, staging: str, no_wait: bool) -> None:
    """Launch a server of STAGING; print its URL with its token."""
    launched = ctx.client.launch(staging)
    token = launched.get("token")
    if not no_wait and launched["status"] not in FINAL_SERVER_STATUSES:
        ctx.status(f"server {launched['id']}: {launched['status']}")
        launched = ctx.client.wait_for(
            lambda: ctx.client.server(launched["id"], wait=SERVER_WAIT), FINAL_SERVER_STATUSES,
            timeout=ctx.timeout, interval=0.05,
            on_change=lambda now: ctx.status(f"server {now['id']}: {now['status']}"))
    launched.setdefault("token", token)
    ctx.result(launched, _print_launch)
    if launched["status"] in ("failed", "stopped"):
        sys.exit(EXIT_FAILED)


def _print_launch(server: dict) -> None:
    if server["status"] == "ready" and server.get("url"):
        out.print(f"{server['url']}?token={server['token']}")
    else:
        out.print(f"server {server['id']} {server['status']}"
                  + (f": {server['error']}" if server.get("error") else ""))


@click.command()
@click.option("--staging", help="only this staging's servers")
@click.option("--status", help="only servers in this status")
@api_options
def servers(ctx: Context, staging: str | None, status: str | None) -> None:
    """List servers (operator)."""
    ctx.result(ctx.client.servers(staging, status), _servers_table)


def _servers_table(rows: list[dict]) -> None:
    table = Table("id", "staging", "status", "age", "culled in", box=None)
    table.add_column("url", overflow="fold")  # whole, to copy, however narrow the terminal
    for server in rows:
        table.add_row(server["id"], server["staging"], server["status"],
                      _since(server.get("created_at")), _until(server.get("cull_at")),
                      server.get("url") or "")
    out.print(table)


@click.command()
@click.argument("server_id")
@api_options
def stop(ctx: Context, server_id: str) -> None:
    """Stop a server; wait until it has stopped."""
    ctx.client.stop(server_id)
    stopped = ctx.client.wait_for(lambda: ctx.client.server(server_id, wait=SERVER_WAIT),
                                  ("stopped",), timeout=ctx.timeout, interval=0.05)
    ctx.result(stopped, lambda s: out.print(f"server {s['id']} {s['status']}"))


# -- pools ----------------------------------------------------------------------------------


@click.command()
@click.argument("staging", required=False)
@click.argument("size", type=click.IntRange(min=0), required=False)
@api_options
def pool(ctx: Context, staging: str | None, size: int | None) -> None:
    """Show the pools, one staging's pool, or set its SIZE."""
    if staging is None:
        ctx.result(ctx.client.pools(), _pools_table)
        return
    answer = ctx.client.set_pool(staging, size) if size is not None \
        else ctx.client.pool(staging)
    ctx.result(answer, lambda p: _pools_table([p]))


def _pools_table(rows: list[dict]) -> None:
    table = Table("staging", "size", "ready", "starting", "in use", "hits", "misses", box=None)
    for row in rows:
        table.add_row(*(str(row[key]) for key in
                        ("staging", "size", "ready", "starting", "in_use", "hits", "misses")))
    out.print(table)


# -- tokens ---------------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """Issue and revoke user tokens (operator)."""


@tokens.command("issue")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["launch", "build"]), help="what the token may do (repeat)")
@click.option("--note", default="", help="who or what it is for")
@api_options
def issue_token(ctx: Context, scopes: tuple[str, ...], note: str) -> None:
    """Issue a token; it is printed once."""
    ctx.result(ctx.client.issue_token(list(scopes), note),
               lambda t: out.print(f"{t['token']}\n[dim]id {t['id']}; revoke with "
                                   f"`binderq tokens revoke {t['id']}`[/dim]"))


@tokens.command("revoke")
@click.argument("token_id")
@api_options
def revoke_token(ctx: Context, token_id: str) -> None:
    """Revoke a token by its id."""
    ctx.client.revoke_token(token_id)
    ctx.result({"id": token_id, "revoked": True},
               lambda _: out.print(f"token {token_id} revoked"))


# -- times ----------------------------------------------------------------------------------


def _parse(moment: str | None) -> datetime | None:
    if not moment:
        return None
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _since(moment: str | None) -> str:
    start = _parse(moment)
    return _duration((datetime.now(UTC) - start).total_seconds()) if start else ""


def _until(moment: str | None) -> str:
    end = _parse(moment)
    return _duration((end - datetime.now(UTC)).total_seconds()) if end else ""


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
