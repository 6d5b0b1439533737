"""The statistical plan: set before launch through update_study (audited), validated, frozen at launch."""

import pytest
from django.test import Client

from readerstudy.core.errors import InvalidInput
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss():
    return make_user("boss", staff=True)


@pytest.fixture
def study(boss):
    return actions.set_up_study(boss, "Plan")


def test_a_non_inferiority_plan_is_stored_and_audited(boss, study):
    actions.update_study(
        boss, study, plan_threshold=50, plan_hypothesis="non_inferiority", plan_margin=0.05,
        plan_frrc_convention="untruncated", plan_effect_size=0.05, reader_groups=3,
    )  # fmt: skip
    study.refresh_from_db()
    assert (study.plan_threshold, study.plan_hypothesis, study.plan_margin) == (50, "non_inferiority", 0.05)
    assert (study.plan_frrc_convention, study.plan_effect_size, study.reader_groups) == ("untruncated", 0.05, 3)
    event = AuditEvent.objects.filter(study=study, verb="update_study").latest("seq")
    assert event.before["plan_threshold"] is None and event.after["plan_threshold"] == 50
    assert event.after["reader_groups"] == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"plan_threshold": 0}, "plan_threshold 0: expected a whole rating above 0 and at most 100"),
        ({"plan_threshold": 101}, "plan_threshold 101"),
        ({"plan_threshold": 12.5}, "plan_threshold 12.5"),
        ({"plan_threshold": True}, "plan_threshold True"),
        ({"plan_hypothesis": "equivalence"}, "plan_hypothesis 'equivalence': expected superiority, non_inferiority"),
        ({"plan_hypothesis": "non_inferiority"}, "a non-inferiority hypothesis needs a margin above 0"),
        ({"plan_margin": 0.05}, "a superiority hypothesis takes no margin"),
        ({"plan_hypothesis": "non_inferiority", "plan_margin": 0.5}, "plan_margin 0.5: expected at least 0"),
        ({"plan_hypothesis": "non_inferiority", "plan_margin": float("nan")}, "plan_margin nan: expected a number"),
        ({"plan_frrc_convention": "both"}, "plan_frrc_convention 'both'"),
        ({"plan_effect_size": 0}, "plan_effect_size 0: expected above 0"),
        ({"plan_effect_size": "big"}, "plan_effect_size 'big': expected a number"),
        ({"reader_groups": 0}, "reader_groups 0: expected 1 (fully crossed) to 20"),
        ({"reader_groups": 21}, "reader_groups 21"),
    ],
)  # fmt: skip
def test_hostile_plan_values_are_refused_and_nothing_changes(boss, study, changes, message):
    with pytest.raises(InvalidInput) as info:
        actions.update_study(boss, study, **changes)
    assert message in str(info.value)
    study.refresh_from_db()
    assert (study.plan_threshold, study.plan_hypothesis, study.plan_margin, study.reader_groups) == (
        None, "superiority", 0.0, 1,
    )  # fmt: skip


def test_the_plan_is_frozen_at_launch(tmp_path):
    study = build_study(tmp_path, readers=2, n_patients=2, lesions_per_patient=1)
    with pytest.raises(InvalidInput, match="set-up is only possible in draft"):
        actions.update_study(make_user("admin"), study, plan_threshold=50)


def test_the_configure_page_sets_the_plan(boss, study):
    client = Client()
    client.force_login(boss)
    page = client.get(f"/studies/{study.pk}/configure/").content.decode()
    assert 'data-testid="config-plan"' in page and 'name="plan_threshold"' in page
    from readerstudy.operations.configure import initial

    form = {k: v for k, v in initial(study).items() if v is not None}
    form.update(plan_threshold="60", plan_hypothesis="non_inferiority", plan_margin="0.04", reader_groups="2")
    response = client.post(f"/studies/{study.pk}/configure/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    study.refresh_from_db()
    assert (study.plan_threshold, study.plan_hypothesis, study.plan_margin, study.reader_groups) == (
        60, "non_inferiority", 0.04, 2,
    )  # fmt: skip


def test_a_split_plot_study_launches_each_group_on_its_own_block(tmp_path):
    from readerstudy.reading.models import SessionItem
    from readerstudy.studies.models import Study

    study = build_study(tmp_path, readers=4, n_patients=6, lesions_per_patient=2, launch=False)
    admin = make_user("admin")
    actions.update_study(admin, study, reader_groups=2)
    from readerstudy.reading.actions import launch_study

    launch_study(admin, study, accept_missing_predictions=True)
    blocks = {}
    for reader, case, modality in SessionItem.objects.filter(session__study=study).values_list(
        "session__reader__username", "case__case_id", "modality__key"
    ):
        blocks.setdefault(reader, set()).add((case, modality))
    distinct = {frozenset(c for c, _ in items) for items in blocks.values()}
    assert len(distinct) == 2 and sum(len(b) for b in distinct) == 12, "two blocks partition the 12 cases"
    for items in blocks.values():
        assert {m for _, m in items} == {"unaided", "aided"} and len(items) == 2 * len({c for c, _ in items})
    assert Study.objects.get(pk=study.pk).reader_groups == 2


def test_readiness_wants_a_reader_and_a_patient_per_group(tmp_path):
    study = build_study(tmp_path, readers=2, n_patients=2, lesions_per_patient=1, launch=False)
    actions.update_study(make_user("admin"), study, reader_groups=3)
    study.refresh_from_db()
    check = actions.readiness(study, accept_missing_predictions=True)
    assert "split-plot in 3 groups needs at least 3 readers and 3 patients (has 2 readers, 2 patients)" in (
        check.problems
    )
