"""scripts/rollback (ops/rollback.py) against a stand-in `pulumi` on PATH that records its argv.

The stand-in answers `pulumi config --json` like the real CLI (secret values left out) and
records every call, including what a `--config-file` pointed at when it ran, so the tests
see exactly which commands a rollback runs and in which order.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops import rollback
from ops.rollback import main, rollout_urns, target_urns
from tests.fakes.stack_values import ROOT
from tests.ops.conftest import standins_on_path
from tests.stacks.test_stacks import GH_VARIABLE, KV, deploy

PROJECT = "comfyui-runpod"
FLAG_URN, VARIABLE_URN = target_urns(PROJECT, "prod")
WITH_SCENARIO = {
    f"{PROJECT}:rollout.provider": {"value": "comfyui", "secret": False},
    f"{PROJECT}:app.scenarioApiKey": {"secret": True},
    f"{PROJECT}:app.scenarioSecretApiKey": {"secret": True},
}
STANDIN = """\
import json, os, sys
args = sys.argv[1:]
record = {"argv": args}
if "--config-file" in args:
    path = args[args.index("--config-file") + 1]
    record["config_file"] = path
    record["config_file_text"] = open(path).read() if os.path.exists(path) else None
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if args[:1] == ["config"] and "--json" in args:
    sys.stdout.write(os.environ["STANDIN_CONFIG"])
verb = args[0] + ("_set" if args[1:2] == ["set"] else "")
sys.exit(int(os.environ.get("STANDIN_FAIL_" + verb.upper(), "0")))
"""


class StandIn:
    """The stand-in `pulumi` and its record."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        standins_on_path(tmp_path, monkeypatch, {"pulumi": STANDIN})
        self.log = tmp_path / "pulumi-calls.jsonl"
        self.project = tmp_path / "project"
        self.project.mkdir()
        for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
            shutil.copyfile(ROOT / name, self.project / name)
        monkeypatch.setenv("STANDIN_LOG", str(self.log))
        self.config(WITH_SCENARIO, monkeypatch)
        monkeypatch.chdir(self.project)

    @staticmethod
    def config(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("STANDIN_CONFIG", json.dumps(config))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]


@pytest.fixture
def pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """A stand-in pulumi first on PATH, and a copy of the project as the working directory."""
    return StandIn(tmp_path, monkeypatch)


