"""Types the apps share (annotations only: nothing here runs)."""

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Who performs an action: a signed-in ``request.user``, or a user a command looked up. The project's user model
# (AUTH_USER_MODEL is Django's own): actions store the actor in foreign keys to it (created_by, reader, user),
# read ``.pk`` and ``get_username()``, and check ``is_staff``/``is_superuser`` through getattr. Change it here if
# the project ever swaps the user model.
Actor: TypeAlias = "User"
