"""`ops stack-secrets`: a CI job's secrets become `pulumi config set --secret` calls (values on
stdin, never in argv), after an offline check that names the variable a job lacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.ops.conftest import invoke_json, standins_on_path

REPO = Path(__file__).resolve().parents[2]
STANDIN = """\
import json, os, sys
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read()}) + "\\n")
sys.exit(int(os.environ.get("STANDIN_EXIT", "0")))
"""
STAGING = {
    "CLOUDFLARE_API_TOKEN": "cf-token-value",
    "APP_GITHUB_TOKEN": "gh-token-value",
    "RUNPOD_API_KEY": "rp-key-value",
    "GHCR_PULL_TOKEN": "pull-token-value",
    "VIDEO_POD_COMFY_PASSWORD": "a-long-enough-password",
    "GHCR_PUSH_TOKEN": "job-token-value",
    "HF_TOKEN": None,
    "APP_RUNPOD_API_KEY": None,
    "SCENARIO_API_KEY": None,
    "SCENARIO_SECRET_API_KEY": None,
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's project and stack files, a stand-in `pulumi` first on PATH."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO / name, root / name)
    standins_on_path(tmp_path, monkeypatch, {"pulumi": STANDIN})
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.chdir(root)
    return root


def calls(project: Path) -> list[dict[str, Any]]:
    log = project.parent / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_each_provided_secret_is_set_with_its_value_on_stdin(project: Path) -> None:
    """Five variables, five `pulumi config set --secret` calls; no value ever in an argv."""
    code, doc = invoke_json(["stack-secrets", "--stack", "staging"], STAGING)
    assert code == 0, doc
    made = calls(project)
    assert [c["argv"][3] for c in made] == doc["set"]
    assert set(doc["set"]) == {
        "cloudflare.apiToken",
        "app.githubToken",
        "runpod:apiKey",
        "image.pullToken",
        "videoPod.comfyPassword",
    }
    for call in made:
        assert call["argv"][:3] == ["config", "set", "--secret"]
        assert call["argv"][4:] == ["--stack", "staging"]
        assert call["stdin"]
        assert not any(value and value in " ".join(call["argv"]) for value in STAGING.values())
    assert {c["stdin"] for c in made} >= {"cf-token-value", "a-long-enough-password"}


def test_a_missing_secret_stops_before_any_pulumi_call(project: Path) -> None:
    """No CLOUDFLARE_API_TOKEN: exit 1, the problem names the key and the variable."""
    code, doc = invoke_json(
        ["stack-secrets", "--stack", "staging"], {**STAGING, "CLOUDFLARE_API_TOKEN": None}
    )
    assert code == 1
    assert any("cloudflare.apiToken" in p and "CLOUDFLARE_API_TOKEN" in p for p in doc["problems"])
    assert calls(project) == []


def test_check_only_runs_no_pulumi(project: Path) -> None:
    """--check-only validates and stops."""
    code, doc = invoke_json(["stack-secrets", "--stack", "staging", "--check-only"], STAGING)
    assert (code, doc["set"]) == (0, [])
    assert calls(project) == []


def test_a_failed_set_names_the_key_and_hides_the_value(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pulumi refusing a value: exit 1 naming the key, the value never shown."""
    monkeypatch.setenv("STANDIN_EXIT", "255")
    code, doc = invoke_json(["stack-secrets", "--stack", "staging"], STAGING)
    assert code == 1
    assert "pulumi config set --secret" in doc["problems"][0]
    assert "failed (exit 255)" in doc["problems"][0]
    assert "cf-token-value" not in json.dumps(doc)


def test_a_plaintext_secret_in_the_stack_file_is_refused(project: Path) -> None:
    """A secret key committed in plaintext: refused, with the fix."""
    stack = project / "Pulumi.staging.yaml"
    stack.write_text(stack.read_text() + "  comfyui-runpod:app.githubToken: ghp_plaintext\n")
    code, doc = invoke_json(["stack-secrets", "--stack", "staging", "--check-only"], STAGING)
    assert code == 1
    assert doc["problems"][0].startswith(
        "app.githubToken is a secret but Pulumi.staging.yaml holds it in plaintext"
    )


def test_ops_backend_requires_a_team_backend_in_ci(project: Path) -> None:
    """`ops backend --require-team` fails on the shipped (local) project, passes once declared."""
    from tests.ops.conftest import invoke  # noqa: PLC0415

    result = invoke(["backend", "--require-team"], {"PULUMI_BACKEND_URL": None})
    assert result.exit_code == 2
    assert "declares no team backend" in result.output
    project_file = project / "Pulumi.yaml"
    project_file.write_text(project_file.read_text() + "backend:\n  url: s3://state\n")
    result = invoke(["backend", "--require-team"], {"PULUMI_BACKEND_URL": None})
    assert result.exit_code == 0
    assert result.stdout == "s3://state\n"
