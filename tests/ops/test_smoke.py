"""`ops smoke` passes on a healthy endpoint and fails, saying why, on each broken part."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from worker.r2 import R2Settings

from ops.smoke import MALFORMED_INPUT, smoke_cases
from tests.fakes.runpod_jobs import JobApiEmulator
from tests.fakes.s3 import list_objects
from tests.ops.conftest import (
    FAST,
    ContractWorker,
    check,
    closed_port_url,
    invoke,
    invoke_json,
    ops_env,
)

MakeEmulator = Callable[..., JobApiEmulator]


def test_smoke_passes_on_a_healthy_endpoint_and_reads_every_key_back(
    make_emulator: MakeEmulator, contract_worker: ContractWorker, r2_bucket: R2Settings
) -> None:
    """Every checklist item passes; each returned key exists in R2 with the reported size."""
    emu = make_emulator(contract_worker)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 0, doc
    assert doc["ok"] is True
    names = [c["name"] for c in doc["checks"]]
    assert names == [
        "txt2img",
        "img2img",
        "background removal",
        "error handling",
        "R2 read-back",
        "rollback state",
    ]
    readback = check(doc, "R2 read-back")
    assert readback["status"] == "pass"
    stored = list_objects(r2_bucket)
    assert sorted(readback["data"]["keys"]) == sorted(stored)
    assert len(stored) == 3
    assert check(doc, "rollback state")["status"] == "skip"


def test_smoke_sends_the_job_contract_inputs(
    make_emulator: MakeEmulator, contract_worker: ContractWorker, r2_bucket: R2Settings
) -> None:
    """Each case names a contract template; img2img/background removal ship their image."""
    seen: list[dict[str, Any]] = []

    def recording(job: dict[str, Any]) -> dict[str, Any]:
        seen.append(job["input"])
        return contract_worker(job)

    emu = make_emulator(recording)
    invoke_json(["smoke", *FAST, "--video"], ops_env(emu, r2_bucket))
    templates = sorted(i["template"] for i in seen)
    assert templates == sorted(
        [
            "flux_txt2img",
            "flux_img2img",
            "remove_background",
            "wan22_t2v",
            MALFORMED_INPUT["template"],
        ]
    )
    for job_input in seen:
        if job_input["template"] in ("flux_img2img", "remove_background"):
            (image,) = job_input["images"]
            assert job_input["params"]["image"] == image["name"]
    assert len(smoke_cases(video=True)) == 4


def test_smoke_video_adds_a_wan_check_that_wants_a_video_output(
    make_emulator: MakeEmulator, contract_worker: ContractWorker, r2_bucket: R2Settings
) -> None:
    """--video runs WAN 2.2 T2V and requires an output of kind video."""
    emu = make_emulator(contract_worker)
    code, doc = invoke_json(["smoke", *FAST, "--video"], ops_env(emu, r2_bucket))
    assert code == 0, doc
    assert check(doc, "wan22 t2v")["status"] == "pass"
    assert any(k.endswith(".mp4") for k in list_objects(r2_bucket))


def test_smoke_fails_on_a_missing_model_and_names_it(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """Without the FLUX checkpoint each generation fails as missing_model, naming the file."""
    worker = ContractWorker(r2_bucket, missing_model="flux1-dev-fp8.safetensors")
    emu = make_emulator(worker)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 1
    txt2img = check(doc, "txt2img")
    assert txt2img["status"] == "fail"
    assert "FAILED (missing_model)" in txt2img["detail"]
    assert "flux1-dev-fp8.safetensors" in txt2img["detail"]
    assert check(doc, "R2 read-back")["status"] == "skip"


def test_smoke_fails_when_the_worker_cannot_reach_r2(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """Generations whose upload fails are reported as upload failures."""
    unreachable = replace(r2_bucket, endpoint=closed_port_url())
    emu = make_emulator(ContractWorker(unreachable))
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 1
    for name in ("txt2img", "img2img", "background removal"):
        result = check(doc, name)
        assert result["status"] == "fail"
        assert "(upload)" in result["detail"]
        assert "upload to R2 failed" in result["detail"]


def test_smoke_fails_when_a_returned_key_is_not_in_r2(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """A worker that reports keys it never uploaded is caught by the read-back."""
    emu = make_emulator(ContractWorker(r2_bucket, upload=False))
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 1
    readback = check(doc, "R2 read-back")
    assert readback["status"] == "fail"
    assert "3 of 3 object(s) unreadable" in readback["detail"]
    assert "NoSuchKey" in readback["detail"]


def test_smoke_fails_when_r2_is_unreachable_with_the_read_credentials(
    make_emulator: MakeEmulator, contract_worker: ContractWorker, r2_bucket: R2Settings
) -> None:
    """The read-back reports R2 unreachable when the app's R2 endpoint refuses connections."""
    emu = make_emulator(contract_worker)
    env = ops_env(emu, r2_bucket, R2_ENDPOINT=closed_port_url())
    code, doc = invoke_json(["smoke", *FAST], env)
    assert code == 1
    readback = check(doc, "R2 read-back")
    assert readback["status"] == "fail"
    assert "R2 unreachable" in readback["detail"]
    assert check(doc, "txt2img")["status"] == "pass"


