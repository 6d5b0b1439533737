"""The admin keeps study boundaries: a user who reads Alpha, is statistician of Charlie and administers Bravo
reaches nothing of Alpha or Charlie through any changelist, filter sidebar, search, change, history or delete page,
action or form choice, and does reach Bravo's (so every check here can fail). Superusers reach everything.

Every ModelAdmin of our apps is enumerated from ``admin.site._registry``: a new one fails here until it is scoped.
"""

import csv
import io
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.contrib.admin import FieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from inference.models import PrecomputeRun, Prediction
from readerstudy.core.admin import SCOPED_FILTERS, StudyScopedAdminMixin, study_path
from readerstudy.core.models import AuditEvent
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Study
from tests.factories import balanced_rows, make_user, predict_all, write_manifest

pytestmark = pytest.mark.django_db

OUR_APPS = {"core", "studies", "reading", "inference", "results"}
# How the test itself finds an object's study (independent of the admins' declared study_field). A new
# ModelAdmin of our apps fails test_every_admin_of_our_apps_is_study_scoped until it is listed here.
OWNER = {Study: "pk", Case: "study", ReadingSession: "study", Read: "study", AuditEvent: "study",
         Prediction: "case__study", PrecomputeRun: "study"}  # fmt: skip
HIDDEN = ("Alpha", "alpha_reader", "alpha_stat", "alpha-", "A-P00", "Charlie", "charlie_reader", "charlie-", "C-P00")
SHOWN = ("Bravo", "bravo_reader", "bravo-", "B-P00")


def _study(tmp_path, superuser, name, prefix, readers, *, launch=True):
    """A small study with its own case ids, patient pseudonyms and modality keys, so that each shows by name."""
    study = actions.create_study(superuser, name, seed=1234)
    actions.add_modality(superuser, study, f"{name.lower()}-unaided", "Unaided", shows_dl=False)
    actions.add_modality(superuser, study, f"{name.lower()}-aided", "DL-assisted", shows_dl=True)
    for reader in readers:
        actions.add_member(superuser, study, reader, "reader")
    rows = balanced_rows(2, 2)
    for row in rows:
        row["patient_id"], row["case_id"] = f"{prefix}-{row['patient_id']}", f"{prefix}-{row['case_id']}"
    actions.import_cases(superuser, study, write_manifest(tmp_path / prefix, rows))
    predict_all(study, 0.7)  # before launch, which freezes predictions
    if launch:
        launch_study(superuser, study)
        call_command("simulate_reads", name, "--no-progress")
    PrecomputeRun.objects.create(study=study, created_by=superuser, backend="phantom-unet", device="cpu")
    study.refresh_from_db()
    return study


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    superuser = make_user("admin", superuser=True)
    cross = make_user("cross", staff=True)  # reads Alpha, statistician of Charlie, administers Bravo
    apps = ["core", "studies", "reading", "inference", "results"]
    cross.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=apps))
    cross.user_permissions.add(Permission.objects.get(codename="view_user"))
    alpha = _study(tmp_path, superuser, "Alpha", "A", [cross, make_user("alpha_reader")])
    bravo = _study(tmp_path, superuser, "Bravo", "B", [make_user("bravo_reader")])
    actions.add_member(superuser, bravo, cross, "admin")
    charlie = _study(tmp_path, superuser, "Charlie", "C", [make_user("charlie_reader")], launch=False)
    actions.add_member(superuser, charlie, cross, "statistician")
    with monkeypatch.context() as m:  # one Alpha event in another year, for the date hierarchy
        m.setattr("django.utils.timezone.now", lambda: datetime(2001, 5, 5, tzinfo=UTC))
        actions.add_member(superuser, alpha, make_user("alpha_stat"), "statistician")
    client = Client()
    client.force_login(cross)
    root = Client()
    root.force_login(superuser)
    return {"alpha": alpha, "bravo": bravo, "charlie": charlie, "cross": cross, "superuser": superuser,
            "client": client, "root": root}  # fmt: skip


def _scoped_admins():
    return [(m, ma) for m, ma in admin.site._registry.items() if m._meta.app_label in OUR_APPS]


def _of(model, study):
    return model._default_manager.filter(**{OWNER[model]: study.pk})


def _studies_of(model, queryset):
    return set(queryset.values_list(OWNER[model], flat=True).distinct())


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _text(response):
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


def _assert_hidden(text, where):
    shown = [marker for marker in HIDDEN if marker in text]
    assert not shown, f"{where} shows {shown}"


def test_every_admin_of_our_apps_is_study_scoped():
    registered = _scoped_admins()
    assert {m for m, _ in registered} >= {Study, Case, ReadingSession, Read, AuditEvent, Prediction, PrecomputeRun}
    for model, model_admin in registered:
        label = model._meta.label
        assert isinstance(model_admin, StudyScopedAdminMixin), f"{label}: its ModelAdmin is not study-scoped"
        assert model in OWNER, f"{label}: add it to OWNER so the walks below cover it"
        for inline in model_admin.inlines:
            assert issubclass(inline, StudyScopedAdminMixin), f"{label}: inline {inline.__name__} is not scoped"
            assert study_path(inline.model) is not None
        for owner in [model_admin, *(inline(model, admin.site) for inline in model_admin.inlines)]:
            if owner.study_field != "pk":
                assert get_fields_from_path(owner.model, owner.study_field)[-1].related_model is Study, label


