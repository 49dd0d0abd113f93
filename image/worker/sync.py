"""The R2 sync daemon: every finished file under ``SYNC_DIR`` lands in R2, verified, once.

Owns: watching ``SYNC_DIR`` recursively with inotify (``close_write``, ``moved_to``, new
directories), waiting until a file has settled, uploading it through the shared R2 client
with a small worker pool, verifying the ETag against the local MD5 (multipart form
included), recording it in a SQLite journal in ``SYNC_STATE_DIR``, and reconciling by
scanning at start, periodically and after an inotify queue overflow. Failures are retried
with backoff forever; nothing is dropped. A file or folder the file system refuses to read
(EACCES, EIO, ESTALE on a network volume) is logged with its errno and looked at again with
backoff, and an unexpected error in any of the daemon's threads is logged and that thread
carries on (with a reconciliation scan to recover what it may have missed), so uploads never
stop silently. ``--once`` syncs everything and exits.

Deliberately does not: delete objects (a file removed locally stays in R2), mirror renames
(a renamed file is a new object), or build the S3 client itself (``worker.r2`` does).

Exit codes: 0 done (``--once``: every file uploaded and verified; daemon: stopped by
SIGTERM/SIGINT after in-flight uploads finished); 1 ``--once`` ran out of time with files
pending; 2 configuration error (R2_* unset, SYNC_DIR missing).
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import heapq
import logging
import mimetypes
import os
import queue
import signal
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from worker.r2 import (
    MULTIPART_THRESHOLD,
    R2ConfigError,
    R2Settings,
    client_config,
    expected_etag,
    make_client,
    object_key,
    strip_etag,
    transfer_config,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("worker.sync")

EXIT_OK = 0
EXIT_PENDING = 1
EXIT_CONFIG = 2

DEFAULT_SYNC_DIR = "/workspace/ComfyUI/output"
DEFAULT_STATE_DIR = "/workspace/.r2_sync"
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", ".lock", "~")
#: Top-level folders never synced: ComfyUI's previews when SYNC_DIR is the ComfyUI root.
IGNORED_TOP_DIRS = frozenset({"temp"})
#: Seconds without a modify event after which a file no longer counts as being written.
WRITER_SILENCE = 120.0
#: Parts of one large file uploaded at once (each upload worker runs its own set).
PART_CONCURRENCY = 8
#: Minimum seconds between two snapshots of the processes' open-for-writing files.
WRITERS_REFRESH = 0.05

Signature = tuple[int, int]
"""(size, mtime_ns): what identifies one version of a file."""


def is_ignored(relative: str) -> bool:
    """True for temp files, dotfiles/dot-folders and ComfyUI's ``temp/``: never uploaded."""
    parts = relative.split("/")
    if parts[0] in IGNORED_TOP_DIRS and len(parts) > 1:
        return True
    if any(part.startswith(".") for part in parts):
        return True
    name = parts[-1]
    return name.endswith(TEMP_SUFFIXES) or name.startswith("~")


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """How the daemon behaves; read from the environment and flags by :func:`main`."""

    sync_dir: Path
    """Folder to mirror (recursively)."""
    state_dir: Path
    """Where the SQLite journal lives (keep it off ``sync_dir`` or it is skipped as a dotdir)."""
    settle: float = 0.3
    """Seconds a file's size and mtime must stay unchanged after its last event."""
    workers: int = 4
    """Parallel uploads."""
    queue_size: int = 10_000
    """Bound of the upload queue; the watcher waits (and rescans on overflow) beyond it."""
    rescan_interval: float = 60.0
    """Seconds between reconciliation scans."""
    status_interval: float = 30.0
    """Seconds between status lines."""
    max_backoff: float = 30.0
    """Cap of the retry delay; retries never stop."""
    first_backoff: float = 0.5


