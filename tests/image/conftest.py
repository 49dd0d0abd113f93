"""Fixtures of the image tests: the sync daemon's rig (the sync modules) and the handler's
ComfyUI double and worker environment (the handler modules; a module may override them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker.r2 import R2Settings

from tests.fakes.comfyui import ComfyUIDouble
from tests.fakes.s3_proxy import fault_proxy
from tests.image.handler_support import ALL_MODELS, point_worker_at
from tests.image.sync_support import SyncRig


@pytest.fixture
def sync_rig(r2_bucket: R2Settings, s3_endpoint: str, tmp_path: Path) -> Iterator[SyncRig]:
    """Sync folders, a fault proxy in front of the session's moto server, and cleanup."""
    with fault_proxy(s3_endpoint) as proxy:
        rig = SyncRig(
            bucket=r2_bucket,
            proxy=proxy,
            via_proxy=dataclasses.replace(r2_bucket, endpoint=proxy.url),
            sync_dir=tmp_path / "output",
            state_dir=tmp_path / "state",
        )
        rig.sync_dir.mkdir()
        try:
            yield rig
        finally:
            for daemon in rig.daemons:
                if not daemon._stop.is_set():
                    daemon.stop()


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    """A ComfyUI double with every model the templates need."""
    with ComfyUIDouble(models=ALL_MODELS) as double:
        yield double


@pytest.fixture
def worker_env(
    monkeypatch: pytest.MonkeyPatch, comfy: ComfyUIDouble, r2_bucket: R2Settings
) -> R2Settings:
    """The worker environment pointing at the double and a fresh bucket."""
    point_worker_at(monkeypatch, comfy, r2_bucket)
    return r2_bucket


@pytest.fixture(scope="module")
def shared_comfy() -> Iterator[ComfyUIDouble]:
    """One double for the tests that must stop before ComfyUI runs anything."""
    with ComfyUIDouble(models=ALL_MODELS) as double:
        yield double


@pytest.fixture
def rejecting_env(
    monkeypatch: pytest.MonkeyPatch, shared_comfy: ComfyUIDouble, s3_endpoint: str
) -> ComfyUIDouble:
    """Worker environment for jobs that must fail validation (no bucket is ever written)."""
    bucket = R2Settings(
        endpoint=s3_endpoint,
        bucket="never-written",
        access_key_id="test-access-key",
        secret_access_key="test-secret-key",
        prefix="test/",
    )
    point_worker_at(monkeypatch, shared_comfy, bucket)
    return shared_comfy
