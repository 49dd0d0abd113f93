"""The sync daemon keeps uploading through file-system errors other than "file vanished".

Tests run as root, so chmod cannot produce EACCES: the errors (EIO, as a flaky network volume
gives) are injected in-process by patching ``Path.stat`` / ``os.scandir`` for one path while a
fault is active. While it is, every other file still uploads; once it clears, the path lands
exactly once with a matching MD5.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker import sync
from worker.r2 import client_config, expected_etag, make_client

from tests.fakes.s3 import list_objects
from tests.image.sync_support import SyncRig, wait_until, write


class Faults:
    """Paths whose ``stat`` or listing raises ``OSError(EIO)`` while registered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._lock = threading.Lock()
        self._stat: dict[Path, int] = {}
        self._listing: set[Path] = set()
        self.raised: dict[Path, int] = {}
        real_stat = Path.stat
        real_scandir = os.scandir

        def stat(path: Path, *, follow_symlinks: bool = True) -> os.stat_result:
            with self._lock:
                passes = self._stat.get(path)
                if passes is not None and passes > 0:
                    self._stat[path] = passes - 1
                elif passes is not None:
                    self.raised[path] = self.raised.get(path, 0) + 1
                    raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
            return real_stat(path, follow_symlinks=follow_symlinks)

        def scandir(path: str | os.PathLike[str] = ".") -> Iterator[os.DirEntry[str]]:
            with self._lock:
                if Path(str(path)) in self._listing:
                    self.raised[Path(str(path))] = self.raised.get(Path(str(path)), 0) + 1
                    raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
            return real_scandir(path)

        monkeypatch.setattr(Path, "stat", stat)
        monkeypatch.setattr(os, "scandir", scandir)

    def fail_stat(self, path: Path, *, after: int = 0) -> None:
        """``path.stat()`` succeeds ``after`` times, then raises EIO until :meth:`clear`."""
        with self._lock:
            self._stat[path] = after

    def fail_listing(self, folder: Path) -> None:
        """Listing ``folder`` raises EIO until :meth:`clear`."""
        with self._lock:
            self._listing.add(folder)

    def clear(self) -> None:
        """The volume recovers: every path reads normally again."""
        with self._lock:
            self._stat.clear()
            self._listing.clear()

    def count(self, path: Path) -> int:
        """How many times an injected error was raised for ``path``."""
        with self._lock:
            return self.raised.get(path, 0)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    """In-process EIO injection for chosen paths."""
    return Faults(monkeypatch)


@pytest.fixture
def rig(sync_rig: SyncRig) -> SyncRig:
    """The shared sync rig (tests/image/conftest.py), under this module's short name."""
    return sync_rig


def keys(rig: SyncRig) -> set[str]:
    """Object keys in the bucket."""
    return set(list_objects(rig.bucket))


def threads_alive(daemon: sync.SyncDaemon) -> bool:
    """Every watcher, scheduler, upload and maintenance thread is still running."""
    return bool(daemon._threads) and all(thread.is_alive() for thread in daemon._threads)


def warned(caplog: pytest.LogCaptureFixture, *fragments: str) -> bool:
    """Some daemon record at WARNING or above contains every fragment."""
    return any(
        record.levelno >= logging.WARNING and all(f in record.getMessage() for f in fragments)
        for record in list(caplog.records)
    )


def assert_uploaded_once(rig: SyncRig, name: str, path: Path) -> None:
    """``name`` went to the bucket in one PUT and its ETag is the file's MD5."""
    assert rig.proxy.uploads_of(name) == 1
    assert list_objects(rig.bucket)[rig.key(name)]["ETag"] == expected_etag(path)


