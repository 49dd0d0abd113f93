"""An emulator of RunPod's serverless *job* API on loopback, for the ops CLI and its tests.

Owns: the HTTP surface of ``https://api.runpod.ai/v2/{endpointId}/...`` as described in
``../shared/reference/runpod-api.md`` section 4 (``/run``, ``/runsync?wait=``, ``/status``,
``/cancel``, ``/retry``, ``/health``), the job life cycle (IN_QUEUE → IN_PROGRESS →
COMPLETED | FAILED | CANCELLED | TIMED_OUT), ``delayTime``/``executionTime``, result
retention, payload and rate limits, and a small pool of workers that run a pluggable worker
function ``(job: dict) -> dict`` exactly like ``runpod.serverless`` would: a raising worker
yields FAILED with ``error`` = a JSON string ``{"error_type", "error_message",
"error_traceback"}``; a worker that returns ``{"error": ...}`` yields FAILED with that error
(the rest of the dict stays as ``output``).

Progress: :meth:`JobApiEmulator.progress_update` is the platform side of the SDK's
``runpod.serverless.progress_update(job, progress)``: the SDK posts ``{"status":
"IN_PROGRESS", "output": progress}`` for the job, and ``/status`` shows the latest progress
as the job's ``output`` while it runs (runpod-python #12, #105); the result replaces it.
Webhooks: a job submitted with ``webhook`` gets one POST of its ``/status`` body when it ends
(COMPLETED, FAILED, TIMED_OUT), retried up to 2 more times, 10 s apart, until the receiver
answers 200 (RunPod's "Send API requests" page; ``webhook_retry_delay_s`` shortens the wait
in tests). Whether RunPod also calls it for a job cancelled through ``/cancel`` is
unconfirmed: the stand-in does not, so an app cannot come to rely on it.

Faults for tests: a cold-start delay per worker boot, an idle timeout after which a worker
goes cold again, a deterministic failure rate, 429 storms (by count or duration), paused
workers (a queue that does not drain). Deliberately not emulated: streaming,
``/purge-queue``. Unconfirmed details, chosen here and
tolerated by the client either way: ``/runsync`` waits 90 s when ``?wait=`` is absent;
oversized bodies answer 413; error bodies are ``{"error": "..."}``; whether RunPod keeps
the rest of a returned ``{"error": ...}`` dict as ``output`` (the SDK sends it; the ops
client also copes when it is dropped). The management API (``api.runpod.io``)
is a different host with its own emulator, ``tests/fakes/runpod_api.py``.

``python -m tests.fakes.runpod_jobs --worker worker.handler:handler`` serves it until
interrupted, running the named function for each job (``scripts/sandbox`` does).
"""

from __future__ import annotations

import json
import math
import queue
import re
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

WorkerFn = Callable[[dict[str, Any]], Any]

DEFAULT_API_KEY = "test-runpod-key"  # a local double's credential, not a real one
DEFAULT_ENDPOINT_ID = "ep-test123"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
RUN_MAX_BYTES = 10 * 1024 * 1024
RUNSYNC_MAX_BYTES = 20 * 1024 * 1024
_ALLOWED_BODY_KEYS = frozenset({"input", "webhook", "policy", "s3Config"})
_ALLOWED_POLICY_KEYS = frozenset({"executionTimeout", "ttl", "lowPriority"})
_PATH = re.compile(
    r"^/v2/(?P<endpoint>[A-Za-z0-9_-]+)/(?P<op>run|runsync|status|cancel|retry|health)"
    r"(?:/(?P<job>[A-Za-z0-9_-]+))?/?$"
)


def echo_worker(job: dict[str, Any]) -> dict[str, Any]:
    """A trivial worker: returns its input as output."""
    return {"echo": job["input"]}


