"""Pulumi.yaml, the stack files and docs/configuration.md agree with the program.

Pulumi validates the project file and stack config before the program runs; these tests
apply the same rules offline (from pulumi/sdk ``go/common/workspace``: typed schemas only
for project keys, arrays need ``items``, declared keys without a default must be set, a
typed secret must be encrypted, including a default it would merge) so a bad edit fails
here rather than at ``pulumi up``.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.config import PROJECT, RUNPOD_API_KEY, SCHEMA, SCHEMA_BY_NAME
from tests.fakes.stack_values import ROOT, stack_file

TYPES = {"string": str, "integer": int, "boolean": bool}


def project() -> dict[str, Any]:
    """Pulumi.yaml as a document."""
    document: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    return document


def declared() -> dict[str, dict[str, Any]]:
    """The ``config:`` block of Pulumi.yaml."""
    return project()["config"]


def test_project_runs_python_with_the_uv_toolchain() -> None:
    """`pulumi up` uses the same locked environment as the tests."""
    document = project()
    assert document["name"] == PROJECT
    assert document["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}


def test_pulumi_yaml_declares_exactly_the_keys_the_program_reads() -> None:
    """No key is read without a declaration, and none is declared but unused."""
    assert set(declared()) == set(SCHEMA_BY_NAME)


@pytest.mark.parametrize("key", SCHEMA, ids=lambda key: key.name)
def test_declaration_matches_the_program(key: Any) -> None:
    """Type, default and secrecy in Pulumi.yaml are what config.py assumes."""
    spec = declared()[key.name]
    assert spec.get("description"), f"{key.name} has no description"
    assert bool(spec.get("secret")) == key.secret
    if key.secret and key.default is not None:
        # Optional secret: untyped, or Pulumi would reject its unencrypted default.
        assert "type" not in spec
        assert spec["default"] == ""
        return
    assert spec["type"] == key.type
    if key.default is None:
        assert "default" not in spec
    else:
        assert spec["default"] == key.default
        assert type(spec["default"]) is TYPES[key.type]


def test_pulumi_yaml_follows_pulumis_own_schema_rules() -> None:
    """The rules Pulumi enforces when it loads a project file."""
    for name, spec in declared().items():
        assert ":" not in name or name.startswith(f"{PROJECT}:"), name
        assert isinstance(spec, dict), name
        assert not {"default", "value"} <= set(spec), name
        assert spec.get("type", "string") in {"string", "integer", "boolean", "array"}, name
        if spec.get("type") == "array":
            assert "items" in spec, name
        if spec.get("secret") and "type" in spec:
            assert "default" not in spec, f"{name}: a typed secret's default is rejected"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_stack_file_values_pass_pulumis_type_check(stack: str) -> None:
    """Every committed value is declared, typed right, and every required key is set."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    specs = declared()
    for full_key, value in document["config"].items():
        namespace, _, name = full_key.partition(":")
        assert namespace == PROJECT, f"{full_key}: provider keys are not committed"
        assert name in specs, f"{full_key} is not declared in Pulumi.yaml"
        expected = specs[name].get("type")
        if expected:
            assert type(value) is TYPES[expected], f"{full_key} must be {expected}"
    values = stack_file(stack)
    required = [
        name
        for name, spec in specs.items()
        if "default" not in spec and "value" not in spec and not spec.get("secret")
    ]
    assert [name for name in required if name not in values] == []


def test_configuration_doc_lists_every_key() -> None:
    """docs/configuration.md has a row for every key in Pulumi.yaml (and runpod:apiKey)."""
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")
    }
    missing = sorted((set(declared()) | {RUNPOD_API_KEY}) - rows)
    assert missing == []


def test_configuration_doc_marks_secrets_and_defaults_truthfully() -> None:
    """Each row's secret and default columns match Pulumi.yaml."""
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    specs = declared()
    for line in doc.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = cells[0].strip("`")
        if name not in specs:
            continue
        assert (cells[2] == "yes") == bool(specs[name].get("secret")), name
        default = specs[name].get("default")
        if default is None:
            assert cells[3] == "required", name
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert cells[3].strip("`") == (shown or "(empty)"), name
