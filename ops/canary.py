"""The canary gate: N requests at concurrency C, judged exactly as the rollout plan says.

Owns: firing requests through ``/run`` + ``/status`` (so a failed job's error is kept),
telling cold from warm requests by the worker that served them, summarising success rate,
latency percentiles and execution time as typed data (:class:`CanarySummary`, what the JSON
document, the cost report and a step-summary renderer read), and the gates:

- success rate >= 98 % (inclusive, as the plan's "should be >98%" is read since issue 1);
- warm p95 latency **under** 10 s, over at least ``min_warm`` warm requests (default 20):
  fewer, or none, is a failure that says so, never a pass on too little evidence;
- cold p95 latency <= 90 s (the plan's table), when cold requests were measured.

Cold versus warm follows the worker's cold start, not time spent queued: a request is
**cold** when the worker that ran it had to start for it, i.e. it is the first request that
worker ran in this canary and the endpoint had no warm worker when the canary began
(``/health`` read first), or that worker had been idle longer than the endpoint's idle
timeout since its previous request. When the endpoint did have warm workers before the run
(or ``/health`` could not say), the first request of each worker counts as cold only when
its ``delayTime`` reaches ``cold_threshold_s``. Every other timed request is **warm**, however
long it waited in the queue. A request without ``delayTime`` or ``workerId`` is neither
(``untimed``). Both ways RunPod may report workers are handled: a new ``workerId`` per boot
(the first request of an id) and an id kept across boots (the idle gap).

Client-side backoff on 429 lives in :mod:`ops.jobs`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from ops.jobs import JobClient, JobOutcome
from ops.report import CamelJson, Check, Status, percent, seconds
from ops.stats import median, percentile

DEFAULT_PROMPT = "a treasure chest game asset, isometric, clean background"

Kind = Literal["cold", "warm", "untimed"]


def default_input(index: int) -> dict[str, Any]:
    """The canary's request: a small txt2img with a distinct seed per request."""
    return {
        "template": "flux_txt2img",
        "params": {
            "prompt": DEFAULT_PROMPT,
            "seed": 1000 + index,
            "width": 768,
            "height": 768,
            "steps": 8,
        },
    }


@dataclass(frozen=True, kw_only=True)
class Gates(CamelJson):
    """The thresholds a canary must meet; None disables a latency gate (``as_json()``: the
    ``gates`` of ``ops canary --json``)."""

    min_success: float = 0.98
    """Fraction of requests that must complete (inclusive)."""
    max_warm_p95_s: float | None = 10.0
    """Warm p95 end-to-end latency must stay **under** this, seconds."""
    min_warm: int = 20
    """Warm requests needed before the warm gate can pass."""
    max_cold_p95_s: float | None = 90.0
    """p95 end-to-end latency of cold requests, seconds (inclusive)."""
    idle_timeout_s: float = 5.0
    """The endpoint's idle timeout: a worker idle longer than this starts cold again."""
    cold_threshold_s: float = 10.0
    """With workers warm before the run: a worker's first request is cold from this
    ``delayTime`` on (seconds)."""


@dataclass(frozen=True)
class Sample:
    """One canary request: the job's outcome, when it was sent and how long it took."""

    outcome: JobOutcome
    sent_s: float
    """Clock reading when the request was sent (seconds, any origin)."""
    latency_s: float
    """End-to-end latency as the caller saw it: /run until the final /status."""


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99 in seconds (None without samples)."""

    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        """The percentiles of ``values``, rounded to the millisecond."""
        return cls(*(_round(percentile(values, q)) for q in (50, 95, 99)))


@dataclass(frozen=True)
class KindBlock:
    """The completed requests of one kind: how many, and their end-to-end latency."""

    count: int
    latency_s: Percentiles


@dataclass(frozen=True)
class ColdBlock(KindBlock):
    """The completed requests whose worker started for them, and what that start took."""

    cold_start_s: float | None
    """Median delay of cold requests beyond that of warm ones: the worker's start."""


@dataclass(frozen=True)
class FailureKind:
    """One kind of failure, how often, and one example."""

    kind: str
    """The status, with the error type when there is one: ``FAILED (out_of_memory)``."""
    count: int
    reason: str
    """The first such failure's one-line reason."""


@dataclass(frozen=True)
class LatencyPoint:
    """One request for charts: when it was sent (s from the first), how long, and its kind."""

    sent_s: float
    latency_s: float
    kind: Kind
    ok: bool


