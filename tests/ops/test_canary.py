"""`ops canary` passes on a healthy endpoint and fails each gate for the reason it claims.

The gates are the rollout plan's: success >= 98 %, warm p95 *under* 10 s over at least 20
warm requests, cold p95 <= 90 s; cold versus warm follows the worker's cold start.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ops.canary import Gates, Sample, classify, evaluate, run_canary, summarize, warm_workers
from ops.jobs import Backoff, JobClient, JobOutcome
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import FAST, ContractWorker, check, invoke, invoke_json, ops_env

MakeEmulator = Callable[..., JobApiEmulator]
#: Fast backoff so 429 tests take milliseconds, not seconds.
QUICK_BACKOFF = ["--backoff-base", "0.01", "--max-backoff", "0.05"]
#: Small runs that only test another gate need fewer warm requests than the default 20.
FEW_WARM = ["--min-warm", "1"]


def client_for(emu: JobApiEmulator) -> JobClient:
    return JobClient(
        base_url=emu.base_url,
        endpoint_id=emu.endpoint_id,
        api_key=emu.api_key,
        backoff=Backoff(max_retries=2, base_s=0.01, max_s=0.05),
    )


def canary_against(
    emu: JobApiEmulator,
    *,
    requests: int,
    concurrency: int,
    gates: Gates,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], list[str]]:
    """What `ops canary` does, with an injectable clock: summary and check statuses."""
    client = client_for(emu)
    before = warm_workers(client.health())
    samples = run_canary(
        client,
        requests=requests,
        concurrency=concurrency,
        timeout_s=10,
        poll_s=0.02,
        clock=clock,
    )
    summary = summarize(samples, gates=gates, wall_s=1.0, warm_workers_before=before)
    checks = evaluate(summary, gates)
    return summary.as_json(), [f"{c.name}: {c.status}: {c.detail}" for c in checks]


class FixedLatencyClock:
    """The real clock when a request is sent, that reading + ``latency`` when it returns."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.local = threading.local()

    def __call__(self) -> float:
        sent = getattr(self.local, "sent", None)
        if sent is None:
            self.local.sent = time.monotonic()
            return float(self.local.sent)
        self.local.sent = None
        return float(sent) + self.latency


def test_canary_passes_on_a_healthy_endpoint(
    make_emulator: MakeEmulator, contract_worker: ContractWorker
) -> None:
    """22 requests at concurrency 2 on 2 workers: 20+ warm, every gate passes, figures add up."""
    emu = make_emulator(contract_worker, workers=2)
    code, doc = invoke_json(
        ["canary", "--requests", "22", "--concurrency", "2", *FAST], ops_env(emu)
    )
    assert code == 0, doc["checks"]
    summary = doc["summary"]
    assert summary["requests"] == 22
    assert summary["completed"] == 22
    assert summary["successRate"] == 1.0
    assert summary["warmWorkersBefore"] == 0
    assert 1 <= summary["cold"]["count"] <= 2  # one start per worker that took a job
    assert summary["warm"]["count"] == 22 - summary["cold"]["count"]
    assert summary["latencyS"]["p50"] <= summary["latencyS"]["p95"] <= summary["latencyS"]["p99"]
    assert summary["executionS"]["p50"] is not None
    assert len(summary["latencies"]) == 22
    assert emu.count("run", 200) == 22
    assert doc["gates"] == {
        "minSuccess": 0.98,
        "maxWarmP95S": 10.0,
        "minWarm": 20,
        "maxColdP95S": 90.0,
        "idleTimeoutS": 5.0,
        "coldThresholdS": 10.0,
    }


