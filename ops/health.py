"""Health alerts as the rollout plan sets them: success rate, error rate, p95 latency, workers.

Owns: sampling ``/health`` a few times, sending a few probe requests to measure latency (the
job API reports no latency of past jobs), and the alerts, each judged only on enough data:

- success rate below 95 % and error rate above 5 %, from RunPod's ``/health`` counters
  (whatever recent window RunPod keeps), once at least ``min_jobs`` jobs finished there (one
  failure out of one job is not an alert). Success rate is ``completed / (completed +
  failed)``; error rate also counts attempts that failed and were retried,
  ``(failed + retried) / (completed + failed + retried)``;
- p95 end-to-end latency of the probes above 15 s, once ``min_latency_jobs`` probes completed;
- fewer workers up (idle or running) than the endpoint's ``workersMin`` in every reading;
- a queue that does not drain (or above ``max_queue``).

The figures are typed data (:class:`HealthSummary`) that the JSON document, the alert
notifier (:mod:`ops.health_alert`) and a step-summary renderer read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.canary import Percentiles, Sample, default_input, run_canary
from ops.jobs import JobClient
from ops.report import CamelJson, Check, percent, seconds
from ops.stack_file import stack_values


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """When ``ops health`` alerts."""

    min_success: float = 0.95
    """Alert below this success rate."""
    max_error_rate: float = 0.05
    """Alert above this error rate."""
    max_p95_s: float | None = 15.0
    """Alert when the probes' p95 latency exceeds this, seconds (None: no latency alert)."""
    min_jobs: int = 20
    """Finished jobs in RunPod's window needed before the rate alerts judge anything."""
    min_latency_jobs: int = 5
    """Completed probes needed before the latency alert judges anything."""
    workers_min: int = 0
    """The endpoint's ``workersMin``: alert when fewer workers are up in every reading."""
    max_queue: int | None = None
    """Alert when more jobs than this wait in the queue (None: no limit)."""


@dataclass(frozen=True, kw_only=True)
class JobCounters:
    """``/health`` job counters."""

    completed: int
    failed: int
    in_progress: int
    in_queue: int
    retried: int

    @classmethod
    def of(cls, reading: dict[str, Any]) -> JobCounters:
        """The counters of one ``/health`` body (a missing one is 0)."""
        jobs = reading.get("jobs") or {}
        return cls(
            completed=int(jobs.get("completed") or 0),
            failed=int(jobs.get("failed") or 0),
            in_progress=int(jobs.get("inProgress") or 0),
            in_queue=int(jobs.get("inQueue") or 0),
            retried=int(jobs.get("retried") or 0),
        )

    @property
    def finished(self) -> int:
        """Jobs that ended, either way."""
        return self.completed + self.failed


@dataclass(frozen=True, kw_only=True)
class ProbeBlock:
    """The probe requests health sent to measure latency."""

    requested: int
    completed: int
    latency_s: Percentiles
    latencies: list[float]
    failures: list[str]

    @classmethod
    def of(cls, probes: Sequence[Sample]) -> ProbeBlock:
        """The completed probes' latencies and the failed ones' reasons."""
        latencies = [s.latency_s for s in probes if s.outcome.ok]
        return cls(
            requested=len(probes),
            completed=len(latencies),
            latency_s=Percentiles.of(latencies),
            latencies=[round(value, 3) for value in latencies],
            failures=[s.outcome.reason() for s in probes if not s.outcome.ok],
        )


@dataclass(frozen=True, kw_only=True)
class HealthSummary(CamelJson):
    """The last reading's figures, the trends across readings and the probes
    (``as_json()``: the ``summary`` of ``ops health --json``)."""

    jobs: JobCounters
    """The last reading's counters."""
    workers: dict[str, int]
    """Workers by state in the last reading (``idle``, ``running``, ``initializing``, ...)."""
    finished: int
    """completed + failed in the last reading."""
    success_rate: float | None
    """completed / finished (None before any job finished)."""
    error_rate: float | None
    """(failed + retried) / (finished + retried)."""
    queue_samples: list[int]
    """Jobs waiting, per reading."""
    finished_samples: list[int]
    up_samples: list[int]
    """Workers idle or running, per reading."""
    samples: int
    workers_min: int
    probes: ProbeBlock


def _workers(sample: dict[str, Any]) -> dict[str, int]:
    workers = sample.get("workers") or {}
    return {str(key): int(value or 0) for key, value in workers.items() if isinstance(value, int)}


def up(workers: dict[str, int]) -> int:
    """Workers that can take a job now: idle or running (``ready`` repeats ``idle``)."""
    return workers.get("idle", 0) + workers.get("running", 0)


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


def probe(client: JobClient, *, count: int, timeout_s: float, poll_s: float) -> list[Sample]:
    """``count`` small requests one after another (so none waits for another)."""
    if count <= 0:
        return []
    return run_canary(
        client,
        requests=count,
        concurrency=1,
        timeout_s=timeout_s,
        poll_s=poll_s,
        make_input=default_input,
    )


