"""`ops canary` passes on a healthy endpoint and fails each gate for the reason it claims."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ops.canary import Gates, evaluate, summarize
from ops.jobs import JobOutcome
from tests.fakes.runpod_jobs import JobApiEmulator, echo_worker
from tests.ops.conftest import FAST, ContractWorker, check, invoke, invoke_json, ops_env

MakeEmulator = Callable[..., JobApiEmulator]
#: Fast backoff so 429 tests take milliseconds, not seconds.
QUICK_BACKOFF = ["--backoff-base", "0.01", "--max-backoff", "0.05"]


def test_canary_passes_on_a_healthy_endpoint(
    make_emulator: MakeEmulator, contract_worker: ContractWorker
) -> None:
    """20 requests at concurrency 4: every gate passes and the figures add up."""
    emu = make_emulator(contract_worker, workers=2)
    code, doc = invoke_json(
        ["canary", "--requests", "20", "--concurrency", "4", *FAST], ops_env(emu)
    )
    assert code == 0, doc["checks"]
    summary = doc["summary"]
    assert summary["requests"] == 20
    assert summary["completed"] == 20
    assert summary["successRate"] == 1.0
    assert summary["latencyS"]["p50"] <= summary["latencyS"]["p95"] <= summary["latencyS"]["p99"]
    assert summary["executionS"]["p50"] is not None
    assert emu.count("run", 200) == 20
    assert doc["gates"] == {
        "minSuccess": 0.98,
        "maxWarmP95S": 10.0,
        "maxColdP95S": 90.0,
        "coldThresholdS": 10.0,
    }


def test_canary_fails_the_success_gate_when_30_percent_of_jobs_fail(
    make_emulator: MakeEmulator,
) -> None:
    """30 % injected failures: success 70 % < 98 %, and the reason names the error."""
    emu = make_emulator(echo_worker, failure_rate=0.3, workers=3)
    code, doc = invoke_json(
        ["canary", "--requests", "20", "--concurrency", "5", *FAST], ops_env(emu)
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
    args = ["canary", "--requests", "6", "--concurrency", "2", *FAST]
    code, doc = invoke_json(
        [*args, "--cold-threshold", "0.3", "--max-cold-p95", "0.4"], ops_env(emu)
    )
    assert code == 1
    gate = check(doc, "cold p95 latency")
    assert gate["status"] == "fail"
    assert "> 0.4 s over 2 cold request(s)" in gate["detail"]
    assert doc["summary"]["cold"]["count"] == 2
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
        ["canary", "--requests", "10", "--concurrency", "5", *QUICK_BACKOFF, *FAST], ops_env(emu)
    )
    assert code == 0, doc["checks"]
    assert doc["summary"]["throttled429"] == 8
    assert emu.count("run", 200) == 10


def test_canary_fails_the_warm_gate_when_generations_are_slow(
    make_emulator: MakeEmulator, contract_worker: ContractWorker
) -> None:
    """Warm requests slower than --max-warm-p95 fail that gate with the measured p95."""
    contract_worker.delay_s = 0.25
    emu = make_emulator(contract_worker, workers=2)
    code, doc = invoke_json(
        ["canary", "--requests", "4", "--concurrency", "2", "--max-warm-p95", "0.1", *FAST],
        ops_env(emu),
    )
    assert code == 1
    gate = check(doc, "warm p95 latency")
    assert gate["status"] == "fail"
    assert "> 0.1 s over 4 warm request(s)" in gate["detail"]


def test_canary_sends_the_input_file_given(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    """--input replaces the default txt2img request."""
    seen: list[Any] = []
    emu = make_emulator(lambda job: seen.append(job["input"]) or {"ok": True})
    custom = {"template": "remove_background", "params": {"image": "x.png"}}
    path = tmp_path / "input.json"
    path.write_text(json.dumps(custom))
    code, _ = invoke_json(["canary", "--requests", "3", "--input", str(path), *FAST], ops_env(emu))
    assert code == 0
    assert seen == [custom] * 3


def test_canary_prints_a_table_and_keeps_json_clean(make_emulator: MakeEmulator) -> None:
    """People get the figures table; --json gets exactly one document (progress is stderr)."""
    emu = make_emulator(echo_worker)
    table = invoke(["canary", "--requests", "3", *FAST], ops_env(emu))
    assert table.exit_code == 0
    assert "warm" in table.stdout
    assert "all gates passed" in table.stdout
    as_json = invoke(["canary", "--requests", "3", "--json", *FAST], ops_env(emu))
    assert json.loads(as_json.stdout)["command"] == "canary"


def outcome(latency: float, delay_ms: int, status: str = "COMPLETED") -> JobOutcome:
    return JobOutcome(job_id="j", status=status, latency_s=latency, delay_ms=delay_ms)


def test_cold_and_warm_are_split_by_delay_time() -> None:
    """delayTime at or above the threshold is cold; cold start = median cold - median warm delay."""
    outcomes = [outcome(2.0, 500), outcome(3.0, 700), outcome(50.0, 45_000), outcome(60.0, 55_500)]
    summary = summarize(outcomes, gates=Gates(), wall_s=1.0)
    assert summary["warm"]["count"] == 2
    assert summary["cold"]["count"] == 2
    assert summary["cold"]["coldStartS"] == pytest.approx(50.25 - 0.6)
    assert summary["coldFraction"] == 0.5


def test_gates_can_be_disabled_and_are_skipped_without_samples() -> None:
    """A None limit skips the gate; no cold requests means nothing to judge (skip, not pass)."""
    outcomes = [outcome(1.0, 100)] * 50
    checks = evaluate(summarize(outcomes, gates=Gates(), wall_s=1.0), Gates(max_warm_p95_s=None))
    statuses = {c.name: c.status for c in checks}
    assert statuses == {
        "success rate": "pass",
        "warm p95 latency": "skip",
        "cold p95 latency": "skip",
    }


def test_success_gate_is_inclusive_at_the_threshold() -> None:
    """Exactly 98 % passes the default gate; 97.9 % would not."""
    outcomes = [outcome(1.0, 100)] * 49 + [outcome(1.0, 100, status="FAILED")]
    checks = evaluate(summarize(outcomes, gates=Gates(), wall_s=1.0), Gates())
    assert checks[0].status == "pass"
