"""The links the pages make, as pure functions: a repository form's fields as a badge link
(mybinder's /v2/{provider}/{spec}), its badge snippets, and where in a launched notebook a
link's urlpath, labpath or filepath opens. No Flask here."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from binderq.domain.errors import FieldError, InvalidInput

PROVIDER_HOSTS = {"gh": "github.com", "gl": "gitlab.com"}
PROVIDERS = ("gh", "gl", "git")
BADGE_PATH = "/badge.svg"


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput("Link", message=message, errors=[FieldError(field, "invalid", message)])


def repository_spec(provider: str, repository: str, ref: str) -> str:
    """The {spec} of /v2/{provider}/{spec} for a form's fields: `org/repo/ref` for gh and gl
    (a full https URL of that host is accepted), `URL-ESCAPED-URL/ref` for git."""
    repository, ref = repository.strip(), (ref or "").strip() or "HEAD"
    if provider not in PROVIDERS:
        raise _invalid("provider", f"unknown provider {provider!r}: gh, gl or git")
    if not repository:
        raise _invalid("repository", "a repository is needed")
    if provider == "git":
        return f"{quote(repository, safe='')}/{quote(ref, safe='')}"
    path = _host_path(provider, repository)
    if path.count("/") < 1 or any(not part for part in path.split("/")):
        raise _invalid("repository", f"{repository!r} is not ORG/REPOSITORY or its URL")
    return f"{quote(path, safe='/')}/{quote(ref, safe='')}"


def _host_path(provider: str, repository: str) -> str:
    """`org/repo` of `org/repo`, `https://github.com/org/repo(.git)(/)`."""
    host = PROVIDER_HOSTS[provider]
    for prefix in (f"https://{host}/", f"http://{host}/", f"{host}/"):
        if repository.startswith(prefix):
            repository = repository[len(prefix):]
            break
    repository = repository.strip("/")
    return repository[:-4] if repository.endswith(".git") else repository


def link_path(provider: str, spec: str) -> str:
    """The badge link's path, mybinder's: /v2/{provider}/{spec}."""
    return f"/v2/{provider}/{spec}"


@dataclass(frozen=True)
class Badge:
    """What a README needs to show a launch badge for a repository."""

    link: str
    image: str
    markdown: str
    rst: str


def badge(public_url: str, provider: str, spec: str, *, file: str = "") -> Badge:
    """The absolute badge link (with ?labpath= when a file is named), its image, and the
    Markdown and reStructuredText that show it."""
    base = public_url.rstrip("/")
    link = base + link_path(provider, spec) + (f"?labpath={quote(file)}" if file else "")
    image = base + BADGE_PATH
    return Badge(link=link, image=image, markdown=f"[![Launch in binderq]({image})]({link})",
                 rst=f".. image:: {image}\n   :target: {link}")


def notebook_location(url: str, token: str, *, urlpath: str = "", labpath: str = "",
                      filepath: str = "", lab: bool = False) -> str:
    """Where a launched server is opened, token included: `urlpath` as given (under the
    server's url); `labpath` in JupyterLab when the image serves it (`lab`), else in the
    classic tree, which opens files and notebooks too; `filepath` in the tree."""
    path = urlpath.lstrip("/")
    if not path and labpath:
        path = ("lab/tree/" if lab else "tree/") + labpath.lstrip("/")
    elif not path and filepath:
        path = "tree/" + filepath.lstrip("/")
    path = quote(path, safe="/=&?%")
    separator = "&" if "?" in path else "?"
    return f"{url}{path}{separator}token={quote(token, safe='')}"
