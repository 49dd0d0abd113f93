"""Shared rig and helpers of the sync daemon tests: folders, a fault proxy, polling waits."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from worker import sync
from worker.r2 import R2Settings, client_config, expected_etag, make_client

from tests.fakes.s3 import list_objects, settings_env
from tests.fakes.s3_proxy import FaultProxy

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def expected_files(sync_dir: Path) -> dict[str, Path]:
    """Relative path -> file for everything the daemon must upload."""
    found = {}
    for path in sync_dir.rglob("*"):
        relative = path.relative_to(sync_dir).as_posix()
        regular = path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1
        if regular and not sync.is_ignored(relative):
            found[relative] = path
    return found


def sync_id(state_dir: Path) -> str:
    """The sync id a daemon with ``state_dir`` created (its key segment)."""
    return (state_dir / "sync-id").read_text(encoding="ascii").strip()


def own_objects(settings: R2Settings, key_prefix: str) -> dict[str, dict[str, object]]:
    """Objects under ``key_prefix`` (one daemon's segment; other pods may share the bucket)."""
    return {k: v for k, v in list_objects(settings).items() if k.startswith(key_prefix)}


def bucket_mirrors(settings: R2Settings, sync_dir: Path, key_prefix: str) -> bool:
    """True when the daemon's segment holds exactly the expected files with matching ETags."""
    objects = own_objects(settings, key_prefix)
    wanted = {key_prefix + rel: path for rel, path in expected_files(sync_dir).items()}
    if set(objects) != set(wanted):
        return False
    return all(objects[key]["ETag"] == expected_etag(path) for key, path in wanted.items())


def assert_mirrored(settings: R2Settings, sync_dir: Path, key_prefix: str) -> None:
    """Every expected file is in the bucket once with a matching MD5; nothing else is."""
    everything = list_objects(settings)
    assert all(key.startswith(f"{settings.prefix}pods/") for key in everything), everything
    objects = own_objects(settings, key_prefix)
    wanted = {key_prefix + rel: path for rel, path in expected_files(sync_dir).items()}
    assert sorted(objects) == sorted(wanted)
    for key, path in wanted.items():
        assert objects[key]["ETag"] == expected_etag(path), key
        assert objects[key]["Size"] == path.stat().st_size, key


@dataclasses.dataclass
class SyncRig:
    """A proxy, the settings that point through it, and the folders of one daemon."""

    bucket: R2Settings
    proxy: FaultProxy
    via_proxy: R2Settings
    sync_dir: Path
    state_dir: Path
    daemons: list[sync.SyncDaemon] = dataclasses.field(default_factory=list)

    def options(self, **overrides: object) -> sync.SyncOptions:
        """Fast test options: short settle and backoff, rare scans."""
        values: dict[str, object] = {
            "sync_dir": self.sync_dir,
            "state_dir": self.state_dir,
            "settle": 0.1,
            "workers": 4,
            "rescan_interval": 60.0,
            "status_interval": 60.0,
            "first_backoff": 0.05,
            "max_backoff": 0.5,
        }
        values.update(overrides)
        return sync.SyncOptions(**values)  # type: ignore[arg-type]

    def start(self, **overrides: object) -> sync.SyncDaemon:
        """An in-process daemon through the proxy, stopped at teardown."""
        client = make_client(
            self.via_proxy, config=client_config(max_attempts=2, connect_timeout=2, read_timeout=10)
        )
        daemon = sync.SyncDaemon(self.options(**overrides), self.via_proxy, client=client)
        daemon.start()
        self.daemons.append(daemon)
        return daemon

    def env(self) -> dict[str, str]:
        """Environment for a daemon subprocess."""
        return {
            "PATH": os.environ["PATH"],
            "PYTHON": sys.executable,
            **settings_env(self.via_proxy),
            "SYNC_DIR": str(self.sync_dir),
            "SYNC_STATE_DIR": str(self.state_dir),
            "SYNC_SETTLE_SECONDS": "0.1",
            "SYNC_FIRST_BACKOFF_SECONDS": "0.05",
            "SYNC_MAX_BACKOFF_SECONDS": "0.5",
        }

    @property
    def key_prefix(self) -> str:
        """``R2_PREFIX + pods/<sync id>/``: where this rig's daemons put the folder."""
        return f"{self.bucket.prefix}pods/{sync_id(self.state_dir)}/"

    def key(self, relative: str) -> str:
        """The key of ``relative``'s first version."""
        return self.key_prefix + relative

    def stored_keys(self) -> set[str]:
        """Every key in the bucket."""
        return set(list_objects(self.bucket))

    def wait_mirrored(self, timeout: float = 30.0) -> None:
        """Wait until the bucket mirrors the folder."""
        wait_until(
            lambda: (
                (self.state_dir / "sync-id").exists()
                and bucket_mirrors(self.bucket, self.sync_dir, self.key_prefix)
            ),
            timeout,
            "bucket mirror",
        )

    def assert_mirrored(self) -> None:
        """Every expected file is in the bucket once with a matching MD5; nothing else is."""
        assert_mirrored(self.bucket, self.sync_dir, self.key_prefix)


def journaled(state_dir: Path) -> int:
    """Rows in a daemon's journal (uploads it verified), read without disturbing it."""
    with sqlite3.connect(f"file:{state_dir / 'journal.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM uploaded").fetchone()[0])


def write(path: Path, data: bytes) -> Path:
    """Create parents and write ``data`` (one open/close: one close_write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