def targets(argv: list[str]) -> list[str]:
    """The URNs after each --target."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--target"]


def test_rollback_sets_the_flag_then_updates_exactly_the_kv_value_and_the_variable(
    pulumi: StandIn,
) -> None:
    """Checks credentials, sets rollout.provider=scenario, then `pulumi up` on two URNs."""
    assert main(["prod", "--no-main", "--yes"]) == 0
    assert pulumi.argvs() == [
        ["config", "--stack", "prod", "--json"],
        ["config", "set", "rollout.provider", "scenario", "--stack", "prod"],
        [
            "up",
            "--stack",
            "prod",
            "--target",
            FLAG_URN,
            "--target",
            VARIABLE_URN,
            "--yes",
            "--skip-preview",
        ],
    ]


def test_without_yes_pulumi_shows_its_preview_and_asks(pulumi: StandIn) -> None:
    """The default leaves the confirmation to pulumi up."""
    assert main(["prod", "--no-main"]) == 0
    up = pulumi.argvs()[-1]
    assert up[0] == "up"
    assert targets(up) == [FLAG_URN, VARIABLE_URN]
    assert "--yes" not in up
    assert "--skip-preview" not in up


def test_dry_run_changes_nothing_and_previews_the_same_two_targets(pulumi: StandIn) -> None:
    """The flag is set in a copy of the stack file; the preview reads that copy."""
    stack_file = pulumi.project / "Pulumi.prod.yaml"
    before = stack_file.read_text()
    assert main(["prod", "--no-main", "--dry-run"]) == 0
    calls = pulumi.calls()
    assert [call["argv"][0] for call in calls] == ["config", "config", "preview"]
    set_flag, preview = calls[1], calls[2]
    assert set_flag["argv"][:5] == ["config", "set", "rollout.provider", "scenario", "--stack"]
    copy = set_flag["config_file"]
    assert Path(copy) != stack_file
    assert Path(copy).name == "Pulumi.prod.yaml"
    assert set_flag["config_file_text"] == before, "the copy carries salt and secrets"
    assert preview["config_file"] == copy
    assert targets(preview["argv"]) == [FLAG_URN, VARIABLE_URN]
    assert stack_file.read_text() == before
    assert not Path(copy).exists(), "the copy is thrown away"
    assert not any(argv[0] == "up" for argv in pulumi.argvs())


def test_undo_walks_back_to_comfyui(pulumi: StandIn) -> None:
    """--undo sets rollout.provider=comfyui and targets the same two resources."""
    assert main(["prod", "--no-main", "--undo", "--yes"]) == 0
    argvs = pulumi.argvs()
    assert argvs[1] == ["config", "set", "rollout.provider", "comfyui", "--stack", "prod"]
    assert targets(argvs[2]) == [FLAG_URN, VARIABLE_URN]


@pytest.mark.parametrize("missing", ["app.scenarioApiKey", "app.scenarioSecretApiKey"])
def test_refuses_when_scenario_credentials_are_not_configured(
    pulumi: StandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    missing: str,
) -> None:
    """No Scenario key, no rollback to Scenario: exit 3, nothing changed, the fix named."""
    config = {k: v for k, v in WITH_SCENARIO.items() if k != f"{PROJECT}:{missing}"}
    pulumi.config(config, monkeypatch)
    assert main(["prod", "--no-main", "--yes"]) == 3
    assert pulumi.argvs() == [["config", "--stack", "prod", "--json"]]
    message = capsys.readouterr().err
    assert f"pulumi config set --secret {missing} <value> --stack prod" in message


def test_an_empty_plain_value_does_not_count_as_a_credential(
    pulumi: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key set to an empty, non-secret value is as good as missing."""
    config = dict(WITH_SCENARIO)
    config[f"{PROJECT}:app.scenarioApiKey"] = {"value": "", "secret": False}
    pulumi.config(config, monkeypatch)
    assert main(["prod", "--no-main", "--yes"]) == 3


