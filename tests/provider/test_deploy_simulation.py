"""Deploy simulation: the whole program for a stack, its RunPod resources really deployed.

`__main__.py` runs under the engine simulation with the committed stack file's values
(fake secrets), so the dynamic providers create and update objects in the RunPod
emulator, while cloud resources are echoed by the recording mocks. Until the composition
root declares the RunPod components itself, `declare_runpod` adds them the way the
program is meant to (from the loaded `StackConfig`, the `OutputBucket` and the
`WorkerImage`), in the same run; once `__main__.py` declares `ComfyServerless` the
program's own wiring is used and `declare_runpod` is skipped.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Mapping
from typing import Any

import pytest

from components.serverless import ComfyServerless, ComfyServerlessArgs
from components.video_pod import VideoPod, VideoPodArgs
from tests.fakes.runpod_api import DEFAULT_API_KEY, RunPodEmulator
from tests.fakes.stack_values import ROOT, stack_values
from tests.provider.engine import EngineSimulation, run_up

# The first program run in a session pays for importing pulumi_cloudflare (~15 s).
pytestmark = pytest.mark.slow

MAIN = ROOT / "__main__.py"
ENDPOINT = "pulumi-python:dynamic/runpod:Endpoint"
NEW_DIGEST = "sha256:" + "e" * 64
KV = "cloudflare:index/workersKv:WorkersKv"


def main_declares_runpod() -> bool:
    """Whether the composition root wires the RunPod components itself."""
    return "ComfyServerless(" in MAIN.read_text(encoding="utf-8")


def declare_runpod(namespace: Mapping[str, Any]) -> None:
    """The RunPod part of the program, mapped from the objects `__main__.py` built."""
    cfg, bucket, image = namespace["cfg"], namespace["bucket"], namespace["image"]
    serverless = cfg.serverless
    shared: dict[str, Any] = {
        "image": image.image_ref,
        "r2_endpoint": bucket.s3_endpoint,
        "r2_bucket": bucket.bucket_name,
        "r2_prefix": bucket.prefix,
        "r2_access_key_id": bucket.worker_access_key_id,
        "r2_secret_access_key": bucket.worker_secret_access_key,
        "registry_username": cfg.image.registry_username or cfg.image.owner,
        "registry_token": cfg.image.registry_token,
        "hf_token": cfg.models.hf_token,
    }
    ComfyServerless(
        "comfyui",
        ComfyServerlessArgs(
            **shared,
            endpoint_name=serverless.name or None,
            gpu_pools=serverless.gpu_pools,
            gpu_count=serverless.gpu_count,
            workers_min=serverless.workers_min,
            workers_max=serverless.workers_max,
            idle_timeout_s=serverless.idle_timeout,
            scaling_type=serverless.scaler_type,
            scaling_value=serverless.scaler_value,
            flashboot=serverless.flashboot,
            container_disk_gb=serverless.container_disk_gb,
            job_timeout_s=serverless.job_timeout_seconds,
            execution_timeout_ms=(serverless.job_timeout_seconds + 60) * 1000,
            model_groups=tuple(serverless.model_groups.split(",")),
            data_center_ids=serverless.data_center_ids,
        ),
    )
    if cfg.video_pod.enabled:
        VideoPod(
            "video",
            VideoPodArgs(
                **shared,
                data_center_id=cfg.video_pod.data_center_id,
                volume_size_gb=cfg.video_pod.volume_gb,
                container_disk_gb=cfg.video_pod.container_disk_gb,
                model_groups=tuple(cfg.video_pod.model_groups.split(",")),
            ),
        )


def up(engine: EngineSimulation, stack: str, overrides: Mapping[str, str] | None = None) -> None:
    """One `pulumi up` of the whole program for `stack`."""
    config, secret_keys = stack_values(stack, overrides)

    def program() -> None:
        namespace = runpy.run_path(str(MAIN), run_name="__main__")
        if not main_declares_runpod():
            declare_runpod(namespace)

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
