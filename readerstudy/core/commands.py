"""What management commands share: the acting user named by ``--as`` (commands act as a person, like views)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management.base import CommandError


def acting_user(username: str) -> AbstractBaseUser:
    actor = get_user_model().objects.filter(username=username).first()
    if actor is None:
        raise CommandError(f"no user named {username!r}")
    return actor
