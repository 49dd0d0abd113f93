"""Deploy simulation: the whole program for a stack, its RunPod resources really deployed.

`__main__.py` runs under the engine simulation with the committed stack file's values
(fake secrets), so the dynamic providers create and update objects in the RunPod
emulator, while cloud resources are echoed by the recording mocks. The RunPod components
are the ones the composition root declares itself: nothing is added here.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Mapping

import pytest

from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator
from tests.fakes.stack_values import ROOT, stack_values
from tests.provider.engine import EngineSimulation, run_up

# The first program run in a session pays for importing pulumi_cloudflare (~15 s).
pytestmark = pytest.mark.slow

MAIN = ROOT / "__main__.py"
ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
NEW_DIGEST = "sha256:" + "e" * 64
KV = "cloudflare:index/workersKv:WorkersKv"


def up(engine: EngineSimulation, stack: str, overrides: Mapping[str, str] | None = None) -> None:
    """One `pulumi up` of the whole program for `stack`."""
    config, secret_keys = stack_values(stack, overrides)

    def program() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    run_up(engine, program, stack=stack, config=config, secret_keys=secret_keys)


@pytest.fixture
def engine(emulator: RunPodEmulator) -> EngineSimulation:
    """The engine hands the providers this stack's runpod:apiKey, as configure() expects."""
    return EngineSimulation({"runpod:apiKey": DEFAULT_API_KEY})


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_stack_deploys_its_runpod_objects_and_a_rerun_makes_no_write(
    engine: EngineSimulation, emulator: RunPodEmulator, stack: str
) -> None:
    """First up creates the endpoint (and staging's video pod); an unchanged up writes nothing."""
    up(engine, stack)
    assert len(emulator.endpoints) == 1
    (endpoint,) = (emulator.endpoint(eid) for eid in emulator.endpoints)
    assert "@sha256:" in endpoint["image"]
    assert len(emulator.templates) == (1 if stack == "staging" else 0)
    assert endpoint["workers"]["min"] == (0 if stack == "staging" else 1)
    emulator.reset_log()
    up(engine, stack)
    assert emulator.writes() == []
    assert engine.changed() == []


def test_new_image_digest_is_exactly_one_patch_of_the_endpoint(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """Promoting a new digest in prod PATCHes the endpoint's image once, nothing else."""
    up(engine, "prod")
    emulator.reset_log()
    up(engine, "prod", {"image.digest": NEW_DIGEST})
    (write,) = emulator.writes()
    assert write.method == "PATCH"
    assert write.path.startswith("/v2/serverless/")
    assert set(write.body) == {"image"}
    assert write.body["image"].endswith("@" + NEW_DIGEST)
    # prod waits for the release (serverless.waitForRollout): `up` polled it after the PATCH.
    assert any(call.path.endswith("/releases") for call in emulator.calls("GET"))


def test_rollback_to_scenario_makes_no_runpod_call(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """`rollout.provider=scenario` flips the KV flag only: RunPod sees no request at all."""
    up(engine, "prod")
    emulator.reset_log()
    up(engine, "prod", {"rollout.provider": "scenario"})
    assert emulator.calls() == []
    assert engine.changed() == []
    (flag,) = engine.of_type(KV)
    assert json.loads(flag.inputs["value"])["provider"] == "scenario"


def test_network_volume_is_created_and_attached_when_configured(
    engine: EngineSimulation, emulator: RunPodEmulator
) -> None:
    """`serverless.networkVolumeGb` creates the volume and the endpoint mounts it there."""
    up(
        engine,
        "prod",
        {"serverless.networkVolumeGb": "150", "serverless.networkVolumeDataCenterId": "EU-RO-1"},
    )
    (volume,) = emulator.volumes.values()
    assert (volume["size"], volume["dataCenter"]) == (150, "EU-RO-1")
    (endpoint,) = (emulator.endpoint(eid) for eid in emulator.endpoints)
    assert endpoint["networkVolumes"] == [volume["id"]]
    assert endpoint["dataCenterIds"] == ["EU-RO-1"]
    assert endpoint["env"]["MODELS_DIR"].startswith("/runpod-volume/")
