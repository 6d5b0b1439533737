"""The floors run one way: every import in the product points to its own floor or one below, with no circles;
the pure cores load neither Django nor torch; tests and bench import only the product.

Floors, bottom to top (README, Architecture):
  0  pure cores: readerstudy.analysis, imaging, inference.pipeline (no Django)
  1  readerstudy.core (errors, audit trail, jobs, admin mixins, converters) and readerstudy.env
  2  readerstudy.studies
  3  inference (the app: predictions beside reading; reading shows them, inference never reads reading)
  4  readerstudy.reading
  5  readerstudy.results
  6  readerstudy.backup
  7  the site: readerstudy.settings, urls, wsgi, views, security, logins, parsers, csvsafe, templatetags
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("readerstudy", "inference", "imaging")
FLOORS = [
    ("readerstudy.analysis", 0),
    ("imaging", 0),
    ("inference.pipeline", 0),
    ("readerstudy.core", 1),
    ("readerstudy.env", 1),
    ("readerstudy.csvsafe", 1),
    ("readerstudy.studies", 2),
    ("inference", 3),
    ("readerstudy.reading", 4),
    ("readerstudy.results", 5),
    ("readerstudy.backup", 6),
    ("readerstudy.operations", 6),
    ("readerstudy", 7),  # the site modules at the package root
]


def floor(module: str) -> int:
    for prefix, level in FLOORS:  # most specific first
        if module == prefix or module.startswith(prefix + "."):
            return level
    raise AssertionError(f"{module} has no floor: add it to FLOORS and to the README's diagram")


def modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        base = ROOT / package
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Product modules imported anywhere in the file (lazy imports inside functions are arrows too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name` imports the module.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in names:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, name, known) for name, path in found.items()}


def test_every_import_points_to_its_floor_or_below():
    upward = [
        f"{source} (floor {floor(source)}) imports {target} (floor {floor(target)})"
        for source, targets in graph().items()
        for target in targets
        if floor(target) > floor(source) and not target.startswith(source + ".")
    ]
    assert not upward, "imports that run back up:\n" + "\n".join(sorted(upward))


def test_the_import_graph_has_no_circle():  # noqa: C901
    edges = graph()
    # Package __init__ files re-exporting their own modules are not circles of the code.
    edges = {s: {t for t in ts if not s.startswith(t + ".")} for s, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_tests_and_bench_import_only_the_product():
    crossing = []
    for folder, banned in (("tests", "bench"), ("bench", "tests")):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])  # fmt: skip
                if any(n == banned or n.startswith(banned + ".") for n in names):
                    crossing.append(f"{path.relative_to(ROOT)} imports {banned}")
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("readerstudy.analysis", ("django", "torch")), ("imaging", ("django", "torch")),
     ("inference.pipeline", ("django",))],
)  # fmt: skip
def test_pure_cores_load_neither_django_nor_torch(package, forbidden):
    if not (ROOT / package.replace(".", "/")).is_dir():
        pytest.fail(f"{package} is missing")
    submodules = sorted(name for name in modules() if name == package or name.startswith(package + "."))
    code = (
        "import importlib, sys\n"
        f"for name in {submodules!r}:\n"
        "    if not name.endswith('__main__'): importlib.import_module(name)\n"
        f"print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {package} loaded {result.stdout.strip()}"
