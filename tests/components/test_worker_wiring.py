"""WorkerWiring under Pulumi mocks: credentials as RunPod secrets, names, the shared env."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.runpod import is_secret_reference
from components.worker_wiring import (
    ImageCudaVersionError,
    WorkerCredentials,
    cuda_versions_from,
    declare_worker_credentials,
    image_cuda_version,
    worker_env,
)
from tests.components.builders import worker_wiring
from tests.fakes.pulumi_mocks import mocked, run, settle

SECRET = "pulumi-python:dynamic/runpod:Secret"
REGISTRY = "pulumi-python:dynamic/runpod:Registry"
HOLDER = "comfyui-runpod:test:Holder"
CREDENTIAL_VALUES = ("fake-r2-key-id", "fake-r2-secret", "fake-hf", "fake-ghcr-pull-token")


class Holder(pulumi.ComponentResource):
    """Stands in for the component that declares the credentials."""

    def __init__(self, name: str) -> None:
        super().__init__(HOLDER, name, None, None)


def declare(*, hf: bool = False) -> tuple[WorkerCredentials, dict[str, pulumi.Input[str]]]:
    """Declare credentials under a `Holder` named `pod`, then its env, in one mocked run."""
    built: list[tuple[WorkerCredentials, dict[str, pulumi.Input[str]]]] = []

    def program() -> None:
        worker = worker_wiring(hf_token=pulumi.Output.secret("fake-hf")) if hf else worker_wiring()
        credentials = declare_worker_credentials(
            "pod",
            worker,
            parent=Holder("pod"),
            secret_name_prefix="acme_staging_pod",
            registry_name="acme_staging_ghcr_pod",
            described_as="the acme-video pods",
        )
        env = worker_env(
            worker,
            mode="pod",
            model_groups=("wan22_t2v",),
            mode_env={"ENABLE_R2_SYNC": "true"},
            references=credentials.references,
        )
        built.append((credentials, env))

    run(program)
    return built[0]


def resolved(env: dict[str, pulumi.Input[str]]) -> dict[str, Any]:
    return {
        key: settle(value)[0] if isinstance(value, pulumi.Output) else value
        for key, value in env.items()
    }


def test_credentials_reach_the_env_only_as_secret_references() -> None:
    """Every credential variable is a `{{ RUNPOD_SECRET_<name> }}`; no value is in the env."""
    with mocked():
        credentials, env = declare(hf=True)
        values = resolved(env)
        for variable in ("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "HF_TOKEN"):
            assert is_secret_reference(values[variable]), variable
        assert values["R2_ACCESS_KEY_ID"] == (
            "{{ RUNPOD_SECRET_acme_staging_pod_r2_access_key_id }}"
        )
        text = json.dumps(values)
        for value in CREDENTIAL_VALUES:
            assert value not in text
        assert dict(credentials.secret_names) == {
            "R2_ACCESS_KEY_ID": "acme_staging_pod_r2_access_key_id",
            "R2_SECRET_ACCESS_KEY": "acme_staging_pod_r2_secret_access_key",
            "HF_TOKEN": "acme_staging_pod_hf_token",
        }


def test_credential_values_are_secret_inputs_of_the_runpod_resources() -> None:
    """State would encrypt them: each secret's value and the registry password are secret."""
    with mocked() as mocks:
        declare(hf=True)
        secrets = mocks.of_type(SECRET)
        assert len(secrets) == 3
        assert all("value" in secret.secret_paths for secret in secrets)
        registry = mocks.one(REGISTRY)
        assert "password" in registry.secret_paths
        assert registry.inputs["password"] == "fake-ghcr-pull-token"


def test_hf_token_is_optional() -> None:
    """Without a Hugging Face token: two secrets, and HF_TOKEN is neither referenced nor set."""
    with mocked() as mocks:
        credentials, env = declare()
        assert sorted(s.inputs["name"] for s in mocks.of_type(SECRET)) == [
            "acme_staging_pod_r2_access_key_id",
            "acme_staging_pod_r2_secret_access_key",
        ]
        assert "HF_TOKEN" not in credentials.secret_names
        assert "HF_TOKEN" not in env


def test_children_are_named_after_the_caller_and_parented_to_it() -> None:
    """Names `<name>-<role>` and `<name>-ghcr` under the caller keep existing URNs."""
    with mocked() as mocks:
        declare(hf=True)
        children = [r for r in mocks.resources if r.type in (SECRET, REGISTRY)]
        assert sorted(r.name for r in children) == [
            "pod-ghcr",
            "pod-hf-token",
            "pod-r2-access-key-id",
            "pod-r2-secret-access-key",
        ]
        urns = pulumi.runtime.settings.get_monitor().resources
        for child in children:
            suffix = f"::{HOLDER}${child.type}::{child.name}"
            assert any(urn.endswith(suffix) for urn in urns), child.name


