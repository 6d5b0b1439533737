"""Dates as people read them: in the site's one zone (settings.TIME_ZONE), always with the zone's name."""

from datetime import datetime

from django.utils import timezone

# The same format in templates: {{ value|date:DISPLAY_DATE_FORMAT }} -> "3 Dec 2026, 14:00 UTC".
DISPLAY_DATE_FORMAT = "j M Y, H:i T"


def format_when(value: datetime) -> str:
    """``value`` in settings.TIME_ZONE with its zone's name, e.g. "3 Dec 2026, 14:00 UTC"."""
    local = timezone.localtime(value, timezone.get_default_timezone())
    return f"{local.day} {local:%b %Y, %H:%M} {local.tzname()}"
