"""The code's shape rules that review alone would let drift (issue 15): short functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60
"""Longest function, counted from its ``def`` line to its last line; decorators are not
counted, nor is a CLI command's signature (typer declares the options there), whose count
starts at its first statement."""
FOLDERS = ("components", "image", "ops")


def _sources() -> list[Path]:
    files = [ROOT / "__main__.py"]
    for folder in FOLDERS:
        found = sorted((ROOT / folder).rglob("*.py"))
        assert found, f"{folder}/ holds no Python file: the shape check would pass on nothing"
        files.extend(found)
    return files


def _is_component_constructor(
    where: Path, cls: ast.ClassDef | None, func: ast.FunctionDef | ast.AsyncFunctionDef
) -> bool:
    """A component resource's ``__init__`` declares its children in one place: exempt."""
    return (
        cls is not None
        and where.parts[0] == "components"
        and isinstance(func, ast.FunctionDef)
        and func.name == "__init__"
        and any(
            (isinstance(base, ast.Attribute) and base.attr == "ComponentResource")
            or (isinstance(base, ast.Name) and base.id == "ComponentResource")
            for base in cls.bases
        )
    )


def _is_cli_command(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated ``@<app>.command(...)``: its signature is the command's option list."""
    for decorator in func.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "command":
            return True
    return False


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    """``path:line name (N lines)`` for each function over the limit in one file."""
    where = path.relative_to(root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def visit(node: ast.AST, cls: ast.ClassDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, child)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = child.body[0].lineno if _is_cli_command(child) else child.lineno
                length = (child.end_lineno or child.lineno) - start + 1
                if length > MAX_LINES and not _is_component_constructor(where, cls, child):
                    found.append(f"{where}:{child.lineno} {child.name} ({length} lines)")
                visit(child, None)
                continue
            visit(child, cls)

    visit(tree, None)
    return found


def test_no_function_is_longer_than_sixty_lines() -> None:
    """Outside component constructors, every function in the program, the image and ops fits
    in 60 lines; a longer one is split into named steps."""
    found = [line for path in _sources() for line in long_functions(path)]
    assert not found, "functions over 60 lines:\n" + "\n".join(found)


def test_the_length_check_sees_long_functions_and_spares_only_constructors(
    tmp_path: Path,
) -> None:
    """The check itself: it reports a long function, a long method, a long nested function
    and a CLI command whose body is long, and spares a ComponentResource's ``__init__``
    under components/ and a CLI command whose length is its option list."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    short = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 10))
    options = "\n".join(f"    o{i}: int = {i}," for i in range(30))
    source = (
        "import pulumi\n"
        f"def plain():\n{body}\n"
        "class Comp(pulumi.ComponentResource):\n"
        f"  def __init__(self):\n{body}\n"
        "class Other:\n"
        f"  def __init__(self):\n{body}\n"
        "def outer():\n"
        f"  def inner():\n{body}\n"
        "  return inner\n"
        "@app.command()\n"
        f"def options(\n{options}\n):\n"
        f"{short}\n"
        "@app.command()\n"
        f"def command(\n{options}\n):\n"
        f"{body}\n    return None\n"
    )
    names = {}
    for folder in ("components", "ops"):
        path = tmp_path / folder / "mod.py"
        path.parent.mkdir()
        path.write_text(source, encoding="utf-8")
        names[folder] = [line.split()[1] for line in long_functions(path, tmp_path)]
    assert names["components"] == ["plain", "__init__", "outer", "inner", "command"]
    assert names["ops"] == ["plain", "__init__", "__init__", "outer", "inner", "command"]
