"""The layout's two rules, checked on every Python file of the checkout (git's list, new files too):

- tests import product and tool code (berdl_init, berdl_hub, localhub); nothing outside tests/ imports
  tests, so the local stack, the benchmarks and the product run without the test suite;
- tests/ is one package found through the editable install: nothing under tests/, bench/ or scripts/
  edits sys.path or loads a module (conftest.py) a second time by its file's path.
"""

from __future__ import annotations

import ast
import subprocess

from localhub.tools import REPO

EDIT_FREE = ("tests/", "bench/", "scripts/")
SYS_PATH_EDITS = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__", "__iadd__"}
LOADS_BY_PATH = {"spec_from_file_location", "run_path", "SourceFileLoader"}


def checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in listed if (REPO / name).is_file()]


def python_files() -> list[str]:
    found = []
    for name in checkout_files():
        path = REPO / name
        if name.endswith(".py") or path.read_bytes().startswith(
            (b"#!/usr/bin/env python", b"#!/usr/bin/python")
        ):
            found.append(name)
    return sorted(found)


def imports_of(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and is_test_module_name(node.value):
            found.append((node.lineno, node.value))  # for `python -m MODULE`, importlib.import_module
    return sorted(found)


def is_test_module_name(value: object) -> bool:
    return isinstance(value, str) and (value == "tests" or (value.startswith("tests.") and " " not in value))


def is_sys_path(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys"


def path_edits(tree: ast.AST) -> list[int]:
    """Lines that change sys.path: a mutating method, an assignment to it or to a slice of it,
    `from sys import path`, site.addsitedir."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in SYS_PATH_EDITS and is_sys_path(node.func.value):
                lines.append(node.lineno)
            if node.func.attr == "addsitedir":
                lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if is_sys_path(target) or (isinstance(target, ast.Subscript) and is_sys_path(target.value)):
                    lines.append(node.lineno)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "sys"
            and "path" in {a.name for a in node.names}
        ):
            lines.append(node.lineno)
    return sorted(lines)


def loads_by_path(tree: ast.AST) -> list[int]:
    """Lines that load a module from its file's path (conftest.py a second time, a sibling by path)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in LOADS_BY_PATH
        and "conftest" in ast.unparse(node)
    ]


def parsed(name: str) -> ast.AST:
    return ast.parse((REPO / name).read_text(), filename=name)


def test_nothing_outside_tests_imports_tests() -> None:
    outside = [name for name in python_files() if not name.startswith("tests/")]
    assert any(name.startswith("localhub/") for name in outside), "the search looks in the wrong place"
    found = [
        f"{name}:{line}: {module}"
        for name in outside
        for line, module in imports_of(parsed(name))
        if module == "tests" or module.startswith("tests.")
    ]
    assert found == []


def test_no_script_runs_a_test_module() -> None:
    """The shell scripts (scripts/local-hub) run product or tool modules, never one of tests/."""
    scripts = [
        name for name in checkout_files() if name.startswith("scripts/") and name not in python_files()
    ]
    assert "scripts/local-hub" in scripts
    found = [
        f"{name}:{number}: {line.strip()}"
        for name in scripts
        for number, line in enumerate((REPO / name).read_text(errors="replace").splitlines(), 1)
        if "-m tests" in line or "PYTHONPATH" in line
    ]
    assert found == []


def test_tests_bench_and_scripts_edit_no_sys_path_and_load_nothing_by_path() -> None:
    mine = [name for name in python_files() if name.startswith(EDIT_FREE)]
    assert "tests/conftest.py" in mine
    assert "bench/run.py" in mine
    found = [
        f"{name}:{line}"
        for name in mine
        for line in [*path_edits(parsed(name)), *loads_by_path(parsed(name))]
    ]
    assert found == []


def test_the_checks_see_what_they_look_for() -> None:
    """Each check finds the mistake it is for, in code written for the purpose."""
    assert imports_of(
        ast.parse("import tests.hub\nfrom tests.e2e import x\nrun('-m', 'tests.e2e.local_hub')")
    ) == [
        (1, "tests.hub"),
        (2, "tests.e2e"),
        (3, "tests.e2e.local_hub"),
    ]
    edits = "import sys, site\nsys.path.insert(0, 'x')\nsys.path[:0] = ['x']\nsys.path += ['x']\n"
    edits += "site.addsitedir('x')"
    assert path_edits(ast.parse(edits)) == [2, 3, 4, 5]
    assert path_edits(ast.parse("import sys\nprint(sys.path)")) == []
    by_path = "importlib.util.spec_from_file_location('c', Path(__file__).parents[1] / 'conftest.py')"
    assert loads_by_path(ast.parse(by_path)) == [1]