def test_smoke_without_r2_credentials_fails_unless_skipped(
    make_emulator: MakeEmulator, contract_worker: ContractWorker
) -> None:
    """No R2_* settings: the read-back fails naming them; --skip-r2 turns it into a skip."""
    emu = make_emulator(contract_worker)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu))
    assert code == 1
    assert "R2_ENDPOINT" in check(doc, "R2 read-back")["detail"]
    code, doc = invoke_json(["smoke", *FAST, "--skip-r2"], ops_env(emu))
    assert code == 0
    assert check(doc, "R2 read-back")["status"] == "skip"


def test_smoke_takes_r2_read_credentials_from_the_stack_outputs(
    make_emulator: MakeEmulator, contract_worker: ContractWorker, r2_bucket: R2Settings
) -> None:
    """`pulumi stack output --json --show-secrets` piped in supplies endpoint, bucket and keys."""
    emu = make_emulator(contract_worker)
    outputs = {
        "comfyuiEndpointId": emu.endpoint_id,
        "s3Endpoint": r2_bucket.endpoint,
        "bucketName": r2_bucket.bucket,
        "appR2AccessKeyId": r2_bucket.access_key_id,
        "appR2SecretAccessKey": r2_bucket.secret_access_key,
    }
    env = ops_env(emu, RUNPOD_COMFYUI_ENDPOINT_ID="not-this-one")
    code, doc = invoke_json(["smoke", *FAST, "--outputs", "-"], env, stdin=json.dumps(outputs))
    assert code == 0, doc
    assert doc["endpointId"] == emu.endpoint_id
    assert check(doc, "R2 read-back")["status"] == "pass"


