"""The files a newcomer expects say true things: pre-commit runs what CI runs, the dev
container and Dependabot point at what exists, LICENSE and CHANGELOG are what they claim."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def ci_commands() -> list[str]:
    """The check commands .ci/run runs, in order (the environment sync aside)."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [
        line.strip()
        for line in lines
        if line.startswith("scripts/") and not line.startswith("scripts/uv sync")
    ]


def test_ci_runs_lint_types_and_the_suite_through_the_projects_scripts() -> None:
    """.ci/run bootstraps through scripts/uv (no system pip) and tests with scripts/test."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" not in text
    assert ci_commands() == [
        "scripts/uv run --frozen ruff format --check .",
        "scripts/uv run --frozen ruff check .",
        "scripts/uv run --frozen mypy",
        "scripts/test",
    ]


def test_pre_commit_runs_every_check_ci_runs() -> None:
    """Each .ci/run command is a local hook's entry (extra flags allowed), the suite on push."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] if repo["repo"] == "local" for hook in repo["hooks"]]
    entries = {hook["entry"]: hook for hook in hooks}
    for command in ci_commands():
        found = [
            entry
            for entry in entries
            if shlex.split(entry)[: len(shlex.split(command))] == shlex.split(command)
        ]
        assert found, f"no pre-commit hook runs {command!r}"
        hook = entries[found[0]]
        assert hook["pass_filenames"] is False, hook["id"]
        if command == "scripts/test":
            assert hook["stages"] == ["pre-push"]
            assert hook["always_run"] is True
    assert "pre-push" in config["default_install_hook_types"]
    for hook in hooks:
        assert (ROOT / shlex.split(hook["entry"])[0]).is_file(), hook["id"]


def test_devcontainer_has_python_311_docker_and_sets_up_uv_and_the_pulumi_cli() -> None:
    """The image is Python 3.11 (.python-version), Docker comes in, the scripts it runs exist."""
    text = (ROOT / ".devcontainer" / "devcontainer.json").read_text(encoding="utf-8")
    config = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE))
    python = (ROOT / ".python-version").read_text(encoding="utf-8").strip()
    assert f"python:1-{python}-" in config["image"]
    assert any("docker-in-docker" in feature for feature in config["features"])
    setup = config["postCreateCommand"]
    assert "scripts/uv sync --frozen" in setup
    assert "scripts/pulumi-cli install" in setup
    for word in setup.split():
        if word.startswith("scripts/"):
            assert (ROOT / word).is_file(), word
    path = config["remoteEnv"]["PATH"]
    assert "/.tools/pulumi/bin" in path
    assert "/.tools/uv/bin" in path


#: A FROM line whose image has a literal tag, the only kind Dependabot's docker updater reads
#: (its tag pattern is ``:[\w][\w.-]*``; an ARG in the reference is not resolved,
#: dependabot-core#2057): stage names and ``${CUDA_VERSION}`` tags give it nothing to update.
DEPENDABOT_READABLE_FROM = re.compile(
    r"^FROM\s+(?:--platform=\S+\s+)?[a-z0-9][a-z0-9._/-]*(?::[\w][\w.-]*|@sha256:[0-9a-f]{64})"
    r"(?:\s+AS\s+\S+)?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def test_dependabot_covers_python_actions_and_the_dev_container_at_real_folders() -> None:
    """uv, pip (image pins, uv bootstrap pin), GitHub Actions, dev container; folders exist."""
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    assert config["version"] == 2
    updates = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert {
        ("uv", "/"),
        ("pip", "/image"),
        ("pip", "/scripts/bootstrap"),
        ("github-actions", "/"),
        ("devcontainers", "/"),
    } <= updates
    for _, directory in updates:
        assert (ROOT / directory.lstrip("/")).is_dir(), directory
    assert (ROOT / "image" / "requirements.txt").is_file()
    assert (ROOT / "scripts" / "bootstrap" / "requirements.txt").is_file()
    assert all(
        u["schedule"]["interval"] in {"daily", "weekly", "monthly"} for u in config["updates"]
    )


def test_dependabot_watches_the_dockerfile_only_if_it_can_read_a_base_image_there() -> None:
    """A docker entry is configured exactly when image/Dockerfile has a FROM with a literal tag.

    The base image's tag derives from ``ARG CUDA_VERSION`` (the one declaration of the image's
    CUDA version), which Dependabot does not resolve: an entry would update nothing while
    claiming to. The CUDA version moves by hand (docs/worker-image.md).
    """
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    watched = any(u["package-ecosystem"] == "docker" for u in config["updates"])
    dockerfile = (ROOT / "image" / "Dockerfile").read_text(encoding="utf-8")
    readable = DEPENDABOT_READABLE_FROM.findall(dockerfile)
    assert watched == bool(readable), readable or "no FROM line Dependabot can read"
    if not watched:
        assert "CUDA_VERSION" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")


def test_the_readable_from_pattern_tells_literal_tags_from_arguments() -> None:
    """The check above is only as good as its pattern: literal tags yes, ARGs and stages no."""
    for line, readable in [
        ("FROM nvidia/cuda:12.8.1-base-ubuntu24.04 AS python", True),
        ("FROM --platform=linux/amd64 python:3.12-slim", True),
        ("FROM ubuntu@sha256:" + "a" * 64, True),
        ("FROM nvidia/cuda:${CUDA_VERSION}.1-base-ubuntu24.04 AS python", False),
        ("FROM python AS torch", False),
        ("FROM $BASE", False),
    ]:
        assert bool(DEPENDABOT_READABLE_FROM.search(line)) is readable, line


def test_license_is_the_apache_2_text_the_readme_names() -> None:
    """LICENSE holds the full Apache License 2.0; the README says so."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Apache License 2.0" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_changelog_entries_are_dated_newest_first() -> None:
    """Dated headings (YYYY-MM-DD), newest first, starting at the first entry of 2026-12-04."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    dates = re.findall(r"^## (\d{4}-\d{2}-\d{2})$", text, flags=re.MULTILINE)
    assert dates
    assert dates == sorted(dates, reverse=True)
    assert dates[-1] == "2026-12-04"


def test_contributing_sends_node_pins_to_the_worker_image_doc() -> None:
    """How to move a node pin lives in docs/worker-image.md (one place); CONTRIBUTING links it."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("### Move a custom node", 1)[1].split("###", 1)[0]
    assert "(docs/worker-image.md)" in section
    for topic in ("## Set up", "## Tests", "### Add or move a model", "scripts/test --serial"):
        assert topic in text


def test_readme_says_the_sandbox_is_a_local_stand_in() -> None:
    """Nobody mistakes the sandbox for RunPod: the README says so next to the command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/sandbox" in readme
    assert "It is a local stand-in, not RunPod" in readme
    assert "Python **3.11**" in readme
    order = [readme.index(step) for step in ("scripts/test  ", "scripts/sandbox  ", "scripts/up ")]
    assert order == sorted(order)
