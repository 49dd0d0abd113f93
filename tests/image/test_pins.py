"""The maintainer command image/pins.py against a loopback GitHub double."""

from __future__ import annotations

import json
from pathlib import Path

import pins
import pytest

from tests.fakes.github_api import FakeRepo, github_api

OLD, MID, HEAD, PR = "a" * 40, "b" * 40, "c" * 40, "d" * 40


def _lock(path: Path, commit: str, *, branch: str = "main", date: str) -> Path:
    path.write_text(
        "[[package]]\n"
        'name = "ComfyUI"\nkind = "comfyui"\nrepo = "https://github.com/acme/ComfyUI"\n'
        f'commit = "{commit}"\nbranch = "{branch}"\ndate = "{date}"\n'
        f'head = "{commit}"\nhead_date = "{date}"\n'
        'needed_by = ["t"]\nrequirements = ""\nextra = []\n'
    )
    return path


REPOS = {
    "acme/ComfyUI": FakeRepo(
        default_branch="master",
        branches={
            "master": [
                (OLD, "2025-01-01T00:00:00Z"),
                (MID, "2026-03-01T00:00:00Z"),
                (HEAD, "2026-06-01T00:00:00Z"),
            ],
            "feature": [(PR, "2026-05-01T00:00:00Z")],
        },
    )
}


def test_a_fresh_pin_on_the_default_branch_passes_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pin three months behind master: one row, `ok`, exit 0 with --check."""
    lock = _lock(tmp_path / "n.toml", MID, branch="master", date="2026-03-01T00:00:00+00:00")
    with github_api(REPOS, token="t0k") as gh:
        code = pins.main(
            ["--lock", str(lock), "--check"], {"GITHUB_API_URL": gh.base_url, "GITHUB_TOKEN": "t0k"}
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ComfyUI" in out
    assert "92 d / 1 commits" in out
    assert out.rstrip().endswith("ok")
    assert "t0k" not in out


def test_an_old_pin_and_a_pull_request_head_fail_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over a year behind -> 'move the pin'; a commit only on another branch -> not on master."""
    with github_api(REPOS) as gh:
        env = {"GITHUB_API_URL": gh.base_url}
        old = _lock(tmp_path / "old.toml", OLD, branch="master", date="2025-01-01T00:00:00+00:00")
        assert pins.main(["--lock", str(old), "--check", "--json"], env) == 1
        report = json.loads(capsys.readouterr().out)
        assert report[0]["days_behind"] == 516
        assert any("move the pin" in p for p in report[0]["problems"])
        pr = _lock(tmp_path / "pr.toml", PR, branch="master", date="2026-05-01T00:00:00+00:00")
        assert pins.main(["--lock", str(pr), "--check"], env) == 1
        assert f"{PR[:12]} is not on master" in capsys.readouterr().out


def test_a_lock_naming_the_wrong_branch_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock's branch must be the repository's default branch."""
    lock = _lock(tmp_path / "n.toml", HEAD, branch="main", date="2026-06-01T00:00:00+00:00")
    with github_api(REPOS) as gh:
        assert pins.main(["--lock", str(lock), "--check"], {"GITHUB_API_URL": gh.base_url}) == 1
    assert "lock says main, the default branch is master" in capsys.readouterr().out


def test_an_api_error_names_the_call_and_githubs_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad token: exit 2, the URL called, HTTP 401 and 'Bad credentials'; token not echoed."""
    lock = _lock(tmp_path / "n.toml", MID, branch="master", date="2026-03-01T00:00:00+00:00")
    with github_api(REPOS, token="right") as gh:
        code = pins.main(
            ["--lock", str(lock)], {"GITHUB_API_URL": gh.base_url, "GITHUB_TOKEN": "wrong"}
        )
    err = capsys.readouterr().err
    assert code == 2
    assert "/repos/acme/ComfyUI: HTTP 401: Bad credentials" in err
    assert "wrong" not in err


def test_the_real_lock_is_readable_by_the_command(tmp_path: Path) -> None:
    """Every package of image/nodes.toml has a GitHub slug the command can ask about."""
    from install_nodes import load_lock  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    for package in load_lock(root / "image" / "nodes.toml"):
        assert pins._slug(package.repo).count("/") == 1
