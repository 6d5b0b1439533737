"""Content-Security-Policy on every response (Django 5.2 has no built-in CSP).

The viewer needs: its bundle, decode workers and wasm codecs from this origin ('wasm-unsafe-eval' lets
WebAssembly compile without allowing eval), images and overlays fetched from this origin, blob: for workers
and canvases. Nothing may be framed or loaded from elsewhere.
"""

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.debug import SafeExceptionReporterFilter

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "img-src 'self' data: blob:",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response


class SecretsReporterFilter(SafeExceptionReporterFilter):
    """Django's hidden settings (API, AUTH, TOKEN, KEY, SECRET, PASS, ...) plus the de-identification salt and the
    database URL (which may carry a password)."""

    hidden_settings = re.compile(SafeExceptionReporterFilter.hidden_settings.pattern + "|SALT|DATABASE_URL", flags=re.I)