def summarize(
    readings: Sequence[dict[str, Any]],
    probes: Sequence[Sample] = (),
    *,
    workers_min: int = 0,
) -> HealthSummary:
    """The last reading's figures, the queue's trend across readings and the probes."""
    counters = [JobCounters.of(reading) for reading in readings]
    jobs = counters[-1]
    attempts = jobs.finished + jobs.retried
    return HealthSummary(
        jobs=jobs,
        workers=_workers(readings[-1]),
        finished=jobs.finished,
        success_rate=(jobs.completed / jobs.finished) if jobs.finished else None,
        error_rate=((jobs.failed + jobs.retried) / attempts) if attempts else None,
        queue_samples=[c.in_queue for c in counters],
        finished_samples=[c.finished for c in counters],
        up_samples=[up(_workers(reading)) for reading in readings],
        samples=len(readings),
        workers_min=workers_min,
        probes=ProbeBlock.of(probes),
    )


def evaluate(summary: HealthSummary, thresholds: Thresholds) -> list[Check]:
    """The alerts, each with its reason."""
    jobs, too_few = summary.jobs, _too_few(summary, thresholds)
    return [
        _rate_check(
            "success rate",
            summary.success_rate,
            thresholds.min_success,
            floor=True,
            counts=f"{jobs.completed} completed, {jobs.failed} failed",
            too_few=too_few,
        ),
        _rate_check(
            "error rate",
            summary.error_rate,
            thresholds.max_error_rate,
            floor=False,
            counts=f"{jobs.failed} failed, {jobs.retried} retried",
            too_few=too_few,
        ),
        _latency_check(summary, thresholds),
        _queue_check(summary, thresholds),
        _workers_check(summary, thresholds),
    ]


def _too_few(summary: HealthSummary, thresholds: Thresholds) -> str | None:
    finished = summary.finished
    if finished >= thresholds.min_jobs:
        return None
    return (
        f"{finished} finished job(s) in RunPod's window, at least {thresholds.min_jobs} needed "
        "to judge (--min-jobs)"
    )


def _rate_check(
    name: str, rate: float | None, limit: float, *, floor: bool, counts: str, too_few: str | None
) -> Check:
    """A rate against its alert: a floor (alert below it) or a ceiling (alert above it)."""
    if rate is None or too_few:
        return Check(name, "skip", too_few or "no finished jobs in RunPod's window")
    ok = rate >= limit if floor else rate <= limit
    sign = (">=" if ok else "<") if floor else ("<=" if ok else ">")
    return Check(
        name,
        "pass" if ok else "fail",
        f"{percent(rate)} ({sign} {limit * 100:.1f} %): {counts}",
        {"value": rate},
    )


def _latency_check(summary: HealthSummary, thresholds: Thresholds) -> Check:
    probes = summary.probes
    value, completed = probes.latency_s.p95, probes.completed
    data = {"value": value, "limit": thresholds.max_p95_s, "probes": completed}
    failed = f"; {len(probes.failures)} probe(s) failed" if probes.failures else ""
    if thresholds.max_p95_s is None:
        return Check("p95 latency", "skip", f"{seconds(value)}; alert disabled", data)
    if probes.requested == 0:
        return Check("p95 latency", "skip", "no probes sent (--probes N measures latency)", data)
    if value is None or completed < thresholds.min_latency_jobs:
        return Check(
            "p95 latency",
            "skip",
            f"{completed} probe(s) completed, at least {thresholds.min_latency_jobs} needed to "
            f"judge (--min-latency-jobs){failed}",
            data,
        )
    ok = value <= thresholds.max_p95_s
    return Check(
        "p95 latency",
        "pass" if ok else "fail",
        f"{seconds(value)} {'<=' if ok else '>'} {thresholds.max_p95_s:g} s over {completed} "
        f"probe(s){failed}",
        data,
    )


def _queue_check(summary: HealthSummary, thresholds: Thresholds) -> Check:
    queues, finished = summary.queue_samples, summary.finished_samples
    serving = up(summary.workers) + summary.workers.get("initializing", 0)
    data = {"inQueue": queues, "finished": finished, "servingWorkers": serving}
    current = queues[-1]
    if thresholds.max_queue is not None and current > thresholds.max_queue:
        return Check("queue", "fail", f"{current} jobs waiting (> {thresholds.max_queue})", data)
    if current == 0:
        return Check("queue", "pass", "empty", data)
    if len(queues) == 1:
        if serving == 0 and summary.jobs.in_progress == 0:
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


def _workers_check(summary: HealthSummary, thresholds: Thresholds) -> Check:
    workers, minimum, ups = summary.workers, thresholds.workers_min, summary.up_samples
    shown = ", ".join(f"{k} {v}" for k, v in workers.items()) or "none reported"
    data: dict[str, Any] = {"up": ups, "workersMin": minimum, **workers}
    if minimum and all(count < minimum for count in ups):
        return Check(
            "workers",
            "fail",
            f"{' -> '.join(map(str, ups))} worker(s) up (idle or running) over {len(ups)} "
            f"sample(s), below workersMin {minimum} in every one ({shown}): RunPod is not "
            "keeping the always-on workers; check the endpoint's workers and GPU availability",
            data,
        )
    target = f" (workersMin {minimum})" if minimum else ""
    return Check("workers", "pass", f"{shown}{target}", data)


def workers_min_from_stack_file(path: Path) -> int:
    """``serverless.workersMin`` of a stack file (its Pulumi.yaml default when unset)."""
    from components.config import SCHEMA_BY_NAME  # noqa: PLC0415

    if not path.is_file():
        raise FileNotFoundError(f"--stack-file {path}: no such stack file")
    key = "serverless.workersMin"
    raw = stack_values(path).get(key, str(SCHEMA_BY_NAME[key].default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {key} is {raw!r}, not an integer") from exc
