"""Verified, resumable model downloads for the worker image.

Owns: downloading the files :mod:`worker.manifest` selects from ``models.toml``, in
parallel, with HTTP Range resume into ``<path>.partial`` while hashing, verifying size and
sha256, publishing with an atomic rename, and recording a stamp so a verified file is never
re-hashed; :func:`verify_local`, the one answer to "is this file on disk good?" (a run's
skip path, a file present before a download, ``--verify-only``, which serverless start-up
runs); and a JSON status file for the pod.

Deliberately does not: start ComfyUI, choose model groups for a workflow, or talk to R2.

Exit codes (also in ``--help``): 0 every selected model verified; 1 a download or
verification failed; 2 usage or manifest error; 3 not enough free disk; 4 a gated model was
refused (401/403: set ``HF_TOKEN`` and accept the licence); 5 ``--verify-only`` found missing
or unverified models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import requests
import tenacity

from worker.manifest import (
    ManifestError,
    ModelEntry,
    groups_from_env,
    load_manifest,
    manifest_path,
    select,
)

log = logging.getLogger("worker.models")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_SPACE = 3
EXIT_AUTH = 4
EXIT_UNVERIFIED = 5

MIB = 1024 * 1024
CHUNK = MIB
#: Free space kept on top of what the downloads need (filesystem slack, logs, outputs).
FREE_SPACE_MARGIN = 512 * MIB
DEFAULT_MODELS_DIR = "/workspace/ComfyUI/models"
STAMP_DIR = ".verified"
HF_HOSTS = ("huggingface.co", "hf.co")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(Exception):
    """One model could not be downloaded and verified; the message is safe to log."""

    def __init__(self, message: str, *, auth: bool = False, retryable: bool = False) -> None:
        super().__init__(message)
        self.auth = auth
        self.retryable = retryable


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without URL query strings (signed CDN URLs) and without any of ``secrets``."""
    cleaned = re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\"]*", r"\1?<redacted>", text)
    cleaned = re.sub(r"(url: [^\s?]+)\?\S*", r"\1?<redacted>", cleaned)
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(secret, "<redacted>")
    return cleaned


