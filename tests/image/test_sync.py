"""The R2 sync daemon against moto's S3 server behind a fault-injecting proxy.

After every scenario the bucket must hold each synced file exactly once under
``R2_PREFIX + relative path`` with the ETag a correct upload produces (MD5, or the multipart
form), and no temp file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from inotify_simple import Event, flags
from worker import sync
from worker.r2 import expected_etag

from tests.fakes.s3 import list_objects
from tests.image.sync_support import (
    REPO,
    SyncRig,
    journaled,
    wait_until,
    write,
)


def test_temp_patterns_are_ignored() -> None:
    """Temp files, dotfiles and ComfyUI's temp/ never count as outputs."""
    for name in ("a.tmp", "b.part", "c.partial", ".hidden.png", "x/.cache/y.png", "temp/p.png"):
        assert sync.is_ignored(name), name
    for name in ("ComfyUI_00001_.png", "video/ComfyUI_00001_.mp4", "x/temp/y.png"):
        assert not sync.is_ignored(name), name


def test_ignored_folders_are_named_as_folders() -> None:
    """Dot-folders anywhere and the top-level temp/ are never entered; a folder whose name
    only looks like a temp file is."""
    for folder in ("temp", ".cache", "video/.thumbs", "temp/sub"):
        assert sync.is_ignored_folder(folder), folder
    for folder in ("video", "x/temp", "a.tmp", "~drafts", "clips.part"):
        assert not sync.is_ignored_folder(folder), folder


def test_files_from_before_start_are_uploaded_once(sync_rig: SyncRig) -> None:
    """Files present at start (one multipart-sized) are uploaded, verified and journaled."""
    write(sync_rig.sync_dir / "ComfyUI_00001_.png", os.urandom(50_000))
    write(sync_rig.sync_dir / "video" / "big.mp4", os.urandom(20 * 1024 * 1024))
    write(sync_rig.sync_dir / "scratch.tmp", b"temp")
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    wait_until(daemon.idle, 10, "idle")
    daemon.stop()
    sync_rig.assert_mirrored()
    assert list_objects(sync_rig.bucket)[sync_rig.key("video/big.mp4")]["ETag"].endswith("-2")
    puts_before = sync_rig.proxy.uploads_of("ComfyUI_00001_.png")
    again = sync_rig.start()
    wait_until(again.idle, 10, "idle after restart")
    assert sync_rig.proxy.uploads_of("ComfyUI_00001_.png") == puts_before == 1


def test_files_written_during_the_run_and_in_new_subfolders(sync_rig: SyncRig) -> None:
    """Files written live, including in freshly created nested folders, all arrive."""
    daemon = sync_rig.start()
    for index in range(20):
        write(sync_rig.sync_dir / f"img_{index:05d}_.png", os.urandom(2000))
    # Created and filled immediately: the files can beat the new folders' watches.
    for index in range(10):
        write(sync_rig.sync_dir / "video" / f"d{index}" / "deep" / "clip.mp4", os.urandom(3000))
    sync_rig.wait_mirrored()
    assert daemon.failures == 0
    sync_rig.assert_mirrored()


def test_renamed_in_files_and_folders_are_uploaded_under_final_names(
    sync_rig: SyncRig, tmp_path: Path
) -> None:
    """Write-to-temp-then-rename and folders moved in upload once, temp names never."""
    sync_rig.start()
    for index in range(5):
        temp = write(sync_rig.sync_dir / f"out_{index}.png.tmp", os.urandom(1500))
        temp.rename(sync_rig.sync_dir / f"out_{index}.png")
    outside = tmp_path / "staging"
    write(outside / "batch" / "one.png", b"one")
    write(outside / "batch" / "two.png", b"two")
    (outside / "batch").rename(sync_rig.sync_dir / "batch")
    sync_rig.wait_mirrored()
    keys = set(list_objects(sync_rig.bucket))
    assert not any(key.endswith(".tmp") for key in keys)
    assert {sync_rig.key("batch/one.png"), sync_rig.key("batch/two.png")} <= keys