@dataclass
class Job:
    """One job as the emulator tracks it."""

    id: str
    input: Any
    sync: bool
    submitted_at: float
    execution_timeout_s: float
    ttl_s: float | None
    status: str = "IN_QUEUE"
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None
    worker_id: str | None = None
    webhook: str | None = None
    attempt: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    progress: Any = None
    """The latest ``progress_update`` of the running attempt."""
    progress_updates: list[Any] = field(default_factory=list)
    """Every progress update received, in order (for assertions)."""

    def view(self) -> dict[str, Any]:
        """The ``/status`` body for this job."""
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_at is not None:
            body["delayTime"] = int((self.started_at - self.submitted_at) * 1000)
            if self.worker_id:
                body["workerId"] = self.worker_id
        if self.finished_at is not None and self.started_at is not None:
            body["executionTime"] = int((self.finished_at - self.started_at) * 1000)
        if self.status == "IN_PROGRESS" and self.progress is not None:
            body["output"] = self.progress
        if self.status in TERMINAL:
            if self.output is not None:
                body["output"] = self.output
            if self.error is not None:
                body["error"] = self.error
        return body


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST the stand-in made to a job's webhook."""

    job_id: str
    attempt: int
    """1 for the first call, 2 and 3 for the retries."""
    status: int | None
    """The receiver's HTTP status (None: no answer)."""
    body: dict[str, Any]


@dataclass
class _Storm:
    remaining: int | None
    until: float | None
    routes: frozenset[str]
    retry_after: float | None


