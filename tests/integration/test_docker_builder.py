"""The image builder against the real engine and the real notebook image."""

from __future__ import annotations

import pytest

from binderq.adapters.docker_builder import DockerBuilder
from binderq.domain.builds import BuildLimits, with_labels
from binderq.domain.errors import BuildFailed

LIMITS = BuildLimits(memory=256 * 1024**2, cpu_shares=512, timeout=60)


@pytest.fixture
def builder(runtime) -> DockerBuilder:  # runtime: the engine is up, or the session fails
    return DockerBuilder()


@pytest.mark.parametrize("directive", ["", "# escape=`\n"])
def test_build_labels_reach_the_image_exactly_whatever_they_hold(builder, notebook_image,
                                                                  tmp_path, directive):
    labels = {"binderq.build.repo": 'https://h/a "b" $HOME \\ `x`', "binderq.build.id": "b1"}
    tag = f"binderq-test/labels:{'directive' if directive else 'plain'}"
    lines: list[str] = []
    try:
        dockerfile = with_labels(f"{directive}FROM {notebook_image}\n", labels)
        builder.build_image(tmp_path, dockerfile, tag, expected_labels=labels, limits=LIMITS,
                            on_line=lines.append)
        image = builder.client.images.get(tag)
        assert {key: image.labels.get(key) for key in labels} == labels
        assert sum(line.startswith("Step ") for line in lines) == 2  # FROM, one LABEL
    finally:
        builder.remove_image(tag)


def test_a_dockerfile_that_swallows_the_label_step_fails_and_leaves_no_image(
        builder, notebook_image, tmp_path):
    tag = "binderq-test/labels:swallowed"
    labels = {"binderq.build.id": "b1"}
    dockerfile = with_labels(f"FROM {notebook_image}\nRUN echo \\\n", labels)
    with pytest.raises(BuildFailed, match="line continuation"):
        builder.build_image(tmp_path, dockerfile, tag, expected_labels=labels, limits=LIMITS,
                            on_line=lambda line: None)
    assert builder.client.images.list(name=tag) == []
