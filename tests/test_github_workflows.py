"""The GitHub workflows: schema-valid, least privilege, pinned, and they really run.

- Every job that previews or deploys gets, from its environment, exactly the secrets the
  offline config check needs for the stacks it touches (the check runs here with the
  secrets and variables the job provides, and the repository's stack files).
- Production's credentials live in the ``production`` environment only; previews run with
  read-only credentials from their own environments; nothing is exposed at workflow level.
- The Pulumi CLI is the version ``scripts/pulumi-cli`` installs; uv is installed with hashes.
- Every ``python -m ops`` command they run is one the CLI implements.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import PUSH_TOKEN_ENV
from ops.deploy_plan import STACKS
from ops.rollback import rollout_urns
from ops.stack_secrets import SECRETS, problems
from tests.ops.cli_lines import ops_invocations, unknown_options

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("preview.yml", "deploy.yml", "health.yml")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
#: The preview matrix: the stacks `ops deploy-plan` says merging the PR deploys.
PLANNED_STACKS = "${{ fromJSON(needs.test.outputs.stacks) }}"
#: The write scopes each job may hold; everything else is read-only or absent.
ALLOWED_WRITES = {
    ("preview.yml", "preview"): {"pull-requests"},
    ("deploy.yml", "promote"): {"contents", "pull-requests"},
    # The staging build pushes the worker image and the gate record with the job's token.
    ("deploy.yml", "staging"): {"packages"},
    ("health.yml", "health"): {"issues"},
}
#: Secrets that can change prod or staging: only in the `staging` / `production` environments.
WRITE_SECRETS = frozenset(
    {
        "PULUMI_STATE_WRITE_ACCESS_KEY_ID",
        "PULUMI_STATE_WRITE_SECRET_ACCESS_KEY",
        "CLOUDFLARE_API_TOKEN",
        "APP_GITHUB_TOKEN",
        "RUNPOD_API_KEY",
    }
)
#: The read-only counterparts preview environments hold.
READ_SECRETS = frozenset(
    {
        "PULUMI_STATE_READ_ACCESS_KEY_ID",
        "PULUMI_STATE_READ_SECRET_ACCESS_KEY",
        "CLOUDFLARE_READ_TOKEN",
        "APP_GITHUB_READ_TOKEN",
        "RUNPOD_READ_API_KEY",
    }
)
DEPLOY_ENVIRONMENTS = frozenset({"staging", "production"})


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


def all_jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name in NAMES:
        for job_id, job in load(name)["jobs"].items():
            yield name, job_id, job


def matrix_values(job: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination the job's matrix can take (one empty combination without a matrix);
    the planned-stacks expression can name any stack a deploy plan names."""
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    combos: list[dict[str, str]] = [{}]
    for key, declared in matrix.items():
        values = declared
        if isinstance(declared, str):
            assert declared == PLANNED_STACKS, f"unknown matrix expression {declared!r}"
            values = list(STACKS)
        combos = [{**combo, key: str(value)} for combo in combos for value in values]
    return combos


def expand(text: str, matrix: dict[str, str]) -> str:
    """``${{ matrix.x }}`` replaced by its value."""
    return EXPRESSION.sub(
        lambda m: (
            matrix.get(m[1].removeprefix("matrix."), m[0]) if m[1].startswith("matrix.") else m[0]
        ),
        text,
    )


def environment_of(job: dict[str, Any], matrix: dict[str, str]) -> str | None:
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    return None if environment is None else expand(str(environment), matrix)


def secrets_referenced(value: Any) -> set[str]:
    """Names of ``secrets.X`` in any expression of ``value`` (``X || y`` included)."""
    return set(re.findall(r"secrets\.([A-Z0-9_]+)", yaml.safe_dump(value)))


def provided_value(value: str) -> str | None:
    """What the runner would put in an env var the workflow sets to ``value``: a stand-in
    non-empty value for each secret, variable or token (GitHub gives an empty string for a
    secret the environment lacks: the docs list every one the environment must hold)."""
    found = EXPRESSION.findall(value)
    if not found:
        return value
    expression = found[0]
    name = re.sub(r"\W+", "-", expression).strip("-")
    return f"stand-in-{name}-0123456789"


def job_env(job: dict[str, Any], step: dict[str, Any], matrix: dict[str, str]) -> dict[str, str]:
    """The environment ``step`` runs with: the job's env, then the step's."""
    merged: dict[str, str] = {}
    for source in (job.get("env") or {}, step.get("env") or {}):
        for key, value in source.items():
            resolved = provided_value(expand(str(value), matrix))
            if resolved:
                merged[str(key)] = resolved
    return merged


def secrets_step(job: dict[str, Any], stack: str, matrix: dict[str, str]) -> dict[str, Any]:
    """The job's `ops stack-secrets --stack <stack>` step."""
    found = [
        s
        for s in steps(job)
        if re.search(
            r"python -m ops stack-secrets --stack \"?" + re.escape(stack) + r"\b",
            expand(str(s.get("run", "")), matrix),
        )
    ]
    assert len(found) == 1, f"no single `ops stack-secrets --stack {stack}` step"
    return found[0]


def pulumi_jobs() -> Iterator[tuple[str, str, dict[str, Any], dict[str, str], str, str]]:
    """(workflow, job id, job, matrix, stack, command) for each preview/up the jobs run."""
    for name, job_id, job in all_jobs():
        for matrix in matrix_values(job):
            for step in pulumi_steps(job):
                command = step.get("with", {}).get("command")
                if command in ("preview", "up"):
                    yield (
                        name,
                        job_id,
                        job,
                        matrix,
                        expand(step["with"]["stack-name"], matrix),
                        command,
                    )
            for line in run_text(job).splitlines():
                if match := re.search(r"scripts/rollback (\w+)", line):
                    yield name, job_id, job, matrix, match[1], "rollback"


PULUMI_JOBS = sorted({(n, j, s, c) for n, j, _, _, s, c in pulumi_jobs()})


def test_the_jobs_that_deploy_or_preview_are_the_ones_expected() -> None:
    """A new preview/deploy job must be added here (and so to the checks below)."""
    assert (
        sorted(
            [
                ("preview.yml", "preview", "staging", "preview"),
                ("preview.yml", "preview", "prod", "preview"),
                ("deploy.yml", "staging", "staging", "up"),
                ("deploy.yml", "production", "prod", "up"),
                ("deploy.yml", "production-rollout", "prod", "up"),
                ("deploy.yml", "rollback-drill", "staging", "rollback"),
            ]
        )
        == PULUMI_JOBS
    )


@pytest.mark.parametrize(("workflow", "job_id", "stack", "command"), PULUMI_JOBS)
def test_each_job_provides_every_secret_its_stacks_need(
    workflow: str, job_id: str, stack: str, command: str
) -> None:
    """With exactly the variables the job provides to its `ops stack-secrets` step and the
    repository's stack file, the program's offline check passes; that step runs before the
    first pulumi step of the job."""
    job = load(workflow)["jobs"][job_id]
    (matrix,) = [m for m in matrix_values(job) if not m or m.get("stack") == stack]
    step = secrets_step(job, stack, matrix)
    env = job_env(job, step, matrix)
    assert problems(REPO, stack, env) == []
    order = steps(job)
    first_pulumi = min(
        i
        for i, s in enumerate(order)
        if (
            str(s.get("uses", "")).startswith("pulumi/actions@")
            and s.get("with", {}).get("command")
        )
        or "scripts/rollback" in str(s.get("run", ""))
        or re.search(r"(^|\s)pulumi ", str(s.get("run", "")))
    )
    assert order.index(step) < first_pulumi


def without(job: dict[str, Any], variable: str) -> dict[str, Any]:
    """A copy of ``job`` whose env (job and steps) no longer sets ``variable``."""
    copy = yaml.safe_load(yaml.safe_dump(job))
    copy.get("env", {}).pop(variable, None)
    for step in copy.get("steps", []):
        (step.get("env") or {}).pop(variable, None)
    return copy


@pytest.mark.parametrize(
    ("job_id", "stack", "variable", "key"),
    [
        ("staging", "staging", "CLOUDFLARE_API_TOKEN", "cloudflare.apiToken"),
        ("staging", "staging", "APP_GITHUB_TOKEN", "app.githubToken"),
        ("staging", "staging", "GHCR_PULL_TOKEN", "image.pullToken"),
        ("staging", "staging", "VIDEO_POD_COMFY_PASSWORD", "videoPod.comfyPassword"),
        ("staging", "staging", "RUNPOD_API_KEY", "runpod:apiKey"),
        ("staging", "staging", PUSH_TOKEN_ENV, "image.registryToken"),
        ("production", "prod", "SCENARIO_API_KEY", "app.scenarioApiKey"),
        ("production", "prod", "SCENARIO_SECRET_API_KEY", "app.scenarioSecretApiKey"),
        ("production", "prod", "CLOUDFLARE_API_TOKEN", "cloudflare.apiToken"),
    ],
)
def test_the_check_fails_when_a_workflow_drops_a_needed_secret(
    job_id: str, stack: str, variable: str, key: str
) -> None:
    """The test above can fail: remove one variable from the job and the check names the key
    (and, for stack secrets, the variable to provide)."""
    job = without(load("deploy.yml")["jobs"][job_id], variable)
    env = job_env(job, secrets_step(job, stack, {}), {})
    assert variable not in env
    found = problems(REPO, stack, env)
    assert found, f"removing {variable} went unnoticed"
    assert any(key in problem for problem in found), found
    if variable != PUSH_TOKEN_ENV:
        assert any(variable in problem for problem in found), found


def test_every_stack_secret_has_one_variable_and_the_deploy_docs_list_them() -> None:
    """The variable -> key table of ops/stack_secrets.py is docs/DEPLOYMENT.md's table."""
    deployment = (REPO / "docs" / "DEPLOYMENT.md").read_text(encoding="utf-8")
    assert len({s.env for s in SECRETS}) == len({s.key for s in SECRETS}) == len(SECRETS)
    for secret in SECRETS:
        assert re.search(rf"`{secret.env}`[^\n]*`{re.escape(secret.key)}`", deployment), secret


# --------------------------------------------------------------------------- item 2: who holds what


def test_nothing_at_workflow_level_exposes_a_secret() -> None:
    """No workflow-level env; every job that reads a secret runs in a GitHub environment (a
    repository secret is readable by any same-repository pull request's edited workflow)."""
    for name in NAMES:
        workflow = load(name)
        assert "env" not in workflow, name
        for job_id, job in workflow["jobs"].items():
            used = secrets_referenced(job) - {"GITHUB_TOKEN"}
            if used:
                assert job.get("environment"), (
                    f"{name}:{job_id} reads {used} outside an environment"
                )


def test_write_credentials_only_in_the_deploy_environments() -> None:
    """State write keys and write-scoped provider tokens appear only in jobs of `staging` or
    `production`; pull requests never reach those environments."""
    for name, job_id, job in all_jobs():
        for matrix in matrix_values(job):
            environment = environment_of(job, matrix)
            if secrets_referenced(job) & WRITE_SECRETS:
                assert environment in DEPLOY_ENVIRONMENTS, f"{name}:{job_id} ({environment})"
    for _, job in load("preview.yml")["jobs"].items():
        for matrix in matrix_values(job):
            assert environment_of(job, matrix) not in DEPLOY_ENVIRONMENTS


def test_prod_changes_only_through_the_production_environment() -> None:
    """Every `pulumi up` (or rollback) of prod runs in `production`; so does every job that
    reads the passphrase for prod, except its read-only preview."""
    for name, job_id, job, matrix, stack, command in pulumi_jobs():
        environment = environment_of(job, matrix)
        if stack == "prod" and command != "preview":
            assert environment == "production", f"{name}:{job_id}"
        if stack == "prod" and command == "preview":
            assert environment == "prod-preview", f"{name}:{job_id}"
        if "PULUMI_CONFIG_PASSPHRASE" in secrets_referenced(job):
            allowed = (
                {"production", "prod-preview"}
                if stack == "prod"
                else {"staging", "staging-preview"}
            )
            assert environment in allowed, f"{name}:{job_id}: {environment}"


def test_previews_use_read_only_credentials_and_only_preview() -> None:
    """The preview environments hold read-only keys: no write secret, only `command: preview`."""
    (job,) = [j for n, i, j in all_jobs() if n == "preview.yml" and i == "preview"]
    used = secrets_referenced(job)
    assert not used & WRITE_SECRETS
    assert used >= READ_SECRETS
    assert job["env"]["AWS_ACCESS_KEY_ID"] == "${{ secrets.PULUMI_STATE_READ_ACCESS_KEY_ID }}"
    assert {s["with"].get("command") for s in pulumi_steps(job)} == {None, "preview"}
    for matrix in matrix_values(job):
        assert environment_of(job, matrix) == f"{matrix['stack']}-preview"
    assert job["environment"]["deployment"] is False


def test_production_runs_only_from_pushes_to_main() -> None:
    """deploy.yml deploys on push to main; its prod jobs need the push's plan."""
    workflow = load("deploy.yml")
    assert workflow["on"]["push"] == {"branches": ["main"]}
    for job_id in ("production", "production-rollout"):
        job = workflow["jobs"][job_id]
        assert "plan" in (job["needs"] if isinstance(job["needs"], list) else [job["needs"]])
    assert workflow["jobs"]["plan"]["if"] == "github.event_name == 'push'"


# --------------------------------------------------------------------------- hygiene


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


