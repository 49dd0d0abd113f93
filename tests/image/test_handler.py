"""The serverless handler end to end: the ComfyUI double on loopback and moto's S3 server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from runpod.serverless.modules import rp_job
from worker import fetch
from worker import handler as handler_module
from worker.handler import handler
from worker.r2 import R2Settings, make_client

from tests.fakes.comfyui import ComfyUIDouble, Fault
from tests.fakes.s3 import list_objects
from tests.image.handler_support import (
    PNG,
    PNG_B64,
    WAN_FILES,
    WEIGHTS_FREE,
    point_worker_at,
    runpod_job,
)


def allow_test_server(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Let fetches reach exactly this loopback server (production allows public addresses
    only, and no setting changes that)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    policy = fetch.AddressPolicy(
        allowed_for_tests=fetch.ADDRESS_POLICY.allowed_for_tests | {(parts.hostname, parts.port)}
    )
    monkeypatch.setattr(fetch, "ADDRESS_POLICY", policy)


def _fetch(url: str) -> bytes:
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    return answer.content


TEMPLATE_JOBS = {
    "flux_txt2img": {"template": "flux_txt2img", "params": {"prompt": "a red potion bottle"}},
    "flux_img2img": {
        "template": "flux_img2img",
        "params": {"prompt": "watercolour", "strength": 0.5},
        "images": [{"name": "chest.png", "image": PNG_B64}],
    },
    "remove_background": {
        "template": "remove_background",
        "images": [{"name": "hero.png", "image": PNG_B64}],
    },
    "wan22_t2v": {"template": "wan22_t2v", "params": {"prompt": "a fox runs", "frames": 33}},
    "wan22_t2v_full": {
        "template": "wan22_t2v",
        "params": {"prompt": "a fox runs", "fast": False, "steps": 8},
    },
}


@pytest.mark.parametrize("name", sorted(TEMPLATE_JOBS))
def test_every_template_lands_its_outputs_in_the_bucket_with_working_urls(
    name: str, comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """Each template runs end to end; every output is in R2 and its URL serves its bytes."""
    result = handler(runpod_job(TEMPLATE_JOBS[name], job_id=f"job-{name}"))
    assert "error" not in result, result
    assert result["outputs"], result
    stored = list_objects(worker_env)
    for output in result["outputs"]:
        assert output["key"].startswith(f"test/jobs/job-{name}/")
        assert output["key"] in stored
        (local,) = comfy.output_dir.rglob(output["filename"])
        assert local.relative_to(comfy.output_dir).parts[:2] == (
            "jobs",
            local.relative_to(comfy.output_dir).parts[1],
        )
        assert output["key"].endswith(
            local.relative_to(comfy.output_dir).as_posix().split("/", 2)[2]
        )
        assert _fetch(output["url"]) == local.read_bytes()
        assert output["bytes"] == local.stat().st_size
    kinds = {o["kind"] for o in result["outputs"]}
    assert kinds == ({"video"} if name.startswith("wan") else {"image"})
    assert set(result["timings"]) >= {"queue_ms", "run_ms", "upload_ms"}
    assert result["prompt_id"] in comfy.history()


def test_template_params_reach_the_graph_comfyui_runs(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """Prompt, seed, size and the derived WAN step split land on the right node inputs."""
    handler(
        runpod_job({"template": "flux_txt2img", "params": {"prompt": "p", "seed": 7, "width": 512}})
    )
    handler(
        runpod_job(
            {"template": "wan22_t2v", "params": {"prompt": "w", "steps": 6, "fps": 24}}, "j2"
        )
    )
    flux, wan = (body["prompt"] for body in comfy.prompts)
    assert flux["2"]["inputs"]["text"] == "p"
    assert flux["6"]["inputs"]["seed"] == 7
    assert flux["5"]["inputs"]["width"] == 512
    assert wan["12"]["inputs"]["end_at_step"] == 3
    assert wan["13"]["inputs"]["start_at_step"] == 3
    assert wan["15"]["inputs"]["fps"] == 24
    assert wan["3"]["class_type"] == "LoraLoaderModelOnly"


def test_img2img_uploads_the_input_image_before_queueing(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """The base64 image goes through /upload/image and LoadImage names the stored file."""
    result = handler(runpod_job(TEMPLATE_JOBS["flux_img2img"]))
    assert "error" not in result, result
    (stored,) = comfy.input_dir.rglob("chest.png")
    assert stored.read_bytes() == PNG
    name = comfy.prompts[0]["prompt"]["5"]["inputs"]["image"]
    assert re.fullmatch(r"jobs/job-1-[0-9a-f]{8}/chest\.png", name)
    assert stored == comfy.input_dir / name


def test_input_image_from_a_url_is_downloaded(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image URL is fetched (http allowed only by INPUT_URL_ALLOW_HTTP) and uploaded."""
    with _image_server(PNG) as url:
        allow_test_server(monkeypatch, url)
        monkeypatch.setenv("INPUT_URL_ALLOW_HTTP", "1")
        payload = {
            "template": "remove_background",
            "images": [{"name": "remote.png", "image": url}],
        }
        result = handler(runpod_job(payload))
    assert "error" not in result, result
    (stored,) = comfy.input_dir.rglob("remote.png")
    assert stored.read_bytes() == PNG


