"""DL output is frozen at launch: nothing records or discards a prediction of a launched study."""

import numpy as np
import pytest
from django.core.management import call_command

from inference.actions import record_prediction
from inference.jobs import start_precompute
from inference.models import Prediction
from readerstudy.core.errors import Conflict
from readerstudy.studies import actions as study_actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def record(case, probability, *, replace=False, inputs="x"):
    s = case.series
    return record_prediction(
        make_user("admin", superuser=True), case, model_name="m2", model_version="2", weights_sha256="b" * 64,
        inputs_sha256=inputs, probability=probability, labelmap=np.zeros((s.n_slices, s.rows, s.columns), np.uint8),
        replace=replace,
    )  # fmt: skip


def test_no_prediction_is_recorded_or_replaced_after_launch(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, predict=0.9)
    case = study.cases.first()
    shown = list(Prediction.objects.filter(case__study=study).values_list("pk", "probability"))
    with pytest.raises(Conflict, match="frozen at launch"):
        record(case, 0.1)
    with pytest.raises(Conflict, match="frozen at launch"):
        record(case, 0.1, replace=True, inputs=str(case.pk))
    with pytest.raises(Conflict, match="frozen at launch"):
        start_precompute(make_user("admin", superuser=True), study)
    assert list(Prediction.objects.filter(case__study=study).values_list("pk", "probability")) == shown
    study_actions.close_study(make_user("admin", superuser=True), study)
    with pytest.raises(Conflict, match="frozen at launch"):
        record(case, 0.1)


def test_predictions_may_change_before_launch(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, launch=False)
    case = study.cases.first()
    record(case, 0.2)
    record(case, 0.3, replace=True)
    assert list(Prediction.objects.filter(case=case).values_list("probability", flat=True)) == [0.3]


def test_precompute_command_leaves_a_launched_study_alone(tmp_path, capsys):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1)
    call_command("precompute", "--study", study.name, "--no-progress")
    assert not Prediction.objects.filter(case__study=study).exists()
    assert "2 frozen" in capsys.readouterr().out