def test_file_written_slowly_is_uploaded_only_when_complete(sync_rig: SyncRig) -> None:
    """A video written in bursts with pauses longer than the settle time uploads once, whole."""
    sync_rig.start()
    target = sync_rig.sync_dir / "video" / "slow.mp4"
    target.parent.mkdir()
    with target.open("wb") as handle:
        for _ in range(6):
            handle.write(os.urandom(10_000))
            handle.flush()
            time.sleep(0.3)  # the writer's own pace, longer than the 0.1 s settle
    sync_rig.wait_mirrored()
    assert sync_rig.proxy.uploads_of("video/slow.mp4") == 1
    assert list_objects(sync_rig.bucket)[sync_rig.key("video/slow.mp4")]["Size"] == 60_000


def test_file_held_open_before_start_waits_for_its_writer(sync_rig: SyncRig) -> None:
    """A file a writer opened before the daemon (or its folder's watch) existed is not
    uploaded half-done when the start-up scan finds it, however long the writer pauses."""
    target = sync_rig.sync_dir / "video" / "held.mp4"
    target.parent.mkdir()
    with target.open("wb") as handle:
        handle.write(os.urandom(10_000))
        handle.flush()
        daemon = sync_rig.start()
        for _ in range(3):
            time.sleep(0.4)  # longer than the 0.1 s settle, with no new events
            assert sync_rig.proxy.uploads_of("video/held.mp4") == 0
            handle.write(os.urandom(10_000))
            handle.flush()
    sync_rig.wait_mirrored()
    wait_until(daemon.idle, 10, "idle")
    assert sync_rig.proxy.uploads_of("video/held.mp4") == 1
    assert list_objects(sync_rig.bucket)[sync_rig.key("video/held.mp4")]["Size"] == 40_000


def test_writers_are_found_through_proc(tmp_path: Path) -> None:
    """open_for_writing reports files open for writing, not those open for reading."""
    written = tmp_path / "w.bin"
    read = tmp_path / "r.bin"
    read.write_bytes(b"r")
    with written.open("wb"), read.open("rb"):
        found = sync.open_for_writing(os.path.realpath(tmp_path))
    assert found == {os.path.realpath(written)}


@pytest.mark.slow
def test_server_error_bursts_are_retried_until_everything_lands(sync_rig: SyncRig) -> None:
    """Bursts of 500 and 503 on uploads are retried; nothing is lost or duplicated."""
    daemon = sync_rig.start()
    sync_rig.proxy.fail_next(25, 500, methods=("PUT",))
    for index in range(30):
        write(sync_rig.sync_dir / f"a_{index}.png", os.urandom(1000))
    wait_until(lambda: sync_rig.proxy.fail_remaining == 0, 20, "500 burst consumed")
    sync_rig.proxy.fail_next(25, 503, methods=("PUT",))
    for index in range(30):
        write(sync_rig.sync_dir / f"b_{index}.png", os.urandom(1000))
    sync_rig.wait_mirrored()
    assert sync_rig.proxy.failed == 50
    assert daemon.failures > 0
    sync_rig.assert_mirrored()


def test_connection_resets_are_retried(sync_rig: SyncRig) -> None:
    """Connections dropped after the request was sent do not lose files."""
    sync_rig.start()
    sync_rig.proxy.reset_next(15)
    for index in range(20):
        write(sync_rig.sync_dir / f"r_{index}.png", os.urandom(1000))
    sync_rig.wait_mirrored()
    assert sync_rig.proxy.resets == 15


