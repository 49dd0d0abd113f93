"""Fixtures of the image tests: the sync daemon's rig, shared by the sync test modules."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker.r2 import R2Settings

from tests.fakes.s3_proxy import fault_proxy
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
