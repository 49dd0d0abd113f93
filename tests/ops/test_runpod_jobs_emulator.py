"""The job API emulator behaves like RunPod's /run, /runsync, /status, /cancel, /retry, /health."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker

MakeEmulator = Callable[..., JobApiEmulator]


def call(emu: JobApiEmulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", {"Authorization": f"Bearer {emu.api_key}"})
    return requests.request(
        method, f"{emu.base_url}/{emu.endpoint_id}/{path}", headers=headers, timeout=10, **kwargs
    )


def wait_status(emu: JobApiEmulator, job_id: str, *, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = call(emu, "GET", f"status/{job_id}").json()
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            return body
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_run_then_status_reports_output_and_timings(make_emulator: MakeEmulator) -> None:
    """A /run job goes IN_QUEUE -> COMPLETED with output, delayTime, executionTime, workerId."""
    emu = make_emulator(echo_worker)
    accepted = call(emu, "POST", "run", json={"input": {"n": 1}}).json()
    assert accepted["status"] == "IN_QUEUE"
    done = wait_status(emu, accepted["id"])
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"echo": {"n": 1}}
    assert isinstance(done["delayTime"], int)
    assert isinstance(done["executionTime"], int)
    assert done["workerId"].startswith(emu.endpoint_id)


def test_runsync_returns_the_result_or_the_pending_status(make_emulator: MakeEmulator) -> None:
    """/runsync answers the finished job, or only {id, status} when ?wait= runs out first."""
    gate = threading.Event()

    def slow(job: dict[str, Any]) -> dict[str, Any]:
        if job["input"].get("block"):
            gate.wait(5)
        return {"ok": True}

    emu = make_emulator(slow)
    finished = call(emu, "POST", "runsync", json={"input": {}}).json()
    assert finished["status"] == "COMPLETED"
    assert finished["output"] == {"ok": True}
    assert "executionTime" in finished
    pending = call(emu, "POST", "runsync?wait=100", json={"input": {"block": True}}).json()
    assert pending["status"] in ("IN_QUEUE", "IN_PROGRESS")
    assert set(pending) == {"id", "status"}
    gate.set()
    assert wait_status(emu, pending["id"])["status"] == "COMPLETED"


def test_a_raising_worker_fails_the_job_with_a_json_error_string(
    make_emulator: MakeEmulator,
) -> None:
    """Like runpod.serverless: a raise becomes FAILED with error_type/message/traceback JSON."""

    def boom(job: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("CUDA out of memory")

    emu = make_emulator(boom)
    job_id = call(emu, "POST", "run", json={"input": {}}).json()["id"]
    done = wait_status(emu, job_id)
    assert done["status"] == "FAILED"
    error = json.loads(done["error"])
    assert error["error_type"] == "<class 'ValueError'>"
    assert error["error_message"] == "CUDA out of memory"
    assert "Traceback" in error["error_traceback"]


def test_a_returned_error_fails_the_job_and_keeps_the_rest_as_output(
    make_emulator: MakeEmulator,
) -> None:
    """A worker returning {"error": ...} yields FAILED with that error; other keys stay output."""
    emu = make_emulator(lambda job: {"error": "model x not found", "error_type": "missing_model"})
    job_id = call(emu, "POST", "run", json={"input": {}}).json()["id"]
    done = wait_status(emu, job_id)
    assert done["status"] == "FAILED"
    assert done["error"] == "model x not found"
    assert done["output"] == {"error_type": "missing_model"}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("run", {}, 401),
        ("run", {"Authorization": "Bearer wrong"}, 401),
    ],
)
def test_requests_without_the_api_key_are_refused(
    make_emulator: MakeEmulator, path: str, headers: dict[str, str], status: int
) -> None:
    """No or a wrong bearer token answers 401."""
    emu = make_emulator(echo_worker)
    assert call(emu, "POST", path, json={"input": {}}, headers=headers).status_code == status


def test_unknown_endpoint_and_bad_bodies_are_rejected(make_emulator: MakeEmulator) -> None:
    """404 for another endpoint; 400 for no input, unknown fields, bad policy; 413 past 10 MB."""
    emu = make_emulator(echo_worker)
    auth = {"Authorization": f"Bearer {emu.api_key}"}
    other = requests.post(f"{emu.base_url}/nope/run", json={"input": {}}, headers=auth, timeout=5)
    assert other.status_code == 404
    assert call(emu, "POST", "run", json={}).status_code == 400
    assert call(emu, "POST", "run", json={"input": {}, "extra": 1}).status_code == 400
    assert call(emu, "POST", "run", json={"input": {}, "policy": {"ttl": -1}}).status_code == 400
    assert call(emu, "GET", "run").status_code == 405
    big = {"input": {"blob": "x" * (10 * 1024 * 1024)}}
    assert call(emu, "POST", "run", json=big).status_code == 413
    assert call(emu, "POST", "runsync?wait=1", json=big).status_code == 200


def test_cancel_and_retry_follow_the_job_state(make_emulator: MakeEmulator) -> None:
    """Cancel stops a queued job; retry is refused unless FAILED and re-runs a failed one."""
    attempts: list[str] = []

    def flaky(job: dict[str, Any]) -> dict[str, Any]:
        attempts.append(job["id"])
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return {"ok": True}

    emu = make_emulator(flaky, workers=1)
    emu.pause_workers()
    queued = call(emu, "POST", "run", json={"input": {}}).json()["id"]
    assert call(emu, "POST", f"cancel/{queued}").json()["status"] == "CANCELLED"
    emu.resume_workers()
    failed = call(emu, "POST", "run", json={"input": {}}).json()["id"]
    assert wait_status(emu, failed)["status"] == "FAILED"
    assert call(emu, "POST", f"retry/{queued}").status_code == 400
    assert call(emu, "POST", f"retry/{failed}").json() == {"id": failed, "status": "IN_QUEUE"}
    assert wait_status(emu, failed)["status"] == "COMPLETED"
    assert call(emu, "GET", "health").json()["jobs"]["retried"] == 1
    assert attempts == [failed, failed]


def test_results_expire_after_the_retention_period(make_emulator: MakeEmulator) -> None:
    """/status answers 404 once a finished job is older than its retention."""
    emu = make_emulator(echo_worker, run_retention_s=0.1)
    job_id = call(emu, "POST", "run", json={"input": {}}).json()["id"]
    wait_status(emu, job_id)
    deadline = time.monotonic() + 3
    while call(emu, "GET", f"status/{job_id}").status_code != 404:
        assert time.monotonic() < deadline, "result never expired"
        time.sleep(0.02)


def test_rate_limit_answers_429_with_retry_after(make_emulator: MakeEmulator) -> None:
    """Past the per-window /run limit, 429 with Retry-After; injected storms also answer 429."""
    emu = make_emulator(echo_worker, run_limit=(3, 60.0))
    codes = [call(emu, "POST", "run", json={"input": {}}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = call(emu, "POST", "run", json={"input": {}})
    assert int(limited.headers["Retry-After"]) > 0
    storm = make_emulator(echo_worker)
    storm.inject_429(count=2, retry_after=0.5)
    codes = [call(storm, "POST", "run", json={"input": {}}) for _ in range(3)]
    assert [c.status_code for c in codes] == [429, 429, 200]
    assert codes[0].headers["Retry-After"] == "0.5"


def test_cold_start_shows_in_delay_time_only_for_a_booting_worker(
    make_emulator: MakeEmulator,
) -> None:
    """The first job pays the cold start; the next is warm; after idle timeout it is cold again."""
    # Margins wide enough for a loaded 2-core CI machine: the warm job must arrive well
    # inside the idle timeout, and a warm delay is far below the cold start.
    emu = make_emulator(echo_worker, workers=1, cold_start_s=0.5, idle_timeout_s=1.5)

    def delay() -> int:
        job_id = call(emu, "POST", "run", json={"input": {}}).json()["id"]
        return int(wait_status(emu, job_id)["delayTime"])

    assert delay() >= 500
    assert delay() < 400
    deadline = time.monotonic() + 6
    while any(call(emu, "GET", "health").json()["workers"].values()):  # scaled down to zero?
        assert time.monotonic() < deadline, "the worker never scaled down"
        time.sleep(0.02)
    assert delay() >= 500


def test_execution_timeout_marks_the_job_timed_out(make_emulator: MakeEmulator) -> None:
    """policy.executionTimeout bounds the handler: TIMED_OUT, counted as failed."""
    release = threading.Event()
    emu = make_emulator(lambda job: release.wait(5) and {})
    job_id = call(
        emu, "POST", "run", json={"input": {}, "policy": {"executionTimeout": 100}}
    ).json()["id"]
    assert wait_status(emu, job_id)["status"] == "TIMED_OUT"
    release.set()
    assert call(emu, "GET", "health").json()["jobs"]["failed"] == 1


def test_failure_rate_fails_exactly_that_share_of_jobs(make_emulator: MakeEmulator) -> None:
    """failure_rate=0.3 fails 3 of every 10 executions, deterministically."""
    emu = make_emulator(echo_worker, failure_rate=0.3, workers=3)
    ids = [call(emu, "POST", "run", json={"input": {}}).json()["id"] for _ in range(10)]
    statuses = [wait_status(emu, job_id)["status"] for job_id in ids]
    assert statuses.count("FAILED") == 3
    health = call(emu, "GET", "health").json()
    assert health["jobs"]["completed"] == 7
    assert health["jobs"]["failed"] == 3


def test_paused_workers_leave_jobs_in_the_queue(make_emulator: MakeEmulator) -> None:
    """While paused, /health shows the queue growing and no job finishing."""
    emu = make_emulator(echo_worker)
    emu.pause_workers()
    for _ in range(3):
        call(emu, "POST", "run", json={"input": {}})
    time.sleep(0.1)
    jobs = call(emu, "GET", "health").json()["jobs"]
    assert jobs["inQueue"] == 3
    assert jobs["completed"] == 0
