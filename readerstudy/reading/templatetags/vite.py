"""Load the Vite bundle by its manifest: hashed file names, served as static files from the page's origin."""

import json
from functools import cache
from pathlib import Path

from django import template
from django.conf import settings
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()


@cache
def _manifest(path: Path, mtime: float) -> dict:
    return json.loads(path.read_text())


def load_manifest() -> dict | None:
    path = Path(settings.VITE_MANIFEST)
    if not path.exists():
        return None
    return _manifest(path, path.stat().st_mtime)


@register.simple_tag
def vite_entry(entry: str) -> SafeString:
    manifest = load_manifest()
    if manifest is None or entry not in manifest:
        return format_html(
            '<p class="error" data-testid="bundle-missing">The viewer bundle is not built ({} has no {}): '
            "run <code>make frontend</code>.</p>",
            settings.VITE_MANIFEST,
            entry,
        )
    chunk = manifest[entry]
    css = format_html_join("", '<link rel="stylesheet" href="{}">', ((static(c),) for c in chunk.get("css", [])))
    return format_html('{}<script type="module" src="{}"></script>', css, static(chunk["file"]))
