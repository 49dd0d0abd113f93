"""docs/runpod-template-config.md and docs/rollout.md stay true to the provider they describe."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.runpod import EndpointRollout
from components.runpod.providers import NetworkVolumeProvider, RegistryProvider
from components.worker_wiring import REVISION_VARIABLE, cuda_versions_from, image_cuda_version

REPO = Path(__file__).resolve().parents[2]
GUIDE = (REPO / "docs" / "runpod-template-config.md").read_text(encoding="utf-8")
RUNBOOK = (REPO / "docs" / "rollout.md").read_text(encoding="utf-8")


def test_the_guide_names_the_revision_variable_the_env_carries() -> None:
    """The rotation section names the variable worker_env really sets."""
    assert f"`{REVISION_VARIABLE}`" in GUIDE
    assert f"`{REVISION_VARIABLE}`" in RUNBOOK


def test_the_guide_states_the_cuda_floor_and_the_template_list_the_program_sets() -> None:
    """The endpoint's floor is the Dockerfile's version; the template's row lists exactly
    that version and the newer ones."""
    floor = image_cuda_version()
    assert f"`gpu.minCudaVersion` `{floor}`" in GUIDE
    assert ", ".join(f"`{v}`" for v in cuda_versions_from(floor)) in GUIDE
    assert f"ARG CUDA_VERSION={floor}" in GUIDE


def test_the_guide_states_the_in_use_retry_bounds_the_providers_use() -> None:
    """30 s for a credential a pod holds, 60 s for a volume in use."""
    assert f"retried for {RegistryProvider.in_use_budget_s:g} s" in GUIDE
    assert f"retries\nfor {NetworkVolumeProvider.in_use_budget_s:g} s" in GUIDE


def test_the_documented_adopt_key_and_rollout_resource_exist() -> None:
    """`runpod.adoptExisting` is declared; `EndpointRollout` is the resource named."""
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))["config"]
    assert "runpod.adoptExisting" in declared
    assert "runpod.adoptExisting" in GUIDE
    assert "runpod.adoptExisting" in RUNBOOK
    assert f"`{EndpointRollout.__name__}`" in GUIDE


def test_the_runbook_and_changelog_say_what_the_first_up_after_the_upgrade_does() -> None:
    """What tests/provider/test_deploy_simulation.py proves (one release for the revision
    variable and the CUDA floor, nothing replaced) is what an operator reads first."""
    section = RUNBOOK.split("## The first up after the RunPod update", 1)[1].split("\n## ")[0]
    assert "rolls the serverless workers over once" in section
    assert f"`{REVISION_VARIABLE}`" in section
    assert "`gpu.minCudaVersion`" in section
    assert "replaces and deletes nothing" in section
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "rolls the serverless workers over once" in changelog


def test_the_image_guide_names_the_cuda_constraints_the_stack_sets() -> None:
    """The endpoint takes a floor, the template an exact set: the image guide says both."""
    image_guide = (REPO / "docs" / "worker-image.md").read_text(encoding="utf-8")
    assert "`gpu.minCudaVersion`" in image_guide
    assert "`allowedCudaVersions`" in image_guide
