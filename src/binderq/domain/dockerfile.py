"""What a repository's Dockerfile may ask of the Docker engine. Pure.

Reason to change: a build rule changes, or the engine's Dockerfile parser does.

The engine itself, on the host's own network, fetches what `ADD <url>` names and the images
`FROM` and `COPY --from` name; build steps only run in containers. So `ADD` from a URL is
refused for every build, and builds without a token may start only from the operator's list
of base images. The instructions are read as the engine's parser reads them (one line per
`\\n`, the escape directive, line continuations, comments inside them), and where the two
could disagree (control characters, quoting or variables this reader does not resolve) a
restricted build is refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass


class RuleBroken(ValueError):
    """The Dockerfile asks for something binderq does not allow; the message says what."""


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-case: FROM, ADD ...
    rest: str  # everything after the keyword, continuation lines joined
    line: int  # where it starts, from 1


_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^#\s*\w+\s*=")
# The engine splits lines at \n only and reads no control characters; Python's splitlines
# and whitespace know more, which could hide an instruction from this reader.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]|\r(?!\n)")
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::([-+])([^}$]*))?\}|(\w+))")


def escape_character(dockerfile: str) -> str:
    """The Dockerfile's escape character: `\\`, unless a parser directive at its top says
    otherwise (`# escape=`` ` on Windows-style files)."""
    for line in dockerfile.lstrip("\ufeff").split("\n"):
        found = _ESCAPE_DIRECTIVE.match(line.strip())
        if found:
            return found.group(1)
        if not _DIRECTIVE.match(line.strip()):
            break
    return "\\"


def instructions(dockerfile: str) -> list[Instruction]:
    """The Dockerfile's instructions as the engine's parser reads them."""
    if _CONTROL.search(dockerfile):
        raise RuleBroken("the Dockerfile holds control characters")
    escape = re.escape(escape_character(dockerfile))
    continued = re.compile(escape + r"[ \t]*$")
    if re.search(escape + escape + r"[ \t]*\r?$", dockerfile, re.MULTILINE):
        # Versions of the engine's parser disagree on whether that continues the line.
        raise RuleBroken("a line ends with two escape characters; write it otherwise")
    found: list[Instruction] = []
    lines = dockerfile.lstrip("\ufeff").split("\n")
    index = 0
    while index < len(lines):
        start, text = index + 1, lines[index].rstrip("\r").lstrip()
        index += 1
        if not text or text.startswith("#"):
            continue
        while continued.search(text) and index < len(lines):
            text = continued.sub("", text)
            index, following = _next_line(lines, index)
            text += following
        keyword, rest = _split_keyword(continued.sub("", text))
        found.append(Instruction(keyword.upper(), rest, start))
    return found


def _next_line(lines: list[str], index: int) -> tuple[int, str]:
    """The next line that continues an instruction (comments and empty lines in between
    are skipped, as the engine does), and the index after it."""
    while index < len(lines):
        line = lines[index].rstrip("\r")
        index += 1
        if line.strip() and not line.lstrip().startswith("#"):
            return index, line
    return index, ""


def _split_keyword(text: str) -> tuple[str, str]:
    parts = re.split(r"[ \t\v\f\r]+", text.strip(), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _flags_and_words(rest: str) -> tuple[dict[str, str], list[str]]:
    """Leading --flags (name -> value) and the words after them (the JSON form's too)."""
    words = rest.split()
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name.lower()] = value
    remainder = " ".join(words)
    if remainder.startswith("["):
        try:
            parsed = json.loads(remainder)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(word, str) for word in parsed):
            return flags, parsed
    return flags, words


