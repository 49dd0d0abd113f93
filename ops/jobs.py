"""A small client for RunPod's serverless job API: ``/run`` + ``/status`` with 429 backoff.

Owns: HTTP calls to ``{base}/{endpointId}/run|status|cancel|health``, client-side backoff on
429 (``Retry-After`` when given, else capped exponential with jitter), and turning a job's
final ``/status`` into a :class:`JobOutcome` whose error is one line a person can act on.
It deliberately does not use the SDK's ``run_sync``: that drops the ``error`` of a FAILED
job, which is the one thing a gate needs.

The 429 backoff is :class:`Backoff` and a loop, not tenacity like the management client's
retries: its wait comes from each answer's ``Retry-After`` (a tenacity wait would have to
dig the last response out of the retry state to read it), a POST is retried on 429 only
(a job whose answer was lost must not run twice) while a GET also retries connection
errors and 5xx, and the canary times every request across these waits: the policy is one
small dataclass its tests drive directly.

Every request carries a User-Agent (like the management client's; Cloudflare in front of
RunPod has been reported to refuse requests without one). The endpoint id is checked
before it enters a URL, and an answer of unexpected shape or type becomes a
:class:`JobApiError` (a failing check for the CLI, never a traceback). Every error names
the host and the call it tried.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
#: Statuses the client invents when it never saw the job finish.
CLIENT_TIMEOUT = "CLIENT_TIMEOUT"
RATE_LIMITED = "RATE_LIMITED"
REQUEST_ERROR = "REQUEST_ERROR"
USER_AGENT: Final = "comfyui-runpod-ops/0.1"
ENDPOINT_ID: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_JOB_COUNTERS: Final = ("completed", "failed", "inProgress", "inQueue", "retried")


class JobApiError(Exception):
    """The job API answered with an error (or could not be reached)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedError(JobApiError):
    """Still 429 after every retry the backoff policy allows."""


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How the client waits out 429s."""

    max_retries: int = 8
    """Retries per request after a 429 (0 = fail on the first)."""
    base_s: float = 0.5
    """First wait when the server sends no Retry-After; doubles each retry."""
    max_s: float = 30.0
    """Cap for any single wait, Retry-After included."""

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after:
            try:
                return min(self.max_s, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to exponential backoff
        ceiling = min(self.max_s, self.base_s * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True, kw_only=True)
class JobOutcome:
    """What happened to one job, as a gate needs it."""

    job_id: str | None
    status: str
    latency_s: float
    delay_ms: int | None = None
    execution_ms: int | None = None
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    worker_id: str | None = None
    throttled: int = 0

    @property
    def ok(self) -> bool:
        """The job completed."""
        return self.status == "COMPLETED"

    def reason(self) -> str:
        """One line: why the job did not complete."""
        if self.ok:
            return "completed"
        kind = f" ({self.error_type})" if self.error_type else ""
        return f"{self.status}{kind}: {self.error or 'no error message'}"


@dataclass
class JobClient:
    """The job API of one endpoint."""

    base_url: str
    endpoint_id: str
    api_key: str = field(repr=False)
    backoff: Backoff = field(default_factory=Backoff)
    request_timeout_s: float = 30.0
    pool_size: int = 16
    sleep: Callable[[float], None] = time.sleep
    _session: requests.Session | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    throttled: int = field(default=0, init=False)
    """429 answers seen so far (all requests)."""

    @property
    def session(self) -> requests.Session:
        """One pooled session, created on first use."""
        with self._lock:
            if self._session is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["Authorization"] = f"Bearer {self.api_key}"
                session.headers["User-Agent"] = USER_AGENT
                self._session = session
            return self._session

    @property
    def host(self) -> str:
        """The job API host, as errors name it (e.g. ``api.runpod.ai``)."""
        return urlsplit(self.base_url).netloc or self.base_url

    def _url(self, path: str) -> str:
        if not ENDPOINT_ID.match(self.endpoint_id):
            raise JobApiError(
                f"endpoint id {self.endpoint_id!r} is not a RunPod endpoint id (letters, digits, "
                "'_' and '-' only): check --endpoint-id, RUNPOD_COMFYUI_ENDPOINT_ID or the stack "
                "outputs"
            )
        return f"{self.base_url.rstrip('/')}/{self.endpoint_id}/{path}"

    def request(self, method: str, path: str, body: Any = None) -> tuple[dict[str, Any], int]:
        """Call the API; retry 429 (and, for GETs, connection errors and 5xx).

        Returns the JSON body and how many 429s this call absorbed.
        """
        throttled = 0
        attempt = 0
        route = path.split("/", maxsplit=1)[0]
        url = self._url(path)
        while True:
            try:
                response = self.session.request(
                    method, url, json=body, timeout=self.request_timeout_s
                )
            except requests.RequestException as exc:
                if method == "GET" and attempt < self.backoff.max_retries:
                    self.sleep(self.backoff.delay(attempt, None))
                    attempt += 1
                    continue
                raise JobApiError(
                    f"{method} /{route} to {self.host} failed: {type(exc).__name__}"
                ) from exc
            if response.status_code == 429:
                throttled += 1
                with self._lock:
                    self.throttled += 1
                if attempt >= self.backoff.max_retries:
                    raise RateLimitedError(
                        f"/{route} answered 429 {throttled} times from {self.host}; "
                        "retries exhausted",
                        status=429,
                    )
                self.sleep(self.backoff.delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            if (
                response.status_code >= 500
                and method == "GET"
                and attempt < self.backoff.max_retries
            ):
                self.sleep(self.backoff.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise JobApiError(
                    f"/{route} answered {response.status_code} from {self.host}: "
                    f"{_api_message(response)}",
                    status=response.status_code,
                )
            try:
                data = response.json()
            except ValueError as exc:
                raise JobApiError(f"/{route} answered non-JSON from {self.host}") from exc
            if not isinstance(data, dict):
                raise self._unexpected(route, "a JSON object", data)
            return data, throttled

    def _unexpected(self, route: str, wanted: str, got: Any) -> JobApiError:
        shown = json.dumps(got, default=str)
        shown = shown if len(shown) <= 200 else shown[:197] + "..."
        return JobApiError(
            f"/{route} answered an unexpected body from {self.host} (wanted {wanted}): {shown}"
        )

    def run(
        self,
        job_input: Any,
        *,
        policy: dict[str, Any] | None = None,
        webhook: str | None = None,
    ) -> tuple[str, int]:
        """Submit a job with ``/run``; return its id and the 429s absorbed."""
        body: dict[str, Any] = {"input": job_input}
        if policy:
            body["policy"] = policy
        if webhook:
            body["webhook"] = webhook
        data, throttled = self.request("POST", "run", body)
        job_id = data.get("id")
        if not isinstance(job_id, str) or not ENDPOINT_ID.match(job_id):
            raise self._unexpected("run", 'a job {"id": "<job id>"}', data)
        return job_id, throttled

    def status(self, job_id: str) -> dict[str, Any]:
        """``GET /status/{job_id}``: a JSON object with a string ``status``."""
        data = self.request("GET", f"status/{job_id}")[0]
        if not isinstance(data.get("status"), str):
            raise self._unexpected("status", 'a job {"status": "<status>"}', data)
        return data

    def cancel(self, job_id: str) -> None:
        """``POST /cancel/{job_id}``, best effort."""
        try:
            self.request("POST", f"cancel/{job_id}")
        except JobApiError:
            return

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"jobs": {<counter>: int}, "workers": {<state>: int}}``."""
        data = self.request("GET", "health")[0]
        jobs, workers = data.get("jobs"), data.get("workers")
        shaped = (
            isinstance(jobs, dict)
            and isinstance(workers, dict)
            and all(_count(jobs.get(key, 0)) for key in _JOB_COUNTERS)
            and all(_count(value) for value in workers.values())
        )
        if not shaped:
            wanted = '{"jobs": {"completed": <int>, ...}, "workers": {"idle": <int>, ...}}'
            raise self._unexpected("health", wanted, data)
        return data

    def run_and_wait(
        self,
        job_input: Any,
        *,
        timeout_s: float,
        poll_s: float,
        policy: dict[str, Any] | None = None,
        webhook: str | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> JobOutcome:
        """Submit, poll ``/status`` until a terminal state or ``timeout_s``; never raises.

        ``on_status`` sees every ``/status`` body before the job ends (an ``IN_PROGRESS``
        job's ``output`` is the worker's latest progress update).
        """
        started = time.monotonic()
        try:
            job_id, throttled = self.run(job_input, policy=policy, webhook=webhook)
        except RateLimitedError as exc:
            limited = self.backoff.max_retries + 1  # the first answer and every retry
            return _unfinished(
                None, RATE_LIMITED, exc, "rate_limited", started=started, throttled=limited
            )
        except JobApiError as exc:
            return _unfinished(None, REQUEST_ERROR, exc, "request", started=started, throttled=0)
        return self._wait(
            job_id,
            started=started,
            throttled=throttled,
            timeout_s=timeout_s,
            poll_s=poll_s,
            on_status=on_status,
        )

    def _wait(
        self,
        job_id: str,
        *,
        started: float,
        throttled: int,
        timeout_s: float,
        poll_s: float,
        on_status: Callable[[dict[str, Any]], None] | None,
    ) -> JobOutcome:
        """Poll ``/status`` until the job ends, or cancel it at the deadline."""
        deadline = started + timeout_s
        while True:
            try:
                last = self.status(job_id)
            except JobApiError as exc:
                return _unfinished(
                    job_id, REQUEST_ERROR, exc, "request", started=started, throttled=throttled
                )
            if last.get("status") in TERMINAL:
                return outcome_from_status(
                    last, latency_s=time.monotonic() - started, throttled=throttled
                )
            if on_status is not None:
                on_status(last)
            if time.monotonic() >= deadline:
                self.cancel(job_id)
                where = last.get("status", "unknown")
                hint = " (a cold start longer than the timeout?)" if where == "IN_QUEUE" else ""
                late = f"no result after {timeout_s:g} s, job still {where}{hint}; cancelled"
                return _unfinished(
                    job_id, CLIENT_TIMEOUT, late, "timeout", started=started, throttled=throttled
                )
            self.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def _unfinished(
    job_id: str | None,
    status: str,
    error: Exception | str,
    error_type: str,
    *,
    started: float,
    throttled: int,
) -> JobOutcome:
    """An outcome the client gives a job it never saw finish (a status it invents)."""
    return JobOutcome(
        job_id=job_id,
        status=status,
        latency_s=time.monotonic() - started,
        error=str(error),
        error_type=error_type,
        throttled=throttled,
    )


def outcome_from_status(
    view: dict[str, Any], *, latency_s: float, throttled: int = 0
) -> JobOutcome:
    """A :class:`JobOutcome` from a terminal ``/status`` body."""
    status = str(view.get("status"))
    output = view.get("output")
    error, error_type = describe_error(view.get("error"), output)
    if status == "COMPLETED" and error is None and isinstance(output, dict) and output.get("error"):
        error, error_type = describe_error(output.get("error"), output)
    if status == "TIMED_OUT" and error_type is None:
        error_type = "timeout"
    return JobOutcome(
        job_id=_str_or_none(view.get("id")),
        status=status,
        latency_s=latency_s,
        delay_ms=_int_or_none(view.get("delayTime")),
        execution_ms=_int_or_none(view.get("executionTime")),
        output=output,
        error=error,
        error_type=error_type,
        worker_id=_str_or_none(view.get("workerId")),
        throttled=throttled,
    )


def describe_error(error: Any, output: Any) -> tuple[str | None, str | None]:
    """One-line message and type from a job's ``error`` and ``output``.

    ``error`` is a plain string when the handler returned ``{"error": ...}`` (the handler's
    ``error_type`` then stays in ``output``), or a JSON string ``{"error_type",
    "error_message", "error_traceback"}`` when the handler raised.
    """
    error_type = _str_or_none(output.get("error_type")) if isinstance(output, dict) else None
    if error is None:
        return None, error_type
    message: str
    if isinstance(error, str):
        try:
            parsed = json.loads(error)
        except ValueError:
            parsed = None
        error = parsed if isinstance(parsed, dict) else error
    if isinstance(error, dict):
        message = str(error.get("error_message") or error.get("error") or error)
        raised = error.get("error_type")
        if raised and not error_type:
            error_type = str(raised).removeprefix("<class '").removesuffix("'>")
    else:
        message = str(error)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    one_line = lines[0] if lines else "empty error"
    return (one_line[:297] + "...") if len(one_line) > 300 else one_line, error_type


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _api_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no body"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body.get("title") or body)[:200]
    return str(body)[:200]
