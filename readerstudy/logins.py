"""Who is logging in from where: the client address, and a per-address throttle on failed logins.

Client address (``client_ip``, also django-axes' ``AXES_CLIENT_IP_CALLABLE``): ``REMOTE_ADDR`` unless
``TRUSTED_PROXY_COUNT`` proxies sit in front. Each proxy appends the address it received the request from to
X-Forwarded-For, so the real client is the ``TRUSTED_PROXY_COUNT``-th entry from the right; anything left of
it was written by the client and is never trusted. Without a trusted proxy X-Forwarded-For is ignored: a client
must not pick its own address, to dodge the limits or to lock someone else out.

Throttle (``throttle_logins``): axes locks a user name per address after a few failures; this adds a limit per
address across all user names (password spraying). After ``LOGIN_THROTTLE_FAILURES`` failed logins from one
address within ``LOGIN_THROTTLE_WINDOW_SECONDS``, that address gets 429 + Retry-After on every login POST for
``LOGIN_THROTTLE_SECONDS``, then may try again. Other addresses are never affected. The counters live in
Django's default cache (per process with the default local-memory cache: with N workers an address gets up to
N times the limit; still a throttle).
"""

import ipaddress
import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

__all__ = ["client_ip", "throttle_logins"]


def _address(hop: str) -> str | None:
    """An X-Forwarded-For entry as a normalised IP address (``1.2.3.4:567`` and ``[::1]:567`` lose the port)."""
    hop = hop.strip()
    if hop.startswith("[") and "]" in hop:
        hop = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:
        hop = hop.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or with trusted proxies the one the outermost proxy saw."""
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < count:
        return remote  # did not pass the whole proxy chain: the peer is the best we know
    return _address(hops[-count]) or remote


def _keys(address: str | None) -> tuple[str, str]:
    return f"login-throttle:failures:{address}", f"login-throttle:until:{address}"


def retry_after(address: str | None) -> int:
    """Seconds until ``address`` may try to log in again (0: now)."""
    until = cache.get(_keys(address)[1])
    return max(0, math.ceil(until - time.time())) if until else 0


def record_failure(address: str | None) -> None:
    """Count a failed login for ``address``; at the limit, hold the address back for a while."""
    failures_key, until_key = _keys(address)
    window = int(settings.LOGIN_THROTTLE_WINDOW_SECONDS)
    cache.add(failures_key, 0, timeout=window)  # the window starts at the first failure
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # expired between add and incr
        cache.set(failures_key, 1, timeout=window)
        failures = 1
    if failures >= int(settings.LOGIN_THROTTLE_FAILURES):
        hold = int(settings.LOGIN_THROTTLE_SECONDS)
        cache.set(until_key, time.time() + hold, timeout=hold)
        cache.delete(failures_key)


def throttle_logins(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view: a held-back address gets 429; a POST that does not log in (no redirect) is a failure."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        address = client_ip(request)
        wait = retry_after(address)
        if wait:
            response = render(request, "registration/throttled.html", {"retry_after": wait}, status=429)
            response["Retry-After"] = str(wait)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code == 200:  # the form again: wrong credentials (or an axes-locked user name)
            record_failure(address)
        return response

    return wrapper
