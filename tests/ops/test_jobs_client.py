"""The job client: 429 backoff, error descriptions, timeouts, and no key in reprs."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ops.jobs import CLIENT_TIMEOUT, RATE_LIMITED, Backoff, JobClient, describe_error
from ops.target import StackOutputs, TargetError, resolve_target
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker

MakeEmulator = Callable[..., JobApiEmulator]


def client_for(emu: JobApiEmulator, **backoff: float) -> JobClient:
    return JobClient(
        base_url=emu.base_url,
        endpoint_id=emu.endpoint_id,
        api_key=emu.api_key,
        backoff=Backoff(**backoff) if backoff else Backoff(base_s=0.01, max_s=0.05),
    )


def test_backoff_honours_retry_after_but_caps_it() -> None:
    """Retry-After seconds are used as given, never above max_s; HTTP dates fall back."""
    policy = Backoff(base_s=1.0, max_s=5.0)
    assert policy.delay(0, "2") == 2.0
    assert policy.delay(0, "120") == 5.0
    assert 0.5 <= policy.delay(0, "Wed, 21 Oct 2026 07:28:00 GMT") <= 1.0


def test_backoff_without_retry_after_grows_exponentially_to_the_cap() -> None:
    """Each retry's ceiling doubles from base_s and stops at max_s."""
    policy = Backoff(base_s=0.5, max_s=4.0)
    assert 0.25 <= policy.delay(0, None) <= 0.5
    assert 2.0 <= policy.delay(3, None) <= 4.0
    assert 2.0 <= policy.delay(10, None) <= 4.0


def test_client_rides_out_a_short_429_storm(make_emulator: MakeEmulator) -> None:
    """A few 429s on /run are absorbed by backoff; the job completes and the 429s are counted."""
    emu = make_emulator(echo_worker)
    emu.inject_429(count=3)
    outcome = client_for(emu).run_and_wait({"x": 1}, timeout_s=5, poll_s=0.02)
    assert outcome.ok
    assert outcome.throttled == 3
    assert emu.count("run", 429) == 3


def test_client_gives_up_when_429s_outlast_its_retries(make_emulator: MakeEmulator) -> None:
    """Past max_retries the outcome is RATE_LIMITED, with no job submitted."""
    emu = make_emulator(echo_worker)
    emu.inject_429(seconds=30)
    client = client_for(emu, max_retries=2, base_s=0.01, max_s=0.02)
    outcome = client.run_and_wait({}, timeout_s=5, poll_s=0.02)
    assert outcome.status == RATE_LIMITED
    assert "429 3 times" in (outcome.error or "")
    assert emu.count("run", 429) == 3
    assert emu.count("run", 200) == 0


def test_client_timeout_cancels_the_job_and_suspects_a_cold_start(
    make_emulator: MakeEmulator,
) -> None:
    """A job still queued at the deadline is cancelled and reported with a cold-start hint."""
    emu = make_emulator(echo_worker)
    emu.pause_workers()
    outcome = client_for(emu).run_and_wait({}, timeout_s=0.2, poll_s=0.02)
    assert outcome.status == CLIENT_TIMEOUT
    assert "still IN_QUEUE" in (outcome.error or "")
    assert "cold start" in (outcome.error or "")
    assert outcome.job_id is not None
    assert emu.job(outcome.job_id).status == "CANCELLED"


def test_describe_error_reads_raised_and_returned_errors() -> None:
    """A raise's JSON string gives its message and class; a returned error keeps error_type."""
    raised = json.dumps(
        {
            "error_type": "<class 'torch.OutOfMemoryError'>",
            "error_message": "CUDA out of memory.\nTried to allocate 2 GiB",
            "error_traceback": "Traceback (most recent call last): ...",
        }
    )
    assert describe_error(raised, None) == ("CUDA out of memory.", "torch.OutOfMemoryError")
    returned = describe_error("model x not found", {"error_type": "missing_model"})
    assert returned == ("model x not found", "missing_model")
    assert describe_error(None, None) == (None, None)
    long_message, _ = describe_error("y" * 1000, None)
    assert long_message is not None
    assert len(long_message) == 300