def safe_url(url: str) -> str:
    """Scheme, host and path of ``url``: what logs may show."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{parts.path}"


def human_bytes(count: float) -> str:
    """``count`` bytes as B/KB/MB/GB with one decimal (decimal units, as hubs show them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - loop always returns


def human_seconds(seconds: float) -> str:
    """A short duration such as ``1h02m`` or ``3m05s`` or ``12s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass
class Progress:
    """Live state of one model, shared with the reporter and the status file."""

    entry: ModelEntry
    state: str = "pending"
    done: int = 0
    total: int | None = None
    resumed_from: int = 0
    sha256: str | None = None
    verified_by: str = ""
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    auth_failure: bool = False

    def rate(self) -> float:
        """Bytes per second fetched in this run (resumed bytes excluded)."""
        end = self.finished or time.monotonic()
        elapsed = end - self.started if self.started else 0.0
        return (self.done - self.resumed_from) / elapsed if elapsed > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The status-file record of this model."""
        return {
            "name": self.entry.name,
            "path": self.entry.path,
            "state": self.state,
            "bytes_done": self.done,
            "bytes_total": self.total,
            "sha256": self.sha256,
            "verified_by": self.verified_by,
            "error": self.error,
        }


def hf_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """Hosts that get ``HF_TOKEN``: :data:`HF_HOSTS` plus a hub mirror's (``HF_ENDPOINT``)."""
    mirror = urlsplit(env.get("HF_ENDPOINT") or "").hostname
    return (*HF_HOSTS, mirror) if mirror else HF_HOSTS


@dataclass(frozen=True, kw_only=True)
class Options:
    """How a run behaves; built from flags and environment by :func:`main`."""

    models_dir: Path
    parallel: int = 3
    retries: int = 8
    backoff: float = 1.0
    max_backoff: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    progress_interval: float = 15.0
    hf_token: str | None = field(default=None, repr=False)
    hf_hosts: tuple[str, ...] = HF_HOSTS
    status_file: Path | None = None


@dataclass
class _Part:
    """A ``.partial`` file being filled and the running sha256 of its bytes."""

    entry: ModelEntry
    path: Path
    size: int | None
    hasher: Any = field(default_factory=hashlib.sha256)


@dataclass(frozen=True)
class Remote:
    """What the server says about a file before we fetch it."""

    size: int | None
    sha256: str | None


def _stamp_path(models_dir: Path, entry: ModelEntry) -> Path:
    return models_dir / STAMP_DIR / f"{entry.path}.json"


def load_stamp(models_dir: Path, entry: ModelEntry) -> dict[str, Any] | None:
    """The stamp file of ``entry`` as written, whether or not it still matches the file."""
    try:
        stamp = json.loads(_stamp_path(models_dir, entry).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and isinstance(stamp.get("sha256"), str) else None


def _same_mtime(recorded: object, actual_ns: int) -> bool:
    # Image layers (docker/BuildKit tars) keep whole seconds only: a file baked into an image
    # comes back with its mtime truncated, which must not void the stamp.
    if not isinstance(recorded, int):
        return False
    return recorded == actual_ns or recorded // 10**9 == actual_ns // 10**9


def read_stamp(models_dir: Path, entry: ModelEntry) -> dict[str, Any] | None:
    """The stamp written when ``entry`` was last verified, if it still describes the file.

    A stamp holds size, sha256 and mtime; it is valid only while the file's size and mtime
    (to the second) are unchanged and, when the manifest pins a sha256, the stamp's hash
    equals it.
    """
    stamp = load_stamp(models_dir, entry)
    try:
        stat = (models_dir / entry.path).stat()
    except OSError:
        return None
    if stamp is None or stamp.get("size") != stat.st_size:
        return None
    if not _same_mtime(stamp.get("mtime_ns"), stat.st_mtime_ns):
        return None
    if entry.sha256 and stamp.get("sha256") != entry.sha256:
        return None
    if entry.size is not None and entry.size != stat.st_size:
        return None
    return stamp


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def write_stamp(models_dir: Path, entry: ModelEntry, sha256: str, verified_by: str) -> None:
    """Record that ``entry`` is verified as it is on disk now."""
    stat = (models_dir / entry.path).stat()
    stamp = {
        "name": entry.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sha256,
        "verified_by": verified_by,
        "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_atomic(_stamp_path(models_dir, entry), json.dumps(stamp, indent=2) + "\n")


def sha256_file(path: Path, hasher: Any | None = None) -> Any:
    """``hasher`` (a new sha256 when None) updated with the bytes of ``path``."""
    digest = hasher or hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 * MIB):
            digest.update(block)
    return digest


@dataclass(frozen=True)
class LocalFile:
    """What :func:`verify_local` found at a manifest entry's path."""

    verdict: Literal["verified", "unchecked", "missing", "size", "unpinned", "sha256"]
    """``verified``; ``unchecked`` (no valid stamp, not hashed); ``missing``; ``size`` (not the
    expected size); ``unpinned`` (no hash to check it against); ``sha256`` (other bytes)."""
    size: int = 0
    """Bytes on disk (0 when missing or unchecked)."""
    sha256: str = ""
    """The verified hash (``verified`` only)."""
    verified_by: str = ""
    """``sha256`` or ``size`` (``verified`` only)."""

    @property
    def ok(self) -> bool:
        """The file is present and verified."""
        return self.verdict == "verified"


def verify_local(
    models_dir: Path,
    entry: ModelEntry,
    *,
    size: int | None = None,
    sha256: str | None = None,
    rehash: bool = True,
    size_suffices: bool = False,
) -> LocalFile:
    """Whether ``entry``'s file under ``models_dir`` is good, without any network.

    The one answer for the skip path of a run (``rehash=False``: a valid stamp or nothing),
    a file found present before a download, and ``--verify-only``. A stamp that still
    describes the file, and names ``sha256`` when one is expected, is enough. Otherwise the
    file must have ``size`` bytes (when given) and is hashed once against ``sha256`` or the
    hash an earlier stamp recorded (a copied or restored file loses its mtime, not its
    stamp); a match is stamped again. With no hash at all, ``size_suffices`` accepts it (the
    hub has just announced the size), else it is ``unpinned``. Nothing is deleted here.
    """
    stamp = read_stamp(models_dir, entry)
    if stamp is not None and (not sha256 or stamp["sha256"] == sha256):
        how = str(stamp.get("verified_by", "sha256"))
        return LocalFile("verified", int(stamp["size"]), str(stamp["sha256"]), how)
    if not rehash:
        return LocalFile("unchecked")
    target = models_dir / entry.path
    try:
        actual = target.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return LocalFile("missing")
    if size is not None and actual != size:
        return LocalFile("size", actual)
    earlier = load_stamp(models_dir, entry)
    expected = sha256 or (str(earlier["sha256"]) if earlier else None)
    if expected is None and not size_suffices:
        return LocalFile("unpinned", actual)
    return _hash_once(models_dir, entry, actual, expected)


def _hash_once(models_dir: Path, entry: ModelEntry, size: int, expected: str | None) -> LocalFile:
    """Hash the file of ``entry`` against ``expected``; stamp it when it matches."""
    log.info("%s: present without a matching stamp, hashing once", entry.name)
    digest = sha256_file(models_dir / entry.path).hexdigest()
    if expected and digest != expected:
        return LocalFile("sha256", size)
    how = "sha256" if expected else "size"
    write_stamp(models_dir, entry, digest, how)
    return LocalFile("verified", size, digest, how)


def _linked_sha(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("X-Linked-Etag", "")
    value = raw.strip().removeprefix("W/").strip('"').lower()
    return value if _SHA256.match(value) else None


def _linked_size(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("X-Linked-Size", "")
    return int(raw) if raw.strip().isdigit() else None


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: a retryable HTTP status or a dropped, reset or stalled link."""
    if isinstance(exc, DownloadError):
        return exc.retryable
    return isinstance(
        exc,
        requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError,
    )


class _Budget:
    """The downloader's retry policy for one model, as tenacity callbacks.

    Failures are counted since the last attempt that moved bytes forward, so a long download
    on a flaky link keeps resuming as long as it makes progress; ``retries`` failures in a
    row without progress give up (the run then exits 1 naming the model). The delay is
    ``backoff * 2**(n-1)`` seconds, capped at ``max_backoff``. tenacity's own attempt count
    never resets, hence a counter of our own. (The sync daemon's retries differ: they never
    give up and wait on its settle heap rather than in a sleeping thread; see worker.sync.)
    """

    def __init__(self, progress: Progress, options: Options) -> None:
        self.progress = progress
        self.options = options
        self.failures = 0
        self._mark = 0

    def before(self, _state: tenacity.RetryCallState) -> None:
        """Remember how far the file had got before this attempt."""
        self._mark = self.progress.done

    def after(self, _state: tenacity.RetryCallState) -> None:
        """Count a failed attempt; one that moved bytes forward restarts the count."""
        if self.progress.done > self._mark:
            self.failures = 0
        self.failures += 1

    def stop(self, _state: tenacity.RetryCallState) -> bool:
        """Give up after ``retries`` failures in a row without progress."""
        return self.failures > self.options.retries

    def wait(self, _state: tenacity.RetryCallState) -> float:
        """Exponential backoff over the failures without progress, capped."""
        return float(min(self.options.max_backoff, self.options.backoff * 2 ** (self.failures - 1)))


class Downloader:
    """Downloads and verifies a selection of models; one instance per run."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._lock = threading.Lock()
        self.progress: dict[str, Progress] = {}
        self._stop_reporter = threading.Event()
        self._phase = "checking"
        self._started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    # -- HTTP ------------------------------------------------------------------------------

    def _headers(
        self, url: str, extra: Mapping[str, str] | None = None, *, origin: str | None = None
    ) -> dict[str, str]:
        """Request headers for ``url``; the token only where :meth:`_may_get_token` allows."""
        headers = {"User-Agent": "comfyui-runpod-worker/models", "Accept-Encoding": "identity"}
        if self.options.hf_token and self._may_get_token(url, origin or url):
            headers["Authorization"] = f"Bearer {self.options.hf_token}"
        headers.update(extra or {})
        return headers

    def _may_get_token(self, url: str, origin: str) -> bool:
        """The token goes to a Hugging Face host (the built-in list or HF_ENDPOINT's) only
        at the manifest URL's own scheme, host and port, or over https on the default port.

        A redirect to the same host name on another port or scheme (a proxy, a plain-http
        listener) never receives it.
        """
        target, first = urlsplit(url), urlsplit(origin)
        host = (target.hostname or "").lower()
        if not any(host == h or host.endswith(f".{h}") for h in self.options.hf_hosts):
            return False
        same = (target.scheme, host, target.port) == (
            first.scheme,
            (first.hostname or "").lower(),
            first.port,
        )
        return same or (target.scheme == "https" and target.port in (None, 443))

    def _timeout(self) -> tuple[float, float]:
        return (self.options.connect_timeout, self.options.read_timeout)

    def _check_status(self, entry: ModelEntry, response: requests.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            hint = (
                "set HF_TOKEN to a token whose account accepted the model's licence"
                if not self.options.hf_token
                else "HF_TOKEN was sent but refused: check it is valid and that its account "
                "accepted the model's licence on the hub"
            )
            kind = "gated model" if entry.gated else "model"
            raise DownloadError(
                f"{kind} {entry.name}: HTTP {status} from {safe_url(entry.url)}; {hint}",
                auth=True,
            )
        if status == 404:
            raise DownloadError(f"{entry.name}: HTTP 404, not found at {safe_url(entry.url)}")
        if status >= 500 or status in (408, 429):
            raise DownloadError(f"{entry.name}: HTTP {status}", retryable=True)
        if status >= 400:
            raise DownloadError(f"{entry.name}: HTTP {status} from {safe_url(entry.url)}")

    def _retrying(self, entry: ModelEntry, action: Callable[[], Any]) -> Any:
        """Run ``action`` until it succeeds, retrying transient errors (:class:`_Budget`)."""
        budget = _Budget(self.progress[entry.name], self.options)

        def describe(state: tenacity.RetryCallState) -> str:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, requests.exceptions.ChunkedEncodingError):
                return f"{entry.name}: connection broken ({type(exc).__name__})"
            if isinstance(exc, requests.RequestException):
                return f"{entry.name}: {type(exc).__name__}: {self._redact(str(exc))}"
            return str(exc)

        def give_up(state: tenacity.RetryCallState) -> None:
            raise DownloadError(f"{describe(state)} (gave up after {budget.failures} attempts)")

        def warn(state: tenacity.RetryCallState) -> None:
            delay, attempt = state.upcoming_sleep, budget.failures + 1
            log.warning("%s; retrying in %.1fs (attempt %d)", describe(state), delay, attempt)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            before=budget.before,
            after=budget.after,
            stop=budget.stop,
            wait=budget.wait,
            before_sleep=warn,
            retry_error_callback=give_up,
        )
        return retrying(action)

    def _redact(self, text: str) -> str:
        return redact(text, [self.options.hf_token or ""])

    def probe(self, entry: ModelEntry) -> Remote:
        """Size and sha256 the server announces (HF: ``X-Linked-Size``/``X-Linked-Etag``)."""

        def head() -> Remote:
            with requests.Session() as session:
                response = session.head(
                    entry.url,
                    headers=self._headers(entry.url),
                    timeout=self._timeout(),
                    allow_redirects=False,
                )
                hops = 0
                size = _linked_size(response.headers)
                sha = _linked_sha(response.headers)
                while response.is_redirect and hops < 10 and (size is None or sha is None):
                    location = response.headers["Location"]
                    target = requests.compat.urljoin(response.url, location)
                    # The token follows a redirect only to the same origin (or a hub host over
                    # https): never to a CDN, another port, or plain http.
                    response = session.head(
                        target,
                        headers=self._headers(target, origin=entry.url),
                        timeout=self._timeout(),
                        allow_redirects=False,
                    )
                    size = size or _linked_size(response.headers)
                    sha = sha or _linked_sha(response.headers)
                    hops += 1
                if not response.is_redirect:
                    self._check_status(entry, response)
                if size is None and not response.is_redirect:
                    length = response.headers.get("Content-Length", "")
                    size = int(length) if length.isdigit() else None
                return Remote(size=size, sha256=sha)

        result: Remote = self._retrying(entry, head)
        return result

    # -- one model -------------------------------------------------------------------------

    def _expected(self, entry: ModelEntry, remote: Remote) -> tuple[int | None, str | None]:
        if entry.sha256 and remote.sha256 and entry.sha256 != remote.sha256:
            raise DownloadError(
                f"{entry.name}: manifest sha256 {entry.sha256[:12]}... disagrees with the hub's "
                f"{remote.sha256[:12]}...; fix models.toml (the hub is authoritative)"
            )
        if entry.size is not None and remote.size is not None and entry.size != remote.size:
            raise DownloadError(
                f"{entry.name}: manifest size {entry.size} disagrees with the hub's "
                f"{remote.size}; fix models.toml"
            )
        size = entry.size if entry.size is not None else remote.size
        return size, entry.sha256 or remote.sha256

    def _fetch(self, entry: ModelEntry, size: int | None, sha: str | None) -> str:
        """Download into ``<path>.partial`` (resuming), verify, rename; return the sha256."""
        target = self.options.models_dir / entry.path
        part = _Part(entry=entry, path=target.with_name(target.name + ".partial"), size=size)
        part.path.parent.mkdir(parents=True, exist_ok=True)
        progress = self.progress[entry.name]
        have = part.path.stat().st_size if part.path.exists() else 0
        if size is not None and have > size:
            log.warning("%s: partial file larger than expected, starting over", entry.name)
            part.path.unlink()
            have = 0
        if have and not sha:
            # Nothing could verify the bytes already on disk: fetch the whole file again.
            log.warning(
                "%s: no sha256 known (manifest or hub) to verify the %s already downloaded; "
                "starting over instead of resuming",
                entry.name,
                human_bytes(have),
            )
            part.path.unlink()
            have = 0
        if have:
            sha256_file(part.path, part.hasher)
            log.info("%s: resuming at %s", entry.name, human_bytes(have))
        progress.done = progress.resumed_from = have
        progress.total = size
        problem = ""
        for _ in range(3):  # a hash mismatch re-fetches the whole file, a few times at most
            self._retrying(entry, lambda: self._attempt(part))
            got = part.path.stat().st_size
            digest: str = part.hasher.hexdigest()
            want_size = size if size is not None else progress.total
            if want_size is not None and got != want_size:
                problem = f"size {got} != expected {want_size}"
            elif sha and digest != sha:
                problem = f"sha256 {digest[:12]}... != expected {sha[:12]}..."
            else:
                publish(part.path, target)
                return digest
            log.warning("%s: %s; discarding the download and fetching again", entry.name, problem)
            part.path.unlink()
            part.hasher = hashlib.sha256()
            progress.done = progress.resumed_from = 0
        raise DownloadError(f"{entry.name}: verification kept failing ({problem})")

    def _attempt(self, part: _Part) -> None:
        """One GET from the current end of the part file to the end (or a failure)."""
        entry, progress = part.entry, self.progress[part.entry.name]
        offset = part.path.stat().st_size if part.path.exists() else 0
        if part.size is not None and offset == part.size:
            return
        extra = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(
            entry.url,
            headers=self._headers(entry.url, extra),
            timeout=self._timeout(),
            stream=True,
        ) as response:
            if response.status_code == 416 and offset:
                return  # our part is at least as long as the file: verify what we have
            self._check_status(entry, response)
            if offset and response.status_code != 206:
                log.warning("%s: server ignored the Range request, starting over", entry.name)
                offset = 0
                part.hasher = hashlib.sha256()
            elif offset and not response.headers.get("Content-Range", "").startswith(
                f"bytes {offset}-"
            ):
                raise DownloadError(f"{entry.name}: unexpected Content-Range", retryable=True)
            if progress.total is None:
                progress.total = _total_from(response, offset)
            with part.path.open("r+b" if offset else "wb") as handle:
                handle.seek(offset)
                handle.truncate()
                progress.done = offset
                self._stream(response, handle, part.hasher, progress)
                handle.flush()
                os.fsync(handle.fileno())
        got = part.path.stat().st_size
        if progress.total is not None and got < progress.total:
            raise DownloadError(
                f"{entry.name}: response ended early at {got} of {progress.total} bytes",
                retryable=True,
            )

    def _stream(
        self, response: requests.Response, handle: IO[bytes], hasher: Any, progress: Progress
    ) -> None:
        for block in response.iter_content(chunk_size=CHUNK):
            if not block:
                continue
            handle.write(block)
            hasher.update(block)
            progress.done += len(block)
            if progress.total is not None and progress.done > progress.total:
                raise DownloadError(f"{progress.entry.name}: server sent more bytes than expected")

    def ensure(self, entry: ModelEntry, remote: Remote | None) -> None:
        """Make ``entry`` present and verified; record the outcome in :attr:`progress`."""
        progress = self.progress[entry.name]
        progress.started = time.monotonic()
        try:
            remote = remote or self.probe(entry)
            size, sha = self._expected(entry, remote)
            if self._present(entry, size, sha):
                return
            progress.state = "downloading"
            digest = self._fetch(entry, size, sha)
            verified_by = "sha256" if sha else "size"
            if not sha:
                log.warning("%s: no sha256 known (manifest or hub); verified by size", entry.name)
            write_stamp(self.options.models_dir, entry, digest, verified_by)
            progress.sha256, progress.verified_by, progress.state = digest, verified_by, "done"
        except DownloadError as exc:
            self._failed(progress, exc)
        except OSError as exc:
            progress.state = "failed"
            progress.error = f"{entry.name}: {type(exc).__name__}: {exc.strerror or exc}"
            log.error("%s", progress.error)  # noqa: TRY400 - disk errors need no traceback
        finally:
            progress.finished = time.monotonic()

    def _present(self, entry: ModelEntry, size: int | None, sha: str | None) -> bool:
        """True (progress filled in) when the published file is good; a bad one is removed."""
        local = verify_local(
            self.options.models_dir, entry, size=size, sha256=sha, size_suffices=True
        )
        if local.ok:
            self._mark_present(entry, local)
            return True
        if local.verdict == "size":
            log.warning(
                "%s: existing file has %d bytes, expected %d: replacing",
                entry.name,
                local.size,
                size,
            )
        elif local.verdict == "sha256":
            log.warning("%s: existing file fails sha256: replacing", entry.name)
        if local.verdict != "missing":
            (self.options.models_dir / entry.path).unlink()
        return False

    def _mark_present(self, entry: ModelEntry, local: LocalFile) -> None:
        progress = self.progress[entry.name]
        progress.state, progress.sha256 = "present", local.sha256
        progress.verified_by = local.verified_by
        progress.done = progress.total = local.size

    def _failed(self, progress: Progress, exc: DownloadError) -> None:
        progress.state, progress.error = "failed", self._redact(str(exc))
        progress.auth_failure = exc.auth
        log.error("%s", progress.error)

    # -- the run ---------------------------------------------------------------------------

    def run(self, entries: Sequence[ModelEntry]) -> int:
        """Download and verify ``entries``; return the process exit code."""
        todo = self._unverified(entries)
        self._write_status()
        if not todo:
            return self._finish()
        remotes, needed = self._probe_all(todo)
        if not self._room_for(needed):
            return EXIT_NO_SPACE
        self._phase = "downloading"
        log.info(
            "downloading %d of %d models (%s), %d at a time",
            len(remotes),
            len(entries),
            human_bytes(needed),
            self.options.parallel,
        )
        reporter = threading.Thread(target=self._report_loop, name="models-progress", daemon=True)
        reporter.start()
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.options.parallel)) as pool:
                list(
                    pool.map(
                        lambda e: self.ensure(e, remotes[e.name]),
                        [e for e in todo if e.name in remotes],
                    )
                )
        finally:
            self._stop_reporter.set()
            reporter.join()
        return self._finish()

    def _unverified(self, entries: Sequence[ModelEntry]) -> list[ModelEntry]:
        """Entries without a valid stamp; the others are recorded as present (no hashing)."""
        todo: list[ModelEntry] = []
        for entry in entries:
            self.progress[entry.name] = Progress(entry=entry)
            local = verify_local(self.options.models_dir, entry, rehash=False)
            if local.ok:
                self._mark_present(entry, local)
            else:
                todo.append(entry)
        return todo

    def _probe_all(self, todo: Sequence[ModelEntry]) -> tuple[dict[str, Remote], int]:
        """What the hub says about each entry, and the bytes still to fetch in all."""
        remotes: dict[str, Remote] = {}
        needed = 0
        for entry in todo:
            try:
                remotes[entry.name] = remote = self.probe(entry)
            except DownloadError as exc:
                self._failed(self.progress[entry.name], exc)
                continue
            size = entry.size if entry.size is not None else remote.size
            target = self.options.models_dir / entry.path
            partial = target.with_name(target.name + ".partial")
            have = partial.stat().st_size if partial.exists() else 0
            needed += max(0, (size or 0) - have)
        return remotes, needed

    def _room_for(self, needed: int) -> bool:
        """True when ``needed`` bytes and the margin fit; else log, record and False."""
        self.options.models_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.options.models_dir).free
        if needed + FREE_SPACE_MARGIN <= free:
            return True
        log.error(
            "not enough disk in %s: the selected models need %s more (plus %s margin), "
            "%s free. Grow the volume or select fewer MODEL_GROUPS.",
            self.options.models_dir,
            human_bytes(needed),
            human_bytes(FREE_SPACE_MARGIN),
            human_bytes(free),
        )
        self._phase = "failed"
        self._write_status(error="not enough disk space")
        return False

    def _finish(self) -> int:
        failed = [p for p in self.progress.values() if p.state == "failed"]
        self._phase = "failed" if failed else "done"
        self._write_status()
        self._log_table()
        if not failed:
            log.info("all %d selected models verified", len(self.progress))
            return EXIT_OK
        if all(p.auth_failure for p in failed):
            return EXIT_AUTH
        return EXIT_FAILED

    def _report_loop(self) -> None:
        while not self._stop_reporter.wait(self.options.progress_interval):
            for progress in list(self.progress.values()):
                if progress.state == "downloading":
                    log.info("%s", progress_line(progress))
            self._write_status()

    def _write_status(self, error: str = "") -> None:
        if self.options.status_file is None:
            return
        with self._lock:
            done = sum(p.done for p in self.progress.values())
            total = sum(p.total or p.entry.size or 0 for p in self.progress.values())
            document = {
                "state": self._phase,
                "started_at": self._started_at,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "bytes_done": done,
                "bytes_total": total,
                "error": error,
                "models": [p.as_json() for p in self.progress.values()],
            }
            _write_atomic(self.options.status_file, json.dumps(document, indent=2) + "\n")

    def _log_table(self) -> None:
        rows = [("model", "size", "state", "verified", "speed")]
        for p in self.progress.values():
            speed = f"{p.rate() / 1e6:.1f} MB/s" if p.state == "done" else "-"
            size = human_bytes(p.total) if p.total is not None else "?"
            rows.append((p.entry.name, size, p.state, p.verified_by or "-", speed))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            log.info("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def progress_line(progress: Progress) -> str:
    """``name  42.1%  7.3 GB/17.2 GB  112.4 MB/s  ETA 1m28s`` for one downloading model."""
    rate = progress.rate()
    total = progress.total
    if total:
        percent = f"{100 * progress.done / total:5.1f}%"
        left = (total - progress.done) / rate if rate > 0 else 0
        eta = f"ETA {human_seconds(left)}" if rate > 0 else "ETA ?"
        amount = f"{human_bytes(progress.done)}/{human_bytes(total)}"
    else:
        percent, eta, amount = "  ?  ", "ETA ?", human_bytes(progress.done)
    return f"{progress.entry.name}  {percent}  {amount}  {rate / 1e6:.1f} MB/s  {eta}"


def _total_from(response: requests.Response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() else None


def publish(partial: Path, final: Path) -> None:
    """Rename the verified ``partial`` to ``final`` and make the rename durable.

    The rename is atomic (ComfyUI sees no file or the whole verified file); the fsync of the
    folder keeps a crash right after it from losing the new name.
    """
    partial.replace(final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_only(entries: Sequence[ModelEntry], models_dir: Path) -> int:
    """Check every entry is present and verified without any network; return an exit code.

    :func:`verify_local` with the manifest's size and sha256: a valid stamp is enough;
    otherwise the file is hashed once against the pinned sha256 or the hash an earlier stamp
    recorded, and stamped again; a file with neither fails.
    """
    problems = {
        "missing": "missing ({path})",
        "size": "size {size} != {expected}",
        "unpinned": "present but never verified (no stamp, no pinned sha256)",
        "sha256": "sha256 mismatch",
    }
    bad: list[str] = []
    for entry in entries:
        local = verify_local(models_dir, entry, size=entry.size, sha256=entry.sha256)
        if not local.ok:
            problem = problems[local.verdict].format(
                path=entry.path, size=local.size, expected=entry.size
            )
            bad.append(f"{entry.name}: {problem}")
    for line in bad:
        log.error("%s", line)
    if bad:
        log.error(
            "%d of %d selected models are missing or unverified; run download_models.sh",
            len(bad),
            len(entries),
        )
        return EXIT_UNVERIFIED
    log.info("all %d selected models present and verified", len(entries))
    return EXIT_OK


HELP_EPILOG = """\
environment:
  MODEL_GROUPS      comma list of groups (e.g. wan22_t2v,wan22_t2v_fast)
  download_<x>=true Hearmeman-style toggles: download_wan22, download_wan22_fast,
                    download_turbodiffusion, download_steady_dancer, download_flux,
                    download_background_removal, or download_<group>
  MODEL_MANIFEST    manifest path (default: models.toml next to this package)
  MODELS_DIR        ComfyUI models folder (default: /workspace/ComfyUI/models)
  HF_TOKEN          bearer token, sent only to Hugging Face hosts (and HF_ENDPOINT's host)
  MODEL_PARALLEL    parallel downloads (default 3)

exit codes:
  0  every selected model is present and verified
  1  a download or verification failed
  2  usage or manifest error (unknown group, malformed models.toml)
  3  not enough free disk for the selected models
  4  a model was refused with 401/403 (gated: set HF_TOKEN, accept the licence)
  5  --verify-only: some selected models are missing or unverified
"""


def build_parser() -> argparse.ArgumentParser:
    """The CLI of ``python -m worker.models``."""
    parser = argparse.ArgumentParser(
        prog="download_models.sh",
        description="Download and verify the ComfyUI models of the selected groups.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--groups", help="comma list of groups (overrides MODEL_GROUPS)")
    parser.add_argument("--manifest", type=Path, help="models.toml path (MODEL_MANIFEST)")
    parser.add_argument("--models-dir", type=Path, help="destination root (MODELS_DIR)")
    parser.add_argument("--parallel", type=int, help="parallel downloads (default 3)")
    parser.add_argument(
        "--verify-only",
        action="store_true",
        help="check presence and verification without any download (exit 5 if not)",
    )
    parser.add_argument("--status-file", type=Path, help="write JSON progress here, atomically")
    parser.add_argument("--list", action="store_true", help="print the selected files and exit")
    parser.add_argument("--retries", type=int, default=8, help="attempts without progress")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay, seconds")
    parser.add_argument(
        "--progress-interval", type=float, default=15.0, help="seconds between progress lines"
    )
    parser.add_argument("--read-timeout", type=float, default=60.0, help="seconds")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit code."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    manifest = args.manifest or manifest_path(env)
    models_dir = args.models_dir or Path(env.get("MODELS_DIR") or DEFAULT_MODELS_DIR)
    try:
        entries = load_manifest(manifest)
        groups = (
            [g.strip() for g in args.groups.split(",") if g.strip()]
            if args.groups is not None
            else groups_from_env(env)
        )
        selected = select(entries, groups)
        parallel = args.parallel or int(env.get("MODEL_PARALLEL") or 3)
    except (ManifestError, ValueError) as exc:
        log.error("%s", exc)  # noqa: TRY400 - a usage error, not a crash
        return EXIT_USAGE
    if args.list:
        for entry in selected:
            size = human_bytes(entry.size) if entry.size is not None else "?"
            sys.stdout.write(f"{entry.name}\t{entry.path}\t{size}\t{','.join(entry.groups)}\n")
        return EXIT_OK
    if not selected:
        log.info("no model groups selected (MODEL_GROUPS empty); nothing to do")
        return EXIT_OK
    log.info("groups: %s; %d files into %s", ",".join(groups), len(selected), models_dir)
    if args.verify_only:
        return verify_only(selected, models_dir)
    options = Options(
        models_dir=models_dir,
        parallel=parallel,
        retries=args.retries,
        backoff=args.backoff,
        read_timeout=args.read_timeout,
        progress_interval=args.progress_interval,
        hf_token=env.get("HF_TOKEN") or None,
        hf_hosts=hf_hosts(env),
        status_file=args.status_file,
    )
    return Downloader(options).run(selected)


def cli() -> None:
    """``python -m worker.models``: log to stderr with a prefix, exit with :func:`main`'s code."""
    logging.basicConfig(level=logging.INFO, format="[models] %(message)s", stream=sys.stderr)
    # urllib3 logs full URLs (signed CDN query strings) at DEBUG; keep it quiet regardless.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    sys.exit(main())


if __name__ == "__main__":
    cli()
