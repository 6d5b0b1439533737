from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from readerstudy.studies.models import Membership


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Readers land on their worklist; everyone else on the admin."""
    if Membership.objects.filter(user=request.user, role=Membership.Role.READER).exists():
        return redirect("reading:worklist")
    return redirect("admin:index")
