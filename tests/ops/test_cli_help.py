"""What `python -m ops ... --help` shows people: option formats survive rich's markup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cost_help_shows_the_prices_file_format_in_full() -> None:
    """`[flex, active]` is literal text, not a rich markup tag that vanishes from --help."""
    result = subprocess.run(
        [sys.executable, "-m", "ops", "cost", "--help"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "250", "TERM": "dumb", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if "--prices" in line)
    assert "{pool: flex} or {pool: [flex, active]}" in line, line
