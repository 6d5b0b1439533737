"""Series roles of a case (e.g. ``arterial``, ``portal-venous``, ``delayed``, ``t2``): the rules in one place.

No imports: the manifest check (run without Django by the phantom fixtures), the models and the reading API share
these. A role ends up in the reading API's payload and in exports, so it is a conservative ASCII set: lower-case
letters, digits and ``-``, starting with a letter or a digit (a leading ``-`` reads as a formula in spreadsheets).
"""

SERIES_ROLE_MAX = 40
# The primary series' role when the manifest names none: the reading condition of the study this platform was
# built for (portal-venous CT); the import of older, single-series manifests gives it too (migration 0005).
DEFAULT_SERIES_ROLE = "portal-venous"
MAX_SERIES_PER_CASE = 8  # the primary series and up to 7 more
ROLE_RULE = f"1 to {SERIES_ROLE_MAX} characters from a-z 0-9 -, starting with a letter or digit (e.g. arterial)"
_ROLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def role_problem(role: str) -> str | None:
    """Why ``role`` cannot name a series, or None when it can."""
    if not role:
        return "empty"
    if len(role) > SERIES_ROLE_MAX:
        return f"longer than {SERIES_ROLE_MAX} characters"
    odd = next((c for c in role if c not in _ROLE_CHARS), None)
    if odd is not None:
        return f"contains {odd!r}"
    if role.startswith("-"):
        return "starts with '-'"
    return None


def role_label(role: str) -> str:
    """The role for people: dashes as spaces, capitalised (``portal-venous`` -> ``Portal venous``)."""
    return role.replace("-", " ").capitalize()
