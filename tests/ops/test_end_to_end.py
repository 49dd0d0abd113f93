"""The gates end to end: job API emulator -> the real handler -> ComfyUI double -> moto S3.

The emulator's worker is ``worker.handler.handler`` itself, configured through the same
environment a RunPod worker gets, so these tests prove that ``ops smoke`` and ``ops canary``
pass on a healthy deployment and fail, for the stated reason, on each broken part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest
from worker.handler import handler
from worker.r2 import R2Settings

from tests.fakes.comfyui import ComfyUIDouble
from tests.fakes.runpod_jobs import JobApiEmulator
from tests.fakes.s3 import list_objects, settings_env
from tests.image.handler_support import ALL_MODELS
from tests.ops.conftest import FAST, check, closed_port_url, invoke_json, ops_env

MakeEmulator = Callable[..., JobApiEmulator]

MODELS = ALL_MODELS
"""Every model file the templates name (the handler tests' own list)."""
CANARY = ["canary", "--requests", "8", "--concurrency", "2", "--min-warm", "1", *FAST]


def start_comfy(models: Mapping[str, Sequence[str]]) -> Iterator[ComfyUIDouble]:
    with ComfyUIDouble(models=models) as double:
        yield double


@pytest.fixture
def comfy() -> Iterator[ComfyUIDouble]:
    """A ComfyUI double with every model the templates use."""
    yield from start_comfy(MODELS)


@pytest.fixture
def comfy_without_flux() -> Iterator[ComfyUIDouble]:
    """A ComfyUI double whose image was built without the FLUX checkpoint."""
    yield from start_comfy({k: v for k, v in MODELS.items() if k != "checkpoints"})


def point_worker_at(
    monkeypatch: pytest.MonkeyPatch, comfy: ComfyUIDouble, bucket: R2Settings
) -> None:
    """The worker environment RunPod would set, pointing at the double and the bucket."""
    for name in ("R2_PUBLIC_BASE_URL", "JOB_TIMEOUT_S", "INPUT_URL_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings_env(bucket).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COMFY_URL", comfy.url)
    monkeypatch.setenv("COMFY_PID_FILE", str(comfy.pid_file))


def test_smoke_and_canary_pass_on_a_healthy_deployment(
    make_emulator: MakeEmulator,
    comfy: ComfyUIDouble,
    r2_bucket: R2Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every checklist item passes with the real handler; every returned key is in the bucket."""
    point_worker_at(monkeypatch, comfy, r2_bucket)
    emu = make_emulator(handler, workers=2)
    code, doc = invoke_json(["smoke", "--video", *FAST], ops_env(emu, r2_bucket))
    assert code == 0, doc["checks"]
    assert check(doc, "error handling")["data"]["errorType"] == "validation"
    keys = check(doc, "R2 read-back")["data"]["keys"]
    assert len(keys) >= 4
    assert set(keys) <= set(list_objects(r2_bucket))
    assert any(key.endswith(".mp4") for key in keys)
    code, doc = invoke_json(CANARY, ops_env(emu, r2_bucket))
    assert code == 0, doc["checks"]
    assert doc["summary"]["completed"] == 8


def test_smoke_fails_on_a_missing_model_with_the_handlers_message(
    make_emulator: MakeEmulator,
    comfy_without_flux: ComfyUIDouble,
    r2_bucket: R2Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No FLUX checkpoint: txt2img and img2img fail as missing_model naming the file."""
    point_worker_at(monkeypatch, comfy_without_flux, r2_bucket)
    emu = make_emulator(handler, workers=2)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 1
    for name in ("txt2img", "img2img"):
        result = check(doc, name)
        assert result["status"] == "fail"
        assert "FAILED (missing_model)" in result["detail"]
        assert "flux1-dev-fp8.safetensors" in result["detail"]
    assert check(doc, "background removal")["status"] == "pass"


def test_smoke_fails_when_r2_is_unreachable_from_the_worker(
    make_emulator: MakeEmulator,
    comfy: ComfyUIDouble,
    r2_bucket: R2Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler's uploads are refused: each generation fails as an upload error."""
    unreachable = R2Settings(
        endpoint=closed_port_url(),
        bucket=r2_bucket.bucket,
        access_key_id=r2_bucket.access_key_id,
        secret_access_key=r2_bucket.secret_access_key,
        prefix=r2_bucket.prefix,
    )
    point_worker_at(monkeypatch, comfy, unreachable)
    emu = make_emulator(handler, workers=3)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, unreachable))
    assert code == 1
    for name in ("txt2img", "img2img", "background removal"):
        result = check(doc, name)
        assert result["status"] == "fail"
        assert "FAILED (upload)" in result["detail"]
    assert r2_bucket.secret_access_key not in str(doc)


def test_canary_fails_with_30_percent_failing_jobs_on_the_real_handler(
    make_emulator: MakeEmulator,
    comfy: ComfyUIDouble,
    r2_bucket: R2Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers crashing on 30 % of jobs drop the success rate to 70 %: the gate says so."""
    point_worker_at(monkeypatch, comfy, r2_bucket)
    emu = make_emulator(handler, workers=2, failure_rate=0.3)
    args = ["canary", "--requests", "10", "--concurrency", "2", *FAST]
    code, doc = invoke_json(args, ops_env(emu, r2_bucket))
    assert code == 1
    gate = check(doc, "success rate")
    assert gate["detail"].startswith("70.0 % (>= 98.0 % needed): 3 of 10 failed")


def test_canary_fails_on_slow_cold_starts_with_the_real_handler(
    make_emulator: MakeEmulator,
    comfy: ComfyUIDouble,
    r2_bucket: R2Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers that take 0.8 s to boot break a 0.5 s cold p95 gate, and only that gate."""
    point_worker_at(monkeypatch, comfy, r2_bucket)
    emu = make_emulator(handler, workers=2, cold_start_s=0.8)
    args = [*CANARY, "--cold-threshold", "0.5", "--max-cold-p95", "0.5"]
    code, doc = invoke_json(args, ops_env(emu, r2_bucket))
    assert code == 1
    assert check(doc, "cold p95 latency")["status"] == "fail"
    assert check(doc, "success rate")["status"] == "pass"


def test_canary_fails_under_a_429_storm_and_passes_after_it(
    make_emulator: MakeEmulator,
    comfy: ComfyUIDouble,
    r2_bucket: R2Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A storm longer than the retry budget fails the gate as rate limited; a short one does not."""
    point_worker_at(monkeypatch, comfy, r2_bucket)
    emu = make_emulator(handler, workers=2)
    quick = ["--max-retries", "2", "--backoff-base", "0.01", "--max-backoff", "0.02"]
    emu.inject_429(count=1000)
    code, doc = invoke_json([*CANARY, *quick], ops_env(emu, r2_bucket))
    assert code == 1
    assert "RATE_LIMITED (rate_limited)" in check(doc, "success rate")["detail"]
    emu.end_429_storms()
    # No more 429s than one request's retry budget (2), so no request can exhaust it however
    # the concurrent requests interleave.
    emu.inject_429(count=2)
    code, doc = invoke_json([*CANARY, *quick], ops_env(emu, r2_bucket))
    assert code == 0, doc["checks"]
    assert doc["summary"]["throttled429"] == 2
