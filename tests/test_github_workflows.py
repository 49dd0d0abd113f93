"""The GitHub workflows: schema-valid, least privilege, pinned, per-stack concurrency, and
every `python -m ops` command they run is one the CLI implements."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import PUSH_TOKEN_ENV
from tests.ops.cli_lines import ops_invocations, unknown_options

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("preview.yml", "deploy.yml", "health.yml")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
#: The write scopes each job may hold; everything else is read-only or absent.
ALLOWED_WRITES = {
    ("preview.yml", "preview"): {"pull-requests"},
    ("deploy.yml", "promote"): {"contents", "pull-requests"},
    # The staging build pushes the worker image with the job's GITHUB_TOKEN.
    ("deploy.yml", "staging"): {"packages"},
    ("health.yml", "health"): {"issues"},
}


def load(name: str) -> dict[Any, Any]:
    # PyYAML reads the key `on` as True; normalise it back.
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(job))


def pulumi_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).startswith("pulumi/actions@")]


def test_every_workflow_validates_against_the_github_workflow_schema() -> None:
    """check-jsonschema's vendored GitHub-workflow schema accepts all three (offline)."""
    files = [str(WORKFLOWS / name) for name in NAMES]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_pinned_to_a_commit_with_the_version_in_a_comment(name: str) -> None:
    """Every `uses:` names a full 40-hex commit, and the line says which release it is."""
    lines = (WORKFLOWS / name).read_text(encoding="utf-8").splitlines()
    uses = [line.strip() for line in lines if line.strip().startswith(("uses:", "- uses:"))]
    assert uses
    for line in uses:
        reference, _, comment = line.split("uses:", 1)[1].partition("#")
        assert PINNED.match(reference.strip()), line
        assert re.match(r"\s*v\d+\.\d+\.\d+", comment), line


@pytest.mark.parametrize("name", NAMES)
def test_permissions_are_least_privilege(name: str) -> None:
    """Top level grants nothing; each job lists its own, and writes only where it must."""
    workflow = load(name)
    assert workflow["permissions"] == {}
    for job_id, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name}:{job_id} inherits permissions"
        granted = job["permissions"]
        assert granted != "write-all"
        writes = {scope for scope, level in granted.items() if level == "write"}
        assert writes == ALLOWED_WRITES.get((name, job_id), set()), f"{name}:{job_id}"


def test_pulumi_runs_are_serialised_per_stack() -> None:
    """`pulumi up` jobs queue per stack (never cancelled midway); previews per stack and PR."""
    deploy = load("deploy.yml")["jobs"]
    assert deploy["staging"]["concurrency"] == {
        "group": "pulumi-staging",
        "cancel-in-progress": False,
    }
    assert deploy["production"]["concurrency"] == {
        "group": "pulumi-prod",
        "cancel-in-progress": False,
    }
    preview = load("preview.yml")["jobs"]["preview"]
    assert "${{ matrix.stack }}" in preview["concurrency"]["group"]
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "prod"]


def test_preview_comments_both_stacks_and_skips_forks() -> None:
    """pulumi/actions previews with comment-on-pr, the backend URL from a variable and the
    passphrase from a secret; fork PRs skip the job and the test job touches no secret."""
    jobs = load("preview.yml")["jobs"]
    preview = jobs["preview"]
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    (step,) = pulumi_steps(preview)
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert preview["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert preview["needs"] == "test"
    test_job = jobs["test"]
    assert "secrets." not in yaml.safe_dump(test_job)
    assert "scripts/test" in run_text(test_job)
    assert load("preview.yml")["on"] == {"pull_request": {"branches": ["main"]}}


def test_deploy_gates_staging_then_promotes_by_reviewed_digest() -> None:
    """push to main: up staging, then smoke + canary; prod needs staging, a Pulumi.prod.yaml
    change and the production environment; the dispatch opens a pin-digest PR."""
    workflow = load("deploy.yml")
    assert workflow["on"]["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in workflow["on"]
    jobs = workflow["jobs"]
    staging = jobs["staging"]
    (up,) = pulumi_steps(staging)
    assert (up["with"]["command"], up["with"]["stack-name"]) == ("up", "staging")
    text = run_text(staging)
    assert text.index("python -m ops smoke") < text.index("python -m ops canary")
    production = jobs["production"]
    assert production["environment"] == "production"
    assert set(production["needs"]) == {"staging", "prod-changes"}
    assert "Pulumi.prod.yaml" in run_text(jobs["prod-changes"])
    (prod_up,) = pulumi_steps(production)
    assert (prod_up["with"]["command"], prod_up["with"]["stack-name"]) == ("up", "prod")
    promote = jobs["promote"]
    assert promote["if"] == "github.event_name == 'workflow_dispatch'"
    promote_text = run_text(promote)
    assert "python -m ops pin-digest --stack-file Pulumi.prod.yaml" in promote_text
    assert "gh pr create" in promote_text


def test_health_runs_on_a_schedule_and_notifies_on_failure() -> None:
    """A cron runs `ops health` against prod; a failure step opens or updates an issue."""
    workflow = load("health.yml")
    assert workflow["on"]["schedule"][0]["cron"]
    job = workflow["jobs"]["health"]
    assert "environment" not in job  # reviewers on `production` would hold every run
    assert "python -m ops health" in run_text(job)
    notify = [s for s in steps(job) if s.get("if") == "failure()"]
    assert notify
    assert "gh issue create" in notify[0]["run"]


@pytest.mark.parametrize("name", ["deploy.yml", "health.yml"])
def test_workflow_ops_commands_are_ones_the_cli_implements(name: str) -> None:
    """Each `python -m ops` line in the workflow names a real command and real options."""
    invocations = ops_invocations((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert invocations
    for argv in invocations:
        assert unknown_options(argv) == [], argv


def test_the_staging_build_pushes_with_the_job_token_not_a_stored_one() -> None:
    """deploy.yml hands pulumi up its own GITHUB_TOKEN as GHCR_PUSH_TOKEN (packages: write);
    the preview stands it in the same way so validation passes without a stored token."""
    staging = load("deploy.yml")["jobs"]["staging"]
    (up,) = pulumi_steps(staging)
    assert up["env"][PUSH_TOKEN_ENV] == "${{ github.token }}"
    assert staging["permissions"]["packages"] == "write"
    assert load("preview.yml")["jobs"]["preview"]["env"][PUSH_TOKEN_ENV] == "${{ github.token }}"
