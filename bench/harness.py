"""What every benchmark needs: a free port, a server started and stopped as a process group, percentiles,
machine facts and the JSON result file. Study data comes from :mod:`fixtures`, never from the tests."""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: Sequence[float], q: float) -> float | None:
    """Percentile with linear interpolation (q in 0..100); None for no values."""
    s = sorted(values)
    if not s:
        return None
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def log_tail(path: Path, n: int = 3000) -> str:
    """The end of a server log, or '' when it cannot be read."""
    with suppress(OSError):
        return path.read_text(errors="replace")[-n:]
    return ""


def start_server(
    cmd: Sequence[str],
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    *,
    timeout_s: float,
    name: str,
    log_output: bool = True,
    ready: Callable[[subprocess.Popen], bool] = lambda proc: True,
) -> subprocess.Popen:
    """Start ``cmd`` in ROOT in its own session and wait until its login page answers 200 and ``ready(proc)``.

    ``log_output``: send the server's stdout/stderr to ``log_path`` (else the server writes that log itself).
    """
    if log_output:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
    else:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/accounts/login/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log_tail(log_path, 2000)}")
        try:
            with opener.open(url, timeout=5) as r:
                if r.status == 200 and ready(proc):
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer in {timeout_s:.0f} s:\n{log_tail(log_path, 2000)}")


def stop_server(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """SIGTERM the server's process group (started in its own session), SIGKILL after ``grace_s``."""
    if proc is None or proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """CPU count, platform and Python of the machine the result was measured on."""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_json(path: Path, result: Mapping[str, Any], *, default: Callable[[Any], Any] = str) -> None:
    """The result file: indented JSON with a final newline, parent folders created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=default) + "\n")
