"""Production gunicorn settings:  gunicorn -c deploy/gunicorn.conf.py readerstudy.wsgi

Threaded workers (``gthread``), not the default ``sync`` class: a sync worker serves one connection at a time
and blocks while a client trickles in its request headers, so a handful of slow clients (a bad network, or four
on purpose) starve every worker. A gthread worker parks idle and kept-alive connections in its event loop and
has ``threads`` request slots; a slow client holds one slot, not the worker.

That bounds the damage; it does not remove it (enough slow clients still fill every slot). In production a
buffering reverse proxy (nginx: ``proxy_request_buffering on``, the default) goes in front: it reads each whole
request before passing it on, so gunicorn only ever sees complete requests from the proxy. Bind to loopback or a
unix socket only the proxy reaches (also what makes ``TRUSTED_PROXY_COUNT`` safe in the Django settings).

Every setting comes from an environment variable with a safe default (``GUNICORN_*`` below); command-line
options still override this file.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gunicorn execs this file before the app is on the path

from readerstudy.env import env_int, env_list, env_str


def _at_least(name: str, value: int, minimum: int) -> int:
    if value < minimum:
        raise ValueError(f"environment variable {name}={value}: expected at least {minimum}")
    return value


wsgi_app = "readerstudy.wsgi:application"
bind = env_list("GUNICORN_BIND", ["127.0.0.1:8000"])  # loopback: the proxy in front is the only client
worker_class = "gthread"
workers = _at_least("GUNICORN_WORKERS", env_int("GUNICORN_WORKERS", min(4, os.cpu_count() or 1)), 1)
threads = _at_least("GUNICORN_THREADS", env_int("GUNICORN_THREADS", 8), 1)
backlog = env_int("GUNICORN_BACKLOG", 2048)
# gthread: a worker whose main loop stops for this long is restarted (not a per-request limit).
timeout = env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = env_int("GUNICORN_KEEPALIVE", 5)  # behind a proxy that reuses its upstream connections
# Request limits: refuse oversized request lines and headers before they reach Django.
limit_request_line = env_int("GUNICORN_LIMIT_REQUEST_LINE", 4094)
limit_request_fields = env_int("GUNICORN_LIMIT_REQUEST_FIELDS", 100)
limit_request_field_size = env_int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 8190)
# Recycle workers now and then (jittered, so not all at once); 0 = never.
max_requests = env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = env_int("GUNICORN_MAX_REQUESTS_JITTER", 0)
# Heartbeat files in memory: a slow or full disk must not get healthy workers killed.
worker_tmp_dir = env_str("GUNICORN_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else "") or None
# Proxies whose X-Forwarded-Proto gunicorn believes (Django's SECURE_PROXY_SSL_HEADER reads it too).
forwarded_allow_ips = env_str("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Off by default: gunicorn's access lines carry the client address and the full path with its query string (one-time
# tokens, search terms). Django logs every request by route instead (readerstudy.requests). "-" turns it on.
accesslog = env_str("GUNICORN_ACCESS_LOG", "") or None
errorlog = env_str("GUNICORN_ERROR_LOG", "-")
loglevel = env_str("GUNICORN_LOG_LEVEL", "info")