def test_api_key_never_appears_in_reprs() -> None:
    """Neither the client nor the target prints the API key."""
    target = resolve_target(
        endpoint_id="ep1",
        api_key=None,
        base_url=None,
        outputs=StackOutputs({}),
        env={"RUNPOD_API_KEY": "rpa_SUPERSECRET"},
    )
    client = JobClient(base_url=target.base_url, endpoint_id="ep1", api_key=target.api_key)
    assert "SUPERSECRET" not in repr(target)
    assert "SUPERSECRET" not in repr(client)


def test_endpoint_id_precedence_is_flag_then_outputs_then_env() -> None:
    """--endpoint-id beats the stack outputs, which beat RUNPOD_COMFYUI_ENDPOINT_ID."""
    env = {"RUNPOD_API_KEY": "k", "RUNPOD_COMFYUI_ENDPOINT_ID": "from-env"}
    outputs = StackOutputs({"comfyuiEndpointId": "from-outputs"})

    def pick(flag: str | None, outs: StackOutputs) -> str:
        return resolve_target(
            endpoint_id=flag, api_key=None, base_url=None, outputs=outs, env=env
        ).endpoint_id

    assert pick("from-flag", outputs) == "from-flag"
    assert pick(None, outputs) == "from-outputs"
    assert pick(None, StackOutputs({})) == "from-env"


def test_base_url_defaults_to_runpod_and_honours_the_env() -> None:
    """RUNPOD_ENDPOINT_BASE_URL overrides https://api.runpod.ai/v2 (the job API host)."""
    base = {"RUNPOD_API_KEY": "k", "RUNPOD_COMFYUI_ENDPOINT_ID": "e"}
    default = resolve_target(
        endpoint_id=None, api_key=None, base_url=None, outputs=StackOutputs({}), env=base
    )
    assert default.base_url == "https://api.runpod.ai/v2"
    custom = resolve_target(
        endpoint_id=None,
        api_key=None,
        base_url=None,
        outputs=StackOutputs({}),
        env={**base, "RUNPOD_ENDPOINT_BASE_URL": "http://127.0.0.1:9/v2/"},
    )
    assert custom.base_url == "http://127.0.0.1:9/v2"


def test_missing_endpoint_and_key_name_every_way_to_give_them() -> None:
    """The error lists --endpoint-id, RUNPOD_COMFYUI_ENDPOINT_ID, --outputs and RUNPOD_API_KEY."""
    with pytest.raises(TargetError) as caught:
        resolve_target(
            endpoint_id=None, api_key=None, base_url=None, outputs=StackOutputs({}), env={}
        )
    message = str(caught.value)
    for hint in ("--endpoint-id", "RUNPOD_COMFYUI_ENDPOINT_ID", "--outputs -", "RUNPOD_API_KEY"):
        assert hint in message


def test_stack_outputs_are_read_by_tolerant_names() -> None:
    """The program's real output names, a JSON-string rolloutFlag, and [secret] placeholders."""
    outputs = StackOutputs.parse(
        json.dumps(
            {
                "comfyuiEndpointId": "ep-real",
                "imageDigest": "sha256:" + "a" * 64,
                "rolloutFlag": json.dumps(
                    {"provider": "comfyui", "comfyuiPercent": 10, "endpointId": "ep-flag"}
                ),
                "appR2SecretAccessKey": "[secret]",
                "bucketName": "assets-prod",
            }
        )
    )
    assert outputs.get("endpoint_id") == "ep-real"
    assert outputs.get("provider") == "comfyui"
    assert outputs.get("comfyui_percent") == 10
    assert outputs.get("image_digest") == "sha256:" + "a" * 64
    assert outputs.get("r2_secret_access_key") is None
    env = outputs.r2_env({"R2_BUCKET": "explicit"})
    assert env["R2_BUCKET"] == "explicit"
    assert "R2_SECRET_ACCESS_KEY" not in env


def test_stack_outputs_must_be_a_json_object() -> None:
    """Anything but `pulumi stack output --json` is refused with the command to use."""
    with pytest.raises(TargetError, match="pulumi stack output --json"):
        StackOutputs.parse("endpointId: x")
    assert StackOutputs.parse("").empty
