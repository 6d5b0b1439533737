"""Strict environment helpers for settings: a malformed value fails loudly at start-up."""

import fcntl
import json
import os
import secrets
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected an integer") from None


def demo_secret(path: Path, name: str) -> str:
    """A secret of the demo, generated once and kept in ``path`` (mode 0600) so that restarts keep sessions and
    pseudonyms stable. Only for DEBUG runs: production sets every secret in the environment."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # the test server and the tests may start at once: one secret for both
        text = f.read()
        kept = json.loads(text) if text.strip() else {}
        if name not in kept:
            kept[name] = secrets.token_urlsafe(48)
            f.seek(0)
            f.truncate()
            json.dump(kept, f)
    return kept[name]