@dataclass(frozen=True, kw_only=True)
class CanarySummary(CamelJson):
    """Every figure the gates, the cost report and a step-summary renderer need.

    ``as_json()`` is the ``summary`` of ``ops canary --json``, as the workflows, the gate
    record and ``ops cost --canary-json`` read it.
    """

    requests: int
    completed: int
    failed: int
    """Requests that did not complete (any status but COMPLETED)."""
    success_rate: float | None
    """completed / requests (None without requests)."""
    latency_s: Percentiles
    """End-to-end latency of the completed requests."""
    warm: KindBlock
    """Requests that found their worker running."""
    cold: ColdBlock
    untimed: int
    """Completed requests without ``delayTime`` or ``workerId``: neither cold nor warm."""
    warm_workers_before: int | None
    """Workers idle or running before the run (None when ``/health`` could not say)."""
    cold_fraction: float | None
    """cold / completed (None when nothing completed)."""
    delay_s: Percentiles
    """RunPod's ``delayTime`` (queue and worker start) of the completed requests."""
    execution_s: Percentiles
    """RunPod's ``executionTime`` of the completed requests."""
    throttled_429: int
    """429 answers the client waited out."""
    wall_s: float
    failures: list[FailureKind]
    latencies: list[LatencyPoint]
    """Every request in send order, for the per-request chart."""


def run_canary(
    client: JobClient,
    *,
    requests: int,
    concurrency: int,
    timeout_s: float,
    poll_s: float,
    make_input: Callable[[int], Any] = default_input,
    on_done: Callable[[JobOutcome], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Sample]:
    """Fire ``requests`` jobs, at most ``concurrency`` in flight; never raises per job."""
    lock = threading.Lock()

    def one(index: int) -> Sample:
        with lock:
            sent = clock()
        outcome = client.run_and_wait(make_input(index), timeout_s=timeout_s, poll_s=poll_s)
        with lock:
            finished = clock()
        if on_done is not None:
            on_done(outcome)
        return Sample(outcome=outcome, sent_s=sent, latency_s=finished - sent)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, range(requests)))


def warm_workers(health: dict[str, Any]) -> int:
    """Workers up and able to take a job at once, from a ``/health`` body (idle + running)."""
    workers = health.get("workers") or {}
    return sum(int(workers.get(state) or 0) for state in ("idle", "running"))


def classify(
    samples: Sequence[Sample], *, gates: Gates, warm_workers_before: int | None
) -> list[Kind]:
    """Cold, warm or untimed for each sample, by the worker that served it (module doc)."""
    kinds: list[Kind] = ["untimed"] * len(samples)
    timelines: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for index, sample in enumerate(samples):
        outcome = sample.outcome
        if outcome.delay_ms is None or not outcome.worker_id:
            continue
        started = sample.sent_s + outcome.delay_ms / 1000
        ended = started + (outcome.execution_ms or 0) / 1000
        timelines[outcome.worker_id].append((started, ended, index))
    for runs in timelines.values():
        runs.sort()
        previous_end: float | None = None
        for started, ended, index in runs:
            delay_s = (samples[index].outcome.delay_ms or 0) / 1000
            if previous_end is None:
                # Nothing was running before the run: this worker started for this request.
                cold = warm_workers_before == 0 or delay_s >= gates.cold_threshold_s
            else:
                cold = started - previous_end > gates.idle_timeout_s
            kinds[index] = "cold" if cold else "warm"
            previous_end = max(ended, previous_end or ended)
    return kinds


def summarize(
    samples: Sequence[Sample],
    *,
    gates: Gates,
    wall_s: float,
    warm_workers_before: int | None = None,
) -> CanarySummary:
    """Every figure the gates and the cost report need."""
    kinds = classify(samples, gates=gates, warm_workers_before=warm_workers_before)
    completed = [s for s in samples if s.outcome.ok]
    cold, warm, untimed = _completed_by_kind(samples, kinds)
    return CanarySummary(
        requests=len(samples),
        completed=len(completed),
        failed=len(samples) - len(completed),
        success_rate=_ratio(len(completed), len(samples)),
        latency_s=Percentiles.of(_latencies(completed)),
        warm=KindBlock(count=len(warm), latency_s=Percentiles.of(_latencies(warm))),
        cold=ColdBlock(
            count=len(cold),
            latency_s=Percentiles.of(_latencies(cold)),
            cold_start_s=_cold_start(cold, warm),
        ),
        untimed=len(untimed),
        warm_workers_before=warm_workers_before,
        cold_fraction=_ratio(len(cold), len(completed)),
        delay_s=Percentiles.of(_delays(completed)),
        execution_s=Percentiles.of(_executions(completed)),
        throttled_429=sum(s.outcome.throttled for s in samples),
        wall_s=round(wall_s, 3),
        failures=_failure_kinds([s.outcome for s in samples if not s.outcome.ok]),
        latencies=_latency_points(samples, kinds),
    )


