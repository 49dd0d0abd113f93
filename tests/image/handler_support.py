"""Builders shared by the handler test modules: model lists, graphs, the worker environment.

One place for what several modules need; each module keeps the fixtures only it uses (the
ones all use, ``comfy`` and ``worker_env``, are in ``conftest.py``).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from worker.r2 import R2Settings

from tests.fakes.comfyui import ComfyUIDouble, tiny_png
from tests.fakes.s3 import settings_env

WAN_FILES = {
    "diffusion_models": [
        "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
        "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
    ],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "loras": [
        "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
        "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors",
    ],
}
ALL_MODELS = {
    "checkpoints": ["flux1-dev-fp8.safetensors"],
    "background_removal": ["birefnet.safetensors"],
    **WAN_FILES,
}
PNG = tiny_png()
PNG_B64 = base64.b64encode(PNG).decode()
#: A raw workflow that needs no model file.
WEIGHTS_FREE = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
}
#: Worker settings a test sets itself when it needs them: never taken from the caller's shell.
WORKER_KNOBS = (
    "R2_PUBLIC_BASE_URL",
    "JOB_TIMEOUT_S",
    "INPUT_URL_ALLOW_HTTP",
    "COMFY_ORG_API_KEY",
    "LORAS_DIR",
    "PROGRESS_INTERVAL_S",
)


def point_worker_at(
    monkeypatch: pytest.MonkeyPatch, comfy: ComfyUIDouble, bucket: R2Settings
) -> None:
    """The worker's environment: this double, this bucket, every optional knob unset."""
    for name in WORKER_KNOBS:
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_env(bucket).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COMFY_URL", comfy.url)
    monkeypatch.setenv("COMFY_PID_FILE", str(comfy.pid_file))


def runpod_job(payload: dict[str, Any], job_id: str = "job-1") -> dict[str, Any]:
    """A job as the RunPod SDK hands it to the handler."""
    return {"id": job_id, "input": payload}
