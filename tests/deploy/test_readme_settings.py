"""Every environment variable the settings and the gunicorn config read is documented in the README's settings
section: found in the sources (every ``env_str/env_int/env_bool/env_list("NAME"``, ``_secret("NAME")`` and
``os.environ``/``os.getenv`` read), so a new variable fails here until it has its row."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "readerstudy" / "settings.py", ROOT / "deploy" / "gunicorn.conf.py"]
READ = re.compile(
    r"""(?:\benv_(?:str|int|bool|list)|\b_secret|\bos\.environ\.get|\bos\.getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|\bos\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
)
SECTION = "## Settings (environment variables)"


def variables_read(source: str) -> set[str]:
    return {a or b for a, b in READ.findall(source)}


def settings_section() -> str:
    readme = (ROOT / "README.md").read_text()
    assert SECTION in readme, f"README.md has no {SECTION!r} section"
    after = readme.split(SECTION, 1)[1]
    return re.split(r"^## ", after, maxsplit=1, flags=re.M)[0]


def test_the_pattern_finds_every_form_of_read():
    source = """
    A = env_str("A_STR", "")
    B = env_int(
        "B_INT", 1)
    C = env_bool('C_BOOL', False)
    D = env_list("D_LIST", [])
    E = _secret("E_SECRET")
    F = os.environ.get("F_GET")
    G = os.environ["G_ITEM"]
    H = os.getenv("H_GETENV")
    not_read = my_env_str("NOT_ONE", "") or "LOOKS_LIKE_ONE"
    """
    assert variables_read(source) == {"A_STR", "B_INT", "C_BOOL", "D_LIST", "E_SECRET", "F_GET", "G_ITEM", "H_GETENV"}


def test_every_variable_read_is_in_the_readme_settings_section():
    read = {name: path.relative_to(ROOT) for path in SOURCES for name in variables_read(path.read_text())}
    assert {"DATABASE_URL", "SECRET_KEY", "DEID_SALT", "GUNICORN_WORKERS", "LOG_LEVEL"} <= read.keys()  # sanity
    section = settings_section()
    missing = sorted(f"{name} (read in {path})" for name, path in read.items() if f"`{name}`" not in section)
    assert not missing, f"not documented in README.md's {SECTION!r}: " + ", ".join(missing)
