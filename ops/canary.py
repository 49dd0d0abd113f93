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
from typing import Any, Literal, TypedDict

from ops.jobs import JobClient, JobOutcome
from ops.report import Check, Status, percent, seconds
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
class Gates:
    """The thresholds a canary must meet; None disables a latency gate."""

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


class Percentiles(TypedDict):
    """p50/p95/p99 in seconds (None without samples)."""

    p50: float | None
    p95: float | None
    p99: float | None


class WarmBlock(TypedDict):
    """Requests that found their worker running."""

    count: int
    latencyS: Percentiles


class ColdBlock(TypedDict):
    """Requests whose worker started for them."""

    count: int
    latencyS: Percentiles
    coldStartS: float | None


class FailureKind(TypedDict):
    """One kind of failure, how often, and one example."""

    kind: str
    count: int
    reason: str


class LatencyPoint(TypedDict):
    """One request for charts: when it was sent (s from the first), how long, and its kind."""

    sentS: float
    latencyS: float
    kind: Kind
    ok: bool


class CanarySummary(TypedDict):
    """Every figure the gates, the cost report and a step-summary renderer need."""

    requests: int
    completed: int
    failed: int
    successRate: float | None
    latencyS: Percentiles
    warm: WarmBlock
    cold: ColdBlock
    untimed: int
    warmWorkersBefore: int | None
    coldFraction: float | None
    delayS: Percentiles
    executionS: Percentiles
    throttled429: int
    wallS: float
    failures: list[FailureKind]
    latencies: list[LatencyPoint]


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


def _kind(outcome: JobOutcome) -> str:
    if outcome.error_type:
        return f"{outcome.status} ({outcome.error_type})"
    return outcome.reason()


def _pcts(values: Sequence[float]) -> Percentiles:
    return Percentiles(
        p50=_round(percentile(values, 50)),
        p95=_round(percentile(values, 95)),
        p99=_round(percentile(values, 99)),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(
    samples: Sequence[Sample],
    *,
    gates: Gates,
    wall_s: float,
    warm_workers_before: int | None = None,
) -> CanarySummary:
    """Every figure the gates and the cost report need, JSON-ready."""
    kinds = classify(samples, gates=gates, warm_workers_before=warm_workers_before)
    done = [(s, k) for s, k in zip(samples, kinds, strict=True) if s.outcome.ok]
    cold = [s for s, k in done if k == "cold"]
    warm = [s for s, k in done if k == "warm"]
    # Group by status and error type (messages often carry job ids); keep one example each.
    failed = [s.outcome for s in samples if not s.outcome.ok]
    kinds_of_failure = Counter(_kind(o) for o in failed)
    examples = {_kind(o): o.reason() for o in reversed(failed)}

    def delays(group: Sequence[Sample]) -> list[float]:
        return [s.outcome.delay_ms / 1000 for s in group if s.outcome.delay_ms is not None]

    cold_start = None
    if cold:
        cold_start = max(0.0, (median(delays(cold)) or 0.0) - (median(delays(warm)) or 0.0))
    first = min((s.sent_s for s in samples), default=0.0)
    return CanarySummary(
        requests=len(samples),
        completed=len(done),
        failed=len(samples) - len(done),
        successRate=(len(done) / len(samples)) if samples else None,
        latencyS=_pcts([s.latency_s for s, _ in done]),
        warm=WarmBlock(count=len(warm), latencyS=_pcts([s.latency_s for s in warm])),
        cold=ColdBlock(
            count=len(cold),
            latencyS=_pcts([s.latency_s for s in cold]),
            coldStartS=_round(cold_start),
        ),
        untimed=sum(1 for _, k in done if k == "untimed"),
        warmWorkersBefore=warm_workers_before,
        coldFraction=(len(cold) / len(done)) if done else None,
        delayS=_pcts(delays([s for s, _ in done])),
        executionS=_pcts(
            [s.outcome.execution_ms / 1000 for s, _ in done if s.outcome.execution_ms is not None]
        ),
        throttled429=sum(s.outcome.throttled for s in samples),
        wallS=round(wall_s, 3),
        failures=[
            FailureKind(kind=kind, count=n, reason=examples[kind])
            for kind, n in kinds_of_failure.most_common()
        ],
        latencies=[
            LatencyPoint(
                sentS=round(s.sent_s - first, 3),
                latencyS=round(s.latency_s, 3),
                kind=k,
                ok=s.outcome.ok,
            )
            for s, k in zip(samples, kinds, strict=True)
        ],
    )


def evaluate(summary: CanarySummary, gates: Gates) -> list[Check]:
    """The gate verdicts, each saying why it passed or failed."""
    return [
        _success_check(summary, gates),
        _warm_check(summary, gates),
        _cold_check(summary, gates),
    ]


def _success_check(summary: CanarySummary, gates: Gates) -> Check:
    rate = summary["successRate"]
    top = "; ".join(f"{f['count']}x {f['reason']}" for f in summary["failures"][:3])
    detail = (
        f"{percent(rate)} (>= {gates.min_success * 100:.1f} % needed): "
        f"{summary['failed']} of {summary['requests']} failed"
    )
    if top:
        detail += f": {top}"
    ok = rate is not None and rate >= gates.min_success
    return Check("success rate", "pass" if ok else "fail", detail, {"value": rate})


def _warm_check(summary: CanarySummary, gates: Gates) -> Check:
    label, limit = "warm p95 latency", gates.max_warm_p95_s
    value, count = summary["warm"]["latencyS"]["p95"], summary["warm"]["count"]
    data: dict[str, Any] = {"value": value, "limit": limit, "count": count, "min": gates.min_warm}
    if limit is None:
        return Check(label, "skip", f"{seconds(value)}; gate disabled", data)
    untimed = summary["untimed"]
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
    value, count = summary["cold"]["latencyS"]["p95"], summary["cold"]["count"]
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
        f"~{seconds(summary['cold']['coldStartS'])}",
        {"value": value, "limit": limit},
    )