class JobApiEmulator:
    """RunPod's serverless job API for one endpoint, served on 127.0.0.1.

    Use as a context manager; ``base_url`` is what ``RUNPOD_ENDPOINT_BASE_URL`` should be.
    """

    def __init__(
        self,
        worker: WorkerFn = echo_worker,
        *,
        endpoint_id: str = DEFAULT_ENDPOINT_ID,
        api_key: str = DEFAULT_API_KEY,
        workers: int = 2,
        cold_start_s: float = 0.0,
        idle_timeout_s: float = 5.0,
        execution_timeout_s: float = 600.0,
        failure_rate: float = 0.0,
        run_limit: tuple[int, float] = (1000, 10.0),
        runsync_limit: tuple[int, float] = (2000, 10.0),
        run_retention_s: float = 1800.0,
        runsync_retention_s: float = 60.0,
        webhook_retry_delay_s: float = 10.0,
        webhook_timeout_s: float = 10.0,
    ) -> None:
        self.worker = worker
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.cold_start_s = cold_start_s
        self.idle_timeout_s = idle_timeout_s
        self.execution_timeout_s = execution_timeout_s
        self.run_retention_s = run_retention_s
        self.runsync_retention_s = runsync_retention_s
        self._limits = {"run": run_limit, "runsync": runsync_limit}
        self._windows: dict[str, deque[float]] = {"run": deque(), "runsync": deque()}
        self._failure_rate = failure_rate
        self._executions = 0
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._storms: list[_Storm] = []
        self._paused = threading.Event()
        self._stopping = threading.Event()
        self._worker_states: dict[int, str] = {}
        self._counters = {"completed": 0, "failed": 0, "retried": 0}
        self.requests: list[tuple[str, str, int]] = []
        """Every request served: (method, path, status code)."""
        self.webhook_retry_delay_s = webhook_retry_delay_s
        self.webhook_timeout_s = webhook_timeout_s
        self.webhook_attempts: list[WebhookAttempt] = []
        """Every webhook POST made, in order."""
        self._webhook_threads: list[threading.Thread] = []
        self._n_workers = workers
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None

    # --- life cycle -------------------------------------------------------------------
    def start(self) -> JobApiEmulator:
        """Bind an ephemeral loopback port and start serving and working."""
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        serve = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        serve.start()
        for index in range(self._n_workers):
            self._worker_states[index] = "off"
            thread = threading.Thread(target=self._worker_loop, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving; abandon unfinished jobs."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> JobApiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The ``https://api.runpod.ai/v2`` equivalent on loopback."""
        assert self._server is not None, "start() the emulator first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v2"

    # --- fault injection --------------------------------------------------------------
    def set_failure_rate(self, rate: float) -> None:
        """Make this fraction of executions raise (deterministically spread)."""
        with self._lock:
            self._failure_rate = rate
            self._executions = 0

    def inject_429(
        self,
        *,
        count: int | None = None,
        seconds: float | None = None,
        routes: tuple[str, ...] = ("run", "runsync"),
        retry_after: float | None = None,
    ) -> None:
        """Answer 429 to the next ``count`` requests on ``routes`` (or for ``seconds``)."""
        if count is None and seconds is None:
            raise ValueError("inject_429 needs count or seconds")
        until = None if seconds is None else time.monotonic() + seconds
        with self._lock:
            self._storms.append(_Storm(count, until, frozenset(routes), retry_after))

    def end_429_storms(self) -> None:
        """Drop every injected 429 storm (the real rate limits stay)."""
        with self._lock:
            self._storms.clear()

    def pause_workers(self) -> None:
        """Workers stop taking jobs (throttled): the queue grows and does not drain."""
        self._paused.set()

    def resume_workers(self) -> None:
        """Undo :meth:`pause_workers`."""
        self._paused.clear()

    def job(self, job_id: str) -> Job:
        """The emulator's record of a job (for assertions)."""
        with self._lock:
            return self._jobs[job_id]

    def progress_update(self, job: dict[str, Any], progress: Any) -> None:
        """What ``runpod.serverless.progress_update(job, progress)`` does to a running job.

        An update for a job that is no longer in progress (finished, cancelled, retried) is
        dropped, as the platform keeps only a running job's progress. The value must be
        JSON, as the SDK serialises it.
        """
        json.dumps(progress)  # the SDK sends JSON; anything else fails there
        with self._lock:
            record = self._jobs.get(str(job.get("id")))
            if record is None or record.status != "IN_PROGRESS":
                return
            record.progress = progress
            record.progress_updates.append(progress)

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Block until every webhook delivery started so far has finished (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._webhook_threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def count(self, op: str, status: int | None = None) -> int:
        """How many requests hit ``op`` (optionally with this response status)."""
        return sum(
            1
            for _, path, code in self.requests
            if path.split("?")[0].split("/")[3:4] == [op] and (status is None or code == status)
        )

    # --- HTTP operations ---------------------------------------------------------------
    def handle(  # noqa: PLR0911 - a router: one early return per rejected request
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Serve one request: returns (status, JSON body, extra headers)."""
        parts = urlsplit(path)
        match = _PATH.match(parts.path)
        if not match:
            return 404, {"error": f"no route for {parts.path}"}, {}
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return 401, {"error": "Unauthorized: missing or invalid API key"}, {}
        if match["endpoint"] != self.endpoint_id:
            return 404, {"error": f"endpoint {match['endpoint']} not found"}, {}
        op, job_id = match["op"], match["job"]
        expected = "GET" if op in ("status", "health") else "POST"
        if method != expected:
            return 405, {"error": f"{method} not allowed on /{op}"}, {}
        if (op in ("status", "cancel", "retry")) != (job_id is not None):
            return 404, {"error": f"no route for {parts.path}"}, {}
        limited = self._rate_limited(op)
        if limited is not None:
            return limited
        if op in ("run", "runsync"):
            wait_ms = parse_qs(parts.query).get("wait", ["90000"])[0]
            return self._submit(body, sync=op == "runsync", wait_ms=wait_ms)
        if op == "health":
            return 200, self._health(), {}
        assert job_id is not None
        return self._job_op(op, job_id)

    def _rate_limited(self, op: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        now = time.monotonic()
        with self._lock:
            for storm in list(self._storms):
                if storm.until is not None and now >= storm.until:
                    self._storms.remove(storm)
                    continue
                if op not in storm.routes:
                    continue
                if storm.remaining is not None:
                    storm.remaining -= 1
                    if storm.remaining <= 0:
                        self._storms.remove(storm)
                headers = (
                    {} if storm.retry_after is None else {"Retry-After": str(storm.retry_after)}
                )
                return 429, {"error": "Too Many Requests (injected)"}, headers
            if op in self._windows:
                limit, window = self._limits[op]
                stamps = self._windows[op]
                while stamps and now - stamps[0] >= window:
                    stamps.popleft()
                if len(stamps) >= limit:
                    retry = math.ceil(window - (now - stamps[0]))
                    return 429, {"error": "Too Many Requests"}, {"Retry-After": str(retry)}
                stamps.append(now)
        return None

    def _submit(  # noqa: PLR0911 - one early return per rejected request
        self, raw: bytes, *, sync: bool, wait_ms: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        limit = RUNSYNC_MAX_BYTES if sync else RUN_MAX_BYTES
        if len(raw) > limit:
            return 413, {"error": f"payload of {len(raw)} bytes exceeds {limit} bytes"}, {}
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return 400, {"error": "request body is not valid JSON"}, {}
        problem = _validate_body(body)
        if problem:
            return 400, {"error": problem}, {}
        try:
            wait_s = int(wait_ms) / 1000
        except ValueError:
            return 400, {"error": f"wait must be an integer of milliseconds, got {wait_ms!r}"}, {}
        policy = body.get("policy") or {}
        job = Job(
            id=f"{uuid.uuid4()}-u1",
            input=body["input"],
            sync=sync,
            submitted_at=time.monotonic(),
            execution_timeout_s=policy.get("executionTimeout", self.execution_timeout_s * 1000)
            / 1000,
            ttl_s=None if "ttl" not in policy else policy["ttl"] / 1000,
            webhook=body.get("webhook"),
        )
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put(job.id)
        if not sync:
            return 200, {"id": job.id, "status": "IN_QUEUE"}, {}
        job.done.wait(timeout=max(0.0, wait_s))
        with self._lock:
            view = job.view()
        if view["status"] in TERMINAL:
            return 200, view, {}
        return 200, {"id": job.id, "status": view["status"]}, {}

    def _job_op(self, op: str, job_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        now = time.monotonic()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.finished_at is not None:
                keep = self.runsync_retention_s if job.sync else self.run_retention_s
                if now - job.finished_at > keep:
                    del self._jobs[job_id]
                    job = None
            if job is None:
                return 404, {"error": f"job {job_id} not found"}, {}
            if op == "status":
                return 200, job.view(), {}
            if op == "cancel":
                if job.status not in TERMINAL:
                    self._finish(job, "CANCELLED")
                return 200, {"id": job.id, "status": job.status}, {}
            if job.status not in ("FAILED", "TIMED_OUT"):
                return (
                    400,
                    {"error": f"only FAILED or TIMED_OUT jobs can be retried, job is {job.status}"},
                    {},
                )
            job.status, job.output, job.error = "IN_QUEUE", None, None
            job.started_at = job.finished_at = job.worker_id = None
            job.progress = None
            job.submitted_at = now
            job.attempt += 1
            job.done = threading.Event()
            self._counters["retried"] += 1
        self._queue.put(job.id)
        return 200, {"id": job.id, "status": "IN_QUEUE"}, {}

    def _health(self) -> dict[str, Any]:
        with self._lock:
            statuses = [job.status for job in self._jobs.values()]
            states = list(self._worker_states.values())
            return {
                "jobs": {
                    "completed": self._counters["completed"],
                    "failed": self._counters["failed"],
                    "inProgress": statuses.count("IN_PROGRESS"),
                    "inQueue": statuses.count("IN_QUEUE"),
                    "retried": self._counters["retried"],
                },
                "workers": {
                    "idle": states.count("idle"),
                    "running": states.count("running"),
                    "initializing": states.count("initializing"),
                    "ready": states.count("idle"),
                    "throttled": states.count("throttled"),
                    "unhealthy": 0,
                },
            }

    # --- workers ------------------------------------------------------------------------
    def _finish(
        self, job: Job, status: str, *, output: Any = None, error: str | None = None
    ) -> None:
        """Record a terminal state; the caller holds the lock."""
        job.status, job.output, job.error = status, output, error
        job.finished_at = time.monotonic()
        job.progress = None
        if job.started_at is None and status != "CANCELLED":
            job.started_at = job.finished_at
        if status == "COMPLETED":
            self._counters["completed"] += 1
        elif status in ("FAILED", "TIMED_OUT"):
            self._counters["failed"] += 1
        job.done.set()
        if job.webhook and status != "CANCELLED":
            thread = threading.Thread(
                target=self._deliver_webhook, args=(job.webhook, job.view()), daemon=True
            )
            self._webhook_threads.append(thread)
            thread.start()

    def _deliver_webhook(self, url: str, body: dict[str, Any]) -> None:
        """POST the job's ``/status`` body; 2 more tries ``webhook_retry_delay_s`` apart."""
        for attempt in range(1, 4):
            try:
                answer = requests.post(url, json=body, timeout=self.webhook_timeout_s)
                status: int | None = answer.status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.webhook_attempts.append(WebhookAttempt(body["id"], attempt, status, body))
            if status == 200 or attempt == 3 or self._stopping.wait(self.webhook_retry_delay_s):
                return

    def _should_inject_failure(self) -> bool:
        with self._lock:
            self._executions += 1
            n, rate = self._executions, self._failure_rate
        return math.floor(n * rate + 1e-9) > math.floor((n - 1) * rate + 1e-9)

    def _worker_loop(self, index: int) -> None:
        warm = False
        generation = 0
        last_active = time.monotonic()
        while not self._stopping.is_set():
            if self._paused.is_set():
                with self._lock:
                    self._worker_states[index] = "throttled" if warm else "off"
                self._stopping.wait(0.02)
                continue
            try:
                job_id = self._queue.get(timeout=0.02)
            except queue.Empty:
                if warm and time.monotonic() - last_active > self.idle_timeout_s:
                    warm = False
                with self._lock:
                    self._worker_states[index] = "idle" if warm else "off"
                continue
            if self._paused.is_set():  # paused while this worker waited: hand the job back
                self._queue.put(job_id)
                continue
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.status != "IN_QUEUE":
                    continue
                if job.ttl_s is not None and time.monotonic() - job.submitted_at > job.ttl_s:
                    self._finish(job, "TIMED_OUT", error="job expired in queue (policy.ttl)")
                    continue
                self._worker_states[index] = "running" if warm else "initializing"
            if not warm:
                generation += 1
                if self._stopping.wait(self.cold_start_s):
                    return
                warm = True
            worker_id = f"{self.endpoint_id}-w{index}-{generation}"
            with self._lock:
                if job.status != "IN_QUEUE":  # cancelled while this worker booted
                    self._worker_states[index] = "idle"
                    continue
                job.status, job.started_at, job.worker_id = (
                    "IN_PROGRESS",
                    time.monotonic(),
                    worker_id,
                )
                self._worker_states[index] = "running"
            self._execute(job)
            last_active = time.monotonic()

    def _execute(self, job: Job) -> None:
        result: dict[str, Any] = {}
        attempt = job.attempt
        fail = self._should_inject_failure()

        worker = _injected_failure if fail else self.worker

        def run() -> None:
            try:
                result["value"] = worker({"id": job.id, "input": job.input})
            except Exception as exc:  # noqa: BLE001 - mirrors runpod.serverless: any raise → FAILED
                result["raised"] = json.dumps(
                    {
                        "error_type": str(type(exc)),
                        "error_message": str(exc),
                        "error_traceback": traceback.format_exc(),
                    }
                )

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        runner.join(timeout=job.execution_timeout_s)
        with self._lock:
            if job.status != "IN_PROGRESS" or job.attempt != attempt:
                return  # cancelled meanwhile: the result is discarded
            if runner.is_alive():
                self._finish(job, "TIMED_OUT", error="job exceeded its execution timeout")
            elif "raised" in result:
                self._finish(job, "FAILED", error=result["raised"])
            else:
                value = result.get("value")
                if isinstance(value, dict) and value.get("error"):
                    rest = {k: v for k, v in value.items() if k not in ("error", "refresh_worker")}
                    error = value["error"]
                    self._finish(
                        job,
                        "FAILED",
                        output=rest or None,
                        error=error if isinstance(error, str) else json.dumps(error),
                    )
                else:
                    self._finish(job, "COMPLETED", output=value)


def _injected_failure(job: dict[str, Any]) -> dict[str, Any]:
    """The worker used for executions the failure rate picks."""
    raise RuntimeError(f"injected worker failure (job {job['id']})")


def _validate_body(body: Any) -> str | None:  # noqa: PLR0911 - one early return per rule
    """What RunPod would reject about a /run body, or None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object with an 'input' field"
    unknown = sorted(set(body) - _ALLOWED_BODY_KEYS)
    if unknown:
        return f"unknown fields: {', '.join(unknown)}"
    if "input" not in body or body["input"] is None:
        return "missing required field 'input'"
    if "webhook" in body and not isinstance(body["webhook"], str):
        return "webhook must be a URL string"
    policy = body.get("policy")
    if policy is not None:
        if not isinstance(policy, dict) or set(policy) - _ALLOWED_POLICY_KEYS:
            return f"policy accepts only {sorted(_ALLOWED_POLICY_KEYS)}"
        for key in ("executionTimeout", "ttl"):
            value = policy.get(key)
            if value is not None and (not isinstance(value, int) or value <= 0):
                return f"policy.{key} must be a positive integer of milliseconds"
    return None


def _make_handler(emulator: JobApiEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, extra = emulator.handle(self.command, self.path, headers, body)
            emulator.requests.append((self.command, self.path, status))
            data = json.dumps(payload).encode()
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler


@contextmanager
def job_api(worker: WorkerFn = echo_worker, **options: Any) -> Iterator[JobApiEmulator]:
    """Run a :class:`JobApiEmulator` for the duration of a ``with`` block."""
    emulator = JobApiEmulator(worker, **options)
    with emulator:
        yield emulator


def main(argv: list[str] | None = None) -> None:
    """Serve the job API until Ctrl-C or SIGTERM, running ``--worker`` for each job."""
    import argparse  # noqa: PLC0415 - only the command line needs these
    import importlib  # noqa: PLC0415
    import signal  # noqa: PLC0415

    parser = argparse.ArgumentParser(description="RunPod's serverless job API on 127.0.0.1")
    parser.add_argument(
        "--worker",
        default="tests.fakes.runpod_jobs:echo_worker",
        metavar="MODULE:FUNCTION",
        help="the function each job runs, e.g. worker.handler:handler (the real handler)",
    )
    parser.add_argument("--workers", type=int, default=2, help="workers taking jobs at once")
    parser.add_argument("--endpoint-id", default=DEFAULT_ENDPOINT_ID)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args(argv)
    module_name, _, name = args.worker.partition(":")
    module = importlib.import_module(module_name)
    worker = getattr(module, name)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    emulator = JobApiEmulator(
        worker, endpoint_id=args.endpoint_id, api_key=args.api_key, workers=args.workers
    )
    if hasattr(module, "progress_sink"):
        # What the worker's main() does with runpod.serverless.progress_update.
        module.progress_sink = emulator.progress_update
    with emulator:
        print(
            f"RunPod job API stand-in at {emulator.base_url} (endpoint {args.endpoint_id}, "
            f"worker {args.worker}); Ctrl-C stops it",
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