def open_for_writing(root: str) -> frozenset[str]:
    """Real paths under ``root`` that some process has open for writing (Linux ``/proc``).

    Processes we may not inspect are skipped; without ``/proc`` the result is empty and the
    settle time alone decides.
    """
    found: set[str] = set()
    prefix = root.rstrip("/") + "/"
    try:
        processes = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return frozenset()
    for process in processes:
        try:
            descriptors = list((process / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                target = str(descriptor.readlink())
                if not target.startswith(prefix):
                    continue
                info = (process / "fdinfo" / descriptor.name).read_text(encoding="ascii")
            except OSError:
                continue
            flags = next((line for line in info.splitlines() if line.startswith("flags:")), "")
            if flags and int(flags.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.add(target)
    return frozenset(found)


class Journal:
    """SQLite record of what is verified in the bucket: path -> size, mtime, ETag, key."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS uploaded (path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " mtime_ns INTEGER NOT NULL, etag TEXT NOT NULL, key TEXT NOT NULL,"
            " uploaded_at REAL NOT NULL)"
        )
        self._db.commit()
        self._known: dict[str, Signature] = {
            row[0]: (row[1], row[2])
            for row in self._db.execute("SELECT path, size, mtime_ns FROM uploaded")
        }

    def __len__(self) -> int:
        return len(self._known)

    def is_current(self, relative: str, signature: Signature) -> bool:
        """True when this exact version of ``relative`` is already uploaded and verified."""
        return self._known.get(relative) == signature

    def record(self, relative: str, signature: Signature, etag: str, key: str) -> None:
        """Remember a verified upload (committed before returning)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO uploaded VALUES (?, ?, ?, ?, ?, ?)",
                (relative, signature[0], signature[1], etag, key, time.time()),
            )
            self._db.commit()
            self._known[relative] = signature

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()


def describe_os_error(exc: OSError) -> str:
    """``errno 5 EIO: Input/output error``: what a log line says about a refused read."""
    name = errno.errorcode.get(exc.errno, "?") if exc.errno is not None else "?"
    return f"errno {exc.errno} {name}: {exc.strerror or exc}"


class UploadRetryError(Exception):
    """The file changed during the upload or the bucket disagreed; try again later."""


class SyncDaemon:
    """Watcher, settle scheduler, upload pool and journal around one ``SYNC_DIR``."""

    def __init__(
        self,
        options: SyncOptions,
        settings: R2Settings,
        *,
        client: S3Client | None = None,
        watch: bool = True,
    ) -> None:
        self.options = options
        self.settings = settings
        self.client = client or make_client(
            settings,
            config=client_config(
                max_pool_connections=max(10, options.workers * (PART_CONCURRENCY + 1))
            ),
        )
        self.journal = Journal(options.state_dir / "journal.sqlite3")
        self.watch = watch
        self._cond = threading.Condition()
        self._pending: dict[str, tuple[float, Signature | None]] = {}
        self._heap: list[tuple[float, str]] = []
        self._queue: queue.Queue[str] = queue.Queue(maxsize=options.queue_size)
        self._inflight: set[str] = set()
        self._queued: set[str] = set()
        self._transit = 0
        # Files with create/modify events and no close yet -> time of the last such event.
        self._writing: dict[str, float] = {}
        # Found by a scan rather than an event: a writer may hold them open unseen.
        self._scanned: set[str] = set()
        self._writers: tuple[float, frozenset[str]] = (0.0, frozenset())
        self._real_root = os.path.realpath(options.sync_dir)
        self._attempts: dict[str, int] = {}
        # Folders that could not be listed -> (monotonic time to list again, attempts so far).
        self._unlisted: dict[Path, tuple[float, int]] = {}
        self._next_scan = 0.0
        self._next_status = 0.0
        self._first_seen: dict[str, float] = {}
        self._lags: deque[float] = deque(maxlen=2000)
        self._stop = threading.Event()
        self._rescan = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inotify: Any = None
        self._wd_paths: dict[int, Path] = {}
        try:
            state = options.state_dir.resolve().relative_to(options.sync_dir.resolve())
            self._state_rel: str | None = state.as_posix()
        except ValueError:
            self._state_rel = None
        self.uploaded = 0
        self.failures = 0

    # -- bookkeeping -------------------------------------------------------------------------

    def relative(self, path: Path) -> str:
        """POSIX path of ``path`` under ``sync_dir``."""
        return path.relative_to(self.options.sync_dir).as_posix()

    def pending_count(self) -> int:
        """Files seen but not yet verified in the bucket (scheduled, queued or uploading)."""
        with self._cond:
            return (
                len(self._pending)
                + len(self._queued)
                + len(self._inflight)
                + self._transit
                + len(self._unlisted)
            )

    def lag_percentiles(self) -> tuple[float, float, float]:
        """(p50, p99, max) seconds from a file's last event to its verified upload."""
        lags = sorted(self._lags)
        if not lags:
            return (0.0, 0.0, 0.0)
        return (
            lags[len(lags) // 2],
            lags[min(len(lags) - 1, int(len(lags) * 0.99))],
            lags[-1],
        )

    def status_line(self) -> str:
        """``uploaded pending retrying failed(attempts) journal lag p50/p99/max`` for logs."""
        p50, p99, worst = self.lag_percentiles()
        return (
            f"uploaded={self.uploaded} pending={self.pending_count()} "
            f"retrying={len(self._attempts)} failed={self.failures} "
            f"journal={len(self.journal)} lag p50={p50:.2f}s p99={p99:.2f}s max={worst:.2f}s"
        )

    def schedule(self, relative: str, delay: float, *, event: bool = False) -> None:
        """Look at ``relative`` again after ``delay`` seconds (resetting any earlier time)."""
        if self.skipped(relative):
            return
        try:
            stat = (self.options.sync_dir / relative).stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._defer(relative, f"cannot stat ({describe_os_error(exc)})")
            return
        self._push(relative, delay, (stat.st_size, stat.st_mtime_ns), event=event)

    def _push(
        self, relative: str, delay: float, signature: Signature | None, *, event: bool = False
    ) -> None:
        """Put ``relative`` on the settle heap (no file-system access: cannot fail on I/O)."""
        deadline = time.monotonic() + delay
        with self._cond:
            if event or relative not in self._first_seen:
                self._first_seen[relative] = time.monotonic()
            self._pending[relative] = (deadline, signature)
            heapq.heappush(self._heap, (deadline, relative))
            self._cond.notify_all()

    def _backoff(self, attempts: int) -> float:
        return float(
            min(self.options.max_backoff, self.options.first_backoff * 2 ** (attempts - 1))
        )

    def _defer(self, relative: str, reason: str) -> None:
        """``relative`` could not be looked at: log why, look again after a growing delay.

        The file stays pending (never dropped); with no signature, the next look re-stats it
        and waits one more settle before uploading.
        """
        with self._cond:
            attempts = self._attempts.get(relative, 0) + 1
            self._attempts[relative] = attempts
        delay = self._backoff(attempts)
        log.warning("%s: %s; retry %d in %.1fs", relative, reason, attempts, delay)
        self._push(relative, delay, None)

    def _defer_folder(self, folder: Path, exc: OSError) -> None:
        """``folder`` could not be listed: log it, list it again after a growing delay."""
        with self._cond:
            attempts = self._unlisted.get(folder, (0.0, 0))[1] + 1
            delay = self._backoff(attempts)
            self._unlisted[folder] = (time.monotonic() + delay, attempts)
        log.warning(
            "cannot list %s (%s); retry %d in %.1fs",
            folder,
            describe_os_error(exc),
            attempts,
            delay,
        )

    def _list_unlisted(self) -> None:
        """Watch and scan again every folder whose listing failed and whose delay is over."""
        now = time.monotonic()
        with self._cond:
            due = [folder for folder, (when, _) in self._unlisted.items() if when <= now]
        for folder in due:
            if self.watch:
                self._add_watches(folder)
            self.scan(folder)

    # -- scanning and watching -------------------------------------------------------------

    def _is_writing(self, relative: str) -> bool:
        """A writer still has ``relative`` open (caller holds the lock).

        Silence for :data:`WRITER_SILENCE` seconds ends that belief: a hard link, for one,
        creates a file without ever closing it for writing, and scans must not skip it forever.
        """
        last = self._writing.get(relative)
        if last is None:
            return False
        if time.monotonic() - last > WRITER_SILENCE:
            del self._writing[relative]
            return False
        return True

    def skipped(self, relative: str) -> bool:
        """Never uploaded: temp patterns, or the journal when SYNC_STATE_DIR is inside."""
        if is_ignored(relative):
            return True
        if self._state_rel is None:
            return False
        return relative == self._state_rel or relative.startswith(self._state_rel + "/")

    def _walk(self, top: Path) -> Iterator[Path]:
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                with self._cond:
                    self._unlisted.pop(folder, None)
                continue
            except OSError as exc:
                self._defer_folder(folder, exc)
                continue
            failed: OSError | None = None
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_file = not is_dir and entry.is_file(follow_symlinks=False)
                except OSError as exc:
                    failed = exc  # its type is unknown: list the whole folder again later
                    continue
                if is_dir:
                    if not self.skipped(self.relative(Path(entry.path)) + "/x"):
                        stack.append(Path(entry.path))
                elif is_file:
                    yield Path(entry.path)
            if failed is not None:
                self._defer_folder(folder, failed)
            else:
                with self._cond:
                    self._unlisted.pop(folder, None)

    def scan(self, top: Path | None = None) -> int:
        """Schedule every file under ``top`` that the journal lacks; return how many."""
        found = 0
        for path in self._walk(top or self.options.sync_dir):
            relative = self.relative(path)
            if self.skipped(relative):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._defer(relative, f"cannot stat ({describe_os_error(exc)})")
                continue
            if self.journal.is_current(relative, (stat.st_size, stat.st_mtime_ns)):
                continue
            with self._cond:
                busy = (
                    relative in self._pending
                    or relative in self._queued
                    or relative in self._inflight
                    or self._is_writing(relative)
                )
            if not busy:
                with self._cond:
                    self._scanned.add(relative)
                self.schedule(relative, self.options.settle)
                found += 1
        return found

    def _add_watches(self, top: Path) -> None:
        from inotify_simple import flags  # noqa: PLC0415 - Linux-only, loaded when watching

        mask = (
            flags.CLOSE_WRITE
            | flags.MOVED_TO
            | flags.MOVED_FROM
            | flags.CREATE
            | flags.MODIFY
            | flags.DELETE
            | flags.ONLYDIR
        )
        stack = [top]
        while stack:
            folder = stack.pop()
            if folder != self.options.sync_dir and self.skipped(self.relative(folder) + "/x"):
                continue
            try:
                wd = self._inotify.add_watch(folder, mask)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                log.warning("cannot watch %s (%s); periodic scans still cover it", folder, exc)
                continue
            self._wd_paths[wd] = folder
            try:
                stack.extend(
                    Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)
                )
            except OSError:
                continue  # every caller scans this folder next; that scan logs and retries it

    def _watch_step(self) -> None:
        from inotify_simple import flags  # noqa: PLC0415 - Linux-only, loaded when watching

        for event in self._inotify.read(timeout=200):
            if event.mask & flags.Q_OVERFLOW:
                log.warning("inotify queue overflowed; rescanning %s", self.options.sync_dir)
                self._rescan.set()
                continue
            if event.mask & flags.IGNORED:
                self._wd_paths.pop(event.wd, None)
                continue
            folder = self._wd_paths.get(event.wd)
            if folder is None or not event.name:
                continue
            path = folder / event.name
            if event.mask & flags.ISDIR:
                if event.mask & (flags.CREATE | flags.MOVED_TO):
                    # Files may land in the new folder before its watch exists: scan it.
                    self._add_watches(path)
                    self.scan(path)
                continue
            self._file_event(self.relative(path), event.mask)

    def _file_event(self, relative: str, mask: int) -> None:
        from inotify_simple import flags  # noqa: PLC0415 - Linux-only, loaded when watching

        if self.skipped(relative):
            return
        if mask & (flags.CREATE | flags.MODIFY):
            with self._cond:
                self._writing[relative] = time.monotonic()
        elif mask & (flags.CLOSE_WRITE | flags.MOVED_TO):
            with self._cond:
                self._writing.pop(relative, None)
                self._scanned.discard(relative)
            self.schedule(relative, self.options.settle, event=True)
        elif mask & (flags.MOVED_FROM | flags.DELETE):
            with self._cond:
                self._writing.pop(relative, None)

    # -- settle scheduler ------------------------------------------------------------------

    def _scheduler_step(self) -> None:
        with self._cond:
            now = time.monotonic()
            while self._heap and (
                self._pending.get(self._heap[0][1], (None, None))[0] != self._heap[0][0]
            ):
                heapq.heappop(self._heap)  # superseded by a later schedule()
            if not self._heap:
                self._cond.wait(timeout=0.5)
                return
            deadline, relative = self._heap[0]
            if deadline > now:
                self._cond.wait(timeout=min(0.5, deadline - now))
                return
            heapq.heappop(self._heap)
            _, signature = self._pending.pop(relative)
            busy = relative in self._inflight or relative in self._queued
            still_writing = self._is_writing(relative)
            self._transit += 1
        try:
            if busy:
                self.schedule(relative, self.options.settle)
            elif not still_writing:  # a writer has it open: its close_write comes later
                self._settled(relative, signature, deadline)
        except Exception as exc:
            # Logged with its traceback; the file is looked at again later, never lost.
            log.exception("%s: unexpected error while settling", relative)
            self._defer(relative, f"settle failed ({type(exc).__name__})")
        finally:
            with self._cond:
                self._transit -= 1

    def _settled(self, relative: str, signature: Signature | None, deadline: float) -> None:
        try:
            stat = (self.options.sync_dir / relative).stat()
        except FileNotFoundError:
            with self._cond:
                self._first_seen.pop(relative, None)
                self._attempts.pop(relative, None)
            return
        except OSError as exc:
            self._defer(relative, f"cannot stat ({describe_os_error(exc)})")
            return
        now_signature = (stat.st_size, stat.st_mtime_ns)
        if now_signature != signature:
            self.schedule(relative, self.options.settle)
            return
        if self.journal.is_current(relative, now_signature):
            return
        with self._cond:
            unseen = relative in self._scanned or not self.watch
        if unseen and self._held_open(relative, deadline):
            return
        while not self._stop.is_set():
            try:
                with self._cond:
                    self._queue.put_nowait(relative)
                    self._queued.add(relative)
                    self._cond.notify_all()
                break
            except queue.Full:
                time.sleep(0.05)  # the pool is behind; events wait in the kernel queue

    def _held_open(self, relative: str, deadline: float) -> bool:
        """True (and the file set aside) when some process has it open for writing.

        Only files found by a scan need this: a writer that opened a file before its folder
        was watched (or before the daemon started) produces no event a settle could rely on.
        Such a file is polled until its writer closes it.
        The snapshot of writers must postdate the file's discovery; it is refreshed at most
        every :data:`WRITERS_REFRESH` seconds, and a file that needs a newer one waits.
        """
        taken, writers = self._writers
        if taken < deadline - self.options.settle:
            if time.monotonic() - taken < WRITERS_REFRESH:
                self.schedule(relative, WRITERS_REFRESH)
                return True
            taken = time.monotonic()
            writers = open_for_writing(self._real_root)
            self._writers = (taken, writers)
        if f"{self._real_root}/{relative}" not in writers:
            return False
        # Look again shortly; when watched, its close_write (now seen) reschedules it sooner.
        self.schedule(relative, max(self.options.settle, 0.5))
        return True

    # -- uploading -------------------------------------------------------------------------

    def _worker_step(self) -> None:
        with self._cond:
            try:
                relative = self._queue.get_nowait()
            except queue.Empty:
                self._cond.wait(timeout=0.2)
                return
            self._queued.discard(relative)
            self._inflight.add(relative)
        try:
            self._upload(relative)
        except FileNotFoundError:
            log.info("%s vanished before upload; nothing to do", relative)
        except UploadRetryError as exc:
            self._retry(relative, str(exc), count=False)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, never dropped
            self._retry(relative, f"{type(exc).__name__}: {exc}", count=True)
        finally:
            with self._cond:
                self._inflight.discard(relative)

    def _retry(self, relative: str, reason: str, *, count: bool) -> None:
        with self._cond:
            attempts = self._attempts.get(relative, 0) + 1
            self._attempts[relative] = attempts
            if count:
                self.failures += 1
        delay = self._backoff(attempts)
        log.warning(
            "upload of %s failed (%s); retry %d in %.1fs", relative, reason, attempts, delay
        )
        self.schedule(relative, delay)

    def _upload(self, relative: str) -> None:
        path = self.options.sync_dir / relative
        before = path.stat()
        signature = (before.st_size, before.st_mtime_ns)
        key = object_key(self.settings.prefix, relative)
        content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
        started = time.monotonic()
        if before.st_size < MULTIPART_THRESHOLD:
            body = path.read_bytes()
            md5 = hashlib.md5(body, usedforsecurity=False)
            if len(body) != before.st_size:
                raise UploadRetryError("file changed while reading")
            expected = md5.hexdigest()
            response = self.client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=body,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                ContentType=content_type,
            )
            etag = strip_etag(response["ETag"])
        else:
            # Hash while uploading: the two reads share the page cache and the wall time.
            with ThreadPoolExecutor(max_workers=1) as hasher:
                local = hasher.submit(expected_etag, path)
                self.client.upload_file(
                    str(path),
                    self.settings.bucket,
                    key,
                    ExtraArgs={"ContentType": content_type},
                    Config=transfer_config(max_concurrency=PART_CONCURRENCY),
                )
                expected = local.result()
            etag = strip_etag(self.client.head_object(Bucket=self.settings.bucket, Key=key)["ETag"])
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != signature:
            raise UploadRetryError("file changed during upload")
        if etag != expected:
            raise UploadRetryError(f"bucket ETag {etag} != local {expected}")
        self.journal.record(relative, signature, etag, key)
        with self._cond:
            seen = self._first_seen.pop(relative, started)
            self._attempts.pop(relative, None)
            self._scanned.discard(relative)
        lag = time.monotonic() - seen
        self._lags.append(lag)
        with self._cond:
            self.uploaded += 1
        log.info(
            "uploaded %s (%d bytes) in %.2fs, lag %.2fs",
            key,
            before.st_size,
            time.monotonic() - started,
            lag,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching (when enabled), scanning, and the upload pool."""
        self.options.sync_dir.mkdir(parents=True, exist_ok=True)
        if self.watch:
            from inotify_simple import INotify  # noqa: PLC0415 - Linux-only

            self._inotify = INotify()
            self._add_watches(self.options.sync_dir)
            self._spawn("sync-watch", self._watch_step)
        self._spawn("sync-scheduler", self._scheduler_step)
        for index in range(max(1, self.options.workers)):
            self._spawn(f"sync-upload-{index}", self._worker_step)
        found = self.scan()
        log.info(
            "watching %s -> %s/%s (%d already journaled, %d to upload)",
            self.options.sync_dir,
            self.settings.bucket,
            self.settings.prefix,
            len(self.journal),
            found,
        )
        self._next_scan = time.monotonic() + self.options.rescan_interval
        self._next_status = time.monotonic() + self.options.status_interval
        # Also with --once: folders that could not be listed are listed again from here.
        self._spawn("sync-maintenance", self._maintenance_step)

    def _spawn(self, name: str, step: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._run_loop, args=(name, step), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_loop(self, name: str, step: Callable[[], None]) -> None:
        """Run ``step`` until stopped; an unexpected error is logged and the loop goes on.

        Whatever that step was doing may have missed files, so a reconciliation scan follows;
        repeated errors back off so a persistent one cannot spin.
        """
        failures = 0
        while not self._stop.is_set():
            try:
                step()
            except Exception:
                failures += 1
                delay = self._backoff(failures)
                log.exception(
                    "%s: unexpected error (%d in a row); continuing in %.1fs with a rescan",
                    name,
                    failures,
                    delay,
                )
                self._rescan.set()
                self._stop.wait(delay)
            else:
                failures = 0

    def _maintenance_step(self) -> None:
        if self._rescan.wait(timeout=0.2):
            self._rescan.clear()
            self.scan()
        self._list_unlisted()
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + self.options.rescan_interval
            if self.watch and self.options.sync_dir not in list(self._wd_paths.values()):
                # SYNC_DIR was removed or replaced (its watch is gone): watch it again.
                self._add_watches(self.options.sync_dir)
            found = self.scan()
            if found:
                log.info("reconciliation scan found %d file(s) to upload", found)
        if now >= self._next_status:
            self._next_status = now + self.options.status_interval
            log.info("status: %s", self.status_line())

    def idle(self) -> bool:
        """True when nothing is scheduled, queued or uploading."""
        return self.pending_count() == 0

    def stop(self) -> None:
        """Stop taking work, let in-flight uploads finish, flush and close the journal."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        if self._inotify is not None:
            self._inotify.close()
        self.journal.close()
        log.info("stopped: %s", self.status_line())

    def run_once(self, timeout: float) -> int:
        """Upload everything not yet journaled, wait until verified; return an exit code."""
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.idle():
                break
            time.sleep(0.05)
        pending = self.pending_count()
        self.stop()
        if pending:
            log.error("%d file(s) still pending after %.0fs", pending, timeout)
            return EXIT_PENDING
        log.info("all files uploaded and verified")
        return EXIT_OK


def options_from_env(env: Mapping[str, str], args: argparse.Namespace) -> SyncOptions:
    """Build :class:`SyncOptions` from flags first, then ``SYNC_*`` variables."""
    sync_dir = args.sync_dir or env.get("SYNC_DIR") or env.get("COMFYUI_OUTPUT_DIR")
    state_dir = args.state_dir or env.get("SYNC_STATE_DIR") or DEFAULT_STATE_DIR

    def number(name: str, default: float) -> float:
        raw = env.get(name, "").strip()
        try:
            return float(raw) if raw else default
        except ValueError:
            raise R2ConfigError(f"{name} must be a number, got {raw!r}") from None

    return SyncOptions(
        sync_dir=Path(sync_dir or DEFAULT_SYNC_DIR),
        state_dir=Path(state_dir),
        settle=args.settle if args.settle is not None else number("SYNC_SETTLE_SECONDS", 0.3),
        workers=args.workers or int(number("SYNC_WORKERS", 4)),
        rescan_interval=number("SYNC_RESCAN_SECONDS", 60.0),
        status_interval=number("SYNC_STATUS_SECONDS", 30.0),
        max_backoff=number("SYNC_MAX_BACKOFF_SECONDS", 30.0),
        first_backoff=number("SYNC_FIRST_BACKOFF_SECONDS", 0.5),
    )


HELP_EPILOG = """\
environment:
  SYNC_DIR (or COMFYUI_OUTPUT_DIR)  folder to sync (default /workspace/ComfyUI/output)
  SYNC_STATE_DIR                    journal folder (default /workspace/.r2_sync)
  SYNC_SETTLE_SECONDS               stable time before upload (default 0.3)
  SYNC_WORKERS                      parallel uploads (default 4)
  SYNC_RESCAN_SECONDS               reconciliation scan interval (default 60)
  SYNC_STATUS_SECONDS               status line interval (default 30)
  SYNC_MAX_BACKOFF_SECONDS          cap of the retry delay (default 30)
  R2_ENDPOINT R2_BUCKET R2_ACCESS_KEY_ID R2_SECRET_ACCESS_KEY R2_PREFIX

object key = R2_PREFIX + path relative to SYNC_DIR

exit codes:
  0  --once: every file uploaded and verified; daemon: stopped cleanly by SIGTERM/SIGINT
  1  --once: files still pending when --timeout ran out
  2  configuration error
"""


def build_parser() -> argparse.ArgumentParser:
    """The CLI of ``python -m worker.sync``."""
    parser = argparse.ArgumentParser(
        prog="r2_sync.sh",
        description="Upload every finished file under SYNC_DIR to R2, verified, in real time.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--once", action="store_true", help="sync everything, then exit")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="--once: give up after this many seconds"
    )
    parser.add_argument("--sync-dir", help="folder to sync (SYNC_DIR)")
    parser.add_argument("--state-dir", help="journal folder (SYNC_STATE_DIR)")
    parser.add_argument("--settle", type=float, help="seconds (SYNC_SETTLE_SECONDS)")
    parser.add_argument("--workers", type=int, help="parallel uploads (SYNC_WORKERS)")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit code."""
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    try:
        settings = R2Settings.from_env(env)
        options = options_from_env(env, args)
    except (R2ConfigError, ValueError) as exc:
        log.error("%s", exc)  # noqa: TRY400 - a configuration error, not a crash
        return EXIT_CONFIG
    daemon = SyncDaemon(options, settings, watch=not args.once)
    if args.once:
        return daemon.run_once(args.timeout)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; finishing in-flight uploads", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    while not stopping.wait(timeout=1.0):
        pass
    daemon.stop()
    return EXIT_OK


def cli() -> None:
    """``python -m worker.sync``: log to stderr with a prefix, exit with :func:`main`'s code."""
    logging.basicConfig(
        level=logging.INFO, format="[r2_sync] %(asctime)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    sys.exit(main())


if __name__ == "__main__":
    cli()
