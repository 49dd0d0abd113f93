"""`ops models seed`: one job fills the network volume before traffic; no volume is a skip.
Also `ops smoke --expect-provider`, which the staging rollback drill checks the flag with."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import ContractWorker, check, invoke, invoke_json, ops_env

MakeEmulator = Callable[..., JobApiEmulator]
FAST = ["--poll-interval", "0.02"]


def outputs_file(tmp_path: Path, emu: JobApiEmulator, **extra: Any) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"comfyuiEndpointId": emu.endpoint_id, **extra}))
    return str(path)


def test_seeding_waits_for_the_worker_that_fills_the_volume(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """The first worker's start (the download, 0.4 s here) is in the seeding job's delay; the
    next seed finds a warm worker and is quick."""
    emu = make_emulator(echo_worker, workers=1, cold_start_s=0.4, idle_timeout_s=30)
    outputs = outputs_file(tmp_path, emu, comfyuiNetworkVolumeId="vol-123")
    code, doc = invoke_json(["models", "seed", "--outputs", outputs, *FAST], ops_env(emu))
    assert code == 0, doc
    seeded = check(doc, "models on the volume")
    assert seeded["status"] == "pass"
    assert "volume vol-123" in seeded["detail"]
    assert doc["summary"]["delayS"] >= 0.4
    code, doc = invoke_json(["models", "seed", "--outputs", outputs, *FAST], ops_env(emu))
    assert code == 0
    assert doc["summary"]["delayS"] < 0.4


def test_without_a_volume_there_is_nothing_to_seed(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """No comfyuiNetworkVolumeId output: a skip that says why, and no job sent."""
    emu = make_emulator(echo_worker)
    code, doc = invoke_json(
        ["models", "seed", "--outputs", outputs_file(tmp_path, emu), *FAST], ops_env(emu)
    )
    assert code == 0
    assert check(doc, "models on the volume")["status"] == "skip"
    assert emu.count("run") == 0


def test_a_worker_that_cannot_serve_fails_the_seed(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """A job that never completes within --timeout: a failure naming the job's state."""
    emu = make_emulator(lambda job: time.sleep(1) or {"ok": True}, workers=1)
    outputs = outputs_file(tmp_path, emu, comfyuiNetworkVolumeId="vol-123")
    args = ["models", "seed", "--outputs", outputs, "--timeout", "0.2", *FAST]
    code, doc = invoke_json(args, ops_env(emu))
    assert code == 1
    assert "did not complete: CLIENT_TIMEOUT" in check(doc, "models on the volume")["detail"]


def test_smoke_expect_provider_fails_on_the_other_provider(
    make_emulator: MakeEmulator, r2_bucket: Any
) -> None:
    """The drill's check: the flag must name the provider it just set."""
    emu = make_emulator(ContractWorker(r2_bucket, upload=False))
    flag = {"provider": "comfyui", "comfyuiPercent": 100, "endpointId": emu.endpoint_id}
    outputs = json.dumps({"comfyuiEndpointId": emu.endpoint_id, "rolloutFlag": json.dumps(flag)})
    base = ["smoke", *FAST, "--skip-r2", "--outputs", "-"]
    code, doc = invoke_json([*base, "--expect-provider", "scenario"], ops_env(emu), stdin=outputs)
    assert code == 1
    assert "expected 'scenario'" in check(doc, "rollback state")["detail"]
    code, doc = invoke_json([*base, "--expect-provider", "comfyui"], ops_env(emu), stdin=outputs)
    assert code == 0, doc["checks"]


REPO = Path(__file__).resolve().parents[2]
GB = 1e9


def test_the_cold_start_numbers_in_the_runbook_follow_the_manifest() -> None:
    """docs/rollout.md's cold-start table uses the sizes of image/models.toml for staging's
    model groups, and its sums add up; staging's volume holds those models."""
    import tomllib  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    from components.config import SCHEMA_BY_NAME  # noqa: PLC0415

    manifest = tomllib.loads((REPO / "image" / "models.toml").read_text(encoding="utf-8"))
    stack = yaml.safe_load((REPO / "Pulumi.staging.yaml").read_text(encoding="utf-8"))["config"]
    groups = str(
        stack.get(
            "comfyui-runpod:serverless.modelGroups",
            SCHEMA_BY_NAME["serverless.modelGroups"].default,
        )
    ).split(",")
    sizes = {
        entry["name"]: entry["size"]
        for entry in manifest["model"]
        if set(entry["groups"]) & set(groups)
    }
    flux, total = sizes["flux1-dev-fp8"], sum(sizes.values())
    runbook = (REPO / "docs" / "rollout.md").read_text(encoding="utf-8")
    section = runbook[runbook.index("### Cold starts on paper") :]
    section = " ".join(section[: section.index("\n## ")].split())
    assert f"FLUX.1-dev fp8 {flux / GB:.2f} GB" in section
    assert f"{total / GB:.2f} GB in all" in section
    other_steps = 5 + 2 + 15 + 5
    loads = [round(flux / (mb * 1e6)) for mb in (400, 300, 200)]
    assert f"| {' / '.join(map(str, loads))} |" in section
    assert f"**{' / '.join(str(other_steps + load) for load in loads)}**" in section
    assert f"the other steps take {other_steps} s" in section
    breakeven = flux / (90 - other_steps) / 1e6
    assert f"about {round(breakeven / 5) * 5} MB/s" in section
    assert stack["comfyui-runpod:serverless.networkVolumeGb"] * GB >= 2 * total
    assert stack["comfyui-runpod:serverless.networkVolumeDataCenterId"]


def test_a_negative_timeout_is_a_usage_error_before_any_job(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """`--timeout -1` is refused by the option itself (exit 2), no job sent."""
    emu = make_emulator(echo_worker, workers=1)
    args = ["models", "seed", "--outputs", outputs_file(tmp_path, emu), "--timeout", "-1"]
    result = invoke(args, ops_env(emu))
    assert result.exit_code == 2, result.output
    assert "--timeout" in result.output
    assert emu.count("run") == 0
