"""The runbook and its companions stay true: their commands are the ones the code implements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components.outputs import ROLLOUT_FLAG
from ops.canary import Gates
from ops.cost import PRICES
from ops.rollout_state import rollback_command
from ops.target import FLAG_READS, READS
from tests.ops.cli_lines import ops_invocations, unknown_options

REPO = Path(__file__).resolve().parents[2]
DOCS = ("rollout.md", "troubleshooting.md", "app-integration.md")


def text(name: str) -> str:
    return (REPO / "docs" / name).read_text(encoding="utf-8")


def inline_ops(markdown: str) -> list[list[str]]:
    """`ops <command> ...` written inline (without `python -m`), as argv."""
    spans = re.findall(r"`((?:uv run )?(?:python -m )?ops [^`]+)`", markdown)
    return [span.split("ops ", 1)[1].split() for span in spans if "python -m ops" not in span]


@pytest.mark.parametrize("name", DOCS)
def test_every_ops_command_in_the_docs_exists_with_those_options(name: str) -> None:
    """Each `python -m ops ...` and inline `ops ...` names a real command and real options."""
    markdown = text(name)
    found = ops_invocations(markdown) + inline_ops(markdown)
    if name != "app-integration.md":
        assert found, f"{name} shows no ops command"
    for argv in found:
        assert unknown_options(argv) == [], argv


def test_the_cli_lines_checker_rejects_unknown_commands_and_options() -> None:
    """The checker the doc tests rely on does catch a wrong command or flag."""
    assert unknown_options(["canary", "--requests", "5", "--bogus"]) == ["--bogus"]
    assert unknown_options(["deploy"]) == ["no command 'deploy'"]
    assert ops_invocations("x | uv run python -m ops health --outputs - \\\n  --samples 2") == [
        ["health", "--outputs", "-", "--samples", "2"]
    ]


@pytest.mark.parametrize("name", DOCS)
def test_config_keys_in_the_docs_are_declared_in_pulumi_yaml(name: str) -> None:
    """Every `pulumi config set <key>` names a key Pulumi.yaml declares."""
    declared = set(yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"])
    keys = re.findall(r"pulumi config set (?:--secret )?([\w.:]+)", text(name))
    for key in keys:
        assert key in declared or key.startswith("runpod:"), key


def test_runbook_says_who_can_forge_a_gate_record_and_how_to_stop_it() -> None:
    """The gate record is unsigned: the runbook names the non-obvious writer (a pull request
    from a branch of this repository) and both ways to close it."""
    runbook = " ".join(text("rollout.md").split())
    assert "**Who can forge a record.**" in runbook
    assert "a **same-repository pull request** can ask" in runbook
    assert "Manage Actions access → this repository, role **Read**" in runbook
    assert "`gh attestation verify`" in runbook


def test_runbook_gives_the_rollback_command_the_code_prints() -> None:
    """The emergency rollback in the runbook is exactly what `ops smoke` tells operators."""
    assert rollback_command("prod") in text("rollout.md")
    assert rollback_command("prod") == (
        "pulumi config set rollout.provider scenario --stack prod && pulumi up --stack prod"
    )


def test_runbook_documents_every_stack_output_name_ops_reads() -> None:
    """The table of stack outputs names exactly the outputs ops reads, and the flag fields."""
    runbook = text("rollout.md")
    table = runbook.split("**Stack outputs** the commands read", 1)[1].split("\n\n###", 1)[0]
    outputs_column = [row.split(" | ")[1] for row in table.splitlines() if row.startswith("| ")]
    documented = set(re.findall(r"`(\w+)`", " ".join(outputs_column[1:])))
    assert documented == {*READS.values(), ROLLOUT_FLAG}
    flag_row = next(row for row in outputs_column if f"`{ROLLOUT_FLAG}`" in row)
    for field in FLAG_READS.values():
        assert field in flag_row, field


def test_runbook_gate_defaults_and_prices_match_the_code() -> None:
    """The gate table's defaults and the price table are the code's values."""
    runbook = text("rollout.md")
    gates = Gates()
    assert f"`--min-success` | {gates.min_success}" in runbook
    assert f"| {gates.max_warm_p95_s:g} s |" in runbook
    assert f"| {gates.max_cold_p95_s:g} s |" in runbook
    for pool, (flex, active, _) in PRICES.items():
        assert re.search(rf"`{pool}` \| [^|]+ \| {flex:.5f} \| {active:.5f} \|", runbook), pool


def test_troubleshooting_covers_every_symptom_the_issue_lists() -> None:
    """One section per failure mode, each with symptom, cause and fix."""
    sections = re.split(r"^## ", text("troubleshooting.md"), flags=re.MULTILINE)[1:]
    titles = [section.splitlines()[0].lower() for section in sections]
    for wanted in (
        "cold-start timeout",
        "model not found",
        "429",
        "out of memory",
        "r2 upload failures",
        "inotify limits",
        "ghcr pull denied",
        "stuck release",
    ):
        matching = [s for t, s in zip(titles, sections, strict=True) if wanted in t]
        assert matching, wanted
        body = matching[0]
        for part in ("**Symptom.**", "**Cause.**", "**Fix.**"):
            assert part in body, (wanted, part)


def test_app_integration_covers_the_flag_bucketing_api_timeouts_and_429() -> None:
    """The sections the app team needs are there."""
    headings = re.findall(r"^## (.+)$", text("app-integration.md"), flags=re.MULTILINE)
    joined = " | ".join(headings).lower()
    for wanted in ("flag on every request", "sticky percentage", "/run", "cold starts", "429"):
        assert wanted in joined, wanted
