"""The engine simulation honours `protect` as Pulumi's engine does.

Volumes and the bucket hold data and are registered protected; a simulation that deleted
or replaced them anyway would let a test pass on a plan the real engine refuses. The rules
(pulumi/pulumi `pkg/resource/deploy/step_generator.go`, `step.go`): a replacement is refused
while the stored and the new registration are both protected, unprotecting and replacing
in one `up` is allowed, and a resource dropped from the program is not deleted while its
stored registration is protected.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.runpod import NetworkVolume
from tests.fakes.runpod_api import RunPodEmulator
from tests.provider.engine import EngineSimulation, ProtectedResourceError, run_up

VOLUME = "pulumi-python:dynamic/runpod:NetworkVolume::models"


def volumes(*, protect: bool = True, data_center: str = "EU-RO-1", declared: bool = True) -> Any:
    def declare() -> None:
        if declared:
            NetworkVolume(
                "models",
                name="models",
                size_gb=50,
                data_center_id=data_center,
                opts=pulumi.ResourceOptions(protect=protect),
            )

    return declare


def test_a_protected_volume_dropped_from_the_program_is_kept(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """The up fails naming it, no DELETE reaches RunPod, state keeps it; unprotected in
    one up, it can be dropped in the next."""
    run_up(engine, volumes())
    (volume_id,) = emulator.volumes
    emulator.reset_log()
    with pytest.raises(ProtectedResourceError, match="cannot be deleted because it is protected"):
        run_up(engine, volumes(declared=False))
    assert emulator.writes() == []
    assert list(emulator.volumes) == [volume_id]
    assert engine.state[VOLUME].id == volume_id

    run_up(engine, volumes(protect=False))
    run_up(engine, volumes(declared=False))
    assert emulator.volumes == {}


def test_a_protected_volume_is_never_replaced(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """A new data center plans a replacement, which protection refuses before any call;
    dropping `protect` in the same up lets it through, as the engine allows."""
    run_up(engine, volumes())
    (volume_id,) = emulator.volumes
    emulator.reset_log()
    with pytest.raises(ProtectedResourceError, match="unable to replace resource"):
        run_up(engine, volumes(data_center="US-KS-2"))
    assert emulator.writes() == []
    assert emulator.volumes[volume_id]["dataCenter"] == "EU-RO-1"

    run_up(engine, volumes(protect=False, data_center="US-KS-2"))
    (moved,) = emulator.volumes.values()
    assert moved["dataCenter"] == "US-KS-2"
    assert moved["id"] != volume_id


def test_protect_is_inherited_from_the_component(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """A child of a protected component is protected too (Pulumi's default)."""

    def declare() -> None:
        parent = pulumi.ComponentResource(
            "test:index:Holder", "holder", opts=pulumi.ResourceOptions(protect=True)
        )
        NetworkVolume(
            "models",
            name="models",
            size_gb=50,
            data_center_id="EU-RO-1",
            opts=pulumi.ResourceOptions(parent=parent),
        )

    run_up(engine, declare)
    with pytest.raises(ProtectedResourceError):
        run_up(engine, lambda: None)
    assert len(emulator.volumes) == 1
