"""The set-password e-mail of a reader account created without a password (sent after the action committed)."""

from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.http import HttpRequest
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode


def set_password_link(request: HttpRequest, user: Any) -> str:
    """Django's password-reset confirmation link: one use, invalid once a password is set (the token hashes it)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return request.build_absolute_uri(reverse("password_reset_confirm", args=[uid, token]))


def send_set_password_link(request: HttpRequest, user: Any, study_name: str) -> None:
    link = set_password_link(request, user)
    send_mail(
        subject=f"Your reader account for the study {study_name}",
        message=(
            f"An account {user.get_username()!r} was created for you to read in the study {study_name!r}.\n\n"
            f"Choose your password here (the link works once):\n{link}\n\n"
            "Then log in and open the worklist."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )
