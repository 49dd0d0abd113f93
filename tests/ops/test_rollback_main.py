"""Rollback through main: scripts/rollback also puts the one-line change on main, and CI's
deploy plan recognises it as a rollout-only prod change that needs no staging run.

A clone of a local bare ``origin`` is the project directory; stand-in ``pulumi`` and ``gh``
first on PATH record their calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.deploy_plan import plan
from ops.rollback import main
from tests.ops.conftest import clone_with_origin, git, invoke, standins_on_path
from tests.ops.test_promote import GH_STANDIN
from tests.ops.test_rollback import STANDIN, WITH_SCENARIO

PROVIDER_LINE = "  comfyui-runpod:rollout.provider: {}"


class Setup:
    """The clone, its origin and the stand-ins' records."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp_path
        monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "calls.jsonl"))
        monkeypatch.setenv("STANDIN_CONFIG", json.dumps(WITH_SCENARIO))
        monkeypatch.setenv("GH_STATE", str(tmp_path / "prs.json"))
        files = ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml")
        self.work = clone_with_origin(tmp_path, monkeypatch, files)
        self.base = git(self.work, "rev-parse", "HEAD")
        standins_on_path(tmp_path, monkeypatch, {"pulumi": STANDIN, "gh": GH_STANDIN})
        monkeypatch.chdir(self.work)

    def calls(self) -> list[list[str]]:
        """Every pulumi and gh call, in order (pulumi records {"argv": ...}, gh a list)."""
        log = self.tmp / "calls.jsonl"
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [line["argv"] if isinstance(line, dict) else ["gh", *line] for line in lines]

    def remote(self, ref: str) -> str:
        git(self.work, "fetch", "--quiet", "origin")
        return git(self.work, "rev-parse", f"origin/{ref}")

    def file_at(self, ref: str) -> str:
        return git(self.work, "show", f"origin/{ref}:Pulumi.prod.yaml")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    return Setup(tmp_path, monkeypatch)


def test_rollback_updates_the_flag_then_opens_a_pr_with_only_that_line(setup: Setup) -> None:
    """pulumi config set + targeted up first (seconds), then a PR from main changing one line;
    secrets in the working copy's stack file never reach it."""
    stack = setup.work / "Pulumi.prod.yaml"
    stack.write_text(
        stack.read_text() + "  comfyui-runpod:app.githubToken:\n    secure: v1:LOCAL\n"
    )
    assert main(["prod", "--yes"]) == 0
    calls = setup.calls()
    assert [c[0] for c in calls[:3]] == ["config", "config", "up"]
    assert calls[3][:3] == ["gh", "pr", "list"]
    assert calls[4][:3] == ["gh", "pr", "create"]
    assert calls[4][calls[4].index("--head") + 1] == "rollback/prod-scenario"
    branch = setup.file_at("rollback/prod-scenario")
    assert PROVIDER_LINE.format("scenario") in branch
    assert "LOCAL" not in branch
    before = setup.file_at("main").splitlines()
    changed = [(a, b) for a, b in zip(before, branch.splitlines(), strict=True) if a != b]
    assert changed == [(PROVIDER_LINE.format("comfyui"), PROVIDER_LINE.format("scenario"))]


def test_a_rerun_updates_the_same_pr(setup: Setup) -> None:
    """Running the rollback twice opens one pull request."""
    assert main(["prod", "--yes"]) == 0
    assert main(["prod", "--yes"]) == 0
    creates = [c for c in setup.calls() if c[:3] == ["gh", "pr", "create"]]
    assert len(creates) == 1


def test_push_commits_to_main_and_ci_sees_a_rollout_only_change(setup: Setup) -> None:
    """--push: main gets the commit; the deploy plan of that push is prod, rollout-only, no
    staging."""
    assert main(["prod", "--yes", "--push"]) == 0
    after = setup.remote("main")
    assert PROVIDER_LINE.format("scenario") in setup.file_at("main")
    result = plan(setup.work, setup.base, after)
    assert (result.staging, result.prod, result.rollout_only) == (False, True, True)
    assert "comfyui-runpod:rollout.provider" in result.reason
    assert not any(c[0] == "gh" for c in setup.calls())


def test_a_failed_local_update_still_goes_to_main(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No prod credentials here: exit 1, but the PR exists so CI can apply the rollback."""
    monkeypatch.setenv("STANDIN_FAIL_UP", "255")
    assert main(["prod", "--yes"]) == 1
    assert any(c[:3] == ["gh", "pr", "create"] for c in setup.calls())
    assert "putting the change on main so CI applies it" in capsys.readouterr().err


def test_main_only_runs_no_pulumi_at_all(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """--main-only: nothing local (no pulumi, not even on PATH), only the change on main."""
    tools = setup.tmp / "bin"
    (tools / "pulumi").unlink()
    assert main(["prod", "--main-only", "--push"]) == 0
    assert setup.calls() == []
    assert PROVIDER_LINE.format("scenario") in setup.file_at("main")


def test_undo_puts_comfyui_back_on_main(setup: Setup) -> None:
    """--undo --push after a rollback: main names comfyui again, still rollout-only."""
    assert main(["prod", "--yes", "--push"]) == 0
    middle = setup.remote("main")
    assert main(["prod", "--undo", "--yes", "--push"]) == 0
    assert PROVIDER_LINE.format("comfyui") in setup.file_at("main")
    assert plan(setup.work, middle, setup.remote("main")).rollout_only


def test_the_dry_run_touches_no_git(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run says what it would open, and pushes nothing."""
    before = setup.remote("main")
    assert main(["prod", "--dry-run"]) == 0
    assert setup.remote("main") == before
    assert "then: open a pull request (rollback/prod-scenario)" in capsys.readouterr().err
    assert not any(c[0] == "gh" for c in setup.calls())


# --------------------------------------------------------------------------- the deploy plan


def commit_change(setup: Setup, edits: dict[str, str]) -> tuple[str, str]:
    """Commit ``edits`` (path -> new text) on top of main; (before, after)."""
    before = git(setup.work, "rev-parse", "HEAD")
    for path, text in edits.items():
        (setup.work / path).write_text(text)
    git(setup.work, "add", ".")
    git(setup.work, "commit", "--quiet", "-m", "change")
    return before, git(setup.work, "rev-parse", "HEAD")


def prod_text(setup: Setup, old: str, new: str) -> str:
    text = (setup.work / "Pulumi.prod.yaml").read_text()
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "rollout_only"),
    [
        ("rollout.comfyuiPercent: 10", "rollout.comfyuiPercent: 50", True),
        ("rollout.provider: comfyui", "rollout.provider: scenario", True),
        ("serverless.workersMax: 5", "serverless.workersMax: 6", False),
        ("# prod: production.", "# prod: the production stack.", False),
    ],
)
def test_only_rollout_keys_make_a_rollout_only_change(
    setup: Setup, old: str, new: str, rollout_only: bool
) -> None:
    """A percentage step or provider flip is rollout-only; any other key, or a comment, is not."""
    before, after = commit_change(setup, {"Pulumi.prod.yaml": prod_text(setup, old, new)})
    result = plan(setup.work, before, after)
    assert (result.staging, result.prod, result.rollout_only) == (False, True, rollout_only)


def test_moving_the_flag_to_another_kv_key_is_not_a_rollout_only_change(setup: Setup) -> None:
    """rollout.kvKey is under rollout.* but moves the flag (a new KV entry the app must be
    told about): it takes the normal prod deploy, not the targeted flag update."""
    text = (setup.work / "Pulumi.prod.yaml").read_text() + "  comfyui-runpod:rollout.kvKey: v2\n"
    before, after = commit_change(setup, {"Pulumi.prod.yaml": text})
    result = plan(setup.work, before, after)
    assert (result.staging, result.prod, result.rollout_only) == (False, True, False)


def test_a_rollout_change_with_other_files_waits_for_staging(setup: Setup) -> None:
    """The same flag flip plus a code change: staging runs and prod is a normal deploy."""
    edits = {
        "Pulumi.prod.yaml": prod_text(
            setup, "rollout.provider: comfyui", "rollout.provider: scenario"
        ),
        "Pulumi.staging.yaml": (setup.work / "Pulumi.staging.yaml").read_text() + "# note\n",
    }
    before, after = commit_change(setup, edits)
    result = plan(setup.work, before, after)
    assert (result.staging, result.prod, result.rollout_only) == (True, True, False)


@pytest.mark.parametrize(
    ("files", "stacks"),
    [
        (("Pulumi.staging.yaml",), ["staging"]),
        (("Pulumi.prod.yaml",), ["prod"]),
        (("Pulumi.staging.yaml", "Pulumi.prod.yaml"), ["staging", "prod"]),
    ],
)
def test_a_pull_request_previews_the_stacks_its_merge_deploys(
    setup: Setup, files: tuple[str, ...], stacks: list[str]
) -> None:
    """The preview workflow's question, asked as it asks it: the PR's merge commit against
    its first parent. Only the PR's own changes count (main moved meanwhile, touching prod's
    file), and prod is previewed only when the PR changes Pulumi.prod.yaml."""
    git(setup.work, "checkout", "--quiet", "-b", "feature")
    for name in files:
        path = setup.work / name
        path.write_text(path.read_text() + "# the PR's change\n")
    git(setup.work, "commit", "--quiet", "-am", "the PR")
    git(setup.work, "checkout", "--quiet", "main")
    other = setup.work / "Pulumi.prod.yaml"
    other.write_text("# main moved meanwhile\n" + other.read_text())
    git(setup.work, "commit", "--quiet", "-am", "main moves")
    git(setup.work, "merge", "--quiet", "--no-ff", "--no-edit", "feature")
    result = plan(setup.work, git(setup.work, "rev-parse", "HEAD^1"), "HEAD")
    assert result.stacks == stacks
    assert f"stacks={json.dumps(stacks, separators=(',', ':'))}\n" in result.github_output()


def test_an_unknown_base_deploys_everything(setup: Setup) -> None:
    """A first push (before = zeros) or a lost base: staging and prod, never rollout-only."""
    head = git(setup.work, "rev-parse", "HEAD")
    for before in ("0" * 40, "f" * 40):
        result = plan(setup.work, before, head)
        assert (result.staging, result.prod, result.rollout_only) == (True, True, False)


def test_the_command_prints_github_output_lines(setup: Setup) -> None:
    """`ops deploy-plan` writes exactly the three lines the workflow reads."""
    before, after = commit_change(
        setup, {"Pulumi.prod.yaml": prod_text(setup, "comfyuiPercent: 10", "comfyuiPercent: 50")}
    )
    result = invoke(["deploy-plan", "--before", before, "--after", after], {})
    assert result.exit_code == 0
    assert result.stdout == 'staging=false\nprod=true\nrollout_only=true\nstacks=["prod"]\n'
