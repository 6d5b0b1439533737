"""The process list: deploy/Procfile and the systemd units run the same commands, with options the commands
accept, from the environment file the README names; systemd itself finds nothing wrong in the units."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import load_command_class

from tests.missing import missing

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = "/opt/readerstudy/.venv/bin/"
EXPECTED = {
    "web": "gunicorn -c deploy/gunicorn.conf.py",
    "worker": "python manage.py task_worker --queue-name default",
    "inference": "python manage.py task_worker --queue-name inference --device cuda",
    "release": "python manage.py migrate --noinput && python manage.py collectstatic --noinput",
}
UNIT_OF = {
    "web": "readerstudy-web.service",
    "worker": "readerstudy-worker.service",
    "inference": "readerstudy-inference@.service",
}


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "deploy" / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            assert match[1] not in entries, f"{match[1]} twice in the Procfile"
            entries[match[1]] = match[2].strip()
    return entries


def unit(name: str) -> dict[str, list[str]]:
    """Key -> values (a key may repeat, as Environment= does), over all sections."""
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_procfile_lists_the_four_processes():
    assert procfile() == EXPECTED


@pytest.mark.parametrize("process", sorted(UNIT_OF))
def test_each_unit_runs_its_procfile_command_with_the_environment_file(process):
    values = unit(UNIT_OF[process])
    [exec_start] = values["ExecStart"]
    assert exec_start.startswith(VENV_BIN) and exec_start[len(VENV_BIN) :] == EXPECTED[process]
    assert values["EnvironmentFile"] == ["/etc/readerstudy/env"]
    assert values["WorkingDirectory"] == ["/opt/readerstudy"]
    assert values["User"] == ["readerstudy"] and values["Restart"] == ["always"]
    assert values["WantedBy"] == ["multi-user.target"]


def test_the_inference_template_pins_one_gpu_per_instance():
    assert "CUDA_VISIBLE_DEVICES=%i" in unit(UNIT_OF["inference"])["Environment"]


@pytest.mark.parametrize("process", ["worker", "inference"])
def test_the_worker_commands_parse(process, settings):
    """The options exist (task_worker: django-tasks-db's db_worker plus --device) under production's backend."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "inference"]}}
    args = shlex.split(EXPECTED[process])
    assert args[:3] == ["python", "manage.py", "task_worker"]
    command = load_command_class("readerstudy.core", "task_worker")
    options = command.create_parser("manage.py", "task_worker").parse_args(args[3:])
    assert options.queue_name == ("default" if process == "worker" else "inference")
    assert options.device == (None if process == "worker" else "cuda")


def test_systemd_finds_nothing_wrong_in_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("REQUIRE_SYSTEMD", "systemd-analyze is not installed (apt-get install systemd)")
    for path in sorted(UNITS.glob("*.service")):
        name = path.name.replace("@.service", "@0.service")
        (tmp_path / name).write_text(path.read_text())
        run = subprocess.run([analyze, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
        # This machine has no /opt/readerstudy: the one complaint expected.
        complaints = [line for line in (run.stdout + run.stderr).splitlines()
                      if line.strip() and "is not executable: No such file or directory" not in line]  # fmt: skip
        assert not complaints, f"{path.name}:\n" + "\n".join(complaints)
