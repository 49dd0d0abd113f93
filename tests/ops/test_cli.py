"""The `python -m ops` entry point: help on every command, clean JSON, no key in any output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import FAST, invoke, ops_env

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("smoke", "canary", "health", "cost", "pin-digest")
MakeEmulator = Callable[..., JobApiEmulator]


def test_python_dash_m_ops_lists_every_command() -> None:
    """The module entry point runs from the repository root and lists the commands."""
    result = subprocess.run(
        [sys.executable, "-m", "ops", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    """`--help` works on each command and documents --json."""
    result = invoke([command, "--help"], {"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--json" in result.stdout


def test_api_key_never_appears_in_any_output(make_emulator: MakeEmulator) -> None:
    """Neither the table nor the JSON nor stderr echoes RUNPOD_API_KEY, even on failures."""
    emu = make_emulator(echo_worker, failure_rate=0.5)
    env = ops_env(emu)
    for args in (
        ["canary", "--requests", "4", *FAST],
        ["canary", "--requests", "4", "--json", *FAST],
    ):
        result = invoke(args, env)
        assert result.exit_code == 1
        assert emu.api_key not in result.output
        assert emu.api_key not in result.stderr
    wrong = invoke(
        ["health", "--json", "--samples", "1"], {**env, "RUNPOD_API_KEY": "rpa_WRONGKEY"}
    )
    assert wrong.exit_code == 1
    assert "401" in json.loads(wrong.stdout)["checks"][0]["detail"]
    assert "rpa_WRONGKEY" not in wrong.output
