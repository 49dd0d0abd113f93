"""Health alerts from ``/health``: workers, queue, success and error rates.

Owns: sampling ``/health`` a few times, and the plan's alerts: success rate below 95 %,
error rate above 5 %, and a queue that does not drain. Success rate is
``completed / (completed + failed)``; error rate also counts attempts that failed and were
retried, ``(failed + retried) / (completed + failed + retried)``. The counters are whatever
window RunPod's ``/health`` reports (recent jobs); with no finished jobs there is nothing to
judge and the rate alerts are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ops.report import Check, percent


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """When ``ops health`` alerts."""

    min_success: float = 0.95
    max_error_rate: float = 0.05
    max_queue: int | None = None
    """Alert when more jobs than this wait in the queue (None: no limit)."""


def _jobs(sample: dict[str, Any]) -> dict[str, int]:
    jobs = sample.get("jobs") or {}
    return {
        key: int(jobs.get(key) or 0)
        for key in ("completed", "failed", "inProgress", "inQueue", "retried")
    }


def _workers(sample: dict[str, Any]) -> dict[str, int]:
    workers = sample.get("workers") or {}
    return {str(key): int(value or 0) for key, value in workers.items() if isinstance(value, int)}


def collect(
    fetch: Callable[[], dict[str, Any]],
    *,
    samples: int,
    interval_s: float,
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    """``samples`` readings of ``/health``, ``interval_s`` apart."""
    readings = []
    for index in range(max(1, samples)):
        if index:
            sleep(interval_s)
        readings.append(fetch())
    return readings


def summarize(readings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The last reading's figures plus the queue's trend across readings."""
    last = readings[-1]
    jobs = _jobs(last)
    workers = _workers(last)
    finished = jobs["completed"] + jobs["failed"]
    attempts = finished + jobs["retried"]
    queues = [_jobs(r)["inQueue"] for r in readings]
    progress = [_jobs(r)["completed"] + _jobs(r)["failed"] for r in readings]
    return {
        "jobs": jobs,
        "workers": workers,
        "successRate": (jobs["completed"] / finished) if finished else None,
        "errorRate": ((jobs["failed"] + jobs["retried"]) / attempts) if attempts else None,
        "queueSamples": queues,
        "finishedSamples": progress,
        "samples": len(readings),
    }


def evaluate(summary: dict[str, Any], thresholds: Thresholds) -> list[Check]:
    """The alerts, each with its reason."""
    checks = []
    jobs, workers = summary["jobs"], summary["workers"]
    rate = summary["successRate"]
    if rate is None:
        checks.append(Check("success rate", "skip", "no finished jobs in RunPod's window"))
    else:
        ok = rate >= thresholds.min_success
        checks.append(
            Check(
                "success rate",
                "pass" if ok else "fail",
                f"{percent(rate)} ({'>=' if ok else '<'} {thresholds.min_success * 100:.1f} %): "
                f"{jobs['completed']} completed, {jobs['failed']} failed",
                {"value": rate},
            )
        )
    error_rate = summary["errorRate"]
    if error_rate is None:
        checks.append(Check("error rate", "skip", "no finished jobs in RunPod's window"))
    else:
        ok = error_rate <= thresholds.max_error_rate
        checks.append(
            Check(
                "error rate",
                "pass" if ok else "fail",
                f"{percent(error_rate)} ({'<=' if ok else '>'} "
                f"{thresholds.max_error_rate * 100:.1f} %): {jobs['failed']} failed, "
                f"{jobs['retried']} retried",
                {"value": error_rate},
            )
        )
    checks.append(_queue_check(summary, thresholds))
    serving = sum(workers.get(k, 0) for k in ("idle", "running", "initializing"))
    checks.append(
        Check(
            "workers",
            "pass",
            ", ".join(f"{k} {v}" for k, v in workers.items()) or "none reported",
            {"serving": serving, **workers},
        )
    )
    return checks


def _queue_check(summary: dict[str, Any], thresholds: Thresholds) -> Check:
    queues, finished = summary["queueSamples"], summary["finishedSamples"]
    workers = summary["workers"]
    serving = sum(workers.get(k, 0) for k in ("idle", "running", "initializing"))
    data = {"inQueue": queues, "finished": finished, "servingWorkers": serving}
    current = queues[-1]
    if thresholds.max_queue is not None and current > thresholds.max_queue:
        return Check("queue", "fail", f"{current} jobs waiting (> {thresholds.max_queue})", data)
    if current == 0:
        return Check("queue", "pass", "empty", data)
    if len(queues) == 1:
        if serving == 0 and summary["jobs"]["inProgress"] == 0:
            return Check(
                "queue",
                "fail",
                f"{current} jobs waiting and no worker idle, running or initializing: "
                "the queue cannot drain",
                data,
            )
        return Check("queue", "pass", f"{current} waiting, {serving} worker(s) serving", data)
    stuck = all(q > 0 for q in queues) and finished[-1] == finished[0]
    if stuck:
        return Check(
            "queue",
            "fail",
            f"not draining: {' -> '.join(map(str, queues))} jobs waiting over "
            f"{len(queues)} samples and no job finished meanwhile "
            f"({serving} worker(s) idle/running/initializing)",
            data,
        )
    return Check("queue", "pass", f"draining: {' -> '.join(map(str, queues))} waiting", data)
