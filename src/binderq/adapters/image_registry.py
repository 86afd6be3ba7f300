"""Push an image to a registry and pull it on another engine (Docker's own push and pull,
to a registry such as Debian's docker-registry on loopback). Every failure, of the engine or
of the registry, becomes ImageTransferFailed naming the host and the image."""

from __future__ import annotations

from typing import Any

import docker
import docker.errors
import requests

from binderq.adapters.docker_engine import short
from binderq.domain.errors import ImageTransferFailed


class _TransferError(Exception):
    """A push or pull whose progress stream ended in an error."""


_TRANSFER_ERRORS = (docker.errors.DockerException, requests.RequestException, _TransferError)


def push_image(client: docker.DockerClient, image_id: str, reference: str, *,
               host: str = "") -> None:
    """Tag image id as reference (REGISTRY/repository:tag) and push it there."""
    repository, tag = reference.rsplit(":", 1)
    try:
        image = client.images.get(image_id)
        image.tag(repository, tag)
        _stream_ok(client.api.push(repository, tag=tag, stream=True, decode=True))
    except _TRANSFER_ERRORS as error:
        raise ImageTransferFailed(
            f"host {host or 'local'} could not push image {image_id} to {reference}: "
            f"{short(error)}", host=host, image=image_id) from error
    finally:
        _untag(client, reference)


def _untag(client: docker.DockerClient, reference: str) -> None:
    """Take the registry's tag off again where the image has another (so the collector's
    removal of that one frees the image); an image with no other tag keeps it."""
    try:
        tags = client.images.get(reference).tags
        if len(tags) > 1:
            client.api.remove_image(reference, noprune=True)
    except docker.errors.DockerException:
        pass  # not tagged, or already gone: nothing to take off


def pull_image(client: docker.DockerClient, reference: str, image_id: str, *,
               host: str = "") -> None:
    """Pull reference and check that it is image id."""
    repository, tag = reference.rsplit(":", 1)
    try:
        _stream_ok(client.api.pull(repository, tag=tag, stream=True, decode=True))
        pulled = client.images.get(reference).id
    except _TRANSFER_ERRORS as error:
        raise ImageTransferFailed(
            f"host {host or 'local'} could not pull image {image_id} from {reference}: "
            f"{short(error)}", host=host, image=image_id) from error
    if pulled != image_id:
        raise ImageTransferFailed(
            f"host {host or 'local'} pulled {reference}, but it is image {pulled}, not "
            f"{image_id}", host=host, image=image_id)


def _stream_ok(stream: Any) -> None:
    """Read a push's or pull's progress to its end; _TransferError at an error in it."""
    for line in stream:
        if isinstance(line, dict) and line.get("error"):
            raise _TransferError(line["error"])