def test_a_warm_p95_of_exactly_ten_seconds_fails(make_emulator: MakeEmulator) -> None:
    """The plan says under 10 s: 22 requests against the stand-in, each measured at exactly
    10.0 s, fail the warm gate; at 9.99 s the same run passes."""
    for latency, verdict in ((10.0, "fail"), (9.99, "pass")):
        emu = make_emulator(echo_worker, workers=1)
        summary, checks = canary_against(
            emu, requests=22, concurrency=1, gates=Gates(), clock=FixedLatencyClock(latency)
        )
        assert summary["warm"]["count"] == 21, checks
        assert summary["warm"]["latencyS"]["p95"] == latency
        warm = next(c for c in checks if c.startswith("warm p95 latency"))
        assert warm.startswith(f"warm p95 latency: {verdict}:"), warm


def test_the_exactly_ten_seconds_verdict_names_the_limit(make_emulator: MakeEmulator) -> None:
    """The failing verdict at exactly 10 s says `>= 10 s`, so nobody reads it as a pass."""
    emu = make_emulator(echo_worker, workers=1)
    _, checks = canary_against(
        emu, requests=21, concurrency=1, gates=Gates(), clock=FixedLatencyClock(10.0)
    )
    assert "warm p95 latency: fail: 10.00 s >= 10 s over 20 warm request(s)" in checks


def test_three_warm_requests_are_too_few_to_pass(make_emulator: MakeEmulator) -> None:
    """One worker, 4 requests: 1 cold, 3 warm, all fast; the gate fails saying 20 are needed."""
    emu = make_emulator(echo_worker, workers=1)
    code, doc = invoke_json(
        ["canary", "--requests", "4", "--concurrency", "1", *FAST], ops_env(emu)
    )
    assert code == 1
    gate = check(doc, "warm p95 latency")
    assert gate["status"] == "fail"
    assert gate["detail"].startswith("only 3 warm request(s) measured, at least 20 needed")
    assert doc["summary"]["cold"]["count"] == 1
    assert check(doc, "success rate")["status"] == "pass"


def test_no_warm_request_at_all_fails(make_emulator: MakeEmulator) -> None:
    """A single request lands on a worker that starts for it: no warm request, a failure."""
    emu = make_emulator(echo_worker, workers=1)
    code, doc = invoke_json(["canary", "--requests", "1", *FAST], ops_env(emu))
    assert code == 1
    gate = check(doc, "warm p95 latency")
    assert gate["status"] == "fail"
    assert gate["detail"].startswith("no warm request measured")
    assert doc["summary"]["warm"]["count"] == 0


def test_time_spent_queued_does_not_make_a_request_cold(make_emulator: MakeEmulator) -> None:
    """One slow worker, 4 requests in flight: later ones queue well past --cold-threshold, yet
    only the one the worker started for is cold."""
    emu = make_emulator(lambda job: time.sleep(0.15) or {"ok": True}, workers=1)
    args = ["canary", "--requests", "6", "--concurrency", "4", "--cold-threshold", "0.1"]
    code, doc = invoke_json([*args, *FEW_WARM, *FAST], ops_env(emu))
    assert code == 0, doc["checks"]
    summary = doc["summary"]
    assert summary["delayS"]["p95"] > 0.1  # they did queue
    assert summary["cold"]["count"] == 1
    assert summary["warm"]["count"] == 5


def test_a_worker_warm_before_the_run_is_not_counted_cold(make_emulator: MakeEmulator) -> None:
    """After traffic warmed the worker, the canary's first request on it is warm."""
    emu = make_emulator(echo_worker, workers=1, idle_timeout_s=30)
    warmup = invoke_json(["canary", "--requests", "1", *FAST], ops_env(emu))[1]
    assert warmup["summary"]["cold"]["count"] == 1
    code, doc = invoke_json(["canary", "--requests", "3", *FEW_WARM, *FAST], ops_env(emu))
    assert code == 0, doc["checks"]
    assert doc["summary"]["warmWorkersBefore"] == 1
    assert doc["summary"]["cold"]["count"] == 0
    assert doc["summary"]["warm"]["count"] == 3


