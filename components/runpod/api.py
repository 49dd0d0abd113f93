"""RunPod REST API v2 client: one `requests` session, bounded retries, typed errors.

Owns the HTTP conversation with `https://api.runpod.io/v2` (or `RUNPOD_API_BASE_URL`):
bearer auth, a timeout on every call, urllib3 retries for idempotent verbs, the
lost-response recovery for creates, and `application/problem+json` turned into
`RunPodApiError`. It knows nothing about Pulumi; `providers.py` builds bodies and
decides what a response means for state.

Retry policy (see `_BoundedRetry`):
- GET, PATCH, DELETE: retried on 429/502/503/504 and on connection or read errors,
  honouring `Retry-After`, with exponential backoff, within a total time budget.
- POST: retried only where the request provably had no effect: a 429 (rejected by the
  rate limiter before any handler ran) and connection errors raised before the request
  was sent (urllib3's `connect` class, e.g. connection refused). A POST whose response
  was lost (reset, read timeout, 5xx) is *not* blindly re-sent: `create()` first asks
  the caller's `find_existing` whether the write committed, so a retry never leaves an
  orphan. The caller makes that lookup ignore objects that existed before the POST (see
  `providers._RunPodProvider._create`), or it could adopt someone else's object.

Two policies, two libraries, because they differ: the transport retries above are HTTP
level (urllib3's `Retry`, per request, backoff and `Retry-After` within a time budget);
a create's own attempts (tenacity, `create_attempts` of them, no wait: the lookup between
two attempts is the pause) retry only a POST whose outcome is unknown and whose object
the lookup did not find. The providers' waits (an in-use delete, a rollout) are polls
within a time budget, a third shape (`providers._polling`).

Lists follow a `nextCursor` if RunPod ever returns one (the v2 spec documents none).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__all__ = [
    "DEFAULT_BASE_URL",
    "MissingApiKeyError",
    "RunPodApiError",
    "RunPodClient",
    "base_url_from_env",
]

LOG = logging.getLogger("components.runpod.api")

DEFAULT_BASE_URL: Final = "https://api.runpod.io"
"""Management API host; the serverless job API lives on api.runpod.ai instead."""

_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PATCH", "PUT", "DELETE", "OPTIONS"})
_LOST_RESPONSE_STATUSES: Final = frozenset({500, 502, 503, 504})
_REDACTED: Final = "***"
_MAX_PAGES: Final = 1_000


def base_url_from_env() -> str:
    """The management base URL: `RUNPOD_API_BASE_URL`, else the public host."""
    return (os.environ.get("RUNPOD_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


class MissingApiKeyError(RuntimeError):
    """No RunPod API key was configured for the provider."""

    def __init__(self) -> None:
        super().__init__(
            "RunPod API key missing: run `pulumi config set --secret runpod:apiKey <key>` "
            "for this stack, or export RUNPOD_API_KEY"
        )


class RunPodApiError(RuntimeError):
    """A RunPod API call failed; the message names the call, the host, the status and the
    reason (RunPod's detail or its field errors)."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int,
        title: str,
        detail: str,
        errors: tuple[str, ...] = (),
        host: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.host = host
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        reason = "; ".join(errors) if errors else detail
        where = f"{path} on {host}" if host else path
        summary = f"RunPod {method} {where} -> {status} {title}"
        super().__init__(f"{summary}: {reason}" if reason else summary)

    @property
    def not_found(self) -> bool:
        """True for a 404: the object does not exist (any more)."""
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """True for a 409: an object with this unique name already exists."""
        return self.status == 409


class _BoundedRetry(Retry):
    """urllib3 `Retry` with a total time budget and a POST rule.

    The budget starts at the first retry of a request (the template held by the
    adapter carries no deadline, every `new()` derived from it does), so concurrent
    requests sharing one session each get their own budget.
    """

    def __init__(
        self,
        *args: Any,
        budget_s: float = 60.0,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.budget_s = budget_s
        self.deadline = deadline

    def new(self, **kw: Any) -> _BoundedRetry:
        kw.setdefault("budget_s", self.budget_s)
        if "deadline" not in kw:
            kw["deadline"] = (
                self.deadline if self.deadline is not None else time.monotonic() + self.budget_s
            )
        return super().new(**kw)

    def is_exhausted(self) -> bool:
        out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        return super().is_exhausted() or out_of_time

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            # A 429 comes from the rate limiter before any handler runs: nothing was
            # created, so sending the same POST again is safe. Any other status may
            # have been applied; create() resolves those by looking the name up.
            return status_code == 429 and bool(self.total)
        return super().is_retry(method, status_code, has_retry_after)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


class RunPodClient:
    """A small REST v2 client. Create one per provider process (never pickle it)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        retry_budget_s: float = 60.0,
        max_retries: int = 6,
        backoff_factor: float = 0.5,
        retry_after_max_s: int = 30,
        create_attempts: int = 3,
    ) -> None:
        if not api_key:
            raise MissingApiKeyError
        if create_attempts < 1:
            raise ValueError(f"create_attempts must be at least 1, got {create_attempts}")
        self._api_key = api_key
        self.base_url = (base_url or base_url_from_env()).rstrip("/")
        self.host = urlsplit(self.base_url).netloc or self.base_url
        """Where the calls go (``rest.runpod.io``), named in every error."""
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._create_attempts = create_attempts
        retry = _BoundedRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=0,
            redirect=0,
            allowed_methods=_IDEMPOTENT,
            status_forcelist=_RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=10.0,
            respect_retry_after_header=True,
            retry_after_max=retry_after_max_s,
            raise_on_status=False,
            budget_s=retry_budget_s,
        )
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json, application/problem+json",
                "User-Agent": "comfyui-runpod-pulumi/0.1",
            }
        )

    def __repr__(self) -> str:
        return f"RunPodClient(base_url={self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("RunPodClient holds a live session and an API key; it is never pickled")

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._session.close()

    # -- core ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        redact: Iterable[str] = (),
    ) -> Any:
        """Send one call (with the retry policy) and return the decoded JSON body or None.

        `redact` lists values (secret payloads) that must never show in an error message.
        """
        hidden = (self._api_key, *redact)
        url = f"{self.base_url}{path}"
        try:
            response = self._session.request(
                method, url, json=json, params=params, timeout=self._timeout
            )
        except requests.RequestException as exc:
            # Messages of connection errors carry the URL only; scrub anyway.
            reason = _redact(str(exc), hidden)
            LOG.debug("RunPod %s %s failed: %s", method, path, reason)
            raise type(exc)(f"RunPod {method} {path} on {self.host} failed: {reason}") from None
        LOG.debug("RunPod %s %s -> %s", method, path, response.status_code)
        if response.status_code >= 400:
            raise _error_from_response(method, path, response, hidden, host=self.host)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str) -> dict[str, Any] | None:
        """GET one object; None when it does not exist."""
        try:
            body = self.request("GET", path)
        except RunPodApiError as exc:
            if exc.not_found:
                return None
            raise
        return dict(body) if isinstance(body, dict) else None

    def list(
        self, path: str, key: str, *, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """GET a collection, unwrapping RunPod's `{"<key>": [...]}` envelope.

        The v2 spec documents no pagination, and RunPod's own CLI reads its lists in one
        call; should an answer carry a cursor anyway (`nextCursor`, as some third-party
        v2 clients expect), the next pages are fetched with `?cursor=`, so a lookup by
        name never misses an object on a later page.
        """
        items: list[dict[str, Any]] = []
        query = dict(params or {})
        seen: set[str] = set()
        for _page in range(_MAX_PAGES):
            body = self.request("GET", path, params=query or None)
            page = body.get(key, []) if isinstance(body, dict) else []
            items.extend(dict(item) for item in page)
            cursor = body.get("nextCursor") if isinstance(body, dict) else None
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                return items
            seen.add(cursor)
            query["cursor"] = cursor
        raise RuntimeError(f"RunPod GET {path}: more than {_MAX_PAGES} pages; refusing to go on")

    def patch(
        self, path: str, body: dict[str, Any], *, redact: Iterable[str] = ()
    ) -> dict[str, Any]:
        """PATCH only the given fields; returns the full updated object."""
        result = self.request("PATCH", path, json=body, redact=redact)
        return dict(result) if isinstance(result, dict) else {}

    def delete(self, path: str) -> bool:
        """DELETE; True if deleted now, False if it was already gone."""
        try:
            self.request("DELETE", path)
        except RunPodApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def create(
        self,
        path: str,
        body: dict[str, Any],
        *,
        find_existing: Callable[[], dict[str, Any] | None],
        redact: Iterable[str] = (),
    ) -> dict[str, Any]:
        """POST a new object without ever leaving an orphan behind.

        When the outcome of a POST is unknown (connection reset or read timeout after
        sending, 5xx), `find_existing` looks our object up: if the write did commit,
        that object is returned instead of creating a second one. It must only ever
        return an object this create made: by unique name, or, where names are not
        unique, a same-named object whose id was not there before the first POST.
        It may raise to stop the create when it cannot tell. A 409 (or the 400 RunPod may
        send for a duplicate name) on a later attempt means our earlier attempt committed
        if `find_existing` finds the object; otherwise that refusal is raised.
        """
        secrets = tuple(redact)
        attempts = itertools.count()

        def post() -> dict[str, Any]:
            retried = next(attempts) > 0
            try:
                result = self.request("POST", path, json=body, redact=secrets)
            except RunPodApiError as exc:
                if retried and exc.status in (400, 409):
                    # Refused as a duplicate name after an attempt whose answer was lost:
                    # that attempt committed if the lookup finds the object now.
                    found = find_existing()
                    if found is not None:
                        return found
                    raise
                if exc.status not in _LOST_RESPONSE_STATUSES:
                    raise
                return _committed_or(exc, path, find_existing)
            except (requests.ConnectionError, requests.Timeout) as exc:
                return _committed_or(exc, path, find_existing)
            return dict(result) if isinstance(result, dict) else {}

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._create_attempts),
            retry=tenacity.retry_if_exception_type(_OutcomeUnknownError),
            reraise=True,
        )
        try:
            return retrying(post)
        except _OutcomeUnknownError as unknown:
            raise unknown.error from None


class _OutcomeUnknownError(Exception):
    """A POST whose outcome is unknown and whose object the lookup did not find: the one
    failure `create` sends again (the lookup's own errors are not)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _committed_or(
    error: Exception, path: str, find_existing: Callable[[], dict[str, Any] | None]
) -> dict[str, Any]:
    """The object a POST with an unknown outcome committed, or `_OutcomeUnknownError`."""
    LOG.warning(
        "RunPod POST %s: outcome unknown (%s); looking the name up before retrying",
        path,
        type(error).__name__,
    )
    found = find_existing()
    if found is None:
        raise _OutcomeUnknownError(error)
    return found


def _error_from_response(
    method: str, path: str, response: requests.Response, hidden: tuple[str, ...], *, host: str
) -> RunPodApiError:
    title = response.reason or "Error"
    detail = ""
    errors: tuple[str, ...] = ()
    content_type = response.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            title = str(problem.get("title") or title)
            detail = str(problem.get("detail") or "")
            raw_errors = problem.get("errors") or ()
            if isinstance(raw_errors, list):
                errors = tuple(str(item) for item in raw_errors)
    else:
        detail = response.text[:200].strip()
    if response.status_code == 429 and response.headers.get("Retry-After"):
        detail = f"{detail} (Retry-After: {response.headers['Retry-After']} s)".strip()
    return RunPodApiError(
        method=method,
        path=path,
        host=host,
        status=response.status_code,
        title=_redact(title, hidden),
        detail=_redact(detail, hidden),
        errors=tuple(_redact(item, hidden) for item in errors),
    )
