"""The sync daemon under hostile input and clumsy operators: it never overwrites, never stalls.

Against moto's S3 server (which honours ``If-None-Match: *`` on PutObject and
CompleteMultipartUpload, as R2 does) behind the fault proxy. Each test names the harm the
old daemon did: overwriting a day of GPU work, dying on a corrupt journal, uploading what a
symlink points at, blocking on a FIFO, looping on a full journal disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import mimetypes
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from worker import handler, r2, sync
from worker.r2 import make_client

from tests.fakes.s3 import list_objects
from tests.image.sync_support import (
    REPO,
    SyncRig,
    bucket_mirrors,
    journaled,
    sync_id,
    wait_until,
    write,
)


def logged(caplog: pytest.LogCaptureFixture, *fragments: str) -> list[str]:
    """Messages of daemon records that contain every fragment."""
    return [
        record.getMessage()
        for record in list(caplog.records)
        if record.name == "worker.sync" and all(f in record.getMessage() for f in fragments)
    ]


def object_bytes(rig: SyncRig, key: str) -> bytes:
    """The stored bytes of ``key``, read straight from the S3 server."""
    answer = make_client(rig.bucket).get_object(Bucket=rig.bucket.bucket, Key=key)
    return answer["Body"].read()


# -- item 1: no key is shared, no object is overwritten -------------------------------------


def test_two_pods_writing_the_same_names_into_one_bucket_lose_nothing(
    sync_rig: SyncRig, tmp_path: Path
) -> None:
    """Two volumes both write video/ComfyUI_00001_.mp4 (and a large file): both copies stay."""
    other = dataclasses.replace(
        sync_rig, sync_dir=tmp_path / "b-output", state_dir=tmp_path / "b-state", daemons=[]
    )
    other.sync_dir.mkdir()
    first, second = os.urandom(4000), os.urandom(4000)
    big_a, big_b = os.urandom(17 * 1024 * 1024), os.urandom(17 * 1024 * 1024)
    write(sync_rig.sync_dir / "video" / "ComfyUI_00001_.mp4", first)
    write(other.sync_dir / "video" / "ComfyUI_00001_.mp4", second)
    write(sync_rig.sync_dir / "big.mp4", big_a)
    write(other.sync_dir / "big.mp4", big_b)
    sync_rig.start()
    other.start()
    try:
        sync_rig.wait_mirrored()
        other.wait_mirrored()
    finally:
        for daemon in other.daemons:
            daemon.stop()
    assert sync_id(sync_rig.state_dir) != sync_id(other.state_dir)
    assert object_bytes(sync_rig, sync_rig.key("video/ComfyUI_00001_.mp4")) == first
    assert object_bytes(other, other.key("video/ComfyUI_00001_.mp4")) == second
    assert object_bytes(sync_rig, sync_rig.key("big.mp4")) == big_a
    assert object_bytes(other, other.key("big.mp4")) == big_b


def test_a_taken_key_is_never_overwritten_even_by_the_same_volume(
    sync_rig: SyncRig, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh journal on a volume whose names were reused: other bytes go to a new version.

    Covers a single PUT and a multipart upload; the bucket listing at start finds the taken
    keys (a key taken after the listing meets the bucket's 412: the next test).
    """
    caplog.set_level(logging.INFO, logger="worker.sync")
    small_old, big_old = os.urandom(3000), os.urandom(17 * 1024 * 1024)
    write(sync_rig.sync_dir / "ComfyUI_00001_.png", small_old)
    write(sync_rig.sync_dir / "video" / "ComfyUI_00001_.mp4", big_old)
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    daemon.stop()
    # The volume is reset: outputs gone, ComfyUI restarts its counter, the journal is lost.
    (sync_rig.state_dir / "journal.sqlite3").unlink()
    small_new, big_new = os.urandom(3000), os.urandom(17 * 1024 * 1024)
    write(sync_rig.sync_dir / "ComfyUI_00001_.png", small_new)
    write(sync_rig.sync_dir / "video" / "ComfyUI_00001_.mp4", big_new)
    daemon = sync_rig.start()
    wait_until(
        lambda: (
            {
                sync_rig.key("ComfyUI_00001_~v2.png"),
                sync_rig.key("video/ComfyUI_00001_~v2.mp4"),
            }
            <= sync_rig.stored_keys()
        ),
        30,
        "second versions",
    )
    wait_until(daemon.idle, 10, "idle")
    assert object_bytes(sync_rig, sync_rig.key("ComfyUI_00001_.png")) == small_old
    assert object_bytes(sync_rig, sync_rig.key("ComfyUI_00001_~v2.png")) == small_new
    assert object_bytes(sync_rig, sync_rig.key("video/ComfyUI_00001_.mp4")) == big_old
    assert object_bytes(sync_rig, sync_rig.key("video/ComfyUI_00001_~v2.mp4")) == big_new