def outcome(
    delay_ms: int | None,
    *,
    worker: str | None = "w1",
    execution_ms: int = 1000,
    status: str = "COMPLETED",
) -> JobOutcome:
    return JobOutcome(
        job_id="j",
        status=status,
        latency_s=1.0,
        delay_ms=delay_ms,
        execution_ms=execution_ms,
        worker_id=worker,
    )


def test_a_request_without_timing_is_neither_cold_nor_warm() -> None:
    """No delayTime or no workerId: untimed, counted in neither population."""
    samples = [
        Sample(outcome(None), 0.0, 1.0),
        Sample(outcome(500, worker=None), 0.0, 1.0),
        Sample(outcome(40_000), 0.0, 41.0),
    ]
    assert classify(samples, gates=Gates(), warm_workers_before=0) == ["untimed", "untimed", "cold"]
    summary = summarize(samples, gates=Gates(), wall_s=1.0, warm_workers_before=0)
    assert (summary.untimed, summary.cold.count, summary.warm.count) == (2, 1, 0)


def test_a_worker_idle_past_the_idle_timeout_starts_cold_again() -> None:
    """Same workerId (RunPod may keep it across boots): a gap longer than the idle timeout is a
    new cold start; a shorter one is not."""
    samples = [
        Sample(outcome(0, execution_ms=1000), 0.0, 1.0),  # runs 0..1
        Sample(outcome(0, execution_ms=1000), 2.0, 1.0),  # idle 1 s
        Sample(outcome(0, execution_ms=1000), 20.0, 1.0),  # idle 17 s > 5 s
    ]
    kinds = classify(samples, gates=Gates(idle_timeout_s=5.0), warm_workers_before=1)
    assert kinds == ["warm", "warm", "cold"]


def test_first_request_of_a_worker_with_warm_workers_before_uses_the_threshold() -> None:
    """With workers up before the run, a worker's first request is cold only from the threshold."""
    samples = [
        Sample(outcome(400, worker="a"), 0.0, 1.0),
        Sample(outcome(30_000, worker="b"), 0.0, 31.0),
    ]
    assert classify(samples, gates=Gates(), warm_workers_before=2) == ["warm", "cold"]
    assert classify(samples, gates=Gates(), warm_workers_before=None) == ["warm", "cold"]
    assert classify(samples, gates=Gates(), warm_workers_before=0) == ["cold", "cold"]


def test_canary_fails_the_success_gate_when_30_percent_of_jobs_fail(
    make_emulator: MakeEmulator,
) -> None:
    """30 % injected failures: success 70 % < 98 %, and the reason names the error."""
    emu = make_emulator(echo_worker, failure_rate=0.3, workers=3)
    code, doc = invoke_json(
        ["canary", "--requests", "20", "--concurrency", "5", *FEW_WARM, *FAST], ops_env(emu)
    )
    assert code == 1
    gate = check(doc, "success rate")
    assert gate["status"] == "fail"
    assert gate["detail"].startswith("70.0 % (>= 98.0 % needed): 6 of 20 failed")
    assert "6x FAILED (RuntimeError): injected worker failure" in gate["detail"]
    assert check(doc, "warm p95 latency")["status"] == "pass"


def test_canary_fails_the_cold_gate_on_slow_cold_starts(make_emulator: MakeEmulator) -> None:
    """Cold starts of 0.6 s against a 0.4 s cold p95 gate: the cold gate fails, saying so."""
    emu = make_emulator(echo_worker, workers=2, cold_start_s=0.6)
    args = ["canary", "--requests", "6", "--concurrency", "2", *FEW_WARM, *FAST]
    code, doc = invoke_json([*args, "--max-cold-p95", "0.4"], ops_env(emu))
    assert code == 1
    gate = check(doc, "cold p95 latency")
    assert gate["status"] == "fail"
    cold = doc["summary"]["cold"]["count"]
    assert f"> 0.4 s over {cold} cold request(s)" in gate["detail"]
    assert 1 <= cold <= 2
    assert doc["summary"]["cold"]["coldStartS"] >= 0.5
    assert check(doc, "success rate")["status"] == "pass"
    assert check(doc, "warm p95 latency")["status"] == "pass"