def _completed_by_kind(
    samples: Sequence[Sample], kinds: Sequence[Kind]
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """The completed requests that were cold, warm and untimed."""
    groups: dict[Kind, list[Sample]] = {"cold": [], "warm": [], "untimed": []}
    for sample, kind in zip(samples, kinds, strict=True):
        if sample.outcome.ok:
            groups[kind].append(sample)
    return groups["cold"], groups["warm"], groups["untimed"]


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _latencies(group: Sequence[Sample]) -> list[float]:
    return [s.latency_s for s in group]


def _delays(group: Sequence[Sample]) -> list[float]:
    return [s.outcome.delay_ms / 1000 for s in group if s.outcome.delay_ms is not None]


def _executions(group: Sequence[Sample]) -> list[float]:
    return [s.outcome.execution_ms / 1000 for s in group if s.outcome.execution_ms is not None]


def _cold_start(cold: Sequence[Sample], warm: Sequence[Sample]) -> float | None:
    """How much longer cold requests waited than warm ones (medians): the worker's start."""
    if not cold:
        return None
    return _round(max(0.0, (median(_delays(cold)) or 0.0) - (median(_delays(warm)) or 0.0)))


def _failure_kinds(failed: Sequence[JobOutcome]) -> list[FailureKind]:
    """Failures grouped by status and error type (messages often carry job ids), most common
    first, each with its first example."""
    counts = Counter(_kind(o) for o in failed)
    examples = {_kind(o): o.reason() for o in reversed(failed)}
    return [
        FailureKind(kind=kind, count=n, reason=examples[kind]) for kind, n in counts.most_common()
    ]


def _kind(outcome: JobOutcome) -> str:
    if outcome.error_type:
        return f"{outcome.status} ({outcome.error_type})"
    return outcome.reason()


def _latency_points(samples: Sequence[Sample], kinds: Sequence[Kind]) -> list[LatencyPoint]:
    first = min((s.sent_s for s in samples), default=0.0)
    return [
        LatencyPoint(
            sent_s=round(s.sent_s - first, 3),
            latency_s=round(s.latency_s, 3),
            kind=k,
            ok=s.outcome.ok,
        )
        for s, k in zip(samples, kinds, strict=True)
    ]


def evaluate(summary: CanarySummary, gates: Gates) -> list[Check]:
    """The gate verdicts, each saying why it passed or failed."""
    return [
        _success_check(summary, gates),
        _warm_check(summary, gates),
        _cold_check(summary, gates),
    ]


def _success_check(summary: CanarySummary, gates: Gates) -> Check:
    rate = summary.success_rate
    top = "; ".join(f"{f.count}x {f.reason}" for f in summary.failures[:3])
    detail = (
        f"{percent(rate)} (>= {gates.min_success * 100:.1f} % needed): "
        f"{summary.failed} of {summary.requests} failed"
    )
    if top:
        detail += f": {top}"
    ok = rate is not None and rate >= gates.min_success
    return Check("success rate", "pass" if ok else "fail", detail, {"value": rate})


def _warm_check(summary: CanarySummary, gates: Gates) -> Check:
    label, limit = "warm p95 latency", gates.max_warm_p95_s
    value, count = summary.warm.latency_s.p95, summary.warm.count
    data: dict[str, Any] = {"value": value, "limit": limit, "count": count, "min": gates.min_warm}
    if limit is None:
        return Check(label, "skip", f"{seconds(value)}; gate disabled", data)
    untimed = summary.untimed
    if count == 0 or value is None:
        why = "every completed request hit a cold start" + (
            f" or had no timing ({untimed} untimed)" if untimed else ""
        )
        return Check(
            label,
            "fail",
            f"no warm request measured ({why}); at least {gates.min_warm} needed: send more "
            "requests (--requests) with workers kept warm",
            data,
        )
    if count < gates.min_warm:
        return Check(
            label,
            "fail",
            f"only {count} warm request(s) measured, at least {gates.min_warm} needed to judge "
            f"p95 (measured {seconds(value)}): send more requests (--requests) or lower "
            "--min-warm",
            data,
        )
    passed = value < limit
    sign = "<" if passed else ">="
    return Check(
        label,
        "pass" if passed else "fail",
        f"{seconds(value)} {sign} {limit:g} s over {count} warm request(s)",
        data,
    )


def _cold_check(summary: CanarySummary, gates: Gates) -> Check:
    label, limit = "cold p95 latency", gates.max_cold_p95_s
    value, count = summary.cold.latency_s.p95, summary.cold.count
    if limit is None:
        return Check(label, "skip", f"{seconds(value)}; gate disabled", {"value": value})
    if value is None:
        return Check(label, "skip", "no cold requests measured", {"value": None})
    passed = value <= limit
    verdict: Status = "pass" if passed else "fail"
    sign = "<=" if passed else ">"
    return Check(
        label,
        verdict,
        f"{seconds(value)} {sign} {limit:g} s over {count} cold request(s), cold start "
        f"~{seconds(summary.cold.cold_start_s)}",
        {"value": value, "limit": limit},
    )
