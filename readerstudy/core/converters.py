"""URL path converters shared by every app (registered in CoreConfig.ready)."""


class IdConverter:
    """Database ids: at most 18 digits (bigint range); anything else falls through to the API's JSON 404."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
