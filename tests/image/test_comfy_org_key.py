"""The Comfy.org API key reaches ComfyUI as extra_data.api_key_comfy_org and is never logged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from worker.handler import handler
from worker.r2 import R2Settings

from tests.fakes.comfyui import ComfyUIDouble
from tests.image.handler_support import point_worker_at

GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "k"}},
}
ENV_KEY = "comfyui-env-key-0123456789abcdef"
JOB_KEY = "comfyui-job-key-fedcba9876543210"


@pytest.fixture
def comfy(monkeypatch: pytest.MonkeyPatch, r2_bucket: R2Settings) -> Iterator[ComfyUIDouble]:
    """The ComfyUI double, with the worker environment pointing at it and a fresh bucket."""
    with ComfyUIDouble() as double:
        point_worker_at(monkeypatch, double, r2_bucket)
        yield double


def _keys_sent(comfy: ComfyUIDouble) -> list[str | None]:
    return [(p.get("extra_data") or {}).get("api_key_comfy_org") for p in comfy.prompts]


def test_the_env_key_is_sent_with_every_prompt(
    comfy: ComfyUIDouble, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """COMFY_ORG_API_KEY goes out as extra_data.api_key_comfy_org; no log line shows it."""
    monkeypatch.setenv("COMFY_ORG_API_KEY", ENV_KEY)
    caplog.set_level("DEBUG")
    result = handler({"id": "k1", "input": {"workflow": GRAPH}})
    assert "error" not in result, result
    assert _keys_sent(comfy) == [ENV_KEY]
    assert ENV_KEY not in caplog.text
    assert ENV_KEY not in repr(result)


def test_a_job_key_wins_over_the_env_key_and_stays_out_of_history(
    comfy: ComfyUIDouble, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The job's comfy_org_api_key is the one sent; ComfyUI's history never holds it."""
    monkeypatch.setenv("COMFY_ORG_API_KEY", ENV_KEY)
    caplog.set_level("DEBUG")
    result = handler({"id": "k2", "input": {"workflow": GRAPH, "comfy_org_api_key": JOB_KEY}})
    assert "error" not in result, result
    assert _keys_sent(comfy) == [JOB_KEY]
    assert JOB_KEY not in caplog.text
    assert JOB_KEY not in requests.get(f"{comfy.url}/history", timeout=10).text


def test_no_key_means_no_extra_data(comfy: ComfyUIDouble) -> None:
    """Without a key the prompt carries no extra_data at all."""
    result = handler({"id": "k3", "input": {"workflow": GRAPH}})
    assert "error" not in result, result
    assert "extra_data" not in comfy.prompts[0]


def test_a_malformed_job_key_is_a_validation_error_that_does_not_echo_it(
    comfy: ComfyUIDouble,
) -> None:
    """A non-string or blank key is refused before anything is queued."""
    for bad in (123, "   ", ["k"]):
        result = handler({"id": "k4", "input": {"workflow": GRAPH, "comfy_org_api_key": bad}})
        assert result["error_type"] == "validation"
        assert "comfy_org_api_key" in result["error"]
    assert comfy.prompts == []
