"""VideoPod under Pulumi mocks: the hearmeman-style template, volume, and pod request."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.runpod import is_secret_reference
from components.video_pod import VideoPod
from components.worker_wiring import WorkerWiring
from tests.components.builders import IMAGE, video_pod_settings, worker_wiring
from tests.fakes.pulumi_mocks import RecordingMocks, mocked, run, settle
from tests.fakes.runpod_api import schema_errors

TEMPLATE = "pulumi-python:dynamic/runpod:Template"
VOLUME = "pulumi-python:dynamic/runpod:NetworkVolume"
SECRET = "pulumi-python:dynamic/runpod:Secret"


def build(mocks: RecordingMocks, *, worker: WorkerWiring | None = None, **changes: str) -> VideoPod:
    """Run a VideoPod from the running stack's config with `changes`."""
    built: list[VideoPod] = []
    run(
        lambda: built.append(
            VideoPod(
                "video", settings=video_pod_settings(**changes), worker=worker or worker_wiring()
            )
        )
    )
    return built[0]


def test_template_exposes_comfyui_jupyter_and_ssh() -> None:
    """Ports 8188/http, 8888/http and 22/tcp; SSH and Jupyter start; a pod template."""
    with mocked() as mocks:
        build(mocks)
        template = mocks.one(TEMPLATE).inputs
        assert template["ports"] == ["8188/http", "8888/http", "22/tcp"]
        assert template["start_ssh"] is True
        assert template["start_jupyter"] is True
        assert template["serverless"] is False
        assert template["image"] == IMAGE


@pytest.mark.parametrize(
    ("jupyter", "enable_jupyter", "ports"),
    [
        (True, "true", ["8188/http", "8888/http", "22/tcp"]),
        (False, "false", ["8188/http", "22/tcp"]),
    ],
)
def test_jupyter_setting_reaches_start_sh_the_ports_and_the_pod_request(
    jupyter: bool, enable_jupyter: str, ports: list[str]
) -> None:
    """videoPod.jupyter sets ENABLE_JUPYTER, the 8888/http port and the pod request's flag."""
    with mocked() as mocks:
        component = build(mocks, videoPod_jupyter=str(jupyter).lower())
        template = mocks.one(TEMPLATE).inputs
        assert template["env"]["ENABLE_JUPYTER"] == enable_jupyter
        assert template["ports"] == ports
        assert template["start_jupyter"] is jupyter
        body, _ = settle(component.pod_request)
        assert body["startJupyter"] is jupyter
        assert schema_errors("CreatePodRequest", body) == []


def test_pod_env_enables_r2_sync_with_credentials_as_references() -> None:
    """MODE=pod, ENABLE_R2_SYNC=true, WAN 2.2 720p T2V groups; R2 keys are references."""
    with mocked() as mocks:
        build(mocks)
        env = mocks.one(TEMPLATE).inputs["env"]
        assert env["MODE"] == "pod"
        assert env["ENABLE_R2_SYNC"] == "true"
        assert env["MODEL_GROUPS"] == "wan22_t2v,wan22_t2v_fast"
        assert is_secret_reference(env["R2_ACCESS_KEY_ID"])
        assert is_secret_reference(env["R2_SECRET_ACCESS_KEY"])
        assert "HF_TOKEN" not in env
        assert "fake-r2" not in json.dumps(env)


def test_pod_secrets_have_their_own_account_unique_names() -> None:
    """The pod's secrets never collide with the serverless endpoint's."""
    with mocked() as mocks:
        build(mocks, worker=worker_wiring(hf_token=pulumi.Output.secret("fake-hf")))
        names = sorted(s.inputs["name"] for s in mocks.of_type(SECRET))
        assert names == [
            "comfyui_runpod_staging_pod_hf_token",
            "comfyui_runpod_staging_pod_r2_access_key_id",
            "comfyui_runpod_staging_pod_r2_secret_access_key",
        ]


def test_volume_lives_in_the_configured_data_center() -> None:
    """The workspace volume has the configured size and data center."""
    with mocked() as mocks:
        build(mocks, videoPod_volumeGb="300", videoPod_dataCenterId="US-KS-2")
        volume = mocks.one(VOLUME).inputs
        assert (volume["size_gb"], volume["data_center_id"]) == (300, "US-KS-2")


def test_pod_request_is_a_valid_v2_create_pod_body() -> None:
    """The exported body starts a pod from the template with the volume at /workspace."""
    with mocked() as mocks:
        component = build(mocks)
        body, _ = settle(component.pod_request)
        assert body["templateId"] == "video-template-id"
        assert body["mounts"] == {
            "network": [{"volumeId": "video-volume-id", "path": "/workspace"}]
        }
        assert schema_errors("CreatePodRequest", body) == []


def test_template_keeps_pods_on_hosts_with_the_images_cuda_or_newer() -> None:
    """Templates take only an exact set in v2: the image's version and every newer one."""
    with mocked() as mocks:
        build(mocks, worker=worker_wiring(cuda_version="12.8"))
        assert mocks.one(TEMPLATE).inputs["allowed_cuda_versions"] == ["12.8", "12.9", "13.0"]


@pytest.mark.parametrize("adopt", [False, True])
def test_adopt_existing_reaches_every_runpod_object_of_the_pod(adopt: bool) -> None:
    """Volume, secrets, credential and template all carry the component's adopt choice."""
    with mocked() as mocks:
        build(mocks, runpod_adoptExisting=str(adopt).lower())
        objects = [r for r in mocks.resources if r.type.startswith("pulumi-python:dynamic/")]
        assert len(objects) == 5
        assert {r.inputs["adopt_existing"] for r in objects} == {adopt}


def test_comfyui_password_is_a_runpod_secret_referenced_by_the_pod() -> None:
    """videoPod.comfyPassword becomes its own RunPod secret; the template's env holds only
    the {{ RUNPOD_SECRET_... }} reference, never the value."""
    with mocked() as mocks:
        build(mocks, videoPod_comfyPassword="pod-password-1234")
        secrets = {s.inputs["name"]: s for s in mocks.of_type(SECRET)}
        assert "comfyui_runpod_staging_pod_comfy_password" in secrets
        env = mocks.one(TEMPLATE).inputs["env"]
        assert is_secret_reference(env["COMFYUI_PASSWORD"])
        assert "comfyui_runpod_staging_pod_comfy_password" in env["COMFYUI_PASSWORD"]
        assert "pod-password-1234" not in json.dumps(env)