def test_plain_http_image_urls_are_refused_by_default(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """Without INPUT_URL_ALLOW_HTTP only https URLs are fetched."""
    payload = {
        "template": "remove_background",
        "images": [{"name": "a.png", "image": "http://127.0.0.1:9/a.png"}],
    }
    result = handler(runpod_job(payload))
    assert result["error_type"] == "validation"
    assert "https" in result["error"]
    assert comfy.prompts == []


def test_oversized_input_image_is_rejected_before_comfyui_sees_it(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_INPUT_IMAGE_BYTES bounds decoded images; the message names the limit."""
    monkeypatch.setenv("MAX_INPUT_IMAGE_BYTES", "1000")
    big = base64.b64encode(PNG + b"\x00" * 5000).decode()
    result = handler(
        runpod_job({"template": "remove_background", "images": [{"name": "b.png", "image": big}]})
    )
    assert result["error_type"] == "validation"
    assert "MAX_INPUT_IMAGE_BYTES" in result["error"]
    assert comfy.uploads == []


def test_oversized_downloaded_image_is_cut_off(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL whose body exceeds the limit fails validation instead of filling memory."""
    monkeypatch.setenv("INPUT_URL_ALLOW_HTTP", "true")
    monkeypatch.setenv("MAX_INPUT_IMAGE_BYTES", "2000")
    with _image_server(PNG + b"\x00" * 10_000) as url:
        allow_test_server(monkeypatch, url)
        payload = {"template": "remove_background", "images": [{"name": "c.png", "image": url}]}
        result = handler(runpod_job(payload))
    assert result["error_type"] == "validation"
    assert "limit" in result["error"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("not an object", "input must be an object"),
        ({}, "exactly one of workflow"),
        ({"workflow": WEIGHTS_FREE, "template": "flux_txt2img"}, "exactly one of workflow"),
        ({"template": "sdxl"}, "known templates: flux_img2img, flux_txt2img"),
        ({"template": "flux_txt2img", "params": {}}, "needs params.prompt"),
        ({"template": "flux_txt2img", "params": {"prompt": "x", "width": 1000}}, "multiple of 16"),
        ({"template": "flux_txt2img", "params": {"prompt": "x", "steps": "20"}}, "integer"),
        ({"template": "flux_txt2img", "params": {"prompt": "x", "steps": 500}}, "<= 100"),
        ({"template": "flux_txt2img", "params": {"prompt": "x", "cfg": 2}}, "no parameter cfg"),
        ({"template": "wan22_t2v", "params": {"prompt": "x", "frames": 80}}, "4n+1"),
        ({"template": "flux_img2img", "params": {"prompt": "x"}}, "needs an input image"),
        (
            {"template": "flux_img2img", "params": {"prompt": "x", "image": "other.png"}},
            "but images has",
        ),
        ({"template": "remove_background", "images": [{"name": "../x.png", "image": "a"}]}, "name"),
        ({"template": "remove_background", "images": [{"name": "x.png", "image": "!!"}]}, "base64"),
        (
            {
                "template": "remove_background",
                "images": [{"name": "x.png", "image": base64.b64encode(b"hello").decode()}],
            },
            "not a PNG",
        ),
        ({"workflow": {"1": {"inputs": {}}}}, "class_type"),
        ({"workflow": WEIGHTS_FREE, "extra": 1}, "unknown field"),
    ],
)
def test_bad_input_is_a_validation_error_a_person_can_act_on(
    payload: Any, fragment: str, rejecting_env: ComfyUIDouble
) -> None:
    """Invalid jobs fail with error_type validation, a pointed message, and no prompt queued."""
    before = (len(rejecting_env.prompts), len(rejecting_env.uploads))
    result = handler(runpod_job(payload))
    assert result["error_type"] == "validation", result
    assert fragment in result["error"]
    assert (len(rejecting_env.prompts), len(rejecting_env.uploads)) == before


def test_comfyui_validation_errors_come_back_as_validation(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """A raw workflow ComfyUI rejects (bad link type) names the node and the problem."""
    graph = json.loads(json.dumps(WEIGHTS_FREE))
    graph["2"]["inputs"]["image"] = ["3", 0]
    result = handler(runpod_job({"workflow": graph}))
    assert result["error_type"] == "validation"
    assert "node 2 (ImageInvert)" in result["error"]


def test_missing_model_lists_what_the_loader_has_installed(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """value_not_in_list on a loader becomes missing_model with /object_info's file list."""
    models = {**WAN_FILES, "loras": ["some_other_lora.safetensors"]}
    with ComfyUIDouble(models=models) as double:
        point_worker_at(monkeypatch, double, worker_env)
        result = handler(runpod_job(TEMPLATE_JOBS["wan22_t2v"]))
    assert result["error_type"] == "missing_model"
    assert "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors" in result["error"]
    assert "installed: some_other_lora.safetensors" in result["error"]
    assert "(model group wan22_t2v_fast)" in result["error"]
    assert "MODEL_GROUPS" in result["error"]


def test_missing_model_reads_v3_combo_lists(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Core V3 loaders (["COMBO", {"options"}]) report their installed files too."""
    with ComfyUIDouble(models={"background_removal": ["rmbg-2.0.safetensors"]}) as double:
        point_worker_at(monkeypatch, double, worker_env)
        result = handler(runpod_job(TEMPLATE_JOBS["remove_background"]))
    assert result["error_type"] == "missing_model"
    assert "installed: rmbg-2.0.safetensors" in result["error"]


@pytest.mark.parametrize("style", ["missing_node_type", "invalid_prompt"])
def test_unknown_node_class_is_missing_node_in_both_comfyui_wordings(
    style: str, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newer (missing_node_type) and 0.3.6x (invalid_prompt) answers both map to missing_node."""
    graph = json.loads(json.dumps(WEIGHTS_FREE))
    graph["2"]["class_type"] = "WanVideoSampler"
    with ComfyUIDouble(missing_node_error=style) as double:
        point_worker_at(monkeypatch, double, worker_env)
        result = handler(runpod_job({"workflow": graph}))
    assert result["error_type"] == "missing_node"
    assert "WanVideoSampler" in result["error"]


def test_execution_error_is_comfy_error_with_the_failing_node(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """execution_error becomes comfy_error naming the node and the exception."""
    comfy.fault = Fault.EXECUTION_ERROR
    result = handler(runpod_job(TEMPLATE_JOBS["flux_txt2img"]))
    assert result["error_type"] == "comfy_error"
    assert "node 6 (KSampler)" in result["error"]
    assert "RuntimeError" in result["error"]
    assert "refresh_worker" not in result
    assert list_objects(worker_env) == {}


def test_out_of_memory_advises_a_larger_gpu_pool(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """A CUDA OOM during execution is out_of_memory with advice to pick a larger GPU."""
    comfy.fault = Fault.OUT_OF_MEMORY
    result = handler(runpod_job(TEMPLATE_JOBS["wan22_t2v"]))
    assert result["error_type"] == "out_of_memory"
    assert "larger GPU pool" in result["error"]


def test_job_timeout_interrupts_comfyui_and_the_next_job_runs(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hang past JOB_TIMEOUT_S is interrupted and reported; the worker stays usable."""
    comfy.fault = Fault.HANG
    monkeypatch.setenv("JOB_TIMEOUT_S", "1")
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert result["error_type"] == "timeout"
    assert "JOB_TIMEOUT_S=1" in result["error"]
    assert comfy.interrupts >= 1
    assert "refresh_worker" not in result  # ComfyUI obeyed the interrupt
    comfy.fault = Fault.OK
    assert "error" not in handler(runpod_job({"workflow": WEIGHTS_FREE}, "job-2"))


def test_comfyui_deaf_to_the_interrupt_gets_the_worker_replaced(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If ComfyUI ignores the timeout's interrupt, the result asks RunPod for a new worker."""
    comfy.fault = Fault.STUCK
    monkeypatch.setenv("JOB_TIMEOUT_S", "1")
    monkeypatch.setenv("INTERRUPT_GRACE_S", "0.5")
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert result["error_type"] == "timeout"
    assert result["refresh_worker"] is True


def test_comfyui_crash_mid_run_asks_runpod_for_a_new_worker(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """When ComfyUI dies during a job the handler fails fast with refresh_worker."""
    comfy.fault = Fault.CRASH
    started = time.monotonic()
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert result["error_type"] == "comfy_error"
    assert result["refresh_worker"] is True
    assert "crashed" in result["error"]
    assert time.monotonic() - started < 10


def test_refresh_worker_reaches_runpod_as_stop_pod(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """The runpod SDK turns the crash result into a FAILED job that stops the worker."""
    comfy.fault = Fault.CRASH
    run_result = asyncio.run(rp_job.run_job(handler, runpod_job({"workflow": WEIGHTS_FREE})))
    assert "crashed" in run_result["error"]
    assert run_result["stopPod"] is True


def test_cold_start_waits_for_a_late_comfyui(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ComfyUI still booting (process alive, port refusing) is waited for, not failed."""
    with ComfyUIDouble(start_delay=1.5) as double:
        point_worker_at(monkeypatch, double, worker_env)
        result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert "error" not in result, result
    assert result["timings"]["comfy_wait_ms"] >= 1000


def test_comfyui_dying_during_boot_fails_fast(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If ComfyUI's process dies before it answers, the job fails at once, not at a timeout."""
    with ComfyUIDouble(start_delay=60) as double:
        point_worker_at(monkeypatch, double, worker_env)
        killer = threading.Timer(0.3, double.crash)
        killer.start()
        started = time.monotonic()
        result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
        killer.join()
    assert result["error_type"] == "comfy_error"
    assert result["refresh_worker"] is True
    assert "exited before it came up" in result["error"]
    assert time.monotonic() - started < 30


def test_vhs_gifs_audio_and_core_video_are_all_collected(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """VHS `gifs`, `audio` and `animated` SaveVideo outputs are uploaded, not dropped."""
    (comfy.input_dir / "voice.flac").write_bytes(b"fLaC" + b"\x00" * 100)
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 4, "color": 0},
        },
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "loop_count": 0,
                "filename_prefix": "vhs",
                "format": "video/h264-mp4",
                "pingpong": False,
                "save_output": True,
            },
        },
        "3": {"class_type": "LoadAudio", "inputs": {"audio": "voice.flac"}},
        "4": {
            "class_type": "SaveAudio",
            "inputs": {"audio": ["3", 0], "filename_prefix": "audio/a"},
        },
        "5": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8}},
        "6": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["5", 0],
                "filename_prefix": "video/v",
                "format": "auto",
                "codec": "auto",
            },
        },
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    result = handler(runpod_job({"workflow": graph}))
    assert "error" not in result, result
    by_node = {o["node_id"]: o for o in result["outputs"]}
    assert set(by_node) == {"2", "4", "6"}  # the temp preview is not a result
    assert by_node["2"]["kind"] == "video"
    assert by_node["2"]["content_type"] == "video/mp4"
    assert by_node["4"]["kind"] == "audio"
    assert by_node["4"]["content_type"] == "audio/flac"
    assert by_node["6"]["kind"] == "video"
    assert by_node["6"]["key"] == "test/jobs/job-1/video/v_00001_.mp4"
    stored = list_objects(worker_env)
    assert all(o["key"] in stored for o in result["outputs"])
    head = make_client(worker_env).head_object(Bucket=worker_env.bucket, Key=by_node["4"]["key"])
    assert head["ContentType"] == "audio/flac"


def test_large_outputs_go_up_multipart_and_come_back_as_urls(
    worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20 MB output is uploaded in uniform parts; the result is a URL, never base64."""
    with ComfyUIDouble(output_bytes=20 * 1024 * 1024) as double:
        point_worker_at(monkeypatch, double, worker_env)
        result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert "error" not in result, result
    (output,) = result["outputs"]
    assert output["bytes"] == 20 * 1024 * 1024
    assert list_objects(worker_env)[output["key"]]["ETag"].endswith("-2")
    assert len(json.dumps(result)) < 4096


def test_uploads_run_concurrently(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four outputs are in flight at once: a four-party barrier inside the upload passes."""
    barrier = threading.Barrier(4, timeout=10)
    real_put = handler_module._put

    def put_after_barrier(*args: Any, **kwargs: Any) -> str:
        barrier.wait()  # raises BrokenBarrierError if uploads were sequential
        return real_put(*args, **kwargs)

    monkeypatch.setattr(handler_module, "_put", put_after_barrier)
    result = handler(
        runpod_job({"template": "flux_txt2img", "params": {"prompt": "x", "batch_size": 4}})
    )
    assert "error" not in result, result
    assert len(result["outputs"]) == 4


def test_uploaded_outputs_leave_the_local_disk_only_when_asked(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With COMFY_OUTPUT_DIR set, uploaded files are deleted locally; without it, kept."""
    kept = handler(runpod_job({"workflow": WEIGHTS_FREE}, "keep"))["outputs"][0]
    (kept_file,) = comfy.output_dir.rglob(kept["filename"])
    monkeypatch.setenv("COMFY_OUTPUT_DIR", str(comfy.output_dir))
    removed = handler(runpod_job(TEMPLATE_JOBS["wan22_t2v"], "drop"))["outputs"][0]
    assert removed["key"] in list_objects(worker_env)
    assert list(comfy.output_dir.rglob(removed["filename"])) == []
    assert not any(p.name.startswith("drop-") for p in (comfy.output_dir / "jobs").iterdir())
    assert kept_file.exists()


def test_public_base_url_replaces_presigned_urls(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With R2_PUBLIC_BASE_URL set, URLs are that base plus the object key."""
    monkeypatch.setenv("R2_PUBLIC_BASE_URL", "https://assets.example.com/")
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}, "job 7/a"))
    (output,) = result["outputs"]
    assert output["key"] == "test/jobs/job_7_a/t_00001_.png"
    assert output["url"] == "https://assets.example.com/test/jobs/job_7_a/t_00001_.png"


def test_presigned_url_expiry_follows_the_environment(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R2_URL_EXPIRY_S sets the presigned URL lifetime."""
    monkeypatch.setenv("R2_URL_EXPIRY_S", "120")
    (output,) = handler(runpod_job({"workflow": WEIGHTS_FREE}))["outputs"]
    assert "X-Amz-Expires=120" in output["url"]
    (local,) = comfy.output_dir.rglob("t_00001_.png")
    assert _fetch(output["url"]) == local.read_bytes()


def test_settings_are_read_per_job(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing R2_PREFIX between jobs changes where the next job's outputs land."""
    first = handler(runpod_job({"workflow": WEIGHTS_FREE}, "a"))["outputs"][0]["key"]
    monkeypatch.setenv("R2_PREFIX", "other")
    second = handler(runpod_job({"workflow": WEIGHTS_FREE}, "b"))["outputs"][0]["key"]
    assert first.startswith("test/jobs/a/")
    assert second.startswith("other/jobs/b/")


def test_missing_r2_settings_fail_before_any_gpu_work(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without R2 credentials the job fails as upload, naming the variable, queueing nothing."""
    monkeypatch.delenv("R2_SECRET_ACCESS_KEY")
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert result["error_type"] == "upload"
    assert "R2_SECRET_ACCESS_KEY" in result["error"]
    assert comfy.prompts == []


def test_upload_failure_is_reported_as_upload(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket that refuses the write gives error_type upload without leaking credentials."""
    monkeypatch.setenv("R2_BUCKET", "no-such-bucket")
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert result["error_type"] == "upload"
    assert "NoSuchBucket" in result["error"]
    assert worker_env.secret_access_key not in result["error"]


def test_bad_worker_setting_names_the_variable(
    comfy: ComfyUIDouble, worker_env: R2Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A garbled JOB_TIMEOUT_S is reported with the variable and its allowed range."""
    monkeypatch.setenv("JOB_TIMEOUT_S", "soon")
    result = handler(runpod_job({"workflow": WEIGHTS_FREE}))
    assert result["error_type"] == "validation"
    assert "JOB_TIMEOUT_S" in result["error"]


def test_workflow_without_saved_files_is_reported(
    comfy: ComfyUIDouble, worker_env: R2Settings
) -> None:
    """A graph whose only output is a preview finishes with a clear comfy_error."""
    graph = {
        "1": WEIGHTS_FREE["1"],
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    result = handler(runpod_job({"workflow": graph}))
    assert result["error_type"] == "comfy_error"
    assert "saved no files" in result["error"]


class _Serve(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()  # no Content-Length: the handler must cap the stream itself
        self.wfile.write(self.body)

    def log_message(self, *_: Any) -> None:
        return


class _image_server:  # noqa: N801 - used like a function in `with`
    def __init__(self, body: bytes) -> None:
        handler_class = type("Serve", (_Serve,), {"body": body})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/image.png"

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_importing_the_handler_starts_nothing() -> None:
    """Import reads no settings and loads no runpod SDK (it parses argv and starts threads)."""
    code = (
        "import sys, worker.handler; "
        "assert 'runpod' not in sys.modules, 'runpod imported at import time'"
    )
    image_dir = Path(handler_module.__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(image_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