def test_the_pulumi_cli_is_the_version_scripts_up_installs() -> None:
    """Every pulumi/actions step pins `pulumi-version` to `scripts/pulumi-cli version`."""
    wanted = subprocess.run(
        ["bash", str(REPO / "scripts" / "pulumi-cli"), "version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", wanted)
    found = [
        (name, job_id, step["with"].get("pulumi-version"))
        for name, job_id, job in all_jobs()
        for step in pulumi_steps(job)
    ]
    assert found
    assert {version for _, _, version in found} == {wanted}, found


def test_uv_is_installed_with_hashes_before_any_use() -> None:
    """No unverified uv download: each job that runs uv first installs it with pip
    --require-hashes from scripts/bootstrap/requirements.txt (setup-uv is not used)."""
    for name, job_id, job in all_jobs():
        assert not any("setup-uv" in str(s.get("uses", "")) for s in steps(job)), job_id
        runs = [str(s.get("run", "")) for s in steps(job)]
        uses_uv = [i for i, r in enumerate(runs) if re.search(r"(^|\s)uv (sync|run)", r)]
        if not uses_uv:
            continue
        installs = [
            i
            for i, r in enumerate(runs)
            if "--require-hashes --requirement scripts/bootstrap/requirements.txt" in r
        ]
        assert installs, f"{name}:{job_id}"
        assert installs[0] < uses_uv[0], f"{name}:{job_id}"


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


def test_pulumi_runs_are_serialised_per_stack_and_promotion_shares_stagings_group() -> None:
    """`pulumi up` jobs queue per stack (never cancelled midway); the promotion and the drill
    queue with staging deploys; previews per stack and PR."""
    deploy = load("deploy.yml")["jobs"]
    staging = {"group": "pulumi-staging", "cancel-in-progress": False}
    prod = {"group": "pulumi-prod", "cancel-in-progress": False}
    for job_id in ("staging", "promote", "rollback-drill"):
        assert deploy[job_id]["concurrency"] == staging, job_id
    for job_id in ("production", "production-rollout"):
        assert deploy[job_id]["concurrency"] == prod, job_id
    preview = load("preview.yml")["jobs"]["preview"]
    assert "${{ matrix.stack }}" in preview["concurrency"]["group"]
    assert preview["strategy"]["matrix"]["stack"] == PLANNED_STACKS


def test_one_state_backend_declared_in_pulumi_yaml() -> None:
    """No workflow names a backend (no cloud-url, no PULUMI_BACKEND_URL): each job that runs
    pulumi first checks that Pulumi.yaml declares the team's backend."""
    for name, job_id, job in all_jobs():
        text = yaml.safe_dump(job)
        assert "cloud-url" not in text, f"{name}:{job_id}"
        assert "PULUMI_BACKEND_URL" not in text, f"{name}:{job_id}"
    for name, job_id, job, _, _, _ in pulumi_jobs():
        runs = [str(s.get("run", "")) for s in steps(job)]
        assert any("python -m ops backend --require-team" in r for r in runs), f"{name}:{job_id}"


def test_preview_comments_both_stacks_and_skips_forks() -> None:
    """pulumi/actions previews with comment-on-pr; fork PRs skip the job; the test job
    touches no secret; the prod preview checks the pinned digest's gate record."""
    jobs = load("preview.yml")["jobs"]
    preview = jobs["preview"]
    condition = " ".join(preview["if"].split())
    assert condition.startswith(
        "github.event.pull_request.head.repo.full_name == github.repository && "
    )
    (step,) = [s for s in pulumi_steps(preview) if s["with"].get("command")]
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert preview["needs"] == "test"
    assert "python -m ops promote verify --stack-file Pulumi.prod.yaml" in run_text(preview)
    test_job = jobs["test"]
    assert "secrets." not in yaml.safe_dump(test_job)
    assert "scripts/test" in run_text(test_job)
    assert load("preview.yml")["on"] == {"pull_request": {"branches": ["main"]}}


def test_prod_is_previewed_only_when_the_pull_request_changes_prod() -> None:
    """Prod's passphrase reaches a pull request's job only when merging it would deploy prod:
    the preview matrix is the stack list `ops deploy-plan` prints for the merge commit against
    its first parent (main), so a PR that leaves Pulumi.prod.yaml alone asks no `prod-preview`
    approval and gets no prod secret (tests/ops/test_rollback_main.py runs the plan itself)."""
    jobs = load("preview.yml")["jobs"]
    test_job, preview = jobs["test"], jobs["preview"]
    assert preview["strategy"]["matrix"] == {"stack": PLANNED_STACKS}
    assert "needs.test.outputs.stacks != '[]'" in preview["if"]
    assert test_job["outputs"] == {"stacks": "${{ steps.plan.outputs.stacks }}"}
    (plan_step,) = [s for s in steps(test_job) if s.get("id") == "plan"]
    assert plan_step["run"] == (
        'uv run --frozen python -m ops deploy-plan --before "$(git rev-parse HEAD^1)" '
        '--after HEAD >> "$GITHUB_OUTPUT"'
    )
    # HEAD^1 must be in the clone, or the plan falls back to "everything" (prod included).
    checkout = steps(test_job)[0]
    assert str(checkout["uses"]).startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] in (0, 2)
    assert steps(test_job).index(plan_step) < index_of(test_job, "scripts/test")
    # The approval is the gate a PR cannot edit away: the setup docs make it mandatory.
    deployment = (REPO / "docs" / "DEPLOYMENT.md").read_text(encoding="utf-8")
    (row,) = [line for line in deployment.splitlines() if line.startswith("| `prod-preview` |")]
    assert "**required reviewers** (mandatory" in row


def index_of(job: dict[str, Any], needle: str) -> int:
    return next(i for i, s in enumerate(steps(job)) if needle in str(s.get("run", "")))


def test_deploy_gates_staging_records_the_digest_and_prod_checks_it() -> None:
    """Staging: up, seed, smoke, canary, then the record; prod: the record check before up;
    a rollout-only change deploys prod without needing staging; dispatch opens the PR."""
    jobs = load("deploy.yml")["jobs"]
    staging = jobs["staging"]
    order = [
        index_of(staging, "python -m ops models seed"),
        index_of(staging, "python -m ops smoke"),
        index_of(staging, "python -m ops canary"),
        index_of(staging, "python -m ops promote record"),
    ]
    assert order == sorted(order)
    production = jobs["production"]
    assert production["environment"] == "production"
    assert set(production["needs"]) == {"plan", "staging"}
    assert "rollout_only != 'true'" in production["if"]
    (up,) = [s for s in pulumi_steps(production) if s["with"].get("command") == "up"]
    assert index_of(production, "python -m ops promote verify") < steps(production).index(up)
    rollout = jobs["production-rollout"]
    assert rollout["needs"] == "plan"
    assert rollout["if"] == "needs.plan.outputs.rollout_only == 'true'"
    assert rollout["environment"] == "production"
    promote = jobs["promote"]
    assert "inputs.action == 'promote'" in promote["if"]
    assert "python -m ops promote open-pr --stack-file Pulumi.prod.yaml" in run_text(promote)
    assert "gh pr create" not in run_text(promote)


