"""Builds: what a repository's files mean, labels, and following a build's log."""

from __future__ import annotations

import pytest

from binderq.domain.builds import (
    Build,
    BuildStatus,
    SpecError,
    build_spec,
    choose_config_dir,
    with_labels,
)
from binderq.services.builds import follow_build

BASE = "binderq/notebook:bookworm"


def test_binder_folder_takes_precedence_and_both_folders_are_an_error():
    assert choose_config_dir({"binder"}) == "binder"
    assert choose_config_dir(set()) == ""
    with pytest.raises(SpecError, match="both binder/ and .binder/"):
        choose_config_dir({"binder", ".binder"})


def test_a_dockerfile_is_used_as_it_is():
    spec = build_spec("binder", {"Dockerfile": b"FROM x\n", "requirements.txt": b"y\n"},
                      base_image=BASE)
    assert (spec.dockerfile, spec.files, spec.from_repository) == (
        "FROM x\n", ("binder/Dockerfile",), True)


def test_the_generated_dockerfile_reads_each_file_in_order_on_the_base_image():
    files = {"start": b"#!/bin/sh\n", "postBuild": b"#!/bin/sh\n", "apt.txt": b"curl\n",
             "requirements.txt": b"six\n"}
    spec = build_spec("", files, base_image=BASE)
    lines = spec.dockerfile.splitlines()
    assert lines[0] == f"FROM {BASE}"
    steps = [next(i for i, line in enumerate(lines) if word in line)
             for word in ("apt.txt", "requirements.txt", "postBuild", "ENTRYPOINT")]
    assert steps == sorted(steps)
    assert spec.files == ("apt.txt", "requirements.txt", "postBuild", "start")


def test_a_changed_environment_file_changes_the_spec_hash():
    one = build_spec("", {"requirements.txt": b"six\n"}, base_image=BASE)
    other = build_spec("", {"requirements.txt": b"six==1.16\n"}, base_image=BASE)
    assert one.spec_hash != other.spec_hash


@pytest.mark.parametrize("name", ["environment.yml", "Pipfile", "install.R", "runtime.txt"])
def test_a_file_binderq_cannot_honour_fails_naming_it(name):
    with pytest.raises(SpecError, match=f"binder/{name}"):
        build_spec("binder", {name: b"x", "requirements.txt": b"six\n"}, base_image=BASE)


def test_labels_become_one_quoted_instruction_at_the_end():
    text = with_labels("FROM x\nRUN true", {"b": 'say "hi" $HOME \\n', "a": "1"})
    assert text == 'FROM x\nRUN true\nLABEL a="1" b="say \\"hi\\" \\$HOME \\\\n"\n'


def test_labels_use_the_escape_character_a_parser_directive_names():
    text = with_labels("# escape=`\nFROM x\n", {"a": 'C:\\ "q" `'})
    assert text.endswith('LABEL a="C:\\ `"q`" ``"\n')


def test_a_label_with_a_line_break_is_refused():
    with pytest.raises(SpecError, match="line break"):
        with_labels("FROM x\n", {"a": "one\nLABEL evil=1"})


def _build(store, status=BuildStatus.BUILDING) -> Build:
    build = Build(id="b1", repo="r", ref="main", commit="c" * 40, status=status)
    store.save_build(build)
    return build


def test_following_a_build_gives_its_log_and_ends_once_it_is_final(store):
    _build(store)
    store.append_build_log("b1", line="Step 1/1")
    store.move_build("b1", BuildStatus.SUCCEEDED, "built")
    batches = list(follow_build("b1", store=store, wait_ms=10))
    assert [entry for batch in batches for _, entry in batch] == [
        {"line": "Step 1/1"}, {"phase": "succeeded", "message": "built"}]


def test_following_a_quiet_build_yields_empty_batches_for_keepalives(store):
    _build(store)
    follow = follow_build("b1", store=store, wait_ms=10)
    assert next(follow) == []
    store.move_build("b1", BuildStatus.FAILED, "building failed")
    assert [entry["phase"] for _, entry in next(follow)] == ["failed"]
    assert list(follow) == []


def test_following_a_build_that_vanished_ends(store):
    assert list(follow_build("gone", store=store, wait_ms=10)) == []