def test_runpod_names_and_descriptions_come_from_the_caller() -> None:
    """Secret names use the given prefix; the registry its name; descriptions the wording."""
    with mocked() as mocks:
        declare()
        registry = mocks.one(REGISTRY).inputs
        assert (registry["name"], registry["username"]) == ("acme_staging_ghcr_pod", "acme-bot")
        descriptions = sorted(s.inputs["description"] for s in mocks.of_type(SECRET))
        assert descriptions == [
            "R2_ACCESS_KEY_ID of the acme-video pods (managed by Pulumi)",
            "R2_SECRET_ACCESS_KEY of the acme-video pods (managed by Pulumi)",
        ]


def test_worker_env_carries_the_r2_target_model_groups_and_mode_entries() -> None:
    """MODE, R2_*, MODEL_GROUPS and the mode's entries; R2_PUBLIC_BASE_URL only when given."""
    worker = worker_wiring(outputs=False)
    env = worker_env(
        worker,
        mode="serverless",
        model_groups=("flux_dev_fp8", "background_removal"),
        mode_env={"JOB_TIMEOUT_S": "600"},
        references={"R2_ACCESS_KEY_ID": "{{ RUNPOD_SECRET_x }}"},
    )
    assert env == {
        "MODE": "serverless",
        "R2_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
        "R2_BUCKET": "comfyui-runpod-staging",
        "R2_PREFIX": "outputs/",
        "MODEL_GROUPS": "flux_dev_fp8,background_removal",
        "JOB_TIMEOUT_S": "600",
        "R2_ACCESS_KEY_ID": "{{ RUNPOD_SECRET_x }}",
    }
    public = worker_wiring(outputs=False, r2_public_base_url="https://cdn.example.com")
    with_url = worker_env(public, mode="pod", model_groups=("wan22_t2v",), references={})
    assert with_url["R2_PUBLIC_BASE_URL"] == "https://cdn.example.com"


@pytest.mark.parametrize(
    "variable", ["MODE", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_PUBLIC_BASE_URL"]
)
def test_mode_env_cannot_override_a_shared_variable(variable: str) -> None:
    """A mode entry that would shadow the R2 target or a credential reference is refused."""
    with pytest.raises(ValueError, match=variable):
        worker_env(
            worker_wiring(outputs=False),
            mode="pod",
            model_groups=("wan22_t2v",),
            mode_env={variable: "plain"},
            references={"R2_ACCESS_KEY_ID": "{{ RUNPOD_SECRET_x }}"},
        )


# -- the image's CUDA version ----------------------------------------------------------------


def test_the_image_cuda_version_is_read_from_the_dockerfiles_one_arg() -> None:
    """The committed Dockerfile declares 12.8; a template's exact set is 12.8 and newer."""
    assert image_cuda_version() == "12.8"
    assert cuda_versions_from(image_cuda_version()) == ("12.8", "12.9", "13.0")


def test_cuda_versions_compare_numerically() -> None:
    """12.10 would sort below 12.9 as text; the floor compares major and minor as numbers."""
    assert cuda_versions_from("12.9") == ("12.9", "13.0")
    assert cuda_versions_from("11.8")[:3] == ("11.8", "12.0", "12.1")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04\n", "found 0"),
        ("ARG CUDA_VERSION=12.8\nARG CUDA_VERSION=12.9\n", "found 2"),
        ("ARG CUDA_VERSION=12\n", "found 0"),
    ],
)
def test_a_dockerfile_without_exactly_one_cuda_arg_fails_clearly(
    tmp_path: Any, text: str, fragment: str
) -> None:
    """The error names the file, the expected line and what was found."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    with pytest.raises(ImageCudaVersionError, match=r"ARG CUDA_VERSION=<major\.minor>") as failed:
        image_cuda_version(dockerfile)
    assert str(dockerfile) in str(failed.value)
    assert fragment in str(failed.value)


def test_a_missing_dockerfile_or_an_unknown_version_fails_clearly(tmp_path: Any) -> None:
    """No file: the path is named; a version RunPod hosts never report: the list is named."""
    with pytest.raises(ImageCudaVersionError, match="cannot read"):
        image_cuda_version(tmp_path / "absent")
    with pytest.raises(ImageCudaVersionError, match="KNOWN_CUDA_VERSIONS"):
        cuda_versions_from("12.55")