def test_unreadable_file_at_start_waits_while_others_upload_then_lands_once(
    rig: SyncRig, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    """A file whose stat fails with EIO is retried, not dropped; other files keep flowing."""
    bad = write(rig.sync_dir / "bad.png", os.urandom(3000))
    write(rig.sync_dir / "early.png", os.urandom(2000))
    faults.fail_stat(bad)
    daemon = rig.start()
    write(rig.sync_dir / "live.png", os.urandom(2500))
    wait_until(lambda: {rig.key("early.png"), rig.key("live.png")} <= keys(rig), 10, "good files")
    wait_until(lambda: faults.count(bad) >= 3, 10, "retries of the unreadable file")
    assert rig.key("bad.png") not in keys(rig)
    assert daemon.pending_count() >= 1
    assert warned(caplog, "bad.png", "errno 5 EIO")
    assert threads_alive(daemon)
    faults.clear()
    wait_until(lambda: rig.key("bad.png") in keys(rig), 10, "bad.png after recovery")
    wait_until(daemon.idle, 10, "idle")
    rig.assert_mirrored()
    assert_uploaded_once(rig, "bad.png", bad)
    assert daemon.uploaded == 3
    assert threads_alive(daemon)


@pytest.mark.parametrize(
    ("passes", "where"),
    [(0, "the watcher's schedule()"), (1, "the scheduler's settle check")],
)
def test_stat_error_after_an_event_is_retried_and_uploads_continue(
    rig: SyncRig, faults: Faults, caplog: pytest.LogCaptureFixture, passes: int, where: str
) -> None:
    """EIO on a live file (first stat, or the settle re-stat) neither drops it nor stops sync."""
    daemon = rig.start()
    late = rig.sync_dir / "late.png"
    faults.fail_stat(late, after=passes)
    write(late, os.urandom(4000))
    wait_until(lambda: faults.count(late) >= 2, 10, f"EIO raised in {where}")
    write(rig.sync_dir / "other.png", os.urandom(1500))
    wait_until(lambda: rig.key("other.png") in keys(rig), 10, "other.png uploaded")
    assert rig.key("late.png") not in keys(rig)
    assert warned(caplog, "late.png", "errno 5 EIO")
    assert threads_alive(daemon), where
    faults.clear()
    wait_until(lambda: rig.key("late.png") in keys(rig), 10, "late.png after recovery")
    wait_until(daemon.idle, 10, "idle")
    rig.assert_mirrored()
    assert_uploaded_once(rig, "late.png", late)


def test_unlistable_folder_is_listed_again_after_the_error_clears(
    rig: SyncRig, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder whose listing fails is retried with backoff, long before the periodic scan."""
    inside = write(rig.sync_dir / "shots" / "a.png", os.urandom(1200))
    write(rig.sync_dir / "root.png", os.urandom(800))
    faults.fail_listing(rig.sync_dir / "shots")
    daemon = rig.start(rescan_interval=60.0)
    wait_until(lambda: rig.key("root.png") in keys(rig), 10, "root.png uploaded")
    wait_until(lambda: faults.count(rig.sync_dir / "shots") >= 3, 10, "listing retried")
    assert warned(caplog, "cannot list", "shots", "errno 5 EIO")
    assert not daemon.idle()
    faults.clear()
    wait_until(lambda: rig.key("shots/a.png") in keys(rig), 10, "shots/a.png")
    wait_until(daemon.idle, 10, "idle")
    rig.assert_mirrored()
    assert_uploaded_once(rig, "shots/a.png", inside)
    write(rig.sync_dir / "shots" / "b.png", b"watched after recovery")
    rig.wait_mirrored(timeout=10)


def test_once_never_reports_success_while_a_path_cannot_be_read(
    rig: SyncRig, faults: Faults
) -> None:
    """--once exits 1 (pending) while a file or folder errors, 0 once both read again."""
    write(rig.sync_dir / "ok.png", b"ok")
    write(rig.sync_dir / "dir" / "in.png", b"in")
    bad = write(rig.sync_dir / "bad.png", b"bad")
    faults.fail_stat(bad)
    faults.fail_listing(rig.sync_dir / "dir")
    client = make_client(rig.via_proxy, config=client_config(max_attempts=2))
    first = sync.SyncDaemon(rig.options(), rig.via_proxy, client=client, watch=False)
    assert first.run_once(timeout=0.8) == sync.EXIT_PENDING
    assert keys(rig) == {rig.key("ok.png")}
    faults.clear()
    second = sync.SyncDaemon(rig.options(), rig.via_proxy, client=client, watch=False)
    assert second.run_once(timeout=10) == sync.EXIT_OK
    rig.assert_mirrored()
    assert rig.proxy.uploads_of("ok.png") == 1


def test_unexpected_error_in_a_thread_is_logged_and_the_thread_carries_on(
    rig: SyncRig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug-like exception in the watcher is logged; a rescan recovers the file it was on."""
    daemon = rig.start()
    real = daemon._file_event
    calls: list[str] = []

    def explode_once(relative: str, mask: int) -> None:
        calls.append(relative)
        if len(calls) == 1:
            raise RuntimeError("boom")
        real(relative, mask)

    monkeypatch.setattr(daemon, "_file_event", explode_once)
    write(rig.sync_dir / "first.png", os.urandom(900))
    wait_until(lambda: warned(caplog, "sync-watch: unexpected error"), 10, "error logged")
    write(rig.sync_dir / "second.png", os.urandom(700))
    rig.wait_mirrored(timeout=10)
    assert threads_alive(daemon)
    assert "second.png" in calls  # the watcher itself handled the later event
