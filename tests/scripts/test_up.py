"""scripts/up and scripts/pulumi-cli in a fresh clone, with stand-ins on PATH for the network.

``uv`` is a stand-in that runs the project's Python (so the real offline config check runs);
``curl`` either serves a stand-in of Pulumi's install script (which honours ``--version`` and
``--install-root`` and writes a recording ``pulumi``) or fails as it does offline. The tests
read what each tool was asked to do, in order, from the stand-ins' log.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.scripts.standins import (
    PROJECT_PYTHON,
    ROOT,
    copy_repository,
    logged,
    logging_tool,
    offline_curl,
    run_env,
)

#: The SDK version locked in uv.lock, read independently of the script under test.
LOCKED = next(
    package["version"]
    for package in tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))["package"]
    if package["name"] == "pulumi"
)

PULUMI_STANDIN = """\
#!/bin/sh
echo "pulumi $*" >> "$STANDIN_LOG"
case "$1 $2" in
  "version "*) echo "v{version}" ;;
  "stack select") [ -f "$STANDIN_STATE/stack-$3" ] || exit 255 ;;
  "stack init") mkdir -p "$STANDIN_STATE" && touch "$STANDIN_STATE/stack-$3" ;;
esac
exit 0
"""

# Pulumi's install.sh, reduced to its contract: --version V --install-root R puts R/bin/pulumi.
INSTALLER_STANDIN = f"""\
#!/bin/sh
echo "install.sh $*" >> "$STANDIN_LOG"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version=$2; shift ;;
    --install-root) root=$2; shift ;;
  esac
  shift
done
mkdir -p "$root/bin"
cat > "$root/bin/pulumi" <<'PULUMI'
{PULUMI_STANDIN}PULUMI
sed -i.bak "s/{{version}}/$version/" "$root/bin/pulumi" && rm -f "$root/bin/pulumi.bak"
chmod +x "$root/bin/pulumi"
"""

ONLINE_CURL = f"""
out=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out=$2; shift ;; https://*) url=$1 ;; esac
  shift
done
if [ "$url" != "https://get.pulumi.com/install.sh" ]; then exit 22; fi
cat > "$out" <<'INSTALLER'
{INSTALLER_STANDIN}INSTALLER
"""

#: A stack file a user has filled in: own values, secrets set (encrypted) with pulumi.
OWN_VALUES = {
    "cloudflare.accountId": "3f1c" * 8,
    "bucket.corsOrigins": "https://assets.mystudio.io",
    "image.owner": "mystudio",
    "app.repository": "mystudio/asset-studio",
}
SECRETS = (
    "cloudflare.apiToken",
    "app.githubToken",
    "image.registryToken",
    "image.pullToken",
)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone: scripts, the program's config module, the stack files and the lock."""
    return copy_repository(
        tmp_path / "repo",
        "scripts",
        "components",
        "ops",
        "Pulumi.yaml",
        "Pulumi.staging.yaml",
        "Pulumi.prod.yaml",
        "uv.lock",
    )


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """Stand-ins: a uv that runs the project's Python; no pulumi, no curl yet."""
    bin_dir = tmp_path / "bin"
    logging_tool(
        bin_dir,
        "uv",
        f"""
        [ "$1" = run ] || exit 0
        shift; [ "$1" = --frozen ] && shift
        [ "$1" = python ] && shift
        exec "{PROJECT_PYTHON}" "$@"
        """,
    )
    return bin_dir


def write_stack(clone: Path, stack: str, values: dict[str, str], secrets: tuple[str, ...]) -> None:
    config: dict[str, object] = {f"comfyui-runpod:{key}": value for key, value in values.items()}
    config.update({f"comfyui-runpod:{key}": {"secure": "v1:AAAA"} for key in secrets})
    (clone / f"Pulumi.{stack}.yaml").write_text(
        yaml.safe_dump({"config": config}), encoding="utf-8"
    )