def test_a_rollout_only_deploy_updates_only_the_flag_resources() -> None:
    """production-rollout runs one `pulumi up` of prod targeted at exactly the resources a
    rollout.* change feeds (ops.rollback.rollout_urns, held against the program's URNs in
    tests/ops/test_rollback.py): whatever else main holds stays out of an emergency rollback."""
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))["name"]
    job = load("deploy.yml")["jobs"]["production-rollout"]
    (up,) = [s for s in pulumi_steps(job) if s["with"].get("command")]
    assert up["with"]["command"] == "up"
    assert up["with"]["stack-name"] == "prod"
    targets = str(up["with"].get("target", "")).split()
    assert targets == list(rollout_urns(project, "prod"))
    assert str(up["with"].get("target-dependents", "false")).lower() == "false"


def test_the_gate_commands_append_their_charts_to_the_job_summary() -> None:
    """Staging's canary, prod's post-deploy health and the scheduled health each write their
    Markdown summary with charts to $GITHUB_STEP_SUMMARY in the same step (so a failing gate
    still shows its charts); the PR tests install the Mermaid that checks those charts."""
    deploy = load("deploy.yml")["jobs"]
    places = [
        (deploy["staging"], "python -m ops canary"),
        (deploy["production"], "python -m ops health"),
        (load("health.yml")["jobs"]["health"], "python -m ops health"),
    ]
    for job, command in places:
        step = steps(job)[index_of(job, command)]
        assert '--summary-md "$GITHUB_STEP_SUMMARY"' in step["run"], command
    test_job = load("preview.yml")["jobs"]["test"]
    install = index_of(test_job, "npm ci --prefix tests/mermaid")
    assert install < index_of(test_job, "scripts/test")


def test_the_rollback_drill_flips_staging_and_back_checking_the_flag() -> None:
    """workflow_dispatch rollback-drill: Scenario, smoke expects it, undo (always), smoke again."""
    workflow = load("deploy.yml")
    assert "rollback-drill" in workflow["on"]["workflow_dispatch"]["inputs"]["action"]["options"]
    drill = workflow["jobs"]["rollback-drill"]
    text = run_text(drill)
    sequence = [
        "scripts/rollback staging --yes --no-main",
        "--expect-provider scenario",
        "scripts/rollback staging --undo --yes --no-main",
        "--expect-provider comfyui",
    ]
    positions = [text.index(part) for part in sequence]
    assert positions == sorted(positions)
    undo = steps(drill)[index_of(drill, "--undo")]
    assert undo["if"] == "always()"


def test_health_runs_on_a_schedule_and_notifies_through_the_tested_command() -> None:
    """A cron runs `ops health` with probes and workersMin from the prod stack file; the
    notifier is `ops health-alert` (no inline issue logic), run even when health fails."""
    workflow = load("health.yml")
    assert workflow["on"]["schedule"][0]["cron"]
    job = workflow["jobs"]["health"]
    assert job["environment"] == {"name": "health", "deployment": False}
    text = run_text(job)
    assert "python -m ops health --stack-file Pulumi.prod.yaml" in text
    assert "--probes" in text
    notify = steps(job)[index_of(job, "python -m ops health-alert")]
    assert notify["if"] == "always()"
    assert "gh issue" not in text
    assert "PULUMI_CONFIG_PASSPHRASE" not in yaml.safe_dump(job)


@pytest.mark.parametrize("name", NAMES)
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
    assert staging["env"][PUSH_TOKEN_ENV] == "${{ github.token }}"
    assert staging["permissions"]["packages"] == "write"
    assert load("preview.yml")["jobs"]["preview"]["env"][PUSH_TOKEN_ENV] == "${{ github.token }}"