def test_changelists_filters_search_and_dates_show_only_the_administered_study(world):
    alpha, bravo, charlie = world["alpha"], world["bravo"], world["charlie"]
    for model, model_admin in _scoped_admins():
        url = _url(model, "changelist")
        queries = ["", "?_facets=1", "?o=1"]
        if model_admin.search_fields:
            queries += ["?q=A-P001", "?q=alpha", "?q=Alpha", "?q=charlie_reader", "?q=B-P00", "?q=bravo"]
        if model is not Study and OWNER[model] == "study":
            queries += [f"?study__id__exact={alpha.pk}", f"?study__id__exact={charlie.pk}"]
        for query in queries:
            response = world["client"].get(url + query)
            assert response.status_code == 200, f"{url}{query}: {response.status_code}"
            echoed = query.removeprefix("?q=") if query.startswith("?q=") else None  # the search box repeats it
            _assert_hidden(_text(response).replace(echoed, "") if echoed else _text(response), f"{url}{query}")
            cl = response.context["cl"]
            assert _studies_of(model, cl.queryset) <= {bravo.pk}, f"{url}{query} lists other studies' rows"
        for spec in _filters(model_admin, response.wsgi_request):
            assert type(spec) in SCOPED_FILTERS, f"{url}: filter {type(spec).__name__} is not study-scoped"
        mine = world["client"].get(url)
        assert _studies_of(model, mine.context["cl"].queryset) == {bravo.pk}, f"{url}: Bravo's rows missing"
        assert any(marker in _text(mine) for marker in SHOWN), f"{url} shows nothing of Bravo"
        everything = world["root"].get(url)
        assert _studies_of(model, everything.context["cl"].queryset) >= {alpha.pk, bravo.pk}, url
    # Search reaches Bravo's rows (so the searches above could have found Alpha's).
    found = world["client"].get(_url(Case, "changelist") + "?q=B-P001").context["cl"]
    assert found.result_count == 2
    # The date hierarchy is drawn from the scoped rows: Alpha's 2001 event shows only to the superuser.
    events = _url(AuditEvent, "changelist")
    assert "created_at__year=2001" in world["root"].get(events).content.decode()
    assert "created_at__year=2001" not in world["client"].get(events).content.decode()


def _filters(model_admin, request):
    """Every list filter of model_admin as the sidebar builds it, also those Django hides for having one choice."""
    for entry in model_admin.get_list_filter(request):
        if not isinstance(entry, str | tuple | list):
            yield entry(request, {}, model_admin.model, model_admin)
            continue
        path, filter_class = (entry, FieldListFilter.create) if isinstance(entry, str) else entry
        field = get_fields_from_path(model_admin.model, path)[-1]
        yield filter_class(field, request, {}, model_admin.model, model_admin, path)


def _offered(spec):
    """The labels a filter offers: (pk, label) pairs for related fields, plain values otherwise."""
    return sorted(str(c[1]) if isinstance(c, tuple) else str(c) for c in spec.lookup_choices)


def test_filter_sidebars_offer_only_the_administered_studys_values(world):
    expect = {
        (Read, "study"): ["Bravo"],
        (Read, "reader"): ["bravo_reader"],
        (Read, "modality__key"): ["bravo-aided", "bravo-unaided"],
        (ReadingSession, "study"): ["Bravo"],
        (ReadingSession, "reader"): ["bravo_reader"],
        (Case, "study"): ["Bravo"],
        (AuditEvent, "study"): ["Bravo"],
        (AuditEvent, "actor"): ["admin", "bravo_reader"],
        (Prediction, "case__study"): ["Bravo"],
        (PrecomputeRun, "study"): ["Bravo"],
    }
    request = RequestFactory().get("/")
    request.user = world["cross"]
    for (model, path), labels in expect.items():
        spec = next(s for s in _filters(admin.site._registry[model], request) if s.field_path == path)
        assert _offered(spec) == labels, f"{model.__name__}.{path}: {_offered(spec)}"
    # The superuser's sidebar still lists every study.
    request.user = world["superuser"]
    spec = next(s for s in _filters(admin.site._registry[Read], request) if s.field_path == "study")
    assert {"Alpha", "Bravo", "Charlie"} <= set(_offered(spec))


