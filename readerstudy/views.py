import logging

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from readerstudy.studies.models import Membership

logger = logging.getLogger("readerstudy.health")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Readers land on their worklist, statisticians on the results, admins on the admin."""
    roles = set(Membership.objects.filter(user=request.user).values_list("role", flat=True))
    if Membership.Role.READER in roles:
        return redirect("reading:worklist")
    if Membership.Role.STATISTICIAN in roles or not request.user.is_staff:
        return redirect("results:index")
    return redirect("admin:index")


@login_required
def ping(request: HttpRequest) -> JsonResponse:
    """The smallest authenticated JSON view (session, user, one response): the load benchmark's baseline, against
    which each reading endpoint's cost per request is measured in the same run."""
    return JsonResponse({"user": request.user.pk})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any failure is "database down"; the reason goes to the log, never to the client
        logger.exception("health check: the database does not answer")
        return False


def _storage_ok() -> bool:
    # Listing the storage's root reads and writes nothing, and fails where exists() would not: FileSystemStorage's
    # exists() answers False for a missing MEDIA_ROOT, S3Storage's for a missing bucket; both listings raise.
    try:
        default_storage.listdir("")
        return True
    except Exception:
        logger.exception("health check: the file storage cannot be listed")
        return False


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and monitoring: 200 when the database answers and the file storage can be read, else
    503 naming the failed check. No login and no session (a probe has no cookies), nothing written, never cached;
    exception texts go to the log only (they can name hosts, users and paths)."""
    checks = {"database": _database_ok(), "storage": _storage_ok()}
    body = {"status": "ok" if all(checks.values()) else "fail"}
    body.update({name: "ok" if ok else "fail" for name, ok in checks.items()})
    return JsonResponse(body, status=200 if all(checks.values()) else 503)
