"""The job client: 429 backoff, error descriptions, timeouts, and no key in reprs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ops.jobs import (
    CLIENT_TIMEOUT,
    RATE_LIMITED,
    REQUEST_ERROR,
    USER_AGENT,
    Backoff,
    JobApiError,
    JobClient,
    describe_error,
    outcome_from_status,
)
from ops.target import StackOutputs, TargetError, resolve_target
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import invoke_json

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


def test_stack_outputs_are_read_by_the_programs_names() -> None:
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


def test_stack_outputs_are_read_by_exact_name_only() -> None:
    """Names the program does not export are not read: no aliases, no case folding, no
    search inside other outputs (only rolloutFlag's fields are read from inside it)."""
    outputs = StackOutputs(
        {
            "endpointId": "alias",
            "ComfyuiEndpointId": "case",
            "rollout": {"provider": "comfyui", "comfyuiPercent": 10, "stack": "prod"},
            "provider": "comfyui",
        }
    )
    assert outputs.get("endpoint_id") is None
    assert outputs.get("provider") is None
    assert outputs.get("comfyui_percent") is None
    assert outputs.get("stack") is None
    assert outputs.flag() is None


def test_stack_outputs_must_be_a_json_object() -> None:
    """Anything but `pulumi stack output --json` is refused with the command to use."""
    with pytest.raises(TargetError, match="pulumi stack output --json"):
        StackOutputs.parse("endpointId: x")
    assert StackOutputs.parse("").empty


# -- a job API that answers oddly -----------------------------------------------------------


class OddJobApi:
    """A loopback job API answering canned bodies per route, recording request headers."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                api.headers.append(dict(self.headers))
                api.paths.append(self.path)
                route = self.path.rstrip("/").split("/")[3]
                status, body = api.answers.get(route, (404, {"error": "not found"}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's method names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        self.host = f"{host!s}:{port}"
        self.base_url = f"http://{self.host}/v2"

    def client(self, endpoint_id: str = "ep-odd") -> JobClient:
        return JobClient(
            base_url=self.base_url,
            endpoint_id=endpoint_id,
            api_key="fake-key",
            backoff=Backoff(max_retries=0, base_s=0.01, max_s=0.01),
        )


@pytest.fixture
def odd_api() -> Iterator[Callable[[dict[str, tuple[int, Any]]], OddJobApi]]:
    started: list[OddJobApi] = []

    def make(answers: dict[str, tuple[int, Any]]) -> OddJobApi:
        started.append(OddJobApi(answers))
        return started[-1]

    yield make
    for api in started:
        api.server.shutdown()
        api.server.server_close()


OddApiFactory = Callable[[dict[str, tuple[int, Any]]], OddJobApi]
COMPLETED = {"id": "job-1", "status": "COMPLETED", "output": {"outputs": []}}


def test_every_request_carries_the_clients_user_agent(odd_api: OddApiFactory) -> None:
    """Like the management client, the job client names itself (not python-requests)."""
    api = odd_api({"run": (200, {"id": "job-1"}), "status": (200, COMPLETED)})
    assert api.client().run_and_wait({}, timeout_s=2, poll_s=0.01).ok
    assert {h["User-Agent"] for h in api.headers} == {USER_AGENT}


@pytest.mark.parametrize("bad_id", ["ep/../../v1/pods", "ep?x=1", "ep 1", "", "ép"])
def test_an_endpoint_id_that_is_not_one_never_enters_a_url(
    odd_api: OddApiFactory, bad_id: str
) -> None:
    """The id is checked first: a failing outcome naming it, and no request at all."""
    api = odd_api({"run": (200, {"id": "job-1"})})
    outcome = api.client(bad_id).run_and_wait({}, timeout_s=1, poll_s=0.01)
    assert outcome.status == REQUEST_ERROR
    assert "is not a RunPod endpoint id" in (outcome.error or "")
    with pytest.raises(JobApiError, match="not a RunPod endpoint id"):
        api.client(bad_id).health()
    assert api.paths == []


@pytest.mark.parametrize(
    ("answers", "fragment"),
    [
        ({"run": (200, [])}, "/run answered an unexpected body"),
        ({"run": (200, {"id": 5})}, "/run answered an unexpected body"),
        ({"run": (200, {"id": "../x"})}, "/run answered an unexpected body"),
        ({"run": (200, b"<html>oops</html>")}, "/run answered non-JSON"),
        (
            {"run": (200, {"id": "job-1"}), "status": (200, {"status": ["COMPLETED"]})},
            "/status answered an unexpected body",
        ),
        ({"run": (401, {"error": "Unauthorized"})}, "/run answered 401"),
    ],
)
def test_odd_answers_become_a_failed_outcome_naming_the_host(
    odd_api: OddApiFactory, answers: dict[str, tuple[int, Any]], fragment: str
) -> None:
    """No traceback: REQUEST_ERROR with a message that says what came back and from where."""
    api = odd_api(answers)
    outcome = api.client().run_and_wait({}, timeout_s=1, poll_s=0.01)
    assert outcome.status == REQUEST_ERROR
    assert fragment in (outcome.error or "")
    assert api.host in (outcome.error or "")


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"jobs": [], "workers": {}},
        {"jobs": {"completed": "lots"}, "workers": {}},
        {"jobs": {"completed": 1}, "workers": {"idle": -1}},
        {"workers": {"idle": 1}},
    ],
)
def test_health_of_an_unexpected_shape_is_an_api_error(odd_api: OddApiFactory, body: Any) -> None:
    """`/health` must be counters; anything else is refused before the alerts read it."""
    api = odd_api({"health": (200, body)})
    with pytest.raises(JobApiError, match=f"/health answered .* from {api.host}"):
        api.client().health()


def test_odd_numbers_in_a_status_are_dropped_not_fatal() -> None:
    """Booleans, strings, NaN and infinity in timings or ids read as absent."""
    outcome = outcome_from_status(
        {
            "id": 7,
            "status": "COMPLETED",
            "delayTime": float("inf"),
            "executionTime": "12",
            "workerId": {"x": 1},
            "output": {"error_type": ["odd"]},
        },
        latency_s=0.1,
    )
    assert (outcome.job_id, outcome.delay_ms, outcome.execution_ms) == (None, None, None)
    assert (outcome.worker_id, outcome.error_type) == (None, None)


def test_cli_reports_an_odd_health_as_one_failing_json_document(odd_api: OddApiFactory) -> None:
    """`ops health --json`: exit 1, stdout exactly one JSON document naming host and body."""
    api = odd_api({"health": (200, {"jobs": "many", "workers": {}})})
    env = {"RUNPOD_ENDPOINT_BASE_URL": api.base_url, "RUNPOD_API_KEY": "fake-key"}
    env["RUNPOD_COMFYUI_ENDPOINT_ID"] = "ep-odd"
    code, document = invoke_json(["health", "--samples", "1", "--max-retries", "0"], env)
    assert code == 1
    (failed,) = [c for c in document["checks"] if c["status"] == "fail"]
    assert api.host in failed["detail"]
    assert "unexpected body" in failed["detail"]


def test_cli_canary_with_an_odd_run_answer_is_one_failing_json_document(
    odd_api: OddApiFactory,
) -> None:
    """`ops canary --json` against a /run that answers a list: a failed gate, no traceback."""
    api = odd_api({"run": (200, ["not", "a", "job"])})
    env = {"RUNPOD_ENDPOINT_BASE_URL": api.base_url, "RUNPOD_API_KEY": "fake-key"}
    env["RUNPOD_COMFYUI_ENDPOINT_ID"] = "ep-odd"
    code, document = invoke_json(["canary", "--requests", "2", "--poll-interval", "0.01"], env)
    assert code == 1
    assert any(c["status"] == "fail" for c in document["checks"])
    assert api.host in json.dumps(document)
