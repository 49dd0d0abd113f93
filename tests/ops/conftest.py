"""Fixtures for the ops CLI: the job API emulator, contract-honouring workers, a CLI runner."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner, Result
from worker.r2 import R2Settings, client_config, make_client

from ops.cli import app
from ops.smoke import smoke_png
from tests.fakes.runpod_jobs import JobApiEmulator
from tests.fakes.s3 import settings_env
from tests.fakes.stack_values import ROOT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CLIENT_LOCK = threading.Lock()
TEMPLATES = {
    "flux_txt2img": ("image", "png"),
    "flux_img2img": ("image", "png"),
    "remove_background": ("image", "png"),
    "wan22_t2v": ("video", "mp4"),
}


#: Sockets holding the ports of :func:`closed_port_url` until the test process ends.
_CLOSED_PORTS: list[socket.socket] = []
atexit.register(lambda: [sock.close() for sock in _CLOSED_PORTS])


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (connections are refused).

    The port stays bound, never listening, until the process ends: a bound socket refuses
    connections, and no server of a parallel test can take the port meanwhile (a port only
    picked and released could be, and the test would then talk to that server).
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _CLOSED_PORTS.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class ContractWorker:
    """A stand-in for the real handler that honours the job contract and writes to S3.

    It validates the template, "generates" a small file, uploads it with the worker's R2
    settings and returns the contract's output; ``missing_model`` makes every generation
    fail the way the handler reports a model that is not installed.
    """

    settings: R2Settings
    missing_model: str | None = None
    upload: bool = True
    delay_s: float = 0.0
    _client: S3Client | None = field(default=None, init=False, repr=False)

    def client(self) -> S3Client:
        """One S3 client per worker, as the real handler keeps (clients are thread-safe)."""
        with _CLIENT_LOCK:
            if self._client is None:
                config = client_config(max_attempts=1, connect_timeout=1)
                self._client = make_client(self.settings, config=config)
            return self._client

    def __call__(self, job: dict[str, Any]) -> dict[str, Any]:
        job_input = job["input"]
        template = job_input.get("template")
        if template not in TEMPLATES:
            return {"error": f"unknown template {template!r}", "error_type": "validation"}
        if self.missing_model:
            return {
                "error": f"model {self.missing_model} not found in models/checkpoints: "
                "rebuild the image or check MODEL_GROUPS",
                "error_type": "missing_model",
            }
        if self.delay_s:
            import time  # noqa: PLC0415 - only this branch sleeps

            time.sleep(self.delay_s)
        kind, ext = TEMPLATES[template]
        body = smoke_png(16) if ext == "png" else b"\x00\x00\x00\x18ftypmp42" + bytes(64)
        key = f"{self.settings.prefix}{job['id']}/ComfyUI_00001_.{ext}"
        content_type = "image/png" if ext == "png" else "video/mp4"
        if self.upload:
            try:
                self.client().put_object(
                    Bucket=self.settings.bucket, Key=key, Body=body, ContentType=content_type
                )
            except Exception as exc:  # noqa: BLE001 - the handler reports any upload failure
                return {
                    "error": f"upload to R2 failed: {type(exc).__name__}",
                    "error_type": "upload",
                }
        return {
            "outputs": [
                {
                    "node_id": "9",
                    "filename": key.rsplit("/", 1)[-1],
                    "kind": kind,
                    "key": key,
                    "url": f"https://assets.example.com/{key}",
                    "bytes": len(body),
                    "content_type": content_type,
                }
            ],
            "prompt_id": job["id"],
            "timings": {"queue_ms": 0, "run_ms": 1, "upload_ms": 1},
        }


@pytest.fixture
def contract_worker(r2_bucket: R2Settings) -> ContractWorker:
    """A healthy contract worker writing into this test's bucket."""
    return ContractWorker(r2_bucket)


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., JobApiEmulator]]:
    """Start job API emulators; all are stopped at the end of the test."""
    started: list[JobApiEmulator] = []

    def make(worker: Callable[[dict[str, Any]], Any], **options: Any) -> JobApiEmulator:
        emulator = JobApiEmulator(worker, **options).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def ops_env(
    emulator: JobApiEmulator, r2: R2Settings | None = None, **extra: str
) -> dict[str, str | None]:
    """The environment an operator would set to point ops at ``emulator``."""
    env: dict[str, str | None] = {
        "RUNPOD_ENDPOINT_BASE_URL": emulator.base_url,
        "RUNPOD_API_KEY": emulator.api_key,
        "RUNPOD_COMFYUI_ENDPOINT_ID": emulator.endpoint_id,
        "ROLLOUT_FLAG_URL": None,
        "CLOUDFLARE_ACCOUNT_ID": None,
        "CLOUDFLARE_API_TOKEN": None,
        "R2_ENDPOINT": None,
        "R2_BUCKET": None,
        "R2_ACCESS_KEY_ID": None,
        "R2_SECRET_ACCESS_KEY": None,
        "R2_PREFIX": None,
    }
    if r2 is not None:
        env.update(settings_env(r2))
    env.update(extra)
    return env


def invoke(args: list[str], env: Mapping[str, str | None], stdin: str | None = None) -> Result:
    """Run ``python -m ops`` in-process."""
    return CliRunner().invoke(app, args, env=dict(env), input=stdin, catch_exceptions=False)


def invoke_json(
    args: list[str], env: Mapping[str, str | None], stdin: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Run with ``--json``; stdout must be exactly one JSON document."""
    result = invoke([*args, "--json"], env, stdin)
    return result.exit_code, json.loads(result.stdout)


def check(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The named check from a JSON report."""
    found = [c for c in document["checks"] if c["name"] == name]
    assert found, f"no check {name!r} in {[c['name'] for c in document['checks']]}"
    return found[0]


FAST = ["--poll-interval", "0.02"]


def standins_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools: Mapping[str, str]
) -> None:
    """Each stand-in command (name -> its Python source) as an executable first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n{source}")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def git(cwd: Path, *args: str) -> str:
    """``git`` run in ``cwd``; its stdout, stripped."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clone_with_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: Sequence[str]
) -> Path:
    """A clone (``tmp_path/work``) of a local bare ``origin`` whose ``main`` holds the
    repository's ``files``; git's identity and global config come from the environment."""
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "ops")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "ops@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    work = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(origin), str(work))
    for name in files:
        shutil.copy(ROOT / name, work / name)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "project")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    return work
