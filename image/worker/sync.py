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

Keys and overwrites: every object goes to ``R2_PREFIX + "pods/" + <sync id> + "/" + path``
(see :func:`sync_key`); the sync id lives in ``SYNC_STATE_DIR/sync-id`` and is new for every
fresh volume, so pods and volume resets never share keys. Every write is conditional
(``If-None-Match: *``): a key that holds other bytes is never replaced, and a rewritten file
(new bytes under a known path, a shorter or empty rewrite included) becomes a new object
``name~v<N>.ext`` next to the earlier one, with a log line. Only regular files leave the pod:
paths are opened without following symlinks, and symlinks, FIFOs, sockets, devices and hard
links (a file with a second name, whose bytes may be a model's or another run's) are skipped
with one log line each. A corrupt or unreadable journal is moved aside and rebuilt
from the bucket listing and a scan; a journal that cannot be written (full disk) keeps
verified uploads in memory and retries only the journal write.

Deliberately does not: delete objects (a file removed locally stays in R2), mirror renames
(a renamed file is a new object), or build the S3 client itself (``worker.r2`` does).

Exit codes: 0 done (``--once``: every file uploaded and verified; daemon: stopped by
SIGTERM/SIGINT after in-flight uploads finished); 1 ``--once`` ran out of time with files
pending; 2 configuration error (R2_* unset, SYNC_DIR missing).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import logging
import os
import queue
import re
import secrets
import signal
import sqlite3
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from worker.r2 import (
    EtagMismatchError,
    R2ConfigError,
    R2Settings,
    SourceChangedError,
    client_config,
    create_or_match,
    decode_path,
    encode_path,
    etag_of,
    make_client,
    normalise_prefix,
    object_headers,
    strip_etag,
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

#: Highest ``~v<N>`` tried for one path before the upload is retried later instead.
MAX_VERSIONS = 10_000

Signature = tuple[int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns): what identifies one version of a file. ctime moves on
every write and on ``touch -r``, so a same-size rewrite with its mtime restored still shows."""


def signature_of(info: os.stat_result) -> Signature:
    """The :data:`Signature` of a stat result."""
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)


def file_kind(mode: int) -> str:
    """``symlink``, ``FIFO``, ``socket``, ``character device``... for a log line."""
    kinds = (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def refusal(info: os.stat_result) -> str | None:
    """Why the file ``info`` describes is never uploaded (None: it may be).

    Anything but a regular file (its :func:`file_kind`), and a regular file with more than
    one name, a ``hard link``: its bytes belong to another path too, which may be a model on
    the volume or another run's output. Like a symlink, it is not followed; when the other
    names are gone it is an ordinary file again.
    """
    if not stat.S_ISREG(info.st_mode):
        return file_kind(info.st_mode)
    return "hard link" if info.st_nlink > 1 else None


class NotRegularError(Exception):
    """The path is (or became) something other than a regular file; never uploaded."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_regular(root: Path, relative: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of ``root/relative`` and its fstat, for regular files only.

    No component is followed if it is a symlink (each folder is opened with ``O_NOFOLLOW``
    relative to its parent), the file is looked at with lstat before it is opened (a FIFO
    or device is never opened) and opened with ``O_NOFOLLOW | O_NONBLOCK``, and the opened
    descriptor is checked again, so a swap between the checks cannot slip through.
    Raises :class:`NotRegularError` or the ``OSError`` of the failing call.
    """
    parts = relative.split("/")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotRegularError("path through a symlink") from exc
                raise
            os.close(folder)
            folder = inner
        seen = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        if (refused := refusal(seen)) is not None:
            raise NotRegularError(refused)
        try:
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
            )
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise NotRegularError("symlink or socket") from exc
            raise
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if (refused := refusal(info)) is not None:
        os.close(fd)
        raise NotRegularError(refused)
    return fd, info


def load_sync_id(state_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """The id of this volume's sync key segment, created once in ``state_dir/sync-id``.

    ``<RUNPOD_POD_ID of the first pod, or "local">-<12 hex>``: new for every fresh volume
    (or wiped state), the same for every later pod on the volume, so its journal and keys
    keep matching.
    """
    env = os.environ if env is None else env
    path = state_dir / "sync-id"
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        existing = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        existing = ""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,80}", existing):
        return existing
    pod = re.sub(r"[^A-Za-z0-9_-]", "", env.get("RUNPOD_POD_ID", ""))[:40] or "local"
    fresh = f"{pod}-{secrets.token_hex(6)}"
    temporary = path.with_name(f".sync-id.{os.getpid()}.tmp")
    temporary.write_text(fresh + "\n", encoding="ascii")
    try:
        os.link(temporary, path)  # fails if another daemon created it first: use theirs
    except FileExistsError:
        temporary.unlink()
        return load_sync_id(state_dir, env)
    temporary.unlink()
    return fresh


def sync_key(prefix: str, sync_id: str, relative: str, version: int = 1) -> str:
    """``R2_PREFIX + pods/<sync id>/ + path``; version N > 1 adds ``~vN`` before the suffix.

    The path is :func:`worker.r2.encode_path`-encoded, and a literal ``~`` becomes ``%7E`` so
    that ``~v<N>`` in a key always means a version.
    """
    encoded = encode_path(relative).replace("~", "%7E")
    if version > 1:
        folder, _, name = encoded.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem}~v{version}.{suffix}" if dot and stem else f"{name}~v{version}"
        encoded = f"{folder}/{name}" if folder else name
    return f"{normalise_prefix(prefix)}pods/{sync_id}/{encoded}"


def parse_version(key: str) -> int:
    """The ``~v<N>`` version of a key (1 when it has none)."""
    found = _VERSIONED.fullmatch(key.rpartition("/")[2])
    return int(found["n"]) if found else 1


_VERSIONED = re.compile(r"(?P<stem>.+)~v(?P<n>[1-9][0-9]*)(?P<suffix>\.[^.]*)?")


def parse_sync_key(base: str, key: str) -> tuple[str, int] | None:
    """(relative path, version) of a key :func:`sync_key` made under ``base``; else None."""
    if not key.startswith(base):
        return None
    folder, _, name = key[len(base) :].rpartition("/")
    version = 1
    if found := _VERSIONED.fullmatch(name):
        name = found["stem"] + (found["suffix"] or "")
        version = int(found["n"])
    return decode_path(f"{folder}/{name}" if folder else name), version


def is_ignored_folder(relative: str) -> bool:
    """True for a folder nothing under is uploaded: dot-folders anywhere, ComfyUI's ``temp/``.

    Only names of files count as temp names: a folder called ``x.tmp`` is entered.
    """
    parts = relative.split("/")
    return parts[0] in IGNORED_TOP_DIRS or any(part.startswith(".") for part in parts)


def is_ignored(relative: str) -> bool:
    """True for temp files, dotfiles, and anything in an ignored folder: never uploaded."""
    folder, _, name = relative.rpartition("/")
    if folder and is_ignored_folder(folder):
        return True
    return name.startswith((".", "~")) or name.endswith(TEMP_SUFFIXES)


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


@dataclass(frozen=True)
class Record:
    """One verified object: the file version it came from and where it went."""

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    etag: str
    key: str
    version: int = 1

    def matches(self, signature: Signature) -> bool:
        """True when ``signature`` is the file version this record describes."""
        if self.ino == 0 and self.ctime_ns == 0:  # journaled before inode and ctime were
            return (self.size, self.mtime_ns) == signature[:2]
        return (self.size, self.mtime_ns, self.ino, self.ctime_ns) == signature


_COLUMNS = (
    ("ino", "INTEGER NOT NULL DEFAULT 0"),
    ("ctime_ns", "INTEGER NOT NULL DEFAULT 0"),
    ("version", "INTEGER NOT NULL DEFAULT 1"),
)


class Journal:
    """SQLite record of what is verified in the bucket: path -> file version, ETag, key.

    Paths are stored :func:`worker.r2.encode_path`-encoded. Rows are kept in memory too;
    when a write fails (disk full, I/O error) the rows stay in memory and :meth:`flush`
    writes them later, so a verified upload is never repeated because of its journal.
    ``path=None`` keeps everything in memory (the last resort when no journal file works).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._unsaved: dict[str, Record] = {}
        self._failing = False
        self._db: sqlite3.Connection | None = None
        self._known: dict[str, Record] = {}
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS uploaded (path TEXT PRIMARY KEY, size INTEGER NOT "
                "NULL, mtime_ns INTEGER NOT NULL, etag TEXT NOT NULL, key TEXT NOT NULL,"
                " uploaded_at REAL NOT NULL)"
            )
            present = {row[1] for row in db.execute("PRAGMA table_info(uploaded)")}
            for name, declaration in _COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE uploaded ADD COLUMN {name} {declaration}")
            db.commit()
            self._known = {
                row[0]: Record(*row[1:])
                for row in db.execute(
                    "SELECT path, size, mtime_ns, ino, ctime_ns, etag, key, version FROM uploaded"
                )
            }
        except BaseException:
            db.close()
            raise
        self._db = db

    def __len__(self) -> int:
        return len(self._known)

    def get(self, relative: str) -> Record | None:
        """The record of ``relative`` (a plain path, as the file system names it)."""
        return self._known.get(encode_path(relative))

    def is_current(self, relative: str, signature: Signature) -> bool:
        """True when this exact version of ``relative`` is already uploaded and verified."""
        record = self.get(relative)
        return record is not None and record.matches(signature)

    @property
    def unsaved(self) -> int:
        """Verified uploads held in memory because the journal could not be written."""
        return len(self._unsaved)

    def record(self, relative: str, record: Record) -> None:
        """Remember a verified upload: in memory at once, on disk now or by :meth:`flush`."""
        with self._lock:
            encoded = encode_path(relative)
            self._known[encoded] = record
            self._unsaved[encoded] = record
            self._write()

    def flush(self) -> bool:
        """Write rows a failed write left in memory; True when none are left."""
        with self._lock:
            return self._write()

    def _write(self) -> bool:
        if self._db is None:
            self._unsaved.clear()
            return True
        if not self._unsaved:
            return True
        rows = [
            (p, r.size, r.mtime_ns, r.etag, r.key, time.time(), r.ino, r.ctime_ns, r.version)
            for p, r in self._unsaved.items()
        ]
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO uploaded (path, size, mtime_ns, etag, key, uploaded_at,"
                " ino, ctime_ns, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.commit()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()
            if not self._failing:
                log.warning(
                    "cannot write the journal %s (%s): %d verified upload(s) kept in memory; "
                    "only the journal write is retried, nothing is uploaded again",
                    self.path,
                    exc,
                    len(rows),
                )
            self._failing = True
            return False
        if self._failing:
            log.info("journal %s writable again: %d row(s) saved", self.path, len(rows))
        self._failing = False
        self._unsaved.clear()
        return True

    def close(self) -> None:
        """Write what is pending, checkpoint the WAL into the main file and close."""
        with self._lock:
            if not self._write():
                log.error(
                    "%d verified upload(s) could not be journaled; the next start finds them "
                    "in the bucket listing instead",
                    len(self._unsaved),
                )
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
                self._db = None


def open_journal(path: Path) -> Journal:
    """The journal at ``path``; a corrupt or unreadable one is moved aside and started anew.

    The bad file (and its ``-wal``/``-shm``) is kept as ``<name>.corrupt-<UTC time>`` for
    inspection; what it knew is rebuilt from the bucket listing and a scan. When no file
    can be used at all, the journal lives in memory for this run (loudly).
    """
    try:
        return Journal(path)
    except (sqlite3.Error, OSError) as exc:
        failure = exc
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved: list[str] = []
    try:
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.rename(path.with_name(f"{path.name}{suffix}.corrupt-{stamp}"))
                moved.append(source.name)
        log.error(
            "journal %s is unusable (%s: %s); moved aside as %s.corrupt-%s, rebuilding it "
            "from the bucket listing and a scan",
            path,
            type(failure).__name__,
            failure,
            path.name,
            stamp,
        )
        return Journal(path)
    except (sqlite3.Error, OSError) as exc:
        log.error(  # noqa: TRY400 - the cause is in the message; no traceback helps here
            "journal %s is unusable (%s: %s) and cannot be replaced (%s: %s); keeping it in "
            "memory for this run (the bucket listing still prevents re-uploads)",
            path,
            type(failure).__name__,
            failure,
            type(exc).__name__,
            exc,
        )
        return Journal(None)


def describe_os_error(exc: OSError) -> str:
    """``errno 5 EIO: Input/output error``: what a log line says about a refused read."""
    name = errno.errorcode.get(exc.errno, "?") if exc.errno is not None else "?"
    return f"errno {exc.errno} {name}: {exc.strerror or exc}"


class UploadRetryError(Exception):
    """The file changed during the upload or the bucket disagreed; try again later."""


Phase = Literal["idle", "waiting", "settling", "queued", "uploading"]


@dataclass
class FileState:
    """Everything the daemon knows about one path; read and written under its lock.

    ``phase`` is where the file is: ``waiting`` on the settle heap until ``look``'s time,
    ``settling`` (the scheduler is checking it), ``queued`` for an upload worker,
    ``uploading``, or ``idle`` (nothing to do until an event or a scan). A request for
    another look while the file is settling, queued or uploading is kept in ``look`` and
    honoured when that step ends, so a file is in one phase at a time and "pending" is the
    number of files not idle.
    """

    phase: Phase = "idle"
    look: tuple[float, Signature | None] | None = None
    """The next look asked for: (monotonic due time, the signature seen then or None)."""
    first_seen: float | None = None
    """When the file's current version was first noticed (where its lag starts)."""
    attempts: int = 0
    """Failed looks or uploads in a row (the backoff's exponent)."""
    scanned: bool = False
    """Found by a scan, not an event: a writer may hold it open unseen."""
    last_write: float | None = None
    """Time of the last create/modify event not yet followed by a close."""
    skipped: str = ""
    """What it is when it is not a regular file (logged once per kind); never uploaded."""


class SyncDaemon:
    """Watcher, settle scheduler, upload pool and journal around one ``SYNC_DIR``.

    Each path it is busy with, sees being written, or skips has one :class:`FileState`;
    a file moves idle -> waiting -> settling -> queued -> uploading -> idle, and every
    failure takes the one path back to waiting (:meth:`_retry`).
    """

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
        self.journal = open_journal(options.state_dir / "journal.sqlite3")
        self.sync_id = load_sync_id(options.state_dir)
        self.key_base = sync_key(settings.prefix, self.sync_id, "")
        # Objects found under key_base at start: encoded path -> {version: (etag, size)}.
        self._remote: dict[str, dict[int, tuple[str, int]]] = {}
        self._next_flush = 0.0
        self.watch = watch
        self._cond = threading.Condition()
        # One record per path the daemon is busy with, is watching being written, or skips.
        self._files: dict[str, FileState] = {}
        # The settle heap: (due time, path); an entry is live while it matches the look.
        self._heap: list[tuple[float, str]] = []
        self._queue: queue.Queue[str] = queue.Queue(maxsize=options.queue_size)
        self._writers: tuple[float, frozenset[str]] = (0.0, frozenset())
        self._real_root = os.path.realpath(options.sync_dir)
        # Folders that could not be listed -> (monotonic time to list again, attempts so far).
        self._unlisted: dict[Path, tuple[float, int]] = {}
        self._next_scan = 0.0
        self._next_status = 0.0
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
        """Files seen but not yet verified in the bucket (any phase but idle), plus folders
        whose listing failed (what they hold is not known yet)."""
        with self._cond:
            busy = sum(1 for state in self._files.values() if state.phase != "idle")
            return busy + len(self._unlisted)

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
        unsaved = f" unjournaled={self.journal.unsaved}" if self.journal.unsaved else ""
        with self._cond:
            retrying = sum(1 for state in self._files.values() if state.attempts)
            skipped = sum(1 for state in self._files.values() if state.skipped)
        return (
            f"uploaded={self.uploaded} pending={self.pending_count()} "
            f"retrying={retrying} failed={self.failures} "
            f"journal={len(self.journal)}{unsaved} skipped={skipped} "
            f"lag p50={p50:.2f}s p99={p99:.2f}s max={worst:.2f}s"
        )

    def schedule(self, relative: str, delay: float, *, event: bool = False) -> None:
        """Look at ``relative`` again after ``delay`` seconds (resetting any earlier time)."""
        signature = self._signature(relative)
        if signature is not None:
            self._push(relative, delay, signature, event=event)

    def _signature(self, relative: str) -> Signature | None:
        """The signature of ``relative`` now, or None when there is nothing to look at: a
        skipped path, a vanished one, one that is not a regular file (logged and skipped),
        or one the file system refuses to stat (retried with backoff)."""
        if self.skipped(relative):
            return None
        try:
            info = self._lstat(relative)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._retry(relative, f"cannot stat ({describe_os_error(exc)})")
            return None
        return None if info is None else signature_of(info)

    def _state(self, relative: str) -> FileState:
        """The record of ``relative``, made on first use (caller holds the lock)."""
        state = self._files.get(relative)
        if state is None:
            state = self._files[relative] = FileState()
        return state

    def _forget(self, relative: str) -> None:
        """Drop the record of an idle path nothing else is known about (caller holds the lock)."""
        state = self._files.get(relative)
        if state is not None and state.phase == "idle" and not (state.last_write or state.skipped):
            del self._files[relative]

    def _lstat(self, relative: str) -> os.stat_result | None:
        """lstat of ``relative``; None (and one log line) when it is not uploaded
        (:func:`refusal`: not a regular file, or a hard link)."""
        info = (self.options.sync_dir / relative).lstat()
        refused = refusal(info)
        if refused is None:
            state = self._files.get(relative)
            if state is not None and state.skipped:
                with self._cond:
                    state.skipped = ""  # it was something else before; now it is a file
            return info
        self._skip(relative, refused)
        return None

    def _skip(self, relative: str, kind: str) -> None:
        """Never upload ``relative``: log it once per kind, forget its retries and lag."""
        with self._cond:
            state = self._state(relative)
            known, state.skipped = state.skipped, kind
            state.first_seen, state.attempts, state.scanned = None, 0, False
        if known != kind:
            log.warning(
                "skipping %s: a %s; only regular files with a single name are uploaded",
                relative,
                kind,
            )

    def _push(
        self, relative: str, delay: float, signature: Signature | None, *, event: bool = False
    ) -> None:
        """Ask for a look at ``relative`` after ``delay`` (no file-system access: cannot fail
        on I/O). An idle or waiting file goes onto the settle heap now; a busy one when its
        current step ends (:meth:`_release`)."""
        now = time.monotonic()
        with self._cond:
            state = self._state(relative)
            if event or state.first_seen is None:
                state.first_seen = now
            state.look = (now + delay, signature)
            if state.phase in ("idle", "waiting"):
                self._wait(relative, state, now + delay)

    def _wait(self, relative: str, state: FileState, due: float) -> None:
        """Put a file onto the settle heap until ``due``, its look's time (lock held)."""
        state.phase = "waiting"
        heapq.heappush(self._heap, (due, relative))
        self._cond.notify_all()

    def _release(self, relative: str, phase: Phase) -> None:
        """End a settle or upload step: wait for the look asked for meanwhile, or go idle.

        Nothing to do when the step moved the file on itself (a settled file is queued).
        """
        with self._cond:
            state = self._files.get(relative)
            if state is None or state.phase != phase:
                return
            if state.look is not None:
                self._wait(relative, state, state.look[0])
            else:
                state.phase = "idle"
                self._forget(relative)

    def _backoff(self, attempts: int) -> float:
        """``first_backoff * 2**(attempts-1)`` seconds, capped at ``max_backoff``.

        The downloader's curve, but not its helper (tenacity's ``Retrying``): a retry here
        never gives up and never sleeps in the thread that failed; the delay goes onto the
        settle heap, so upload workers and the scheduler stay free for other files.
        """
        return float(
            min(self.options.max_backoff, self.options.first_backoff * 2 ** (attempts - 1))
        )

    def _retry(self, relative: str, reason: str, *, failed: bool = False) -> None:
        """The one retry path: ``relative`` could not be looked at or uploaded; log why and
        look again after a growing delay (``failed`` counts an unexpected upload failure).

        The file stays pending, never dropped. The next look re-stats it and lets it settle
        once more before uploading: after a failure nothing is assumed about the file.
        """
        with self._cond:
            state = self._state(relative)
            state.attempts += 1
            attempts = state.attempts
            if failed:
                self.failures += 1
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
        creates a file without ever closing it for writing (it is skipped while it has two
        names, an ordinary file once the other is gone), and scans must not skip it forever.
        """
        state = self._files.get(relative)
        if state is None or state.last_write is None:
            return False
        if time.monotonic() - state.last_write > WRITER_SILENCE:
            state.last_write = None
            return False
        return True

    def skipped(self, relative: str) -> bool:
        """A file never uploaded: temp patterns, or the journal when SYNC_STATE_DIR is inside."""
        return is_ignored(relative) or self._in_state_dir(relative)

    def skipped_folder(self, relative: str) -> bool:
        """A folder never entered, watched or listed: ignored folders and SYNC_STATE_DIR."""
        return is_ignored_folder(relative) or self._in_state_dir(relative)

    def _in_state_dir(self, relative: str) -> bool:
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
                    is_file = not is_dir  # symlinks, FIFOs...: lstat'ed, logged and skipped
                except OSError as exc:
                    failed = exc  # its type is unknown: list the whole folder again later
                    continue
                if is_dir:
                    if not self.skipped_folder(self.relative(Path(entry.path))):
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
            signature = self._signature(relative)
            if signature is None or self.journal.is_current(relative, signature):
                continue
            with self._cond:
                state = self._files.get(relative)
                busy = state is not None and state.phase != "idle"
                if busy or self._is_writing(relative):
                    continue
                self._state(relative).scanned = True
            self.schedule(relative, self.options.settle)
            with self._cond:
                self._forget(relative)  # when it vanished meanwhile (idle: nothing kept)
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
            if folder != self.options.sync_dir and self.skipped_folder(self.relative(folder)):
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
                self._state(relative).last_write = time.monotonic()
        elif mask & (flags.CLOSE_WRITE | flags.MOVED_TO):
            with self._cond:
                state = self._state(relative)
                state.last_write, state.scanned = None, False
            self.schedule(relative, self.options.settle, event=True)
            with self._cond:
                self._forget(relative)  # when it vanished or is skipped meanwhile
        elif mask & (flags.MOVED_FROM | flags.DELETE):
            with self._cond:
                if relative in self._files:
                    self._files[relative].last_write = None
                    self._forget(relative)

    # -- settle scheduler ------------------------------------------------------------------

    def _live(self, deadline: float, relative: str) -> bool:
        """A heap entry still stands for its file's look (not superseded by a later one)."""
        state = self._files.get(relative)
        return (
            state is not None
            and state.phase == "waiting"
            and state.look is not None
            and state.look[0] == deadline
        )

    def _scheduler_step(self) -> None:
        with self._cond:
            now = time.monotonic()
            while self._heap and not self._live(*self._heap[0]):
                heapq.heappop(self._heap)  # superseded by a later schedule()
            if not self._heap:
                self._cond.wait(timeout=0.5)
                return
            deadline, relative = self._heap[0]
            if deadline > now:
                self._cond.wait(timeout=min(0.5, deadline - now))
                return
            heapq.heappop(self._heap)
            state = self._files[relative]
            signature = state.look[1] if state.look else None
            state.phase, state.look = "settling", None
            still_writing = self._is_writing(relative)
        try:
            if not still_writing:  # a writer has it open: its close_write comes later
                self._settled(relative, signature, deadline)
        except Exception as exc:
            # Logged with its traceback; the file is looked at again later, never lost.
            log.exception("%s: unexpected error while settling", relative)
            self._retry(relative, f"settle failed ({type(exc).__name__})")
        finally:
            self._release(relative, "settling")

    def _settled(self, relative: str, signature: Signature | None, deadline: float) -> None:
        try:
            info = self._lstat(relative)
        except FileNotFoundError:
            with self._cond:
                state = self._files[relative]
                state.first_seen, state.attempts = None, 0
            return
        except OSError as exc:
            self._retry(relative, f"cannot stat ({describe_os_error(exc)})")
            return
        if info is None:
            return
        now_signature = signature_of(info)
        if now_signature != signature:
            self.schedule(relative, self.options.settle)
            return
        if self.journal.is_current(relative, now_signature):
            return
        with self._cond:
            unseen = self._files[relative].scanned or not self.watch
        if unseen and self._held_open(relative, deadline):
            return
        while not self._stop.is_set():
            try:
                with self._cond:
                    self._queue.put_nowait(relative)
                    self._files[relative].phase = "queued"
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
            self._files[relative].phase = "uploading"
        try:
            self._upload(relative)
        except FileNotFoundError:
            log.info("%s vanished before upload; nothing to do", relative)
        except NotRegularError as exc:
            self._skip(relative, exc.kind)
        except (UploadRetryError, SourceChangedError, EtagMismatchError) as exc:
            self._retry(relative, f"upload failed ({exc})")
        except Exception as exc:  # noqa: BLE001 - any failure is retried, never dropped
            self._retry(relative, f"upload failed ({type(exc).__name__}: {exc})", failed=True)
        finally:
            self._release(relative, "uploading")

    def _upload(self, relative: str) -> None:
        fd, info = open_regular(self.options.sync_dir, relative)
        try:
            self._upload_open(relative, fd, info)
        finally:
            os.close(fd)

    def _upload_open(self, relative: str, fd: int, info: os.stat_result) -> None:
        """Store the ``info.st_size`` bytes of ``fd`` under a key no other bytes hold."""
        signature = signature_of(info)
        size = info.st_size
        started = time.monotonic()

        def read_at(offset: int, length: int) -> bytes:
            return os.pread(fd, length, offset)

        prior = self.journal.get(relative)
        remote = self._remote.get(encode_path(relative), {})
        stored = self._already_stored(relative, read_at, size, prior, remote)
        if stored is None:
            if prior is not None and size < prior.size:
                log.warning(
                    "%s was rewritten shorter (%d -> %d bytes); the earlier %d bytes stay at "
                    "%s and this version goes to a new key",
                    relative,
                    prior.size,
                    size,
                    prior.size,
                    prior.key,
                )
            versions = [*remote, prior.version if prior is not None else 0]
            version, etag = self._store(relative, read_at, size, max(versions, default=0) + 1)
            stored = (
                version,
                etag,
                sync_key(self.settings.prefix, self.sync_id, relative, version),
            )
        version, etag, key = stored
        if signature_of(os.fstat(fd)) != signature:
            raise UploadRetryError("file changed during upload")
        self.journal.record(relative, Record(*signature, etag=etag, key=key, version=version))
        with self._cond:
            state = self._files[relative]
            seen = started if state.first_seen is None else state.first_seen
            state.first_seen, state.attempts, state.scanned = None, 0, False
            self.uploaded += 1
        lag = time.monotonic() - seen
        self._lags.append(lag)
        log.info(
            "uploaded %s (%d bytes) in %.2fs, lag %.2fs",
            key,
            size,
            time.monotonic() - started,
            lag,
        )

    def _already_stored(
        self,
        relative: str,
        read_at: Callable[[int, int], bytes],
        size: int,
        prior: Record | None,
        remote: Mapping[int, tuple[str, int]],
    ) -> tuple[int, str, str] | None:
        """(version, ETag, key) of a stored version with these very bytes, if any.

        Only versions of the same size are candidates (the journal's, and what the bucket
        listing found at start); the local ETag is computed only when there is one.
        """
        base = self.settings.prefix, self.sync_id, relative
        known = {
            sync_key(*base, version): etag
            for version, (etag, length) in remote.items()
            if length == size
        }
        if prior is not None and prior.size == size:
            known[prior.key] = prior.etag
        if not known:
            return None
        local = etag_of(read_at, size)
        return next(
            (
                (prior.version if prior and k == prior.key else parse_version(k), e, k)
                for k, e in known.items()
                if e == local
            ),
            None,
        )

    def _store(
        self, relative: str, read_at: Callable[[int, int], bytes], size: int, version: int
    ) -> tuple[int, str]:
        """Create the object at the first free version from ``version``; (version, ETag).

        A key that exists with the same bytes (a retried request that did land, another pod
        on this volume) counts as stored; one with other bytes is left alone and the next
        version is tried.
        """
        for attempt in range(version, MAX_VERSIONS + 1):
            key = sync_key(self.settings.prefix, self.sync_id, relative, attempt)
            etag = create_or_match(
                self.client,
                bucket=self.settings.bucket,
                key=key,
                read_at=read_at,
                size=size,
                headers=object_headers(relative),
                part_concurrency=PART_CONCURRENCY,
            )
            if etag is not None:
                return attempt, etag
            log.warning(
                "%s already holds other bytes; keeping it and trying version %d", key, attempt + 1
            )
        raise UploadRetryError(f"versions {version}..{MAX_VERSIONS} of {relative} are all taken")

    def load_remote(self) -> int:
        """Read what the bucket holds under this volume's key segment; return how many.

        Lets a lost or rebuilt journal recognise files that are already stored (by size and
        ETag) instead of uploading them again; a failure only costs that saving.
        """
        found: dict[str, dict[int, tuple[str, int]]] = {}
        count = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=self.key_base
            )
            for page in pages:
                for item in page.get("Contents", []):
                    parsed = parse_sync_key(self.key_base, item["Key"])
                    if parsed is None:
                        continue
                    relative, version = parsed
                    entry = (strip_etag(item["ETag"]), int(item["Size"]))
                    found.setdefault(encode_path(relative), {})[version] = entry
                    count += 1
        except Exception as exc:  # noqa: BLE001 - only an optimisation is lost; logged
            log.warning(
                "cannot list %s/%s (%s); files already there are recognised when their upload "
                "meets them",
                self.settings.bucket,
                self.key_base,
                exc,
            )
        self._remote = found
        return count

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching (when enabled), scanning, and the upload pool."""
        self.options.sync_dir.mkdir(parents=True, exist_ok=True)
        stored = self.load_remote()
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
            "watching %s -> %s/%s (sync id %s; %d already journaled, %d in the bucket, "
            "%d to look at)",
            self.options.sync_dir,
            self.settings.bucket,
            self.key_base,
            self.sync_id,
            len(self.journal),
            stored,
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
        if self.journal.unsaved and now >= self._next_flush:
            self._next_flush = now + 1.0
            self.journal.flush()
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

object key = R2_PREFIX + pods/<sync id>/ + path relative to SYNC_DIR
  (sync id: SYNC_STATE_DIR/sync-id, made once per volume; a rewritten file goes to
  name~v2.ext, name~v3.ext...; no object is ever overwritten)

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
