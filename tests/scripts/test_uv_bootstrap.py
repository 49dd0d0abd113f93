"""scripts/uv and scripts/test from a fresh clone: no uv on PATH, a Python that refuses pip.

The real bash scripts run in a copy of the repository; ``python3`` is a stand-in of a PEP 668
"externally managed" Python (its ``-m pip`` refuses, ``-m venv`` is the real one), the venv's
real pip installs a stand-in ``uv`` wheel from a local folder (no index), and ``curl`` fails
as it does offline. Nothing here reaches the internet.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.scripts.standins import (
    ROOT,
    copy_repository,
    fake_uv_wheel,
    logged,
    logging_tool,
    offline_curl,
    pep668_python,
    run_env,
)

VERSION = "0.13.9"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A copy of the repository's scripts, as a fresh clone has them."""
    return copy_repository(
        tmp_path / "repo", "scripts/uv", "scripts/test", "scripts/bootstrap/requirements.txt"
    )


def pin_to_wheel(clone: Path, wheel_dir: Path) -> None:
    """Point scripts/bootstrap/requirements.txt at the stand-in wheel (its hash)."""
    _, digest = fake_uv_wheel(wheel_dir, VERSION)
    (clone / "scripts" / "bootstrap" / "requirements.txt").write_text(
        f"uv=={VERSION} \\\n    --hash=sha256:{digest}\n", encoding="utf-8"
    )


def run(
    clone: Path, script: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(clone / "scripts" / script), *args],
        cwd=clone.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_scripts_test_installs_uv_in_a_private_venv_where_system_pip_is_refused(
    clone: Path, tmp_path: Path
) -> None:
    """No uv, PEP 668 python3: uv lands in .tools/uv via venv + pip, and runs pytest in parallel."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    pep668_python(bin_dir)
    offline_curl(bin_dir)
    pin_to_wheel(clone, tmp_path / "wheels")
    env = run_env(
        bin_dir,
        log,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(tmp_path / "wheels"),
    )
    result = run(clone, "test", env, "-q", "tests/ops")
    assert result.returncode == 0, result.stderr
    calls = logged(log)
    assert "uv run --frozen pytest -n auto --dist worksteal -q tests/ops" in calls, calls
    assert (clone / ".tools" / "uv" / "bin" / "uv").is_file()
    assert any(call.startswith("python3 -m venv ") for call in calls), calls
    assert not any(call.startswith(("python3 -m pip", "curl")) for call in calls), calls
    assert "installing uv 0.13.9 into .tools/uv" in result.stderr
    # A second run reuses the private copy: no new venv.
    log.unlink()
    assert run(clone, "test", env, "--serial").returncode == 0
    assert logged(log) == ["uv run --frozen pytest"]


def test_an_existing_uv_on_path_is_used_and_nothing_is_installed(
    clone: Path, tmp_path: Path
) -> None:
    """uv on PATH wins: no venv, no .tools; --serial drops the parallel default."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    logging_tool(bin_dir, "uv")
    pep668_python(bin_dir)
    result = run(clone, "test", run_env(bin_dir, log), "--serial", "-x", "tests/image")
    assert result.returncode == 0, result.stderr
    assert logged(log) == ["uv run --frozen pytest -x tests/image"]
    assert not (clone / ".tools").exists()


@pytest.mark.parametrize(
    ("args", "pytest_args"),
    [
        (["-n", "4"], "-n 4"),
        (["-p", "no:xdist"], "-p no:xdist"),
        (["tests/ops", "-k", "smoke"], "-n auto --dist worksteal tests/ops -k smoke"),
    ],
)
def test_explicit_worker_options_replace_the_parallel_default(
    clone: Path, tmp_path: Path, args: list[str], pytest_args: str
) -> None:
    """A developer's own -n or -p no:xdist is passed through alone, never doubled."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    logging_tool(bin_dir, "uv")
    assert run(clone, "test", run_env(bin_dir, log), *args).returncode == 0
    assert logged(log) == [f"uv run --frozen pytest {pytest_args}"]


def test_help_names_the_scripts_own_options_before_pytests(clone: Path, tmp_path: Path) -> None:
    """--help is where a newcomer looks for --serial; pytest's own help follows."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    logging_tool(bin_dir, "uv", 'echo "usage: pytest [options]"')
    result = run(clone, "test", run_env(bin_dir, log), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Runs the whole test suite")
    assert "--serial      one process" in result.stdout
    assert result.stdout.index("--serial") < result.stdout.index("usage: pytest")
    assert logged(log) == ["uv run --frozen pytest -n auto --dist worksteal --help"]


def test_no_venv_and_no_network_says_what_to_install(clone: Path, tmp_path: Path) -> None:
    """python3 without venv and curl offline: exit 3 naming uv's version and how to get it."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    logging_tool(
        bin_dir,
        "python3",
        'echo "The virtual environment was not created successfully because ensurepip is not'
        ' available." >&2\nexit 1',
    )
    offline_curl(bin_dir)
    pin_to_wheel(clone, tmp_path / "wheels")
    result = run(clone, "uv", run_env(bin_dir, log), "--version")
    assert result.returncode == 3
    assert "sudo apt install python3-venv" in result.stderr
    assert "could not install uv 0.13.9: install it yourself" in result.stderr
    assert "curl -LsSf https://astral.sh/uv/0.13.9/install.sh" in logged(log)
    assert not (clone / ".tools" / "uv").exists()


def test_the_pin_is_hashed_and_matches_nothing_but_a_uv_release() -> None:
    """scripts/bootstrap/requirements.txt pins one uv version with --hash lines pip can enforce."""
    text = (ROOT / "scripts" / "bootstrap" / "requirements.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert lines[0].startswith("uv==")
    assert lines[0].endswith("\\")
    hashes = [line for line in lines[1:] if line]
    assert len(hashes) >= 10
    assert all(line.startswith("--hash=sha256:") for line in hashes)


def test_scripts_are_bash_32_safe() -> None:
    """macOS ships bash 3.2: no associative arrays, mapfile or ${x,,} in the bootstrap scripts."""
    for name in ("uv", "test"):
        text = (ROOT / "scripts" / name).read_text(encoding="utf-8")
        for construct in ("declare -A", "mapfile", "readarray", ",,}", "^^}", "readlink -f"):
            assert construct not in text, (name, construct)
