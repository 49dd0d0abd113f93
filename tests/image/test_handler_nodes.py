"""The handler with the image's locked nodes: the TurboWan templates end to end through the
ComfyUI double (whose TurboDiffusion classes match image/node_facts.json, see
test_workflows.py), and what a missing model or node class tells the operator."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from worker.handler import handler
from worker.r2 import R2Settings

from tests.fakes.comfyui import ComfyUIDouble, tiny_png
from tests.fakes.s3 import list_objects
from tests.image.handler_support import point_worker_at

TURBO_FILES = {
    "diffusion_models": [
        "TurboWan2.2-I2V-A14B-high-720P-quant.pth",
        "TurboWan2.2-I2V-A14B-low-720P-quant.pth",
    ],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "checkpoints": ["flux1-dev-fp8.safetensors"],
}
FRAME = {"name": "frame.png", "image": base64.b64encode(tiny_png()).decode()}
TURBO_JOBS: dict[str, dict[str, Any]] = {
    "wan22_turbo_i2v": {
        "template": "wan22_turbo_i2v",
        "params": {"prompt": "the fox turns its head", "aspect_ratio": "9:16", "frames": 49},
        "images": [FRAME],
    },
    "wan22_turbo_t2v": {
        "template": "wan22_turbo_t2v",
        "params": {"prompt": "a fox in the snow", "steps": 2, "seed": 11},
    },
}


@pytest.fixture
def worker_env(r2_bucket: R2Settings) -> R2Settings:
    """The bucket alone: each test points the worker at a double of its own."""
    return r2_bucket


@pytest.fixture
def bare_comfy(monkeypatch: pytest.MonkeyPatch, worker_env: R2Settings) -> Iterator[ComfyUIDouble]:
    """A ComfyUI double with no models, the worker pointed at it."""
    with ComfyUIDouble() as double:
        point_worker_at(monkeypatch, double, worker_env)
        yield double


def test_a_missing_node_class_points_at_the_node_lock(bare_comfy: ComfyUIDouble) -> None:
    """Custom nodes are pinned in image/nodes.toml (installed by install_nodes.py), not the
    Dockerfile: the missing_node message sends the operator to the lock."""
    graph = {
        "1": {"class_type": "SomeUnlockedNode", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    result = handler({"id": "n1", "input": {"workflow": graph}})
    assert result["error_type"] == "missing_node"
    assert "SomeUnlockedNode" in result["error"]
    assert "image/nodes.toml" in result["error"]
    assert "Dockerfile" not in result["error"]
    assert bare_comfy.prompts == []


@pytest.fixture
def turbo_comfy(monkeypatch: pytest.MonkeyPatch, worker_env: R2Settings) -> Iterator[ComfyUIDouble]:
    """A ComfyUI double with the files of the turbodiffusion and flux_dev_fp8 groups."""
    with ComfyUIDouble(models=TURBO_FILES) as double:
        point_worker_at(monkeypatch, double, worker_env)
        yield double


@pytest.mark.parametrize("name", sorted(TURBO_JOBS))
def test_the_turbo_templates_run_end_to_end_and_store_an_mp4(
    name: str, turbo_comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """ComfyUI (with the node definitions of the pinned Comfyui_turbodiffusion) accepts the
    rendered graph; the SaveVideo output lands in R2 as a video."""
    result = handler({"id": f"job-{name}", "input": TURBO_JOBS[name]})
    assert "error" not in result, result
    [output] = result["outputs"]
    assert output["kind"] == "video"
    assert output["filename"].endswith(".mp4")
    assert output["key"] in list_objects(worker_env)
    [body] = turbo_comfy.prompts
    sampler = body["prompt"]["26"]["inputs"]
    assert sampler["num_steps"] == TURBO_JOBS[name]["params"].get("steps", 4)
    assert sampler["resolution"] == "720p"


def test_the_i2v_template_samples_from_the_uploaded_frame(
    turbo_comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """The job's image is uploaded and is the first frame; 9:16 sets the 720p portrait size."""
    result = handler({"id": "i2v", "input": TURBO_JOBS["wan22_turbo_i2v"]})
    assert "error" not in result, result
    graph = turbo_comfy.prompts[0]["prompt"]
    (stored,) = turbo_comfy.input_dir.rglob("frame.png")
    assert stored.read_bytes() == tiny_png()
    assert stored == turbo_comfy.input_dir / graph["25"]["inputs"]["image"]
    sampler = graph["26"]["inputs"]
    assert (sampler["aspect_ratio"], sampler["width"], sampler["height"]) == ("9:16", 720, 1280)
    assert sampler["num_frames"] == 49


def test_missing_turbowan_experts_name_the_turbodiffusion_group(
    monkeypatch: pytest.MonkeyPatch, worker_env: R2Settings
) -> None:
    """Without the int8 experts the job fails as missing_model, naming the group to add."""
    models = {k: v for k, v in TURBO_FILES.items() if k != "diffusion_models"}
    with ComfyUIDouble(models=models) as double:
        point_worker_at(monkeypatch, double, worker_env)
        result = handler({"id": "no-experts", "input": TURBO_JOBS["wan22_turbo_i2v"]})
    assert result["error_type"] == "missing_model"
    assert "TurboWan2.2-I2V-A14B-high-720P-quant.pth" in result["error"]
    assert "(model group turbodiffusion)" in result["error"]
