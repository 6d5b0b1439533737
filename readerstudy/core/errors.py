"""Errors raised by actions. Views map them to HTTP status codes; commands print them."""


class ActionError(Exception):
    """A refused action; ``status`` is the HTTP status an API view should answer with."""

    status = 400

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"- {d}" for d in self.details)


class InvalidInput(ActionError):
    status = 400


class NotAllowed(ActionError):
    status = 403


class NotFound(ActionError):
    status = 404


class Conflict(ActionError):
    status = 409


class NotReady(ActionError):
    """Launch refused: ``details`` lists every unmet readiness check."""

    status = 409


class NotOpenYet(ActionError):
    """A session (or item) that cannot be read yet, e.g. during the washout."""

    status = 409
