from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from readerstudy.studies.models import Membership


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Readers land on their worklist, statisticians on the results, admins on the admin."""
    roles = set(Membership.objects.filter(user=request.user).values_list("role", flat=True))
    if Membership.Role.READER in roles:
        return redirect("reading:worklist")
    if Membership.Role.STATISTICIAN in roles or not request.user.is_staff:
        return redirect("results:index")
    return redirect("admin:index")
