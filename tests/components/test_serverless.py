"""ComfyServerless under Pulumi mocks: worker env contract, secrets, scaling, naming."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.runpod import is_secret_reference
from components.runpod.checks import SECRET_NAME
from components.runpod.resources import runpod_name_prefix
from components.serverless import ComfyServerless
from components.worker_wiring import WorkerWiring
from tests.components.builders import IMAGE, serverless_settings, worker_wiring
from tests.fakes.pulumi_mocks import RecordingMocks, mocked, run, settle

ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
SECRET = "pulumi-python:dynamic/runpod:Secret"
REGISTRY = "pulumi-python:dynamic/runpod:Registry"
VOLUME = "pulumi-python:dynamic/runpod:NetworkVolume"
ROLLOUT = "pulumi-python:dynamic/runpod:EndpointRollout"


def build(
    mocks: RecordingMocks, *, worker: WorkerWiring | None = None, **changes: str
) -> ComfyServerless:
    """Run a ComfyServerless from the running stack's config with `changes`."""
    built: list[ComfyServerless] = []
    run(
        lambda: built.append(
            ComfyServerless(
                "comfyui",
                settings=serverless_settings(**changes),
                worker=worker or worker_wiring(),
            )
        )
    )
    return built[0]


def test_worker_env_follows_the_contract_with_credentials_as_references() -> None:
    """R2_* and MODE/MODEL_GROUPS/JOB_TIMEOUT_S are set; credentials only as references."""
    with mocked() as mocks:
        build(
            mocks,
            worker=worker_wiring(
                hf_token=pulumi.Output.secret("fake-hf"), r2_public_base_url="https://cdn.x"
            ),
        )
        env = mocks.one(ENDPOINT).inputs["env"]
        assert env["MODE"] == "serverless"
        assert env["R2_BUCKET"] == "comfyui-runpod-staging"
        assert env["R2_PREFIX"] == "outputs/"
        assert env["R2_PUBLIC_BASE_URL"] == "https://cdn.x"
        assert env["MODEL_GROUPS"] == "flux_dev_fp8,background_removal"
        assert env["JOB_TIMEOUT_S"] == "600"
        for variable in ("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "HF_TOKEN"):
            assert is_secret_reference(env[variable]), variable
        assert env["R2_SECRET_ACCESS_KEY"] == (
            "{{ RUNPOD_SECRET_comfyui_runpod_staging_r2_secret_access_key }}"
        )


def test_no_credential_value_reaches_an_endpoint_input() -> None:
    """The endpoint's inputs never contain a credential value, only secret names."""
    with mocked() as mocks:
        build(mocks, worker=worker_wiring(hf_token=pulumi.Output.secret("fake-hf")))
        endpoint = json.dumps(mocks.one(ENDPOINT).inputs)
        for value in ("fake-r2-key-id", "fake-r2-secret", "fake-hf", "fake-ghcr-pull-token"):
            assert value not in endpoint


def test_secret_values_and_registry_password_are_secret_inputs() -> None:
    """State would encrypt them: each value/password input is marked secret."""
    with mocked() as mocks:
        build(mocks)
        secrets = mocks.of_type(SECRET)
        assert sorted(s.inputs["name"] for s in secrets) == [
            "comfyui_runpod_staging_r2_access_key_id",
            "comfyui_runpod_staging_r2_secret_access_key",
        ]
        for secret in secrets:
            assert "value" in secret.secret_paths
            assert not secret.inputs["name"].upper().startswith("RUNPOD")
        assert "password" in mocks.one(REGISTRY).secret_paths


def test_endpoint_pulls_by_digest_with_the_registry_credential() -> None:
    """Image pinned by digest; the GHCR credential id is the endpoint's registry."""
    with mocked() as mocks:
        build(mocks)
        endpoint = mocks.one(ENDPOINT).inputs
        assert endpoint["image"] == IMAGE
        assert endpoint["registry_id"] == "comfyui-ghcr-id"


@pytest.mark.parametrize(("workers_min", "stage"), [(0, "staging"), (1, "prod")])
def test_scaling_comes_from_the_stack_config(workers_min: int, stage: str) -> None:
    """Staging scales to zero; prod keeps a warm worker (cold starts of 30-60 s)."""
    with mocked(stack=stage) as mocks:
        build(
            mocks,
            serverless_workersMin=str(workers_min),
            serverless_workersMax="5",
            serverless_flashboot="FLASHBOOT",
        )
        endpoint = mocks.one(ENDPOINT).inputs
        assert endpoint["workers"] == {"min": workers_min, "max": 5, "idleTimeout": 5}
        assert endpoint["scaling"] == {"type": "QUEUE_DELAY", "queueDelay": 4}
        assert endpoint["flashboot"] == "FLASHBOOT"
        assert endpoint["name"] == f"comfyui-runpod-{stage}-comfyui"


def test_network_volume_is_attached_and_pins_the_data_center() -> None:
    """With a volume the endpoint mounts it, runs in its data center and reads models there."""
    with mocked() as mocks:
        component = build(
            mocks,
            serverless_networkVolumeGb="100",
            serverless_networkVolumeDataCenterId="EU-RO-1",
        )
        volume = mocks.one(VOLUME).inputs
        endpoint = mocks.one(ENDPOINT).inputs
        assert volume["size_gb"] == 100
        assert endpoint["network_volume_ids"] == ["comfyui-models-id"]
        assert endpoint["data_center_ids"] == ["EU-RO-1"]
        assert endpoint["env"]["MODELS_DIR"] == "/runpod-volume/models"
        assert settle(component.network_volume_id)[0] == "comfyui-models-id"


def test_outputs_expose_the_endpoint_id_and_job_api_url() -> None:
    """Consumers get the endpoint id (for the app and the KV flag) and the job API URL."""
    with mocked() as mocks:
        component = build(mocks)
        assert settle(component.endpoint_id)[0] == "comfyui-endpoint-id"
        assert settle(component.job_api_url)[0] == "https://api.runpod.ai/v2/comfyui-endpoint-id"
        assert settle(component.network_volume_id)[0] == ""


def test_children_are_named_after_the_component_and_parented() -> None:
    """Child names are `<name>-<role>`; the component token is comfyui-runpod:index:..."""
    with mocked() as mocks:
        build(mocks)
        names = {r.name for r in mocks.resources}
        assert names >= {
            "comfyui",
            "comfyui-endpoint",
            "comfyui-ghcr",
            "comfyui-r2-access-key-id",
            "comfyui-r2-secret-access-key",
        }
        component = next(r for r in mocks.resources if r.name == "comfyui")
        assert component.type == "comfyui-runpod:index:ComfyServerless"


@pytest.mark.parametrize(
    ("project", "stack", "prefix"),
    [
        ("comfyui-runpod", "staging", "comfyui_runpod_staging"),
        ("RunPod-Tools", "prod", "x_runpod_tools_prod"),
        ("9lives", "dev", "x_9lives_dev"),
    ],
)
def test_runpod_names_are_valid_secret_names(project: str, stack: str, prefix: str) -> None:
    """Derived prefixes match RunPod's secret-name rule and avoid the reserved RUNPOD prefix."""
    derived = runpod_name_prefix(project, stack)
    assert derived == prefix
    assert SECRET_NAME.match(derived)
    assert not derived.upper().startswith("RUNPOD")


@pytest.mark.parametrize("adopt", [False, True])
def test_adopt_existing_reaches_every_runpod_object_of_the_component(adopt: bool) -> None:
    """Secrets, credential, volume and endpoint all carry the component's adopt choice."""
    with mocked() as mocks:
        build(
            mocks,
            runpod_adoptExisting=str(adopt).lower(),
            serverless_networkVolumeGb="50",
            serverless_networkVolumeDataCenterId="EU-RO-1",
        )
        kinds = (SECRET, REGISTRY, VOLUME, ENDPOINT)
        objects = [r for r in mocks.resources if r.type in kinds]
        assert {r.type for r in objects} == set(kinds)
        assert {r.inputs["adopt_existing"] for r in objects} == {adopt}


def test_endpoint_keeps_workers_on_hosts_with_the_images_cuda_or_newer() -> None:
    """The image's CUDA version becomes gpu.minCudaVersion, an open floor (RunPod compares
    it numerically), not an exact list that would leave out every newer version."""
    with mocked() as mocks:
        build(mocks, worker=worker_wiring(cuda_version="12.8"))
        (endpoint,) = mocks.of_type(ENDPOINT)
        assert endpoint.inputs["gpu"]["minCudaVersion"] == "12.8"
        assert "allowedCudaVersions" not in endpoint.inputs["gpu"]


def test_runpods_execution_timeout_sits_a_minute_above_the_handlers() -> None:
    """serverless.jobTimeoutSeconds is the handler's JOB_TIMEOUT_S; RunPod's own per-job
    timeout exceeds it by a minute, so the handler reports a timeout before RunPod kills it."""
    with mocked() as mocks:
        build(mocks, serverless_jobTimeoutSeconds="900")
        endpoint = mocks.one(ENDPOINT).inputs
        assert endpoint["env"]["JOB_TIMEOUT_S"] == "900"
        assert endpoint["timeout_ms"] == 960_000


@pytest.mark.parametrize("wait", [False, True])
def test_the_rollout_wait_follows_the_stack_config(wait: bool) -> None:
    """serverless.waitForRollout declares an EndpointRollout with the configured bound."""
    with mocked() as mocks:
        build(
            mocks,
            serverless_waitForRollout=str(wait).lower(),
            serverless_rolloutTimeoutSeconds="120",
        )
        rollouts = mocks.of_type(ROLLOUT)
        assert [r.inputs["timeout_s"] for r in rollouts] == ([120] if wait else [])


def test_excluded_gpu_types_narrow_the_pools_of_the_endpoint() -> None:
    """serverless.excludedGpuTypes reaches gpu.excludedTypes beside the pools; unset, the
    endpoint carries no exclusion at all."""
    with mocked() as mocks:
        build(mocks, serverless_excludedGpuTypes="NVIDIA L4,NVIDIA RTX A4000")
        gpu = mocks.one(ENDPOINT).inputs["gpu"]
        assert gpu["pools"] == ["ADA_24", "AMPERE_24"]
        assert gpu["excludedTypes"] == ["NVIDIA L4", "NVIDIA RTX A4000"]
    with mocked() as mocks:
        build(mocks)
        assert "excludedTypes" not in mocks.one(ENDPOINT).inputs["gpu"]
