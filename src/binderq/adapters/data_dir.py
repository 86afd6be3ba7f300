"""`binderq up`'s data directory: its Redis' files and the secrets that must stay the same
from one start to the next (the Redis password, the secret key server tokens derive from,
the operator token), so that stagings, pools, builds, tokens and running servers survive a
restart."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

SECRETS_FILE = "secrets.json"
REDIS_DIR = "redis"


class DataDirUnusable(RuntimeError):
    """The data directory's secrets cannot be read; the message says what to do."""


@dataclass(frozen=True)
class StoredSecrets:
    redis_password: str
    secret_key: str
    operator_token: str

    @classmethod
    def new(cls) -> StoredSecrets:
        return cls(redis_password=secrets.token_hex(24), secret_key=secrets.token_hex(32),
                   operator_token=secrets.token_hex(24))


def default_data_dir(instance: str) -> Path:
    """$XDG_DATA_HOME/binderq/<instance>, else ~/.local/share/binderq/<instance>."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "binderq" / instance


def prepare_data_dir(data_dir: Path) -> Path:
    """Make data_dir (and its Redis folder), readable by its owner only."""
    (data_dir / REDIS_DIR).mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    return data_dir


def redis_dir(data_dir: Path) -> Path:
    return data_dir / REDIS_DIR


def forget_redis_data(data_dir: Path) -> None:
    """Empty the Redis folder (`binderq up --fresh`); the secrets stay."""
    shutil.rmtree(redis_dir(data_dir), ignore_errors=True)
    redis_dir(data_dir).mkdir(parents=True)


def load_secrets(data_dir: Path) -> StoredSecrets:
    """The secrets kept in data_dir, made (0600, owner only) on first use."""
    path = data_dir / SECRETS_FILE
    try:
        return StoredSecrets(**json.loads(path.read_text()))
    except FileNotFoundError:
        pass
    except (ValueError, TypeError) as error:
        raise DataDirUnusable(f"{path} is unreadable ({error}); remove it to make new secrets "
                           "(the tokens of servers still running then change)") from error
    made = StoredSecrets.new()
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(made), file)
    os.chmod(partial, 0o600)
    os.replace(partial, path)  # whole or not at all
    return made