def test_undo_needs_no_scenario_credentials(
    pulumi: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Going back to ComfyUI does not call Scenario (pulumi up still validates the stack)."""
    pulumi.config({}, monkeypatch)
    assert main(["prod", "--no-main", "--undo", "--yes"]) == 0


def test_a_failed_config_change_applies_nothing(
    pulumi: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If setting the config fails, nothing is applied: exit 1 and no `pulumi up`."""
    monkeypatch.setenv("STANDIN_FAIL_CONFIG_SET", "1")
    assert main(["prod", "--no-main", "--yes"]) == 1
    assert [argv[0] for argv in pulumi.argvs()] == ["config", "config"]


def test_a_failed_update_is_reported_as_a_failure(
    pulumi: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pulumi up` failing makes the rollback exit 1, naming the command."""
    monkeypatch.setenv("STANDIN_FAIL_UP", "255")
    assert main(["prod", "--no-main", "--yes"]) == 1
    assert "failed (exit 255): pulumi up --stack prod" in capsys.readouterr().err


def test_unreadable_config_is_a_refusal(pulumi: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pulumi config --json` failing (wrong stack, no passphrase) stops before any change."""
    monkeypatch.setenv("STANDIN_FAIL_CONFIG", "1")
    assert main(["prod", "--no-main", "--yes"]) == 3
    assert len(pulumi.argvs()) == 1


def test_usage_errors_and_a_missing_cli_have_their_own_exit_codes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No stack: 2. No pulumi on PATH: 3, before anything runs."""
    assert main([]) == 2
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert main(["prod", "--no-main"]) == 3


def test_the_targets_are_the_urns_the_program_registers() -> None:
    """Under mocks, prod registers the KV value and the provider variable at these URNs."""
    deployment = deploy("prod")
    flag = deployment.one(KV)
    (variable,) = [
        r
        for r in deployment.mocks.of_type(GH_VARIABLE)
        if r.inputs["variableName"] == "IMAGE_GENERATION_PROVIDER"
    ]
    assert (flag.urn, variable.urn) == target_urns(PROJECT, "prod")
    assert rollback.Project(ROOT).name == PROJECT


def test_a_rollout_change_updates_exactly_the_resources_ci_targets() -> None:
    """A provider flip plus a percentage step on prod changes the inputs of exactly the
    resources CI's rollout-only deploy targets (rollout_urns), and of nothing else."""
    before = {r.urn: r.inputs for r in deploy("prod").mocks.resources}
    after_run = deploy("prod", {"rollout.provider": "scenario", "rollout.comfyuiPercent": "50"})
    after = {r.urn: r.inputs for r in after_run.mocks.resources}
    assert set(before) == set(after)
    changed = {urn for urn in before if before[urn] != after[urn]}
    assert changed == set(rollout_urns(PROJECT, "prod"))


@pytest.mark.skipif(shutil.which("uv") is None, reason="scripts/rollback runs through uv")
def test_the_script_runs_the_module_from_the_project_root(pulumi: StandIn, tmp_path: Path) -> None:
    """scripts/rollback is a thin wrapper: same dry run, from anywhere."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "rollback"), "prod", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [argv[0] for argv in pulumi.argvs()] == ["config", "config", "preview"]
    assert "[rollback]" in done.stderr


DOCS = (
    "rollout.md",
    "troubleshooting.md",
    "app-integration.md",
    "DEPLOYMENT.md",
    "configuration.md",
)


def test_every_rollback_command_in_the_docs_parses() -> None:
    """`scripts/rollback ...` in the docs uses only arguments the command accepts."""
    checked = 0
    for name in DOCS:
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        for line in re.findall(r"scripts/rollback( [^`#\n|;)]*)?", text):
            argv = line.split()
            if not argv or argv[0].startswith("<"):
                continue
            rollback.parser().parse_args(argv)
            checked += 1
    assert checked >= 3, "the runbook shows the rollback, its dry run and --undo"


def test_the_docs_give_the_real_kv_bound_instead_of_instant() -> None:
    """The app reads with the shortest cacheTtl (60 s) and the runbook states that bound."""
    runbook = (ROOT / "docs" / "rollout.md").read_text(encoding="utf-8")
    app = (ROOT / "docs" / "app-integration.md").read_text(encoding="utf-8")
    assert "cacheTtl: 60" in app
    assert "within about 60 s" in runbook
    assert "within about" in app
    for text in (runbook, app):
        assert "instant rollback" not in text.lower()
        assert "(instant;" not in text


def test_a_fully_qualified_stack_name_targets_the_same_urns(pulumi: StandIn) -> None:
    """`<org>/<project>/prod` is passed to pulumi as given; URNs and the stack file use the
    stack's own name, `prod`, as the engine does."""
    qualified = f"acme/{PROJECT}/prod"
    assert main([qualified, "--yes", "--no-main"]) == 0
    up = pulumi.argvs()[-1]
    assert up[:3] == ["up", "--stack", qualified]
    assert targets(up) == [FLAG_URN, VARIABLE_URN]
    assert main([qualified, "--dry-run"]) == 0, "the dry run finds Pulumi.prod.yaml"
    preview = pulumi.calls()[-1]
    assert preview["argv"][0] == "preview"
    assert Path(preview["config_file"]).name == "Pulumi.prod.yaml"
    assert targets(preview["argv"]) == [FLAG_URN, VARIABLE_URN]


def test_a_project_file_without_a_name_is_refused_naming_it(tmp_path: Path) -> None:
    """A Pulumi.yaml with no `name:` is a refusal saying so (was a bare KeyError)."""
    (tmp_path / "Pulumi.yaml").write_text("runtime: python\n", encoding="utf-8")
    with pytest.raises(rollback.RefusedError, match="has no project name"):
        rollback.Project(tmp_path)
