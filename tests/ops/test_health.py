"""`ops health` alerts at the plan's thresholds, each only on enough jobs, on too few workers and
on a queue that does not drain."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import requests

from ops.canary import Sample
from ops.health import HealthSummary, Thresholds, evaluate, summarize
from ops.jobs import JobOutcome
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
    run_jobs(emu, 20)
    code, doc = invoke_json(["health", *FAST_SAMPLES], ops_env(emu))
    assert code == 0, doc["checks"]
    assert doc["summary"]["successRate"] == 1.0
    assert check(doc, "success rate")["status"] == "pass"
    assert doc["summary"]["samples"] == 3
    assert check(doc, "queue")["detail"] == "empty"
    assert check(doc, "workers")["data"]["up"][-1] >= 1


def test_health_alerts_when_30_percent_of_jobs_fail(make_emulator: MakeEmulator) -> None:
    """70 % success < 95 % and 30 % errors > 5 % over 10 jobs (--min-jobs 10): both fire."""
    emu = make_emulator(echo_worker, failure_rate=0.3)
    run_jobs(emu, 10)
    code, doc = invoke_json(["health", "--samples", "1", "--min-jobs", "10"], ops_env(emu))
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
    code, doc = invoke_json(["health", *FAST_SAMPLES, "--min-jobs", "2"], ops_env(emu))
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


def queue_status(summary: HealthSummary) -> str:
    return next(c.status for c in evaluate(summary, Thresholds()) if c.name == "queue")


def test_one_sample_alerts_only_when_no_worker_can_serve_the_queue() -> None:
    """With a single reading, a queue is stuck only if nothing is idle, running or booting."""
    stuck = summarize([{"jobs": {"inQueue": 3}, "workers": {"idle": 0, "running": 0}}])
    busy = summarize([{"jobs": {"inQueue": 3}, "workers": {"initializing": 1}}])
    assert queue_status(stuck) == "fail"
    assert queue_status(busy) == "pass"


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


def test_one_failure_out_of_one_job_is_not_an_alert(make_emulator: MakeEmulator) -> None:
    """0 % success over a single job is too little to judge: both rates skip, saying why."""
    emu = make_emulator(echo_worker, failure_rate=1.0)
    run_jobs(emu, 1)
    code, doc = invoke_json(["health", "--samples", "1"], ops_env(emu))
    assert code == 0, doc["checks"]
    for name in ("success rate", "error rate"):
        rate = check(doc, name)
        assert rate["status"] == "skip"
        assert rate["detail"].startswith("1 finished job(s) in RunPod's window, at least 20")


def probes(*latencies: float) -> list[Sample]:
    return [
        Sample(JobOutcome(job_id="p", status="COMPLETED", latency_s=v), float(i), v)
        for i, v in enumerate(latencies)
    ]


def latency(summary: HealthSummary, thresholds: Thresholds) -> dict[str, object]:
    found = next(c for c in evaluate(summary, thresholds) if c.name == "p95 latency")
    return {"status": found.status, "detail": found.detail}


def test_p95_above_15_seconds_alerts_and_15_does_not() -> None:
    """The plan: alert when p95 latency exceeds 15 s; exactly 15 s is not an alert."""
    reading = [{"jobs": {"completed": 30}, "workers": {"idle": 1}}]
    slow = summarize(reading, probes(3, 3, 3, 15.5, 16))
    p95 = slow.probes.latency_s.p95
    assert p95 is not None
    assert p95 > 15
    assert latency(slow, Thresholds()) == {
        "status": "fail",
        "detail": f"{p95:.2f} s > 15 s over 5 probe(s)",
    }
    at_limit = summarize(reading, probes(15, 15, 15, 15, 15))
    assert latency(at_limit, Thresholds())["status"] == "pass"
    few = summarize(reading, probes(30, 30))
    assert latency(few, Thresholds())["status"] == "skip"


def test_health_alerts_on_slow_probes_against_the_stand_in(make_emulator: MakeEmulator) -> None:
    """Probes that take ~0.3 s against a 0.2 s p95 limit: the latency alert fires."""
    emu = make_emulator(lambda job: time.sleep(0.3) or {"ok": True}, workers=1)
    args = ["health", "--samples", "1", "--probes", "5", "--poll-interval", "0.02"]
    code, doc = invoke_json([*args, "--max-p95", "0.2"], ops_env(emu))
    assert code == 1
    gate = check(doc, "p95 latency")
    assert gate["status"] == "fail"
    assert "> 0.2 s over 5 probe(s)" in gate["detail"]
    assert doc["summary"]["probes"]["completed"] == 5


def test_health_alerts_when_workers_fall_below_workers_min(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """No worker up while the stack keeps one always on (serverless.workersMin 1): an alert,
    whether the minimum comes from --workers-min or from the stack file."""
    emu = make_emulator(echo_worker, workers=1)
    code, doc = invoke_json(["health", *FAST_SAMPLES, "--workers-min", "1"], ops_env(emu))
    assert code == 1
    workers = check(doc, "workers")
    assert workers["status"] == "fail"
    assert "0 -> 0 -> 0 worker(s) up (idle or running) over 3 sample(s)" in workers["detail"]
    assert "below workersMin 1" in workers["detail"]
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text("config:\n  comfyui-runpod:serverless.workersMin: 1\n")
    code, doc = invoke_json(["health", "--samples", "1", "--stack-file", str(stack)], ops_env(emu))
    assert code == 1
    assert check(doc, "workers")["status"] == "fail"
    run_jobs(emu, 1)  # the worker is up now
    code, doc = invoke_json(["health", "--samples", "1", "--stack-file", str(stack)], ops_env(emu))
    assert check(doc, "workers")["status"] == "pass", doc["checks"]


def test_the_summary_json_keeps_the_names_its_readers_use() -> None:
    """`HealthSummary.as_json()` is the camelCase document `ops health --json` prints."""
    readings = [
        {"jobs": {"completed": 9, "failed": 1, "inQueue": 2, "retried": 1}, "workers": {"idle": 1}},
        {"jobs": {"completed": 10, "failed": 1, "inProgress": 1}, "workers": {"running": 2}},
    ]
    document = summarize(readings, probes(2.0, 4.0), workers_min=1).as_json()
    assert document == {
        "jobs": {"completed": 10, "failed": 1, "inProgress": 1, "inQueue": 0, "retried": 0},
        "workers": {"running": 2},
        "finished": 11,
        "successRate": 10 / 11,
        "errorRate": 1 / 11,
        "queueSamples": [2, 0],
        "finishedSamples": [10, 11],
        "upSamples": [1, 2],
        "samples": 2,
        "workersMin": 1,
        "probes": {
            "requested": 2,
            "completed": 2,
            "latencyS": {"p50": 3.0, "p95": 3.9, "p99": 3.98},
            "latencies": [2.0, 4.0],
            "failures": [],
        },
    }