def up(clone: Path, bin_dir: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = run_env(bin_dir, tmp_path / "calls.log", STANDIN_STATE=str(tmp_path / "state"))
    return subprocess.run(
        [str(clone / "scripts" / "up"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_locked_sdk_is_the_installed_one_and_the_cli_version_follows_it(clone: Path) -> None:
    """scripts/pulumi-cli version = uv.lock's pulumi = the SDK in the environment."""
    result = subprocess.run(
        [str(clone / "scripts" / "pulumi-cli"), "version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip() == LOCKED == importlib.metadata.version("pulumi")


def test_no_cli_installs_the_locked_version_into_the_project_then_deploys(
    clone: Path, bin_dir: Path, tmp_path: Path
) -> None:
    """First run: CLI v<locked> into .tools/pulumi, login, stack init, check, then up."""
    logging_tool(bin_dir, "curl", ONLINE_CURL)
    write_stack(clone, "team", OWN_VALUES, SECRETS)
    result = up(clone, bin_dir, tmp_path, "team", "--yes")
    assert result.returncode == 0, result.stderr
    tools = clone / ".tools" / "pulumi"
    calls = [call for call in logged(tmp_path / "calls.log") if not call.startswith("uv run")]
    assert re.fullmatch(
        r"curl -fsSL --retry 2 -o \S+ https://get\.pulumi\.com/install\.sh", calls[1]
    )
    assert calls[:1] + calls[2:] == [
        "uv sync --frozen",
        f"install.sh --version {LOCKED} --install-root {tools} --no-edit-path --silent",
        "pulumi version",
        "pulumi version",
        "pulumi login --local",
        "pulumi stack select team",
        "pulumi stack init team --secrets-provider passphrase",
        "pulumi up --stack team --yes",
    ]
    assert f"Pulumi CLI v{LOCKED} is in {tools}/bin" in result.stderr
    # The next run finds the project's CLI and installs nothing.
    (tmp_path / "calls.log").unlink()
    assert up(clone, bin_dir, tmp_path, "team").returncode == 0
    calls = logged(tmp_path / "calls.log")
    assert not any(call.startswith(("curl", "install.sh", "pulumi stack init")) for call in calls)
    assert calls[-1] == "pulumi up --stack team"


def test_offline_it_says_what_it_could_not_fetch_and_how_to_install_by_hand(
    clone: Path, bin_dir: Path, tmp_path: Path
) -> None:
    """No network: exit 3, the URL that failed, the version and the release tarball to get."""
    offline_curl(bin_dir)
    write_stack(clone, "team", OWN_VALUES, SECRETS)
    result = up(clone, bin_dir, tmp_path, "team")
    assert result.returncode == 3
    assert "could not fetch https://get.pulumi.com/install.sh" in result.stderr
    assert f"install Pulumi CLI v{LOCKED} by hand" in result.stderr
    assert f"releases/download/v{LOCKED}/pulumi-v{LOCKED}-" in result.stderr
    assert not any(call.startswith("pulumi") for call in logged(tmp_path / "calls.log"))


def test_no_uv_and_no_way_to_install_it_is_exit_3_as_its_header_says(
    clone: Path, tmp_path: Path
) -> None:
    """No uv, a python3 without venv, no network: exit 3 naming uv, before any check or CLI."""
    bin_dir = tmp_path / "bin"
    logging_tool(bin_dir, "python3", "echo 'ensurepip is not available' >&2; exit 1")
    offline_curl(bin_dir)
    result = up(clone, bin_dir, tmp_path, "staging")
    assert result.returncode == 3
    assert "could not install uv" in result.stderr
    assert "checking Pulumi.staging.yaml" not in result.stderr
    header = (clone / "scripts" / "up").read_text(encoding="utf-8").split("set -euo", 1)[0]
    assert re.search(r"\b3 uv or the Pulumi CLI missing", header), header


def test_a_pulumi_of_another_version_on_path_is_not_used(
    clone: Path, bin_dir: Path, tmp_path: Path
) -> None:
    """An old CLI on PATH: the locked version is installed beside the project and used."""
    logging_tool(bin_dir, "pulumi", 'echo "v3.100.0"')
    logging_tool(bin_dir, "curl", ONLINE_CURL)
    write_stack(clone, "team", OWN_VALUES, SECRETS)
    result = up(clone, bin_dir, tmp_path, "team")
    assert result.returncode == 0, result.stderr
    assert f"pulumi v3.100.0 on PATH is not v{LOCKED}" in result.stderr
    assert (clone / ".tools" / "pulumi" / "bin" / "pulumi").is_file()


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_shipped_examples_stop_it_before_anything_is_installed_or_created(
    clone: Path, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    """The committed stack files: exit 4 naming each example value; no CLI, no stack."""
    logging_tool(bin_dir, "curl", ONLINE_CURL)
    monkeypatch.delenv("COMFYUI_RUNPOD_ALLOW_EXAMPLE_VALUES", raising=False)
    result = up(clone, bin_dir, tmp_path, stack)
    assert result.returncode == 4
    for key in ("cloudflare.accountId", "image.owner", "app.repository", "bucket.corsOrigins"):
        assert f"{key} is still the shipped example" in result.stderr
        assert f"change Pulumi.{stack}.yaml line " in result.stderr
    calls = logged(tmp_path / "calls.log")
    assert not any(call.startswith(("curl", "pulumi")) for call in calls), calls
    assert not (clone / ".tools").exists()


def test_an_unknown_stack_names_the_file_to_copy_and_creates_nothing(
    clone: Path, bin_dir: Path, tmp_path: Path
) -> None:
    """scripts/up dev without Pulumi.dev.yaml: the file to copy; no pulumi stack init."""
    logging_tool(bin_dir, "curl", ONLINE_CURL)
    result = up(clone, bin_dir, tmp_path, "dev")
    assert result.returncode == 4
    assert "no Pulumi.dev.yaml in " in result.stderr
    assert "copy Pulumi.staging.yaml and edit it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(call.startswith(("curl", "pulumi")) for call in logged(tmp_path / "calls.log"))


def test_a_new_stack_is_created_so_its_secrets_can_be_set_then_it_stops(
    clone: Path, bin_dir: Path, tmp_path: Path
) -> None:
    """Own values, no secrets yet: the stack is initialised, the --secret commands listed, no up."""
    logging_tool(bin_dir, "curl", ONLINE_CURL)
    write_stack(clone, "team", OWN_VALUES, ())
    result = up(clone, bin_dir, tmp_path, "team")
    assert result.returncode == 4
    assert "once these secrets are set" in result.stdout
    assert "pulumi config set --secret cloudflare.apiToken <value> --stack team" in result.stderr
    calls = logged(tmp_path / "calls.log")
    assert "pulumi stack init team --secrets-provider passphrase" in calls
    assert not any(call.startswith("pulumi up") for call in calls)


def test_usage_without_a_stack(clone: Path, bin_dir: Path, tmp_path: Path) -> None:
    """No stack argument: the usage line and exit 2, nothing run."""
    result = up(clone, bin_dir, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: scripts/up <stack>")
    assert logged(tmp_path / "calls.log") == []