def test_missed_events_are_recovered_by_reconciliation(
    sync_rig: SyncRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if every inotify file event were lost, the periodic scan uploads the files."""
    monkeypatch.setattr(sync.SyncDaemon, "_file_event", lambda *_args: None)
    sync_rig.start(rescan_interval=0.5)
    for index in range(5):
        write(sync_rig.sync_dir / f"m_{index}.png", os.urandom(1000))
    sync_rig.wait_mirrored(timeout=15)


def test_status_line_counts_pending_and_uploaded(sync_rig: SyncRig) -> None:
    """While uploads are parked the pending count is visible; afterwards it drains to 0."""
    daemon = sync_rig.start()
    sync_rig.proxy.hold_uploads()
    for index in range(3):
        write(sync_rig.sync_dir / f"s_{index}.png", b"s" * (index + 1))
    wait_until(lambda: daemon.pending_count() == 3, 10, "3 pending")
    assert "pending=3" in daemon.status_line()
    sync_rig.proxy.release_uploads()
    wait_until(daemon.idle, 10, "drained")
    assert "uploaded=3 pending=0" in daemon.status_line()


def test_a_file_written_again_during_its_upload_counts_once(sync_rig: SyncRig) -> None:
    """A file with an upload in flight and a new version waiting is one pending file, not
    one per collection it sits in; once released, the latest version is the one journaled."""
    daemon = sync_rig.start()
    sync_rig.proxy.hold_uploads()
    target = write(sync_rig.sync_dir / "again.png", b"first")
    wait_until(lambda: sync_rig.proxy.parked >= 1, 10, "upload parked")
    write(target, b"second version")
    time.sleep(0.5)  # five settle times: the new version's event has long been seen
    assert daemon.pending_count() == 1
    assert "pending=1" in daemon.status_line()
    sync_rig.proxy.release_uploads()
    wait_until(daemon.idle, 20, "drained")
    record = daemon.journal.get("again.png")
    assert record is not None
    assert record.matches(sync.signature_of(target.stat()))


@pytest.mark.slow
def test_burst_of_5000_files_loses_nothing(sync_rig: SyncRig) -> None:
    """5,000 small files written as fast as possible all arrive exactly once."""
    # A real daemon process: it gets its own core instead of sharing this one's GIL.
    env = {**sync_rig.env(), "SYNC_WORKERS": "8"}
    daemon = subprocess.Popen(
        [str(REPO / "image" / "r2_sync.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until((sync_rig.state_dir / "journal.sqlite3").exists, 20, "daemon started")
        for index in range(5000):
            folder = sync_rig.sync_dir / f"burst{index // 1000}"
            folder.mkdir(exist_ok=True)
            (folder / f"f_{index:05d}_.png").write_bytes(index.to_bytes(4, "big") * 8)
        wait_until(lambda: journaled(sync_rig.state_dir) >= 5000, 240, "5000 verified uploads")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert daemon.returncode == 0
    sync_rig.assert_mirrored()


@pytest.mark.slow
def test_twenty_second_outage_loses_nothing(sync_rig: SyncRig) -> None:
    """Files written during a 20 s outage upload once the edge is back; none are dropped."""
    daemon = sync_rig.start()
    write(sync_rig.sync_dir / "before.png", os.urandom(1000))
    sync_rig.wait_mirrored()
    sync_rig.proxy.outage(20)
    for index in range(20):
        write(sync_rig.sync_dir / "during" / f"o_{index}.png", os.urandom(1000))
    wait_until(lambda: daemon.failures > 0, 15, "failures during the outage")
    assert daemon.pending_count() > 0
    sync_rig.wait_mirrored(timeout=60)
    assert sync_rig.proxy.dropped > 0
    sync_rig.assert_mirrored()


def run_script(rig: SyncRig, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run image/r2_sync.sh as a pod would, to completion."""
    return subprocess.run(
        [str(REPO / "image" / "r2_sync.sh"), *args],
        env=rig.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_kill_9_mid_upload_then_restart_loses_nothing(sync_rig: SyncRig) -> None:
    """A daemon killed with SIGKILL while uploads are in flight is made whole by a restart."""
    for index in range(10):
        write(sync_rig.sync_dir / f"k_{index}.png", os.urandom(5000))
    write(sync_rig.sync_dir / "video" / "k.mp4", os.urandom(18 * 1024 * 1024))
    sync_rig.proxy.hold_uploads()
    daemon = subprocess.Popen(
        [str(REPO / "image" / "r2_sync.sh")],
        env=sync_rig.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: sync_rig.proxy.parked >= 4, 30, "uploads in flight")
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
    assert daemon.returncode == -signal.SIGKILL
    sync_rig.proxy.release_uploads()
    # Parked requests may still complete now; the restart must converge regardless.
    result = run_script(sync_rig, "--once", "--timeout", "60")
    assert result.returncode == 0, result.stderr[-2000:]
    sync_rig.assert_mirrored()


@pytest.mark.slow
def test_sigterm_finishes_in_flight_uploads_and_flushes_journal(sync_rig: SyncRig) -> None:
    """SIGTERM during an upload lets it complete, journals it, and exits 0."""
    daemon = subprocess.Popen(
        [str(REPO / "image" / "r2_sync.sh")],
        env=sync_rig.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Whether the file beats the watches or not, the start-up scan or an event finds it.
        wait_until((sync_rig.state_dir / "journal.sqlite3").exists, 20, "daemon started")
        sync_rig.proxy.hold_uploads()
        write(sync_rig.sync_dir / "inflight.png", os.urandom(4000))
        wait_until(lambda: sync_rig.proxy.parked >= 1, 20, "upload parked")
        daemon.send_signal(signal.SIGTERM)
        threading.Timer(0.5, sync_rig.proxy.release_uploads).start()
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, stderr[-2000:]
    sync_rig.assert_mirrored()
    with sqlite3.connect(sync_rig.state_dir / "journal.sqlite3") as db:
        rows = db.execute("SELECT path FROM uploaded").fetchall()
    assert rows == [("inflight.png",)]


def test_once_exits_nonzero_while_the_bucket_is_unreachable(sync_rig: SyncRig) -> None:
    """--once reports failure when it cannot verify every file in time, then succeeds."""
    write(sync_rig.sync_dir / "late.png", os.urandom(1000))
    sync_rig.proxy.outage(30)
    failed = run_script(sync_rig, "--once", "--timeout", "2")
    assert failed.returncode == sync.EXIT_PENDING
    assert list_objects(sync_rig.bucket) == {}
    sync_rig.proxy.outage(0)
    done = run_script(sync_rig, "--once", "--timeout", "30")
    assert done.returncode == 0, done.stderr[-2000:]
    sync_rig.assert_mirrored()


def test_missing_r2_settings_is_a_configuration_error(tmp_path: Path) -> None:
    """Without R2_* the daemon exits 2 and names the variables, printing no secrets."""
    env = {"PATH": os.environ["PATH"], "PYTHON": sys.executable, "SYNC_DIR": str(tmp_path)}
    env["R2_SECRET_ACCESS_KEY"] = "super-secret-value"
    result = subprocess.run(
        [str(REPO / "image" / "r2_sync.sh"), "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == sync.EXIT_CONFIG
    assert "R2_ENDPOINT" in result.stderr
    assert "super-secret-value" not in result.stderr


def test_journal_inside_the_synced_folder_is_never_uploaded(sync_rig: SyncRig) -> None:
    """SYNC_STATE_DIR placed inside SYNC_DIR does not upload the journal itself."""
    sync_rig.state_dir = sync_rig.sync_dir / "journal"
    daemon = sync_rig.start()
    write(sync_rig.sync_dir / "only.png", b"png")
    wait_until(lambda: sync_rig.key("only.png") in list_objects(sync_rig.bucket), 20, "only.png")
    wait_until(daemon.idle, 10, "idle")
    assert set(list_objects(sync_rig.bucket)) == {sync_rig.key("only.png")}


def test_only_the_journal_folder_is_skipped_not_its_parent(sync_rig: SyncRig) -> None:
    """SYNC_STATE_DIR at out/x keeps out/x out of the bucket, while out/ itself (the folder
    holding it) is listed, watched and synced like any other."""
    sync_rig.state_dir = sync_rig.sync_dir / "out" / "x"
    write(sync_rig.sync_dir / "out" / "early.png", b"early")
    daemon = sync_rig.start()
    assert daemon.skipped_folder("out/x")
    assert not daemon.skipped_folder("out")
    write(sync_rig.sync_dir / "out" / "live.png", b"live")
    wanted = {sync_rig.key("out/early.png"), sync_rig.key("out/live.png")}
    wait_until(lambda: wanted <= set(list_objects(sync_rig.bucket)), 20, "files beside x/")
    wait_until(daemon.idle, 10, "idle")
    assert set(list_objects(sync_rig.bucket)) == wanted


def test_wrong_etag_from_the_bucket_is_not_journaled_and_retried(sync_rig: SyncRig) -> None:
    """An upload whose ETag disagrees with the local MD5 is retried, never recorded as done."""
    sync_rig.proxy.lie_about_etag_next(1)
    daemon = sync_rig.start()
    write(sync_rig.sync_dir / "checked.png", os.urandom(3000))
    wait_until(lambda: sync_rig.proxy.uploads_of("checked.png") >= 2, 20, "second upload")
    wait_until(daemon.idle, 10, "idle")
    daemon.stop()
    assert sync_rig.proxy.bad_etag_remaining == 0
    with sqlite3.connect(sync_rig.state_dir / "journal.sqlite3") as db:
        (etag,) = db.execute("SELECT etag FROM uploaded WHERE path = 'checked.png'").fetchone()
    assert etag == expected_etag(sync_rig.sync_dir / "checked.png")
    sync_rig.assert_mirrored()


class OverflowingInotify:
    """Stands in for inotify_simple.INotify: delivers only a queue overflow, on demand."""

    def __init__(self) -> None:
        self.overflow = threading.Event()
        self.watches = 0

    def add_watch(self, _path: object, _mask: int) -> int:
        self.watches += 1
        return self.watches

    def read(self, timeout: int | None = None) -> list[object]:
        if self.overflow.wait(timeout=(timeout or 0) / 1000):
            self.overflow.clear()
            return [Event(wd=-1, mask=flags.Q_OVERFLOW, cookie=0, name="")]
        return []

    def close(self) -> None:
        return


def test_queue_overflow_triggers_a_rescan(
    sync_rig: SyncRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After IN_Q_OVERFLOW (events lost in the kernel) a scan uploads what was missed."""
    fake = OverflowingInotify()
    monkeypatch.setattr("inotify_simple.INotify", lambda: fake)
    daemon = sync_rig.start()
    wait_until(daemon.idle, 10, "idle at start")
    for index in range(5):
        write(sync_rig.sync_dir / "lost" / f"e_{index}.png", os.urandom(500))
    assert daemon.pending_count() == 0  # no event arrived for them
    fake.overflow.set()
    sync_rig.wait_mirrored(timeout=15)


def test_replaced_sync_dir_is_watched_again(sync_rig: SyncRig) -> None:
    """If SYNC_DIR is removed and recreated, the next reconciliation re-watches and syncs it."""
    daemon = sync_rig.start(rescan_interval=0.3)
    sync_rig.sync_dir.rmdir()
    wait_until(lambda: sync_rig.sync_dir not in daemon._wd_paths.values(), 10, "watch dropped")
    sync_rig.sync_dir.mkdir()
    wait_until(lambda: sync_rig.sync_dir in daemon._wd_paths.values(), 10, "watch restored")
    write(sync_rig.sync_dir / "after.png", b"after")
    sync_rig.wait_mirrored(timeout=15)


def test_environment_contract_of_the_daemon() -> None:
    """SYNC_DIR wins over COMFYUI_OUTPUT_DIR, which wins over the default; settle is a float."""
    args = sync.build_parser().parse_args([])
    legacy = sync.options_from_env(
        {"COMFYUI_OUTPUT_DIR": "/out", "SYNC_SETTLE_SECONDS": "0.25"}, args
    )
    assert legacy.sync_dir == Path("/out")
    assert legacy.settle == 0.25
    both = sync.options_from_env({"SYNC_DIR": "/sync", "COMFYUI_OUTPUT_DIR": "/out"}, args)
    assert both.sync_dir == Path("/sync")
    assert sync.options_from_env({}, args).sync_dir == Path(sync.DEFAULT_SYNC_DIR)
    with pytest.raises(ValueError, match="SYNC_SETTLE_SECONDS"):
        sync.options_from_env({"SYNC_SETTLE_SECONDS": "soon"}, args)
