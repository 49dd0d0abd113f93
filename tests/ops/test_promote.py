"""`ops pin-digest`: the promote workflow's one-line, comment-preserving digest pin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ops.promote import PromoteError, extract_digest, pin_digest
from tests.ops.conftest import invoke_json

REPO = Path(__file__).resolve().parents[2]
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with Pulumi.yaml and a prod stack file with comments."""
    (tmp_path / "Pulumi.yaml").write_text("name: comfyui-runpod\nruntime: python\n")
    (tmp_path / "Pulumi.prod.yaml").write_text(
        "# production\n"
        "config:\n"
        "  comfyui-runpod:image.owner: acme  # GHCR owner\n"
        f"  comfyui-runpod:image.digest: {DIGEST_A}\n"
        "  comfyui-runpod:rollout.provider: comfyui\n"
    )
    return tmp_path


def test_pin_replaces_only_the_digest_line(project: Path) -> None:
    """The new digest lands on the same line; every other line, comments included, is kept."""
    stack = project / "Pulumi.prod.yaml"
    before = stack.read_text().splitlines()
    result = pin_digest(stack, DIGEST_B)
    after = stack.read_text().splitlines()
    assert result.changed
    assert result.previous == DIGEST_A
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert changed == [
        (f"  comfyui-runpod:image.digest: {DIGEST_A}", f"  comfyui-runpod:image.digest: {DIGEST_B}")
    ]


def test_pin_is_idempotent(project: Path) -> None:
    """Pinning the digest already there changes nothing."""
    assert not pin_digest(project / "Pulumi.prod.yaml", DIGEST_A).changed


def test_pin_adds_the_key_when_the_stack_builds_its_image(project: Path) -> None:
    """A stack file without image.digest gets it at the end of config:, same indent, valid YAML."""
    stack = project / "Pulumi.prod.yaml"
    stack.write_text(
        "config:\n"
        "    comfyui-runpod:image.owner: acme\n"
        "    comfyui-runpod:app.token:\n"
        "        secure: AAABBB\n"
        "\n"
        "# trailing comment\n"
    )
    pin_digest(stack, DIGEST_B)
    text = stack.read_text()
    assert f"    comfyui-runpod:image.digest: {DIGEST_B}\n" in text
    assert text.endswith("# trailing comment\n")
    config = yaml.safe_load(text)["config"]
    assert config["comfyui-runpod:image.digest"] == DIGEST_B
    assert config["comfyui-runpod:app.token"] == {"secure": "AAABBB"}


def test_extract_digest_accepts_a_full_reference_and_rejects_garbage() -> None:
    """ghcr.io/o/i@sha256:<hex> yields the digest; tags or short hashes are refused."""
    assert extract_digest(f"ghcr.io/acme/comfyui-worker@{DIGEST_A}") == DIGEST_A
    for bad in ("ghcr.io/acme/comfyui-worker:latest", "sha256:abc", ""):
        with pytest.raises(PromoteError):
            extract_digest(bad)


def test_pin_digest_command_takes_staging_outputs_from_stdin(project: Path) -> None:
    """Staging's `pulumi stack output --json` piped into `--outputs -` pins its imageDigest."""
    stack = project / "Pulumi.prod.yaml"
    outputs = json.dumps({"imageDigest": DIGEST_B, "imageRef": f"ghcr.io/acme/w@{DIGEST_B}"})
    code, doc = invoke_json(
        ["pin-digest", "--stack-file", str(stack), "--outputs", "-"], {}, stdin=outputs
    )
    assert code == 0
    assert doc["changed"] is True
    assert doc["digest"] == DIGEST_B
    assert DIGEST_B in stack.read_text()


def test_pin_digest_command_without_a_digest_exits_2(project: Path) -> None:
    """No --digest and no imageDigest output: exit 2 with the command to run."""
    code, doc = invoke_json(
        ["pin-digest", "--stack-file", str(project / "Pulumi.prod.yaml"), "--outputs", "-"],
        {},
        stdin="{}",
    )
    assert code == 2
    assert "imageDigest" in doc["error"]


def test_pinned_repository_prod_stack_still_passes_config_validation(tmp_path: Path) -> None:
    """Pinning the real Pulumi.prod.yaml keeps it a stack file the program's config accepts."""
    if not (REPO / "Pulumi.prod.yaml").is_file():
        pytest.skip("the Pulumi program's stack files are not in this checkout yet")
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(REPO / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    result = pin_digest(tmp_path / "Pulumi.prod.yaml", DIGEST_B)
    config = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())["config"]
    assert config[result.key] == DIGEST_B
    assert result.key == "comfyui-runpod:image.digest"
