"""Find `python -m ops ...` command lines in workflows and docs, and check them against the CLI."""

from __future__ import annotations

import re
import shlex
from typing import Any

import typer

from ops.cli import app


def ops_invocations(text: str) -> list[list[str]]:
    """Every `python -m ops ...` command line in ``text`` (continuations joined), as argv."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        match = re.search(r"python -m ops (.*)", line)
        if match:
            argv = shlex.split(match.group(1).split("|")[0].split("&&")[0], comments=True)
            found.append(argv)
    return found


def unknown_options(argv: list[str]) -> list[str]:
    """Options in ``argv`` the CLI does not define (empty when the command line is valid)."""
    command: Any = typer.main.get_command(app)
    rest = list(argv)
    # Walk sub-command groups (`ops promote verify`, `ops models seed`).
    while hasattr(command, "commands"):
        if not rest or rest[0] not in command.commands:
            return [f"no command {' '.join(argv[: len(argv) - len(rest) + 1])!r}"]
        command = command.commands[rest.pop(0)]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return [
        arg.split("=")[0] for arg in rest if arg.startswith("--") and arg.split("=")[0] not in known
    ]