def test_canary_reports_cold_starts_longer_than_the_timeout(make_emulator: MakeEmulator) -> None:
    """A cold start past --timeout fails jobs with a cold-start hint (the plan's failure mode 1)."""
    emu = make_emulator(echo_worker, workers=1, cold_start_s=1.0)
    code, doc = invoke_json(
        ["canary", "--requests", "2", "--concurrency", "2", "--timeout", "0.3", *FAST],
        ops_env(emu),
    )
    assert code == 1
    detail = check(doc, "success rate")["detail"]
    assert "CLIENT_TIMEOUT (timeout)" in detail
    assert "a cold start longer than the timeout?" in detail


def test_canary_fails_when_a_429_storm_outlasts_the_backoff(make_emulator: MakeEmulator) -> None:
    """Every /run answered 429: requests end RATE_LIMITED and the success gate says why."""
    emu = make_emulator(echo_worker)
    emu.inject_429(seconds=60)
    code, doc = invoke_json(
        [
            "canary",
            "--requests",
            "5",
            "--concurrency",
            "5",
            "--max-retries",
            "2",
            *QUICK_BACKOFF,
            *FAST,
        ],
        ops_env(emu),
    )
    assert code == 1
    gate = check(doc, "success rate")
    assert gate["detail"].startswith("0.0 %")
    assert "5x RATE_LIMITED (rate_limited): /run answered 429 3 times" in gate["detail"]
    assert doc["summary"]["throttled429"] == 15
    assert emu.count("run", 200) == 0


def test_canary_rides_out_a_short_429_storm_with_backoff(make_emulator: MakeEmulator) -> None:
    """A storm shorter than the retry budget costs retries, not failures; 429s are counted."""
    emu = make_emulator(echo_worker)
    emu.inject_429(count=8, retry_after=0.01)
    code, doc = invoke_json(
        ["canary", "--requests", "10", "--concurrency", "5", *QUICK_BACKOFF, *FEW_WARM, *FAST],
        ops_env(emu),
    )
    assert code == 0, doc["checks"]
    assert doc["summary"]["throttled429"] == 8
    assert emu.count("run", 200) == 10


def test_canary_fails_the_warm_gate_when_generations_are_slow(
    make_emulator: MakeEmulator, contract_worker: ContractWorker
) -> None:
    """Warm requests slower than --max-warm-p95 fail that gate with the measured p95."""
    contract_worker.delay_s = 0.25
    emu = make_emulator(contract_worker, workers=1)
    args = ["canary", "--requests", "4", "--concurrency", "1", "--max-warm-p95", "0.1"]
    code, doc = invoke_json([*args, *FEW_WARM, *FAST], ops_env(emu))
    assert code == 1
    gate = check(doc, "warm p95 latency")
    assert gate["status"] == "fail"
    assert ">= 0.1 s over 3 warm request(s)" in gate["detail"]


def test_canary_sends_the_input_file_given(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    """--input replaces the default txt2img request."""
    seen: list[Any] = []
    emu = make_emulator(lambda job: seen.append(job["input"]) or {"ok": True})
    custom = {"template": "remove_background", "params": {"image": "x.png"}}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(custom))
    code, _ = invoke_json(
        ["canary", "--requests", "3", "--input", str(path), *FEW_WARM, *FAST], ops_env(emu)
    )
    assert code == 0
    assert seen == [custom] * 3


def test_canary_prints_a_table_and_keeps_json_clean(make_emulator: MakeEmulator) -> None:
    """People get the figures table; --json gets exactly one document (progress is stderr)."""
    emu = make_emulator(echo_worker)
    table = invoke(["canary", "--requests", "3", *FEW_WARM, *FAST], ops_env(emu))
    assert table.exit_code == 0
    assert "warm" in table.stdout
    assert "untimed" in table.stdout
    assert "all gates passed" in table.stdout
    as_json = invoke(["canary", "--requests", "3", "--json", *FAST], ops_env(emu))
    assert json.loads(as_json.stdout)["command"] == "canary"