def check_dockerfile(dockerfile: str, *, base_images: Collection[str] | None) -> None:
    """Refuse `ADD` from a URL (for every build) and, when base_images is given (a build
    without a token), any image outside it that FROM or COPY --from names. RuleBroken
    says which line and what to do instead."""
    steps = instructions(dockerfile)
    allowed = None if base_images is None else {normal_image(i) for i in base_images}
    args: dict[str, str | None] = {}
    stages: list[str] = []
    for step in steps:
        keyword, rest = step.keyword, step.rest
        if keyword == "ONBUILD":
            keyword, rest = _split_keyword(rest)
            keyword = keyword.upper()
        if keyword == "ADD":
            _check_add(step, rest, args)
        if keyword == "ARG" and not stages:
            args.update(_arg_defaults(rest, args))
        if keyword == "FROM":
            stages.append(_check_from(step, rest, args, stages, allowed))
        if keyword == "COPY" and allowed is not None:
            _check_copy_from(step, rest, stages, allowed)


def _check_add(step: Instruction, rest: str, args: dict[str, str | None]) -> None:
    _, words = _flags_and_words(rest)
    for source in words[:-1]:
        resolved = _substitute(source, args) if "$" in source else source
        if resolved is None or _URL.match(resolved.strip("'\"")):
            raise RuleBroken(
                f"line {step.line}: ADD {source} would be fetched by the Docker engine "
                "from binderq's own network, which builds may not do: download it in a "
                "RUN step, or COPY a file of the repository")


def _check_from(step: Instruction, rest: str, args: dict[str, str | None],
                stages: list[str], allowed: set[str] | None) -> str:
    """The stage name this FROM gives (or "")."""
    _, words = _flags_and_words(rest)  # --platform is the engine's business
    if not words:
        raise RuleBroken(f"line {step.line}: FROM names no image")
    name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
    if allowed is None:
        return name
    image = _substitute(words[0], args)
    if image is None:
        raise RuleBroken(f"line {step.line}: FROM {words[0]}: builds without a token may "
                         "start only from a base image named outright (or by an ARG with a "
                         "default)")
    if image.lower() in stages or image == "scratch" or normal_image(image) in allowed:
        return name
    raise _not_listed(step, "FROM", image, allowed)


def _check_copy_from(step: Instruction, rest: str, stages: list[str],
                     allowed: set[str]) -> None:
    source = _flags_and_words(rest)[0].get("from")
    if source is None or source.lower() in stages or (
            source.isdigit() and int(source) < len(stages)):
        return
    if "$" in source or normal_image(source) not in allowed:
        raise _not_listed(step, "COPY --from", source, allowed)


def _not_listed(step: Instruction, what: str, image: str, allowed: set[str]) -> RuleBroken:
    return RuleBroken(
        f"{what} {image} is not on this binderq's list of base images: "
        f"{', '.join(sorted(allowed))} (line {step.line}). Builds without a token may start "
        "only from these; start from one of them, or ask the operator for a token")


def _arg_defaults(rest: str, args: dict[str, str | None]) -> dict[str, str | None]:
    """name -> default of `ARG name=value ...` (None: no default, or one not read here)."""
    found: dict[str, str | None] = {}
    for word in rest.split():
        name, has_value, value = word.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = _substitute(value, {**args, **found}) if has_value else None
    return found


def _substitute(word: str, args: dict[str, str | None]) -> str | None:
    """word with $NAME, ${NAME}, ${NAME:-default} and ${NAME:+alternative} replaced by
    the ARG defaults (binderq passes no build arguments, so they are the values); None when
    it needs anything else (quotes, escapes, names without a default)."""
    unknown = []

    def value(found: re.Match) -> str:
        name, operator, word = found.group(1) or found.group(4), found.group(2), found.group(3)
        current = args.get(name)
        if operator == "-":
            return current or word
        if operator == "+":
            return word if current else ""
        if current is None:
            unknown.append(name)
            return ""
        return current

    result = _VARIABLE.sub(value, word)
    if unknown or re.search(r"[$'\"\\`]", result):
        return None
    return result


def normal_image(reference: str) -> str:
    """An image reference as the engine reads it: Docker Hub's host and `library/` dropped,
    `:latest` when it names neither tag nor digest."""
    name = reference.strip()
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    name = name.removeprefix("library/")
    last = name.rsplit("/", 1)[-1]
    if "@" not in name and ":" not in last:
        name += ":latest"
    return name
