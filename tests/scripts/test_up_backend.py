# ruff: noqa: F811 - the fixtures come from test_up and are parameters here
"""scripts/up logs in to the one state backend a team declares (Pulumi.yaml's backend.url),
PULUMI_BACKEND_URL when set, and the local file backend for one person otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ops.backend import declared
from tests.scripts.standins import logged, logging_tool, run_env
from tests.scripts.test_up import (
    ONLINE_CURL,
    OWN_VALUES,
    SECRETS,
    bin_dir,  # noqa: F401 - fixture
    clone,  # noqa: F401 - fixture
    write_stack,
)

TEAM = "s3://team-state?endpoint=0123.r2.cloudflarestorage.com&region=auto"


def declare(clone_dir: Path, url: str) -> None:
    """Uncomment the backend block of Pulumi.yaml with ``url``, as a team would."""
    project = clone_dir / "Pulumi.yaml"
    text = project.read_text(encoding="utf-8")
    block = "# backend:\n#   url: s3://<state-bucket>?endpoint=<ACCOUNT_ID>.r2.cloudflarestorage.com&region=auto\n"
    assert block in text, "Pulumi.yaml no longer ships the commented backend block"
    project.write_text(text.replace(block, f"backend:\n  url: {url}\n"), encoding="utf-8")


def run_up(
    clone_dir: Path, bin_path: Path, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    logging_tool(bin_path, "curl", ONLINE_CURL)
    write_stack(clone_dir, "team", OWN_VALUES, SECRETS)
    return subprocess.run(
        [str(clone_dir / "scripts" / "up"), "team", "--yes"],
        cwd=tmp_path,
        env=run_env(bin_path, tmp_path / "calls.log", STANDIN_STATE=str(tmp_path / "s"), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def logins(tmp_path: Path) -> list[str]:
    return [call for call in logged(tmp_path / "calls.log") if call.startswith("pulumi login")]


def test_a_declared_team_backend_is_the_one_scripts_up_uses(
    clone: Path,
    bin_dir: Path,
    tmp_path: Path,
) -> None:
    """backend.url in Pulumi.yaml: `pulumi login` without --local (the CLI reads the file)."""
    declare(clone, TEAM)
    result = run_up(clone, bin_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert logins(tmp_path) == ["pulumi login"]
    assert f"state backend: {TEAM} (Pulumi.yaml backend.url)" in result.stderr


def test_pulumi_backend_url_overrides_the_file(
    clone: Path,
    bin_dir: Path,
    tmp_path: Path,
) -> None:
    """The environment wins, as it does for the Pulumi CLI."""
    declare(clone, TEAM)
    result = run_up(clone, bin_dir, tmp_path, PULUMI_BACKEND_URL="file:///srv/state")
    assert result.returncode == 0, result.stderr
    assert logins(tmp_path) == ["pulumi login"]
    assert "state backend: file:///srv/state (PULUMI_BACKEND_URL)" in result.stderr


def test_one_person_gets_the_local_backend(
    clone: Path,
    bin_dir: Path,
    tmp_path: Path,
) -> None:
    """Nothing declared: the local file backend, and the message says how a team declares one."""
    result = run_up(clone, bin_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert logins(tmp_path) == ["pulumi login --local"]
    assert "state backend: file://~ (default (local))" in result.stderr


def test_the_shipped_project_declares_no_team_backend() -> None:
    """The template stays local for one person until a team declares its bucket."""
    root = Path(__file__).resolve().parents[2]
    assert declared(root, {}).local
    assert declared(root, {"PULUMI_BACKEND_URL": TEAM}).url == TEAM
