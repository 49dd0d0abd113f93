"""`ops health` alerts at the plan's thresholds and on a queue that does not drain."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from ops.health import Thresholds, evaluate, summarize
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import check, closed_port_url, invoke_json, ops_env

MakeEmulator = Callable[..., JobApiEmulator]
FAST_SAMPLES = ["--samples", "3", "--interval", "0.05"]


def run_jobs(emu: JobApiEmulator, count: int) -> None:
    """Submit ``count`` jobs and wait until the emulator has finished them all."""
    auth = {"Authorization": f"Bearer {emu.api_key}"}
    url = f"{emu.base_url}/{emu.endpoint_id}"
    for _ in range(count):
        requests.post(f"{url}/run", json={"input": {}}, headers=auth, timeout=5)
    deadline = time.monotonic() + 10
    while True:
        jobs = requests.get(f"{url}/health", headers=auth, timeout=5).json()["jobs"]
        if jobs["completed"] + jobs["failed"] >= count:
            return
        assert time.monotonic() < deadline, jobs
        time.sleep(0.02)


def test_health_passes_on_a_healthy_endpoint(make_emulator: MakeEmulator) -> None:
    """All jobs completed, queue empty: no alert, and workers are reported."""
    emu = make_emulator(echo_worker)
    run_jobs(emu, 10)
    code, doc = invoke_json(["health", *FAST_SAMPLES], ops_env(emu))
    assert code == 0, doc["checks"]
    assert doc["summary"]["successRate"] == 1.0
    assert doc["summary"]["samples"] == 3
    assert check(doc, "queue")["detail"] == "empty"
    assert check(doc, "workers")["data"]["serving"] >= 1


def test_health_alerts_when_30_percent_of_jobs_fail(make_emulator: MakeEmulator) -> None:
    """70 % success < 95 % and 30 % errors > 5 %: both alerts fire, exit 1."""
    emu = make_emulator(echo_worker, failure_rate=0.3)
    run_jobs(emu, 10)
    code, doc = invoke_json(["health", "--samples", "1"], ops_env(emu))
    assert code == 1
    success = check(doc, "success rate")
    assert success["status"] == "fail"
    assert success["detail"] == "70.0 % (< 95.0 %): 7 completed, 3 failed"
    errors = check(doc, "error rate")
    assert errors["status"] == "fail"
    assert errors["detail"].startswith("30.0 % (> 5.0 %)")


def test_health_alerts_on_a_queue_that_does_not_drain(make_emulator: MakeEmulator) -> None:
    """Jobs waiting across every sample with none finishing is an alert that says so."""
    emu = make_emulator(echo_worker)
    run_jobs(emu, 2)
    emu.pause_workers()
    auth = {"Authorization": f"Bearer {emu.api_key}"}
    for _ in range(4):
        requests.post(
            f"{emu.base_url}/{emu.endpoint_id}/run", json={"input": {}}, headers=auth, timeout=5
        )
    code, doc = invoke_json(["health", *FAST_SAMPLES], ops_env(emu))
    assert code == 1
    queue = check(doc, "queue")
    assert queue["status"] == "fail"
    assert queue["detail"].startswith("not draining: 4 -> 4 -> 4 jobs waiting over 3 samples")
    assert check(doc, "success rate")["status"] == "pass"


def test_health_passes_a_queue_that_drains(make_emulator: MakeEmulator) -> None:
    """A backlog that shrinks between samples is not an alert."""
    readings = [
        {"jobs": {"completed": 10, "failed": 0, "inQueue": 6}, "workers": {"running": 2}},
        {"jobs": {"completed": 13, "failed": 0, "inQueue": 3}, "workers": {"running": 2}},
    ]
    checks = evaluate(summarize(readings), Thresholds())
    assert [c.status for c in checks if c.name == "queue"] == ["pass"]


def test_one_sample_alerts_only_when_no_worker_can_serve_the_queue() -> None:
    """With a single reading, a queue is stuck only if nothing is idle, running or booting."""
    stuck = summarize([{"jobs": {"inQueue": 3}, "workers": {"idle": 0, "running": 0}}])
    busy = summarize([{"jobs": {"inQueue": 3}, "workers": {"initializing": 1}}])
    assert evaluate(stuck, Thresholds())[2].status == "fail"
    assert evaluate(busy, Thresholds())[2].status == "pass"


def test_health_skips_rates_when_nothing_finished(make_emulator: MakeEmulator) -> None:
    """A fresh endpoint has no rates to judge: skipped, not an alert."""
    emu = make_emulator(echo_worker)
    code, doc = invoke_json(["health", "--samples", "1"], ops_env(emu))
    assert code == 0
    assert check(doc, "success rate")["status"] == "skip"


def test_health_max_queue_threshold(make_emulator: MakeEmulator) -> None:
    """--max-queue alerts on a backlog above it even while it drains."""
    readings = [{"jobs": {"inQueue": 30, "completed": 5}, "workers": {"running": 3}}]
    checks = evaluate(summarize(readings), Thresholds(max_queue=20))
    queue = next(c for c in checks if c.name == "queue")
    assert queue.status == "fail"
    assert queue.detail == "30 jobs waiting (> 20)"


def test_health_fails_when_the_endpoint_is_unreachable(make_emulator: MakeEmulator) -> None:
    """/health that cannot be reached is a failed check, not a crash."""
    emu = make_emulator(echo_worker)
    env = ops_env(emu, RUNPOD_ENDPOINT_BASE_URL=closed_port_url() + "/v2")
    code, doc = invoke_json(["health", "--samples", "1", "--max-retries", "0"], env)
    assert code == 1
    assert "unreachable" in check(doc, "reachability")["detail"]
