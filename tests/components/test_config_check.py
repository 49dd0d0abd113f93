"""The offline check a newcomer runs first: example values, unknown stacks, secrets set later.

``python -m components.config check --stack <s>`` (and ``validate``, which a real ``pulumi up``
goes through) refuses the example values the committed stack files ship with, each with the
line to change; tests and mocks opt in to them (``ALLOW_EXAMPLE_VALUES_ENV``, set by
``tests/suite_guard.py`` for the whole suite, removed here).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config import (
    ALLOW_EXAMPLE_VALUES_ENV,
    EXAMPLE_VALUES,
    PROJECT,
    ConfigError,
    load,
    parse,
    project_root,
    stack_file_values,
    validate,
)
from components.config import _main as config_main
from tests.fakes.pulumi_mocks import mocked
from tests.fakes.stack_values import MINIMAL, stack_values

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def real_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave like a real deploy: the suite's opt-in to example values is withdrawn."""
    monkeypatch.delenv(ALLOW_EXAMPLE_VALUES_ENV, raising=False)


def line_of(stack_file: Path, key: str) -> int:
    """1-based line of ``key`` in a stack file, as a reader would find it."""
    for number, line in enumerate(stack_file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith(f"{PROJECT}:{key}:"):
            return number
    raise AssertionError(f"{key} not in {stack_file}")


def project(tmp_path: Path, stack: str, config: dict[str, object]) -> Path:
    """A project folder with ``Pulumi.yaml`` and one stack file."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Pulumi.yaml").write_text(f"name: {PROJECT}\n", encoding="utf-8")
    document = {"config": {f"{PROJECT}:{key}": value for key, value in config.items()}}
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return tmp_path


@pytest.mark.usefixtures("real_deploy")
@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_shipped_stack_files_are_refused_naming_each_example_and_its_line(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Account id, owner, repository, example.com origins (and prod's digest), with lines."""
    stack_file = ROOT / f"Pulumi.{stack}.yaml"
    values, _ = stack_file_values(ROOT, stack)
    assert config_main(["check", "--stack", stack]) == 1
    err = capsys.readouterr().err
    expected = ["cloudflare.accountId", "image.owner", "app.repository", "bucket.corsOrigins"]
    if stack == "prod":
        expected.append("image.digest")
    for key in expected:
        line = line_of(stack_file, key)
        assert re.search(
            rf"- {re.escape(key)} is still the shipped example '[^']*': "
            rf"change Pulumi\.{stack}\.yaml line {line} to .+, or pulumi config set {key} "
            rf"<value> --stack {stack}",
            err,
        ), (key, err)
    assert values["cloudflare.accountId"] in err


@pytest.mark.usefixtures("real_deploy")
def test_validate_refuses_examples_in_a_real_deploy_and_tests_may_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The program's validate() refuses them; parse() and the opted-in suite do not."""
    values = {
        **MINIMAL,
        "image.owner": "acme-games",
        "bucket.publicBaseUrl": "https://cdn.example.org",
    }
    with pytest.raises(ConfigError) as caught:
        validate(values, stack="staging")
    problems = caught.value.problems
    keys = sorted(problem.split(" ", 1)[0] for problem in problems)
    assert keys == ["bucket.publicBaseUrl", "cloudflare.accountId", "image.owner"]
    assert all("pulumi config set" in problem for problem in problems)
    parse(values, stack="staging")
    monkeypatch.setenv(ALLOW_EXAMPLE_VALUES_ENV, "1")
    validate(values, stack="staging")


@pytest.mark.usefixtures("real_deploy")
def test_pulumi_up_refuses_the_shipped_examples_before_any_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The program's own load() (what `pulumi up` runs, from the project folder) refuses them."""
    monkeypatch.chdir(ROOT)
    config, secret_keys = stack_values("prod")
    with mocked(stack="prod", config=config, secret_keys=secret_keys) as mocks:
        with pytest.raises(ConfigError) as caught:
            load()
        assert not mocks.resources
    keys = sorted(problem.split(" ", 1)[0] for problem in caught.value.problems)
    assert keys == [
        "app.repository",
        "bucket.corsOrigins",
        "cloudflare.accountId",
        "image.digest",
        "image.owner",
    ]
    assert all("change Pulumi.prod.yaml line " in p for p in caught.value.problems)


@pytest.mark.usefixtures("real_deploy")
@pytest.mark.parametrize(
    ("origins", "flagged"),
    [
        ("https://app.mygame.io,http://localhost:5173", False),
        ("https://app.mygame.io,https://staging.assets.example.com", True),
        ("https://example.net:8443", True),
        ("https://example.community.io,https://notexample.com", False),
    ],
)
def test_only_reserved_example_domains_count_as_placeholders(origins: str, flagged: bool) -> None:
    """example.com/.net/.org and their subdomains; look-alike real domains pass."""
    values = {**MINIMAL, "cloudflare.accountId": "f" * 32, "bucket.corsOrigins": origins}
    if not flagged:
        validate(values, stack="staging")
        return
    with pytest.raises(ConfigError) as caught:
        validate(values, stack="staging")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("bucket.corsOrigins is still the shipped example")


def test_every_example_value_is_one_the_stack_files_or_docs_ship() -> None:
    """The list of examples is not invented: each value appears in a committed file."""
    shipped = "".join(
        (ROOT / name).read_text(encoding="utf-8")
        for name in ("Pulumi.staging.yaml", "Pulumi.prod.yaml", "docs/configuration.md")
    )
    for key, (example, _) in EXAMPLE_VALUES.items():
        assert example in shipped, key


def test_an_unknown_stack_names_the_missing_file_from_any_folder(tmp_path: Path) -> None:
    """Run from an unrelated folder: the check finds the project and names the file to copy."""
    result = subprocess.run(
        [sys.executable, "-m", "components.config", "check", "--stack", "dev"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"no Pulumi.dev.yaml in {ROOT}: copy Pulumi.staging.yaml and edit it"
    )
    assert "Traceback" not in result.stderr


def test_the_project_is_found_above_the_working_folder(tmp_path: Path) -> None:
    """Like the Pulumi CLI: the nearest Pulumi.yaml of this project, else this checkout."""
    root = project(tmp_path / "mine", "dev", {})
    (root / "components").mkdir()
    assert project_root(root / "components") == root
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Pulumi.yaml").write_text("name: someone-else\n", encoding="utf-8")
    assert project_root(tmp_path / "other") == ROOT


@pytest.mark.usefixtures("real_deploy")
def test_secrets_later_passes_a_good_file_and_lists_the_secrets_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the stack exists only secrets may be missing; each gets its --secret command."""
    plain = {k: v for k, v in MINIMAL.items() if "Token" not in k}
    monkeypatch.chdir(project(tmp_path, "dev", {**plain, "cloudflare.accountId": "a" * 32}))
    assert config_main(["check", "--stack", "dev", "--secrets-later"]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid, once these secrets are set:" in out
    for key in ("cloudflare.apiToken", "app.githubToken", "image.registryToken"):
        assert f"pulumi config set --secret {key} " in out
    assert config_main(["check", "--stack", "dev"]) == 1
    assert "pulumi config set --secret cloudflare.apiToken" in capsys.readouterr().err


@pytest.mark.usefixtures("real_deploy")
def test_secrets_later_still_fails_on_examples_and_bad_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only secrets may wait: an example value or an invalid one fails before anything exists."""
    config = {
        "cloudflare.accountId": "0123456789abcdef0123456789abcdef",
        "image.owner": "Bad Owner",
    }
    monkeypatch.chdir(project(tmp_path, "dev", {**MINIMAL, **config}))
    assert config_main(["check", "--stack", "dev", "--secrets-later"]) == 1
    err = capsys.readouterr().err
    assert "cloudflare.accountId is still the shipped example" in err
    assert "change Pulumi.dev.yaml line" in err
    assert "image.owner must be a lower-case GHCR owner" in err


@pytest.mark.parametrize("argv", [[], ["check"], ["check", "--stack", "../etc/passwd"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing command, a missing --stack or a path instead of a stack name: usage, exit 2."""
    assert config_main(argv) == 2
    assert capsys.readouterr().err