def test_change_history_and_delete_pages_of_other_studies_show_nothing(world):
    client = world["client"]
    for model, _ in _scoped_admins():
        for study in (world["alpha"], world["charlie"]):
            obj = _of(model, study).first()
            if obj is None and study == world["charlie"]:
                continue  # a draft has no sessions or reads
            assert obj is not None, f"{model.__name__}: the world has none in {study}"
            for view in ("change", "history", "delete"):
                url = _url(model, view, obj.pk)
                response = client.get(url)
                # Django answers an object outside get_queryset() like a missing one: back to the index.
                assert response.status_code in (302, 403), f"{url}: {response.status_code}"
                if response.status_code == 302:
                    assert response.url == reverse("admin:index"), url
                    page = _text(client.get(response.url))
                    assert "doesn’t exist" in page
                    _assert_hidden(page, url)
            response = client.post(_url(model, "change", obj.pk), {"name": "renamed", "description": "x"})
            assert response.status_code in (302, 403) and getattr(response, "url", None) != _url(model, "changelist")
            assert model._default_manager.filter(pk=obj.pk).exists()
        mine = _of(model, world["bravo"]).first()
        for view in ("change", "history"):
            response = client.get(_url(model, view, mine.pk))
            assert response.status_code == 200, f"{model.__name__} {view} of Bravo: {response.status_code}"
            _assert_hidden(_text(response), _url(model, view, mine.pk))
    assert Study.objects.filter(name="renamed").count() == 0
    assert world["root"].get(_url(Case, "change", _of(Case, world["alpha"]).first().pk)).status_code == 200


def _state(world):
    studies = (world["alpha"], world["charlie"])
    counts = {(m.__name__, s.pk): _of(m, s).count() for m, _ in _scoped_admins() for s in studies}
    return counts, list(Study.objects.filter(pk__in=[s.pk for s in studies]).values_list("status", flat=True))


def test_admin_actions_on_crafted_ids_of_other_studies_do_nothing(world):
    client, bravo = world["client"], world["bravo"]
    request = RequestFactory().get("/")
    request.user = world["cross"]
    before = _state(world)
    n_actions = 0
    for model, model_admin in _scoped_admins():
        theirs = [o.pk for s in (world["alpha"], world["charlie"]) for o in _of(model, s)]
        for name in model_admin.get_actions(request):
            n_actions += 1
            data = {"action": name, "_selected_action": theirs, "index": "0", "post": "yes"}
            response = client.post(_url(model, "changelist"), data, follow=True)
            assert response.status_code == 200, f"{model.__name__}.{name}: {response.status_code}"
            text = _text(response)
            _assert_hidden(text, f"{model.__name__}.{name}")
            if name == "export_csv":
                assert list(csv.reader(io.StringIO(text)))[1:] == []
    assert n_actions >= 5  # launch, close, precompute, delete_selected, export_csv
    assert _state(world) == before

    # The same requests do act on Bravo's rows, so the crafted ones above reached the actions.
    events = list(_of(AuditEvent, bravo).values_list("pk", flat=True))
    alpha_events = list(_of(AuditEvent, world["alpha"]).values_list("pk", flat=True))
    data = {"action": "export_csv", "_selected_action": [*events[:3], *alpha_events], "index": "0"}
    rows = list(csv.reader(io.StringIO(_text(client.post(_url(AuditEvent, "changelist"), data)))))[1:]
    assert sorted(int(r[0]) for r in rows) == sorted(events[:3]) and {r[3] for r in rows} == {"Bravo"}
    data = {"action": "export_csv", "_selected_action": events[:1], "index": "0", "select_across": "1"}
    rows = list(csv.reader(io.StringIO(_text(client.post(_url(AuditEvent, "changelist"), data)))))[1:]
    assert len(rows) == len(events) and {r[3] for r in rows} == {"Bravo"}
    data = {"action": "close", "_selected_action": [bravo.pk, world["alpha"].pk], "index": "0"}
    client.post(_url(Study, "changelist"), data)
    bravo.refresh_from_db()
    world["alpha"].refresh_from_db()
    assert bravo.status == "closed" and world["alpha"].status == "launched"


def test_form_choices_reach_only_the_administered_study(world):
    request = RequestFactory().get("/")
    request.user = world["cross"]
    checked = 0
    for model, model_admin in _scoped_admins():
        owners = [model_admin, *(inline(model, admin.site) for inline in model_admin.inlines)]
        for owner in owners:
            for field in owner.model._meta.get_fields():
                if not (field.concrete and field.many_to_one) or study_path(field.related_model) is None:
                    continue
                choices = owner.formfield_for_foreignkey(field, request).queryset
                path = study_path(field.related_model)
                assert set(choices.values_list(path, flat=True)) == {world["bravo"].pk}, f"{owner}.{field.name}"
                checked += 1
    assert checked >= 10
    request.user = world["superuser"]
    choices = admin.site._registry[Read].formfield_for_foreignkey(Read._meta.get_field("study"), request).queryset
    assert set(choices) == set(Study.objects.all())


def test_user_admin_shows_no_study_membership(world):
    """Deliberately unscoped: adding members needs every user. It lists usernames, never studies or roles."""
    alpha_reader = make_user("alpha_reader")
    for url in (reverse("admin:auth_user_changelist"), reverse("admin:auth_user_change", args=[alpha_reader.pk])):
        text = world["client"].get(url).content.decode()
        assert "alpha_reader" in text
        assert not any(marker in text for marker in ("Alpha", "Charlie", "A-P00", "alpha-"))
