"""Numbers in the report: shown rounded, with the exact value kept in data-value (tests compare both)."""

import json
import math

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


def _text(value: object, digits: int) -> tuple[str, str]:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–", ""
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}", repr(value)
        return f"{value:.{digits}f}", repr(value)
    return str(value), str(value)


@register.simple_tag
def num(value: object, digits: int = 4) -> SafeString:
    shown, exact = _text(value, digits)
    return format_html('<td class="num" data-value="{}">{}</td>', exact, shown)


@register.simple_tag
def numspan(value: object, digits: int = 4) -> SafeString:
    shown, exact = _text(value, digits)
    return format_html('<span class="num" data-value="{}">{}</span>', exact, shown)


@register.filter
def pretty_json(value: object) -> str:
    return json.dumps(value, indent=1, default=str)
