"""scripts/sandbox: the job path end to end with local stand-ins, URLs that work, a clean stop.

The sandbox runs for real (S3, the ComfyUI double, the job API with the real handler, then
``python -m ops smoke``) in a subprocess; the test fetches every URL it prints, stops it with
SIGTERM as a supervisor would, and checks that nothing it started still listens.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakes import sandbox as sandbox_module
from tests.fakes.sandbox import (
    OPS_ENV,
    Child,
    SandboxError,
    manifest_models,
    print_report,
    stand_ins,
)
from tests.scripts.standins import ROOT, copy_repository, logged, logging_tool, run_env

PNG, MP4 = b"\x89PNG\r\n\x1a\n", b"ftyp"


def lines_until(stream: queue.Queue[str | None], last: str, timeout_s: float) -> list[str]:
    """Lines from the sandbox's stdout up to the one starting with ``last``."""
    seen: list[str] = []
    while True:
        line = stream.get(timeout=timeout_s)
        if line is None:
            raise AssertionError("the sandbox stopped early:\n" + "".join(seen))
        seen.append(line)
        if line.strip().startswith(last):
            return seen


def refused(url: str) -> bool:
    """Nothing listens on the URL's port any more."""
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname or "", parts.port or 80)) != 0


@pytest.mark.slow
def test_the_sandbox_runs_a_smoke_job_end_to_end_and_prints_urls_that_work() -> None:
    """Smoke passes on the real handler; each URL serves a PNG/MP4; SIGTERM stops it all."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "image")])}
    env.pop("COMFYUI_RUNPOD_ALLOW_EXAMPLE_VALUES", None)
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sandbox"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump() -> None:
        assert sandbox.stdout is not None
        for line in sandbox.stdout:
            out.put(line)
        out.put(None)

    def pump_errors() -> None:
        assert sandbox.stderr is not None
        errors.extend(sandbox.stderr)

    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=pump_errors, daemon=True).start()
    try:
        report = lines_until(out, "scripts/uv run python -m ops canary", 120)
    except BaseException:
        sandbox.kill()
        raise
    text = "".join(report)
    assert "ops smoke against the local stand-ins (not RunPod):" in text
    assert "smoke exit code 0;" in text, text
    for check in ("txt2img", "img2img", "background removal", "wan22 t2v", "R2 read-back"):
        assert f"PASS  {check}:" in text, text
    urls = [line.strip() for line in report if line.startswith("  http://")]
    assert len(urls) == 4, text
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
        assert response.status == 200
        assert body.startswith(PNG) if ".png?" in url else MP4 in body[:16], url
    job_api = next(line.split("=", 1)[1].strip() for line in report if "ENDPOINT_BASE_URL=" in line)

    sandbox.send_signal(signal.SIGTERM)
    assert sandbox.wait(timeout=60) == 0
    log = "".join(errors)
    assert "SIGTERM: stopping" in log
    assert "stopped every stand-in" in log
    assert refused(urls[0])
    assert refused(job_api)


@pytest.mark.slow
def test_every_stand_in_binds_its_own_port_so_none_can_be_taken_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port picked, released and passed on can be taken by another process before the
    stand-in binds it (a parallel test run does that): here one is taken on purpose."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # What a pick-then-bind sandbox would pick, now in use by someone else.
        monkeypatch.setattr(sandbox_module, "free_port", lambda: port, raising=False)
        with stand_ins(tmp_path, workers=1) as env:
            said = re.search(r"ComfyUI double \(pid \d+\) at (\S+),", capsys.readouterr().err)
            assert said, "the sandbox names the double's URL"
            comfy = said.group(1)
            assert urlsplit(comfy).port != port
            with urllib.request.urlopen(f"{comfy}/system_stats", timeout=10) as response:
                assert response.status == 200
            assert env["RUNPOD_ENDPOINT_BASE_URL"].endswith("/v2")


def test_scripts_sandbox_runs_the_module_in_the_projects_environment(tmp_path: Path) -> None:
    """The bash entry point hands its arguments to the sandbox module through uv."""
    clone = copy_repository(tmp_path / "repo", "scripts/sandbox", "scripts/uv")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    logging_tool(bin_dir, "uv")
    result = subprocess.run(
        [str(clone / "scripts" / "sandbox"), "--once", "--", "--timeout", "60"],
        env=run_env(bin_dir, log),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert logged(log) == ["uv run --frozen python -m tests.fakes.sandbox --once -- --timeout 60"]


def test_a_stand_in_that_dies_at_start_is_named_with_its_exit_code() -> None:
    """No silent hang: a stand-in that exits before saying where it listens is reported."""
    child = Child("ComfyUI double", [sys.executable, "-c", "raise SystemExit(3)"], os.environ)
    with pytest.raises(SandboxError, match=r"ComfyUI double did not start \(exited with 3\)"):
        child.wait_for_line(re.compile("http://"), 30)


def test_a_stand_in_that_dies_while_its_child_holds_the_pipe_is_named_at_once(
    tmp_path: Path,
) -> None:
    """Dead before saying where it listens, its output still open through a process it started
    (the double's stand-in ComfyUI process): reported now, not after the whole timeout."""
    pid_file = tmp_path / "grandchild.pid"
    argv = ["sh", "-c", f'sleep 30 & echo $! > "{pid_file}"; exit 3']
    child = Child("ComfyUI double", argv, os.environ)
    started = time.monotonic()
    try:
        with pytest.raises(SandboxError, match=r"ComfyUI double did not start \(exited with 3\)"):
            child.wait_for_line(re.compile("http://"), 25)
        assert time.monotonic() - started < 10
    finally:
        child.stop()
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("serving", [True, False], ids=["kept-running", "once"])
def test_the_report_offers_urls_and_the_cli_only_while_the_stand_ins_serve(
    serving: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --once everything stops after the smoke: no promise that the URLs or the CLI work."""
    url = "http://127.0.0.1:9/bucket/sandbox/jobs/1/flux_txt2img_00001_.png?X-Amz-Signature=s"
    report = {
        "checks": [
            {"name": "txt2img", "status": "pass", "detail": "1 output", "data": {"outputs": []}},
            {
                "name": "img2img",
                "status": "pass",
                "detail": "ok",
                "data": {"outputs": [{"url": url}]},
            },
        ]
    }
    env = {name: f"<{name}>" for name in OPS_ENV}
    assert print_report(0, report, env, serving=serving) == [url]
    out = capsys.readouterr().out
    assert f"  {url}\n" in out
    assert ("served while the sandbox runs" in out) is serving
    assert ("Try the ops CLI yourself" in out) is serving
    assert ("--once: no longer served" in out) is not serving


def test_the_double_gets_every_model_of_the_manifest() -> None:
    """Models come from image/models.toml (as folder=file), so every template finds its files."""
    models = manifest_models()
    assert "checkpoints=flux1-dev-fp8.safetensors" in models
    assert all("=" in model and not model.startswith("=") for model in models)
    manifest = tomllib.loads((ROOT / "image" / "models.toml").read_text(encoding="utf-8"))
    assert len(models) == len(manifest["model"])


def test_worker_scripts_use_the_checkouts_environment_outside_the_image(tmp_path: Path) -> None:
    """No PYTHON set (outside the image): .venv/bin/python, not a system python3 without deps."""
    clone = copy_repository(
        tmp_path / "repo", "image/r2_sync.sh", "image/download_models.sh", "image/worker_python.sh"
    )
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    logging_tool(bin_dir, "python3", "echo \"No module named 'inotify_simple'\" >&2; exit 1")
    logging_tool(clone / ".venv" / "bin", "python")
    env = run_env(bin_dir, log)
    for script in ("r2_sync.sh", "download_models.sh"):
        result = subprocess.run(
            [str(clone / "image" / script), "--help"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert logged(log) == ["python -m worker.sync --help", "python -m worker.models --help"]
    # In the image PYTHON is set (/opt/venv/bin/python) and wins.
    log.unlink()
    env["PYTHON"] = "python3"
    result = subprocess.run(
        [str(clone / "image" / "r2_sync.sh"), "--help"], env=env, capture_output=True, check=False
    )
    assert result.returncode == 1
    assert logged(log) == ["python3 -m worker.sync --help"]