def test_an_object_another_writer_created_meanwhile_is_never_replaced(
    sync_rig: SyncRig, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer with this volume's sync id (a second pod on the volume, the shutdown
    flush) creates a key after the daemon listed the bucket: the bucket's 412 keeps its bytes
    and ours go to ~v2; the same bytes already there count as uploaded, with no second copy."""
    caplog.set_level(logging.INFO, logger="worker.sync")
    daemon = sync_rig.start()
    theirs, ours, same = os.urandom(3000), os.urandom(3000), os.urandom(3000)
    client = make_client(sync_rig.bucket)
    for name, body in (("taken.png", theirs), ("same.png", same)):
        client.put_object(Bucket=sync_rig.bucket.bucket, Key=sync_rig.key(name), Body=body)
    write(sync_rig.sync_dir / "taken.png", ours)
    write(sync_rig.sync_dir / "same.png", same)
    wait_until(lambda: sync_rig.key("taken~v2.png") in sync_rig.stored_keys(), 20, "~v2")
    wait_until(lambda: journaled(sync_rig.state_dir) == 2, 20, "both journaled")
    assert object_bytes(sync_rig, sync_rig.key("taken.png")) == theirs
    assert object_bytes(sync_rig, sync_rig.key("taken~v2.png")) == ours
    assert sync_rig.key("same~v2.png") not in sync_rig.stored_keys()
    assert logged(caplog, "taken.png", "already holds other bytes")
    assert daemon.failures == 0


def test_truncating_a_synced_file_never_replaces_the_good_copy(
    sync_rig: SyncRig, caplog: pytest.LogCaptureFixture
) -> None:
    """A file cut to 0 bytes becomes a new, logged version; the verified object stays whole."""
    good = os.urandom(5000)
    target = write(sync_rig.sync_dir / "render_0001.png", good)
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    target.write_bytes(b"")
    wait_until(
        lambda: sync_rig.key("render_0001~v2.png") in sync_rig.stored_keys(), 20, "empty version"
    )
    wait_until(daemon.idle, 10, "idle")
    assert object_bytes(sync_rig, sync_rig.key("render_0001.png")) == good
    assert object_bytes(sync_rig, sync_rig.key("render_0001~v2.png")) == b""
    assert logged(caplog, "render_0001.png", "rewritten shorter", "5000 -> 0")


def test_same_size_rewrite_with_its_mtime_restored_is_uploaded(sync_rig: SyncRig) -> None:
    """Change detection includes inode and ctime: `touch -r` cannot hide new bytes."""
    target = write(sync_rig.sync_dir / "same.png", b"A" * 4000)
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    before = target.stat()
    target.write_bytes(b"B" * 4000)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    wait_until(
        lambda: sync_rig.key("same~v2.png") in sync_rig.stored_keys(), 20, "rewrite uploaded"
    )
    wait_until(daemon.idle, 10, "idle")
    assert object_bytes(sync_rig, sync_rig.key("same~v2.png")) == b"B" * 4000
    assert object_bytes(sync_rig, sync_rig.key("same.png")) == b"A" * 4000


def test_a_touched_file_with_the_same_bytes_is_not_uploaded_again(sync_rig: SyncRig) -> None:
    """A new ctime alone (chmod) is checked against the stored ETag, not sent again."""
    target = write(sync_rig.sync_dir / "kept.png", os.urandom(2000))
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    target.chmod(0o600)
    daemon.scan()
    wait_until(daemon.idle, 10, "idle")
    assert sync_rig.proxy.uploads_of("kept.png") == 1
    assert journaled(sync_rig.state_dir) == 1


# -- item 2: sync keeps running -----------------------------------------------------------


def test_corrupt_journal_is_moved_aside_and_rebuilt_from_the_bucket(
    sync_rig: SyncRig, caplog: pytest.LogCaptureFixture
) -> None:
    """ "file is not a database" at start: kept aside, nothing re-uploaded, new files sync."""
    for index in range(3):
        write(sync_rig.sync_dir / f"old_{index}.png", os.urandom(1000 + index))
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    daemon.stop()
    journal = sync_rig.state_dir / "journal.sqlite3"
    journal.write_bytes(b"this is not a database" * 100)
    write(sync_rig.sync_dir / "new.png", os.urandom(1500))
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    wait_until(daemon.idle, 10, "idle")
    aside = list(sync_rig.state_dir.glob("journal.sqlite3.corrupt-*"))
    assert [p.read_bytes() for p in aside] == [b"this is not a database" * 100]
    assert logged(caplog, "journal", "unusable", "moved aside")
    for index in range(3):
        assert sync_rig.proxy.uploads_of(f"old_{index}.png") == 1
    daemon.stop()
    assert journaled(sync_rig.state_dir) == 4


def test_shutdown_flush_works_with_a_corrupt_journal(sync_rig: SyncRig) -> None:
    """r2_sync.sh --once (the pod's last flush) rebuilds the journal instead of exiting 1."""
    write(sync_rig.sync_dir / "last.png", os.urandom(1200))
    sync_rig.state_dir.mkdir()
    (sync_rig.state_dir / "journal.sqlite3").write_bytes(b"\x00garbage" * 64)
    done = subprocess.run(
        [str(REPO / "image" / "r2_sync.sh"), "--once", "--timeout", "30"],
        env=sync_rig.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "moved aside" in done.stderr
    sync_rig.assert_mirrored()


def test_journal_that_cannot_be_written_keeps_uploads_in_memory(
    sync_rig: SyncRig, caplog: pytest.LogCaptureFixture
) -> None:
    """A full journal disk: files land once, rescans do not re-upload, rows are saved later."""
    daemon = sync_rig.start()
    fillers = fill_journal(daemon)
    for index in range(5):
        write(sync_rig.sync_dir / f"full_{index}.png", os.urandom(3000) * 2)
    sync_rig.wait_mirrored()
    wait_until(daemon.idle, 10, "idle")
    assert daemon.journal.unsaved == 5
    assert "unjournaled=5" in daemon.status_line()
    daemon.scan()
    wait_until(daemon.idle, 10, "idle after a rescan")
    assert all(sync_rig.proxy.uploads_of(f"full_{i}.png") == 1 for i in range(5))
    assert logged(caplog, "cannot write the journal", "kept in memory")
    with daemon.journal._lock:
        assert daemon.journal._db is not None
        daemon.journal._db.execute("PRAGMA max_page_count = 1073741823")
    wait_until(lambda: daemon.journal.unsaved == 0, 10, "journal written after space returned")
    assert journaled(sync_rig.state_dir) == 5 + fillers


def fill_journal(daemon: sync.SyncDaemon) -> int:
    """Make the daemon's journal file full (SQLITE_FULL, as a full disk gives); return the
    filler rows it took (rows for paths that do not exist)."""
    with daemon.journal._lock:
        db = daemon.journal._db
        assert db is not None
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        count = 0
        while True:
            try:
                db.execute(
                    "INSERT INTO uploaded (path, size, mtime_ns, etag, key, uploaded_at)"
                    " VALUES (?, 0, 0, '', '', 0)",
                    (f"filler-{count}",),
                )
                db.commit()
            except sqlite3.OperationalError as exc:
                db.rollback()
                if "full" not in str(exc):
                    raise
                return count
            count += 1


# -- item 3: only regular files leave the pod ----------------------------------------------


def test_symlinks_fifos_and_sockets_are_skipped_while_real_files_arrive(
    sync_rig: SyncRig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Links to secrets, a FIFO and a socket moved in are logged once each and never read."""
    secret = write(tmp_path / "secret-token", b"hf_very_secret_token")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "render_0001.png").symlink_to(secret)
    (staging / "linkdir").symlink_to(tmp_path)
    os.mkfifo(staging / "pipe.png")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(staging / "sock.png"))
    daemon = sync_rig.start()
    try:
        for name in ("render_0001.png", "linkdir", "pipe.png", "sock.png"):
            (staging / name).rename(sync_rig.sync_dir / name)  # moved_to, as an attacker would
        for index in range(10):
            write(sync_rig.sync_dir / f"real_{index}.png", os.urandom(2000))
        sync_rig.wait_mirrored(timeout=15)
        wait_until(daemon.idle, 10, "idle")
        daemon.scan()  # a rescan meets them again: no second log line
        wait_until(daemon.idle, 10, "idle after a rescan")
    finally:
        listener.close()
        # Unblock a reader stuck on the FIFO (the old daemon) so the test can end.
        with contextlib.suppress(OSError):
            os.close(os.open(sync_rig.sync_dir / "pipe.png", os.O_WRONLY | os.O_NONBLOCK))
    stored = b"".join(object_bytes(sync_rig, key) for key in sync_rig.stored_keys())
    assert b"hf_very_secret_token" not in stored
    assert not any("render_0001" in key or "pipe" in key for key in sync_rig.stored_keys())
    for name, kind in (
        ("render_0001.png", "symlink"),
        ("pipe.png", "FIFO"),
        ("sock.png", "socket"),
    ):
        assert len(logged(caplog, "skipping", name, kind)) == 1, name
    assert "skipped=" in daemon.status_line()


def test_device_files_and_links_to_them_are_never_read(
    sync_rig: SyncRig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link to /dev/zero (read until memory ran out) and a device node are skipped."""
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "zero.mp4").symlink_to("/dev/zero")
    try:
        os.mknod(staging / "null.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        devices = ["null.png"]
    except PermissionError:
        devices = []  # no CAP_MKNOD here: the symlink case still runs
    daemon = sync_rig.start()
    for name in ["zero.mp4", *devices]:
        (staging / name).rename(sync_rig.sync_dir / name)
    write(sync_rig.sync_dir / "real.png", os.urandom(1000))
    sync_rig.wait_mirrored(timeout=15)
    wait_until(daemon.idle, 10, "idle")
    assert sync_rig.stored_keys() == {sync_rig.key("real.png")}
    assert logged(caplog, "skipping", "zero.mp4", "symlink")
    for name in devices:
        assert logged(caplog, "skipping", name, "character device")


def test_hard_linked_files_are_skipped_like_symlinks_until_they_have_one_name(
    sync_rig: SyncRig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hard link shares its bytes with another name (a model on the volume, another run's
    output): it is skipped and logged once, never read; once the other name is gone it is an
    ordinary file and the next scan uploads it. (A link makes no close_write, so scans take
    it for a file being written until WRITER_SILENCE passes: shortened here.)"""
    monkeypatch.setattr(sync, "WRITER_SILENCE", 0.2)
    model = write(tmp_path / "models" / "flux.safetensors", b"weights that stay private")
    daemon = sync_rig.start()
    os.link(model, sync_rig.sync_dir / "render.png")
    write(sync_rig.sync_dir / "real.png", os.urandom(1000))
    sync_rig.wait_mirrored(timeout=15)
    time.sleep(0.3)
    daemon.scan()
    wait_until(daemon.idle, 10, "idle")
    daemon.scan()  # a rescan meets it again: no second log line
    wait_until(daemon.idle, 10, "idle after a rescan")
    assert sync_rig.stored_keys() == {sync_rig.key("real.png")}
    assert len(logged(caplog, "skipping", "render.png", "hard link")) == 1
    with pytest.raises(sync.NotRegularError, match="hard link"):
        sync.open_regular(sync_rig.sync_dir, "render.png")
    model.unlink()  # now render.png is the file's only name
    daemon.scan()
    wait_until(lambda: sync_rig.key("render.png") in sync_rig.stored_keys(), 15, "the upload")
    assert object_bytes(sync_rig, sync_rig.key("render.png")) == b"weights that stay private"


def test_open_regular_refuses_a_symlinked_folder_on_the_way(tmp_path: Path) -> None:
    """A folder swapped for a symlink between listing and upload is not followed."""
    (tmp_path / "out").mkdir()
    write(tmp_path / "elsewhere" / "passwd", b"root:x:0:0")
    (tmp_path / "out" / "shots").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(sync.NotRegularError):
        sync.open_regular(tmp_path / "out", "shots/passwd")
    write(tmp_path / "out" / "real" / "a.png", b"png")
    fd, info = sync.open_regular(tmp_path / "out", "real/a.png")
    os.close(fd)
    assert info.st_size == 3


def test_file_names_that_are_not_utf8_become_valid_keys(sync_rig: SyncRig) -> None:
    """A Latin-1 name is percent-encoded in its key instead of being retried forever."""
    daemon = sync_rig.start()
    raw = os.fsencode(sync_rig.sync_dir) + b"/caf\xe9 100%.png"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"latin-1 name")
    os.close(fd)
    wanted = sync_rig.key("caf%E9 100%25.png")
    wait_until(lambda: wanted in sync_rig.stored_keys(), 15, "percent-encoded key")
    wait_until(daemon.idle, 10, "idle")
    assert object_bytes(sync_rig, wanted) == b"latin-1 name"
    assert daemon.failures == 0
    relative, version = sync.parse_sync_key(sync_rig.key_prefix, wanted) or ("", 0)
    assert os.fsencode(relative) == b"caf\xe9 100%.png"
    assert version == 1


# -- item 4: the bucket serves no active content -------------------------------------------


def test_active_content_is_stored_as_a_download(sync_rig: SyncRig) -> None:
    """login.html and an SVG planted in the output folder are never served as a web page."""
    write(sync_rig.sync_dir / "login.html", b"<script>steal()</script>")
    write(sync_rig.sync_dir / "logo.svg", b"<svg onload='steal()'/>")
    write(sync_rig.sync_dir / "shot.png", b"\x89PNG\r\n\x1a\n")
    write(sync_rig.sync_dir / "clip.mp4", b"\x00\x00\x00\x18ftypmp42")
    daemon = sync_rig.start()
    sync_rig.wait_mirrored()
    wait_until(daemon.idle, 10, "idle")
    client = make_client(sync_rig.bucket)

    def head(name: str) -> tuple[str, str | None]:
        answer = client.head_object(Bucket=sync_rig.bucket.bucket, Key=sync_rig.key(name))
        return answer["ContentType"], answer.get("ContentDisposition")

    assert head("login.html") == ("application/octet-stream", "attachment")
    assert head("logo.svg") == ("application/octet-stream", "attachment")
    assert head("shot.png") == ("image/png", None)
    assert head("clip.mp4") == ("video/mp4", None)


def test_content_types_come_from_one_table_not_the_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler and the sync daemon both store r2.content_type's answer, whatever the
    host's mimetypes database says (hosts disagree: audio/x-wav vs audio/wav)."""
    monkeypatch.setattr(mimetypes, "guess_type", lambda *_args, **_kwargs: ("audio/x-wav", None))
    monkeypatch.setitem(mimetypes.types_map, ".wav", "audio/x-wav")
    assert r2.content_type("take.WAV") == "audio/wav"
    assert r2.object_headers("take.wav") == {"ContentType": "audio/wav"}
    assert sync.object_headers is r2.object_headers
    assert handler.object_headers is r2.object_headers
    assert handler.content_type is r2.content_type


def test_key_scheme_round_trips() -> None:
    """sync_key and parse_sync_key agree on versions, suffixes, ``~`` and odd bytes."""
    base = sync.sync_key("staging/", "pod1-abc", "")
    assert base == "staging/pods/pod1-abc/"
    for relative in ("a.png", "video/ComfyUI_00001_.mp4", "x~v2.png", "noext", "a.tar.gz", "%.png"):
        for version in (1, 2, 17):
            key = sync.sync_key("staging", "pod1-abc", relative, version)
            assert sync.parse_sync_key(base, key) == (relative, version), key
    assert sync.sync_key("", "p", "video/a.mp4", 3) == "pods/p/video/a~v3.mp4"
    assert sync.sync_key("", "p", "x~v2.png") == "pods/p/x%7Ev2.png"


def test_sync_id_is_made_once_per_volume(tmp_path: Path) -> None:
    """The id survives restarts (same volume), differs between volumes, names the first pod."""
    first = sync.load_sync_id(tmp_path / "a", {"RUNPOD_POD_ID": "abc123xyz"})
    assert first.startswith("abc123xyz-")
    assert sync.load_sync_id(tmp_path / "a", {"RUNPOD_POD_ID": "other"}) == first
    assert sync.load_sync_id(tmp_path / "b", {}) != first
    shutil.rmtree(tmp_path / "a")
    assert sync.load_sync_id(tmp_path / "a", {}) != first


def test_bucket_mirror_helper_sees_symlinks_as_non_files(sync_rig: SyncRig) -> None:
    """The rig's own notion of "expected files" excludes symlinks (or the tests would lie)."""
    sync_rig.sync_dir.joinpath("l.png").symlink_to("/etc/hostname")
    sync_rig.state_dir.mkdir()
    (sync_rig.state_dir / "sync-id").write_text("x\n")
    assert bucket_mirrors(sync_rig.bucket, sync_rig.sync_dir, sync_rig.key_prefix)
    assert list_objects(sync_rig.bucket) == {}
