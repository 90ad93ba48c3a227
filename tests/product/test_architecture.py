"""The house as ARCHITECTURE.md draws it, read from the code's own imports: one-way floors, faces, no circles."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "batch_engage"

# Top floor first. A unit is a package (a folder) or a top-level module. A unit may import only units on a
# lower floor; units on one floor do not import each other. Listed units that do not exist yet cost nothing.
FLOORS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"api"},
    {"commands"},
    {"runner", "reporting"},
    {"plan", "collector", "arrival"},
    {"inputs", "flow", "history", "experiment", "tables"},
    {"job", "checkpoint", "results"},
    {"twilio", "postgres", "credentials", "exits"},
    {"control", "disk"},
    {"clock", "states", "testing", "digests"},
    {"errors", "early", "faces"},
]
FLOOR_OF = {unit: level for level, units in enumerate(FLOORS) for unit in units}
# The public face hands on names from every floor below the CLI; the simulator is a leaf that only the API starts.
FACE = "__init__"
SANDBOX = "sandbox"
SANDBOX_USERS = {"api", "commands"}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name below ``batch_engage`` (``runner.job``, ``api``, ``cli``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _package_of(name: str) -> list[str]:
    """The package parts a module's relative imports start from."""
    parts = name.split(".")
    return parts if _is_package(name) else parts[:-1]


@functools.cache  # every check reads every module: each is parsed once a run
def imports_of(name: str, added: str = "") -> tuple[tuple[str, int], ...]:
    """``(imported module, line)`` for every import of the package in ``name``: top-level, lazy and TYPE_CHECKING."""
    tree = ast.parse(MODULES[name].read_text() + added)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] == "batch_engage":
                    base = node.module.split(".")[1:]
                else:
                    continue
            else:
                here = _package_of(name)
                base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            if node.module is None or not base:
                # ``from . import x``: each name may be a module of its own
                for alias in node.names:
                    sub = ".".join([*base, alias.name])
                    found.append((sub if sub in MODULES else ".".join(base) or FACE, node.lineno))
            else:
                found.append((".".join(base), node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "batch_engage":
                    found.append((".".join(alias.name.split(".")[1:]) or FACE, node.lineno))
    return tuple(found)


def unit_of(name: str) -> str:
    """The unit a module belongs to: its top-level package, or itself."""
    return name.split(".", maxsplit=1)[0] if name else FACE


def violations(added: dict[str, str] | None = None) -> list[str]:
    """Every import that breaks the floors, the faces or the sandbox's isolation, as ``file:line: why``.

    ``added`` maps a module to lines appended to its text, to show that a forbidden import is caught.
    """
    added = added or {}
    found = []
    for name in sorted(MODULES):
        unit = unit_of(name)
        where = MODULES[name].relative_to(PACKAGE.parent)
        for target, line in imports_of(name, added.get(name, "")):
            other = unit_of(target)
            at = f"{where}:{line}: {name} imports {target}"
            if other == unit:
                continue
            if unit == SANDBOX:
                found.append(f"{at}: the sandbox imports nothing from the package")
            elif other == SANDBOX:
                if unit not in SANDBOX_USERS and unit != FACE:
                    found.append(f"{at}: only {sorted(SANDBOX_USERS)} start the sandbox")
            elif unit == FACE:
                continue
            elif other == FACE:
                found.append(f"{at}: nothing below the face imports the face")
            elif unit not in FLOOR_OF or other not in FLOOR_OF:
                found.append(f"{at}: {unit if unit not in FLOOR_OF else other} is on no floor (add it to FLOORS)")
            elif FLOOR_OF[other] <= FLOOR_OF[unit]:
                how = "a sibling on its own floor" if FLOOR_OF[other] == FLOOR_OF[unit] else "a higher floor"
                found.append(f"{at}: {other} is {how}")
            elif _is_package(other) and target != other:
                found.append(f"{at}: outside {other}/, import its face ({other}/__init__.py)")
    return found


def module_cycles() -> list[list[str]]:
    """Import circles between modules (including lazy imports), each as the modules on it."""
    graph = {name: {t for t, _ in imports_of(name) if t in MODULES and t != name} for name in MODULES}
    cycles, state = [], dict.fromkeys(graph, 0)

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A face hands on what its own modules define; importing it from inside is not a circle of logic.
            if _is_package(nxt) and nxt and node.startswith(nxt + "."):
                continue
            if state[nxt] == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if state[name] == 0:
            visit(name, [])
    return cycles


def test_every_import_runs_down_the_floors_through_faces() -> None:
    """No module imports a higher floor, a sibling on its own floor, or another package's inner modules."""
    assert violations() == []


def test_no_module_import_circles() -> None:
    """No two modules import each other, directly or round a loop, not even lazily."""
    assert module_cycles() == []


def test_every_unit_is_on_a_floor() -> None:
    """A new package or top-level module must be placed on a floor before it can be imported."""
    units = {unit_of(name) for name in MODULES} - {FACE, SANDBOX}
    assert sorted(units - FLOOR_OF.keys()) == []


@pytest.mark.parametrize(
    ("module", "statement", "why"),
    [
        ("job/spec.py", "from ..runner import run_job", "a higher floor"),
        ("checkpoint/store.py", "from ..history import open_history", "a higher floor"),
        ("runner/job.py", "from ..reporting import render_report", "a sibling on its own floor"),
        ("runner/job.py", "from ..checkpoint.sqlite import Checkpoint", "import its face"),
        ("sandbox/config.py", "from ..errors import UsageError", "the sandbox imports nothing"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, statement: str, why: str) -> None:
    """Adding an import that breaks the drawing makes the check fail, naming the file and the rule."""
    name = module.removesuffix(".py").replace("/", ".")
    found = violations({name: "\n" + statement + "\n"})
    assert any(module in v and why in v for v in found), found
