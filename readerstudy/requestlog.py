"""One log line per request, with nothing personal in it.

Logger ``readerstudy.requests``: ``method=GET route=api/items/<id:item_id>/read/ status=200 duration_ms=12.3``. The
route is the URL *pattern* the request matched (``-`` when none did), never the path itself: paths and query strings
can carry e-mail addresses, search terms and one-time tokens (the set-password link's). No user, no client
address, no cookies, no headers, no body. The duration is until the response is handed back (a streamed image
finishes later). Placed first in MIDDLEWARE, so it sees every response, the SSL redirect and lockouts included.

``RouteNotPath`` does the same for Django's own lines about 4xx and 5xx answers ("Not Found: /path" becomes
"Not Found: <route>"; LOGGING puts it on ``django.request`` and ``django.security.csrf``). ``axes_client_str``
replaces django-axes' client description in its log lines (by default the user name and the client address); the
attempts themselves stay in the database, where the admin shows them to those allowed.
"""

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

__all__ = ["RequestLogMiddleware", "RouteNotPath", "axes_client_str", "route"]

logger = logging.getLogger("readerstudy.requests")

# Anything else a client puts in the request line is logged as "OTHER" (a method is client-chosen text too).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def route(request: HttpRequest) -> str:
    """The URL pattern ``request`` matched (``api/items/<id:item_id>/read/``), or ``-`` before or without a match."""
    match = getattr(request, "resolver_match", None)
    return (match.route if match is not None else "") or "-"


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        duration_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "method=%s route=%s status=%d duration_ms=%.1f",
            request.method if request.method in METHODS else "OTHER",
            route(request),
            response.status_code,
            duration_ms,
        )
        return response


class RouteNotPath(logging.Filter):
    """A record about a request (Django's ``log_response``: ``extra={"request": ...}``) names its route, not its
    path."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if isinstance(request, HttpRequest) and isinstance(record.args, tuple):
            paths = {request.path, request.path_info, request.get_full_path()}
            record.args = tuple(route(request) if isinstance(arg, str) and arg in paths else arg for arg in record.args)
        return True


def axes_client_str(username: str, ip_address: str, user_agent: str, path_info: str, request: HttpRequest) -> str:
    """django-axes' AXES_CLIENT_STR_CALLABLE: its log lines say what happened, not who or from where."""
    return "{client: not logged}"