def test_smoke_fails_when_a_malformed_request_is_accepted(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """A handler that generates for an unknown template fails the error-handling check."""
    lenient = ContractWorker(r2_bucket)

    def accept_anything(job: dict[str, Any]) -> dict[str, Any]:
        job["input"]["template"] = "flux_txt2img"
        return lenient(job)

    emu = make_emulator(accept_anything)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 1
    assert "was accepted" in check(doc, "error handling")["detail"]


def test_smoke_fails_when_a_malformed_request_crashes_the_handler(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """A raise instead of a validation error fails the check and names the exception."""
    healthy = ContractWorker(r2_bucket)

    def crash_on_unknown(job: dict[str, Any]) -> dict[str, Any]:
        if job["input"]["template"] == MALFORMED_INPUT["template"]:
            raise KeyError(job["input"]["template"])
        return healthy(job)

    emu = make_emulator(crash_on_unknown)
    code, doc = invoke_json(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert code == 1
    detail = check(doc, "error handling")["detail"]
    assert "not rejected as a validation error" in detail
    assert "KeyError" in detail


def test_smoke_fails_when_output_breaks_the_contract(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """A COMPLETED job without outputs[].key is a failure, not a pass."""
    emu = make_emulator(lambda job: {"images": ["base64..."]})
    code, doc = invoke_json(["smoke", *FAST, "--skip-r2"], ops_env(emu, r2_bucket))
    assert code == 1
    assert "breaks the job contract" in check(doc, "txt2img")["detail"]


@pytest.mark.parametrize(
    ("flag", "status", "phrase"),
    [
        ({"provider": "comfyui", "comfyuiPercent": 10}, "pass", "provider=comfyui"),
        ({"provider": "scenario", "comfyuiPercent": 0}, "pass", "provider=scenario"),
        ({"provider": "comfyui", "comfyuiPercent": 150}, "fail", "not 0..100"),
        ({"provider": "replicate", "comfyuiPercent": 0}, "fail", "is not one of"),
        (
            {"provider": "comfyui", "comfyuiPercent": 50, "endpointId": "ep-other"},
            "fail",
            "sends traffic to endpoint ep-other",
        ),
    ],
)
def test_smoke_judges_the_rollback_state_from_the_stack_outputs(
    *,
    make_emulator: MakeEmulator,
    r2_bucket: R2Settings,
    flag: dict[str, Any],
    status: str,
    phrase: str,
) -> None:
    """The rolloutFlag output is reported with the rollback command, or failed when invalid."""
    emu = make_emulator(ContractWorker(r2_bucket, upload=False))
    outputs = {
        "comfyuiEndpointId": emu.endpoint_id,
        "rolloutFlag": json.dumps({"endpointId": emu.endpoint_id, "stack": "prod", **flag}),
    }
    code, doc = invoke_json(
        ["smoke", *FAST, "--skip-r2", "--outputs", "-"], ops_env(emu), stdin=json.dumps(outputs)
    )
    rollback = check(doc, "rollback state")
    assert rollback["status"] == status
    assert phrase in rollback["detail"]
    assert code == (0 if status == "pass" else 1)
    if status == "pass":
        assert rollback["data"]["rollbackCommand"] == (
            "pulumi config set rollout.provider scenario --stack prod && pulumi up --stack prod"
        )


@pytest.fixture
def flag_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local stand-in for the Cloudflare KV value URL; records request headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            body = json.dumps({"provider": "scenario", "comfyuiPercent": 0}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/values/flag", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_smoke_reads_the_kv_flag_when_given_its_url(
    make_emulator: MakeEmulator,
    contract_worker: ContractWorker,
    r2_bucket: R2Settings,
    flag_server: tuple[str, list[dict[str, str]]],
) -> None:
    """ROLLOUT_FLAG_URL wins over the outputs and is read with the Cloudflare token."""
    url, seen = flag_server
    emu = make_emulator(contract_worker)
    env = ops_env(emu, r2_bucket, ROLLOUT_FLAG_URL=url, CLOUDFLARE_API_TOKEN="cf-token")
    outputs = json.dumps(
        {"rolloutFlag": json.dumps({"provider": "comfyui", "comfyuiPercent": 100})}
    )
    code, doc = invoke_json(["smoke", *FAST, "--outputs", "-"], env, stdin=outputs)
    assert code == 0
    rollback = check(doc, "rollback state")
    assert rollback["data"]["source"] == "KV flag"
    assert rollback["data"]["provider"] == "scenario"
    assert seen[0]["Authorization"] == "Bearer cf-token"


def test_smoke_table_output_names_each_failure_for_people(
    make_emulator: MakeEmulator, r2_bucket: R2Settings
) -> None:
    """Without --json: a table with FAIL and the reason, and exit code 1."""
    emu = make_emulator(ContractWorker(r2_bucket, missing_model="flux1-dev-fp8.safetensors"))
    result = invoke(["smoke", *FAST], ops_env(emu, r2_bucket))
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    assert "missing_model" in result.stdout
    assert "a gate failed" in result.stdout


def test_smoke_without_an_endpoint_exits_2_with_one_json_error(
    make_emulator: MakeEmulator, contract_worker: ContractWorker
) -> None:
    """Missing configuration is exit 2 and still exactly one JSON document with --json."""
    emu = make_emulator(contract_worker)
    env = ops_env(emu, RUNPOD_COMFYUI_ENDPOINT_ID=None)
    code, doc = invoke_json(["smoke"], env)
    assert code == 2
    assert doc["ok"] is False
    assert "RUNPOD_COMFYUI_ENDPOINT_ID" in doc["error"]
