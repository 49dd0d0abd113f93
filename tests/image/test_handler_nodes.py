"""The handler with the image's locked nodes: what a missing node class tells the operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from worker.handler import handler
from worker.r2 import R2Settings

from tests.fakes.comfyui import ComfyUIDouble
from tests.fakes.s3 import settings_env


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, r2_bucket: R2Settings) -> R2Settings:
    """The worker's R2 settings (a fresh bucket on the session's moto server)."""
    for name in ("R2_PUBLIC_BASE_URL", "JOB_TIMEOUT_S", "COMFY_ORG_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_env(r2_bucket).items():
        monkeypatch.setenv(name, value)
    return r2_bucket


def _point_at(monkeypatch: pytest.MonkeyPatch, double: ComfyUIDouble) -> None:
    monkeypatch.setenv("COMFY_URL", double.url)
    monkeypatch.setenv("COMFY_PID_FILE", str(double.pid_file))


@pytest.fixture
def bare_comfy(monkeypatch: pytest.MonkeyPatch, worker_env: R2Settings) -> Iterator[ComfyUIDouble]:
    """A ComfyUI double with no models, the worker pointed at it."""
    with ComfyUIDouble() as double:
        _point_at(monkeypatch, double)
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