def test_cold_start_estimate_is_cold_delay_minus_warm_delay() -> None:
    """cold start = median delay of cold requests - median delay of warm requests."""
    samples = [
        Sample(outcome(45_000, worker="a"), 0.0, 50.0),
        Sample(outcome(500, worker="a"), 46.0, 2.0),
        Sample(outcome(55_500, worker="b"), 0.0, 60.0),
        Sample(outcome(700, worker="b"), 57.0, 3.0),
    ]
    summary = summarize(samples, gates=Gates(), wall_s=1.0, warm_workers_before=0)
    assert summary.warm.count == 2
    assert summary.cold.count == 2
    assert summary.cold.cold_start_s == pytest.approx(50.25 - 0.6)
    assert summary.cold_fraction == 0.5


def test_gates_can_be_disabled_and_are_skipped_without_samples() -> None:
    """A None limit skips the gate; no cold requests means nothing to judge (skip, not pass)."""
    samples = [Sample(outcome(100, worker="w"), float(i), 1.0) for i in range(50)]
    summary = summarize(samples, gates=Gates(), wall_s=1.0, warm_workers_before=1)
    checks = evaluate(summary, Gates(max_warm_p95_s=None))
    statuses = {c.name: c.status for c in checks}
    assert statuses == {
        "success rate": "pass",
        "warm p95 latency": "skip",
        "cold p95 latency": "skip",
    }


def test_success_gate_is_inclusive_at_the_threshold() -> None:
    """Exactly 98 % passes the default gate; 97.9 % would not."""
    samples = [Sample(outcome(100, worker="w"), float(i), 1.0) for i in range(49)]
    samples.append(Sample(outcome(100, worker="w", status="FAILED"), 49.0, 1.0))
    checks = evaluate(summarize(samples, gates=Gates(), wall_s=1.0), Gates())
    assert checks[0].status == "pass"


def test_the_summary_json_keeps_the_names_its_readers_use() -> None:
    """`CanarySummary.as_json()` is the camelCase document the workflows, the gate record and
    `ops cost --canary-json` read, with every figure where they look for it."""
    failed = JobOutcome(job_id="f", status="FAILED", latency_s=1.0, error="boom", error_type="x")
    samples = [
        Sample(outcome(40_000, worker="a"), 0.0, 41.0),
        Sample(outcome(300, worker="a"), 42.0, 1.5),
        Sample(failed, 43.0, 2.0),
    ]
    document = summarize(samples, gates=Gates(), wall_s=45.0, warm_workers_before=0).as_json()
    assert json.loads(json.dumps(document)) == document
    assert set(document) == {
        "requests",
        "completed",
        "failed",
        "successRate",
        "latencyS",
        "warm",
        "cold",
        "untimed",
        "warmWorkersBefore",
        "coldFraction",
        "delayS",
        "executionS",
        "throttled429",
        "wallS",
        "failures",
        "latencies",
    }
    assert document["warm"] == {"count": 1, "latencyS": {"p50": 1.5, "p95": 1.5, "p99": 1.5}}
    assert document["cold"]["coldStartS"] == pytest.approx(39.7)
    assert set(document["cold"]) == {"count", "latencyS", "coldStartS"}
    assert document["executionS"] == {"p50": 1.0, "p95": 1.0, "p99": 1.0}
    assert document["failures"] == [{"kind": "FAILED (x)", "count": 1, "reason": failed.reason()}]
    assert document["latencies"][1] == {"sentS": 42.0, "latencyS": 1.5, "kind": "warm", "ok": True}
    assert document["throttled429"] == 0
    assert (document["successRate"], document["coldFraction"]) == (pytest.approx(2 / 3), 0.5)
