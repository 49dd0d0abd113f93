"""image/start.sh with stub commands standing in for the GPU, ComfyUI, Jupyter and the scripts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

IMAGE = Path(__file__).resolve().parents[2] / "image"
START_SH = IMAGE / "start.sh"

PYTHON_STUB = r"""#!/usr/bin/env bash
# Stands in for python3: main.py plays ComfyUI, "-m worker.handler" plays the handler.
calls="${STUB_DIR}/calls"
if [[ "${2:-}" == main.py ]]; then
  trap 'echo comfyui-stopped >>"${calls}"; exit 0' TERM
  echo "comfyui $* cwd=${PWD}" >>"${calls}"
  leak="${COMFYUI_PASSWORD:-}${PROXY_PASSWORD:-}"
  [[ -z "${leak}" ]] || echo "env-leak comfyui" >>"${STUB_DIR}/calls"
  echo "ComfyUI booting"
  while true; do sleep 0.05; done
elif [[ "${1:-} ${2:-}" == "-m worker.proxy" ]]; then
  echo "proxy-config $*" >>"${calls}"
  PYTHONPATH="${REAL_IMAGE_DIR}" exec "${REAL_PYTHON}" "$@"
elif [[ "${2:-} ${3:-}" == "-m worker.handler" ]]; then
  echo "handler COMFY_URL=${COMFY_URL} COMFY_PID_FILE=${COMFY_PID_FILE}" \
    "COMFY_OUTPUT_DIR=${COMFY_OUTPUT_DIR} MODELS_DIR=${MODELS_DIR:-} args=${*:4}" >>"${calls}"
  if [[ -n "${STUB_HANDLER_EXIT:-}" ]]; then
    while [[ ! -f "${STUB_DIR}/comfy-seen" ]]; do
      grep -q '^comfyui ' "${calls}" && touch "${STUB_DIR}/comfy-seen" || sleep 0.05
    done
    exit "${STUB_HANDLER_EXIT}"
  fi
  trap 'echo handler-stopped >>"${calls}"; exit 0' TERM
  while true; do sleep 0.05; done
fi
echo "unexpected python call: $*" >>"${calls}"
exit 9
"""

JUPYTER_STUB = r"""#!/usr/bin/env bash
leak="${COMFYUI_PASSWORD:-}${PROXY_PASSWORD:-}"
[[ -z "${leak}" ]] || echo "env-leak jupyter" >>"${STUB_DIR}/calls"
trap 'echo jupyter-stopped >>"${STUB_DIR}/calls"; exit 0' TERM
echo "jupyter $* token=${JUPYTER_TOKEN:-<unset>}" >>"${STUB_DIR}/calls"
while true; do sleep 0.05; done
"""

NVIDIA_SMI_STUB = r"""#!/usr/bin/env bash
leak="${COMFYUI_PASSWORD:-}${PROXY_PASSWORD:-}"
[[ -z "${leak}" ]] || echo "env-leak nvidia-smi" >>"${STUB_DIR}/calls"
if [[ -n "${STUB_GPU_FAIL:-}" ]]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
  exit 9
fi
echo "NVIDIA L40S, 46068 MiB"
"""

DOWNLOAD_STUB = r"""#!/usr/bin/env bash
# Stands in for download_models.sh: models count as verified in MODELS_DIR once
# ${MODELS_DIR}/.verified/stub exists, which a successful download creates.
echo "download $* MODELS_DIR=${MODELS_DIR} HF_TOKEN=${HF_TOKEN:-<unset>}" >>"${STUB_DIR}/calls"
leak="${COMFYUI_PASSWORD:-}${PROXY_PASSWORD:-}"
[[ -z "${leak}" ]] || echo "env-leak download_models.sh" >>"${STUB_DIR}/calls"
if [[ "${1:-}" == --verify-only ]]; then
  echo "verifying"
  if [[ -f "${MODELS_DIR}/.verified/stub" ]]; then
    echo "all 2 selected models present and verified"
    exit 0
  fi
  echo "2 of 2 selected models are missing or unverified; run download_models.sh"
  exit 5
fi
if [[ -n "${STUB_HOLD_DOWNLOAD:-}" ]]; then
  trap 'exit 0' TERM
  while [[ ! -f "${STUB_DIR}/release-download" ]]; do sleep 0.05; done
fi
if [[ -n "${STUB_DOWNLOAD_RC:-}" ]]; then
  echo "download failed"
  exit "${STUB_DOWNLOAD_RC}"
fi
mkdir -p "${MODELS_DIR}/.verified"
touch "${MODELS_DIR}/.verified/stub"
echo "download-finished" >>"${STUB_DIR}/calls"
"""

SSHD_STUB = r"""#!/usr/bin/env bash
leak="${COMFYUI_PASSWORD:-}${PROXY_PASSWORD:-}"
[[ -z "${leak}" ]] || echo "env-leak sshd" >>"${STUB_DIR}/calls"
trap 'exit 0' TERM
echo "sshd $*" >>"${STUB_DIR}/calls"
while true; do sleep 0.05; done
"""

KEYGEN_STUB = r"""#!/usr/bin/env bash
echo "ssh-keygen $*" >>"${STUB_DIR}/calls"
[[ -z "${STUB_KEYGEN_FAIL:-}" ]]
"""

SYNC_STUB = r"""#!/usr/bin/env bash
leak="${COMFYUI_PASSWORD:-}${PROXY_PASSWORD:-}"
[[ -z "${leak}" ]] || echo "env-leak r2_sync.sh" >>"${STUB_DIR}/calls"
if [[ "${1:-}" == --once ]]; then
  echo "sync-once $*" >>"${STUB_DIR}/calls"
  exit 0
fi
trap 'echo sync-stopped >>"${STUB_DIR}/calls"; exit 0' TERM
echo "sync-daemon SYNC_DIR=${SYNC_DIR} SYNC_STATE_DIR=${SYNC_STATE_DIR}" >>"${STUB_DIR}/calls"
# STUB_SYNC_CRASHES=N: the first N runs die at once (a corrupt journal, a bug), exit 1.
runs=$(($(cat "${STUB_DIR}/sync-runs" 2>/dev/null || echo 0) + 1))
echo "${runs}" >"${STUB_DIR}/sync-runs"
if ((runs <= ${STUB_SYNC_CRASHES:-0})); then
  echo "Traceback: sqlite3.DatabaseError: file is not a database"
  exit "${STUB_SYNC_RC:-1}"
fi
while true; do sleep 0.05; done
"""

NGINX_STUB = r"""#!/usr/bin/env bash
trap 'echo nginx-stopped >>"${STUB_DIR}/calls"; exit 0' TERM
echo "nginx $* password=${COMFYUI_PASSWORD:-<unset>}" >>"${STUB_DIR}/calls"
while true; do sleep 0.05; done
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@dataclass
class Rig:
    """A fake container: stub commands, an image-side ComfyUI folder and a volume."""

    root: Path
    env: dict[str, str]

    @property
    def calls(self) -> list[str]:
        path = self.root / "stubs" / "calls"
        return path.read_text().splitlines() if path.exists() else []

    @property
    def comfyui(self) -> Path:
        return self.root / "opt" / "ComfyUI"

    @property
    def volume(self) -> Path:
        return self.root / "volume"

    def start(self, **env: str) -> subprocess.Popen[str]:
        log = (self.root / "start.log").open("w")
        return subprocess.Popen(
            [str(START_SH)],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(START_SH)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def log(self) -> str:
        return (self.root / "start.log").read_text()


def _install_models(models_dir: Path) -> None:
    """Leave what the download stub treats as verified models in `models_dir`."""
    (models_dir / ".verified").mkdir(parents=True, exist_ok=True)
    (models_dir / ".verified" / "stub").touch()


def _downloads(calls: list[str]) -> list[str]:
    """The download_models.sh calls that download (not --verify-only)."""
    return [c for c in calls if c.startswith("download ") and "--verify-only" not in c]


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    """Stubs on PATH, a fake /opt/ComfyUI with an output file, an empty volume."""
    stubs = tmp_path / "stubs"
    _write(stubs / "bin" / "python3", PYTHON_STUB)
    _write(stubs / "bin" / "jupyter", JUPYTER_STUB)
    _write(stubs / "bin" / "nvidia-smi", NVIDIA_SMI_STUB)
    _write(stubs / "bin" / "sshd", SSHD_STUB)
    _write(stubs / "bin" / "ssh-keygen", KEYGEN_STUB)
    _write(stubs / "bin" / "nginx", NGINX_STUB)
    app = tmp_path / "opt" / "worker"
    _write(app / "download_models.sh", DOWNLOAD_STUB)
    _write(app / "r2_sync.sh", SYNC_STUB)
    (app / "proxy").mkdir()
    shutil.copy(IMAGE / "proxy" / "nginx.conf.template", app / "proxy")
    comfyui = tmp_path / "opt" / "ComfyUI"
    for name in ("output", "input", "user"):
        (comfyui / name).mkdir(parents=True)
    (comfyui / "input" / "example.png").write_bytes(b"png")
    (tmp_path / "volume").mkdir()
    env = {
        "PATH": f"{stubs / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_DIR": str(stubs),
        "APP_DIR": str(app),
        "COMFYUI_DIR": str(comfyui),
        "VOLUME_DIR": str(tmp_path / "volume"),
        "BAKED_MODELS_DIR": str(tmp_path / "opt" / "models"),
        "COMFY_PID_FILE": str(tmp_path / "comfyui.pid"),
        "PYTHON": str(stubs / "bin" / "python3"),
        "STOP_TIMEOUT_S": "5",
        "SSHD": str(stubs / "bin" / "sshd"),
        "SSH_KEYGEN": str(stubs / "bin" / "ssh-keygen"),
        "REAL_PYTHON": sys.executable,
        "REAL_IMAGE_DIR": str(IMAGE),
        "PROXY_DIR": str(tmp_path / "proxy"),
    }
    return Rig(tmp_path, env)


@pytest.fixture
def running(rig: Rig) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test; killed (whole session) afterwards."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_no_nvidia_driver_fails_fast_with_an_actionable_message(rig: Rig) -> None:
    """Without nvidia-smi the script exits 3 and says how to get a GPU or skip the check."""
    (rig.root / "stubs" / "bin" / "nvidia-smi").unlink()
    done = rig.run(MODE="serverless")
    assert done.returncode == 3
    assert "--gpus all" in done.stderr
    assert "SKIP_GPU_CHECK" in done.stderr
    assert not any(c.startswith("comfyui") for c in rig.calls)


def test_broken_gpu_fails_fast(rig: Rig) -> None:
    """nvidia-smi failing (driver mismatch) is a preflight failure, not a late CUDA error."""
    done = rig.run(MODE="pod", STUB_GPU_FAIL="1")
    assert done.returncode == 3
    assert "no GPU visible" in done.stderr
    assert "couldn't communicate" in done.stderr


def test_unknown_mode_is_rejected(rig: Rig) -> None:
    """MODE must be serverless or pod."""
    done = rig.run(MODE="worker")
    assert done.returncode == 2
    assert "MODE must be" in done.stderr


def test_serverless_maps_every_model_folder_and_runs_the_handler(rig: Rig) -> None:
    """Serverless: extra_model_paths covers the volume and baked models, then the handler runs."""
    _install_models(rig.volume / "models")
    done = rig.run(MODE="serverless", MODEL_GROUPS="flux_dev_fp8", STUB_HANDLER_EXIT="0")
    assert done.returncode == 0, done.stderr
    paths = yaml.safe_load((rig.comfyui / "extra_model_paths.yaml").read_text())
    assert paths["volume"]["base_path"] == str(rig.volume / "models")
    assert paths["volume"]["is_default"] is True
    assert paths["baked"]["base_path"] == rig.env["BAKED_MODELS_DIR"]
    for folder in ("diffusion_models", "text_encoders", "background_removal", "loras", "vae"):
        assert paths["volume"][folder] == f"{folder}/"
        assert paths["baked"][folder] == f"{folder}/"
    calls = rig.calls
    verify = next(c for c in calls if c.startswith("download"))
    assert "--verify-only" in verify
    assert f"MODELS_DIR={rig.volume / 'models'}" in verify
    comfy = next(c for c in calls if c.startswith("comfyui"))
    assert "--listen 127.0.0.1" in comfy
    assert f"cwd={rig.comfyui}" in comfy
    handler = next(c for c in calls if c.startswith("handler"))
    assert "COMFY_URL=http://127.0.0.1:8188" in handler
    assert f"COMFY_OUTPUT_DIR={rig.comfyui / 'output'}" in handler
    assert f"MODELS_DIR={rig.volume / 'models'} " in handler  # the LoRA cache's root
    assert "comfyui-stopped" in calls
    assert "[comfyui] ComfyUI booting" in done.stdout
    assert (rig.comfyui / "output").is_dir()
    assert not (rig.comfyui / "output").is_symlink()


def test_serverless_handler_exit_code_is_the_container_exit_code(rig: Rig) -> None:
    """A handler that dies takes the container down with its code, so RunPod restarts it."""
    done = rig.run(MODE="serverless", STUB_HANDLER_EXIT="7")
    assert done.returncode == 7


def test_handler_args_reach_the_runpod_sdk(rig: Rig) -> None:
    """HANDLER_ARGS (e.g. the SDK's local test server flags) are passed to the handler."""
    done = rig.run(
        MODE="serverless", STUB_HANDLER_EXIT="0", HANDLER_ARGS="--rp_serve_api --rp_api_port 8000"
    )
    assert done.returncode == 0, done.stderr
    handler = next(c for c in rig.calls if c.startswith("handler"))
    assert handler.endswith("args=--rp_serve_api --rp_api_port 8000")


def test_serverless_downloads_missing_models_before_starting_the_handler(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """Missing models are downloaded into MODELS_DIR in the foreground; then ComfyUI, handler."""
    volume_models = rig.volume / "models"
    process = rig.start(
        MODE="serverless",
        MODEL_GROUPS="flux_dev_fp8,background_removal",
        MODELS_DIR=str(volume_models),
        HF_TOKEN="hf-fake-token",
        STUB_HOLD_DOWNLOAD="1",
        STUB_HANDLER_EXIT="0",
    )
    running.append(process)
    _wait_for(lambda: bool(_downloads(rig.calls)), "the model download to start")
    download = _downloads(rig.calls)[0]
    assert f"MODELS_DIR={volume_models}" in download
    assert f"--status-file {volume_models / '.download-status.json'}" in download
    assert "HF_TOKEN=hf-fake-token" in download
    assert not any(c.startswith(("comfyui", "handler")) for c in rig.calls)
    (rig.root / "stubs" / "release-download").touch()
    assert process.wait(timeout=30) == 0, rig.log
    calls = rig.calls
    assert calls.index("download-finished") < calls.index(
        next(c for c in calls if c.startswith("comfyui"))
    )
    assert any(c.startswith("handler") for c in calls)
    assert f"downloading 2 missing models into {volume_models}" in rig.log


def test_a_second_worker_finds_the_downloaded_models_verified(rig: Rig) -> None:
    """After one worker filled the volume, the next one only verifies and starts at once."""
    env = {"MODE": "serverless", "MODEL_GROUPS": "flux_dev_fp8", "STUB_HANDLER_EXIT": "0"}
    models_dir = str(rig.volume / "models")
    first = rig.run(MODELS_DIR=models_dir, **env)
    assert first.returncode == 0, first.stderr
    assert len(_downloads(rig.calls)) == 1
    second = rig.run(MODELS_DIR=models_dir, **env)
    assert second.returncode == 0, second.stderr
    assert len(_downloads(rig.calls)) == 1
    assert f"models verified in {models_dir}" in second.stderr


def test_serverless_exits_4_when_the_model_download_fails(rig: Rig) -> None:
    """A failed download exits 4 before ComfyUI or the handler start, naming the fixes."""
    done = rig.run(
        MODE="serverless",
        MODEL_GROUPS="wan22_t2v",
        STUB_DOWNLOAD_RC="4",
        STUB_HANDLER_EXIT="0",
    )
    assert done.returncode == 4
    assert "[models] verifying" in done.stdout
    assert "[models] download failed" in done.stdout
    assert "download_models.sh exit 4" in done.stderr
    assert "HF_TOKEN" in done.stderr
    assert "BAKE_MODEL_GROUPS" in done.stderr
    assert len(_downloads(rig.calls)) == 1
    assert not any(c.startswith(("comfyui", "handler")) for c in rig.calls)


def test_serverless_honours_models_dir_from_the_endpoint(rig: Rig) -> None:
    """MODELS_DIR set on the endpoint is verified and mapped first, baked models second."""
    custom = rig.root / "netvol" / "models"
    _install_models(custom)
    done = rig.run(
        MODE="serverless",
        MODEL_GROUPS="flux_dev_fp8",
        MODELS_DIR=str(custom),
        STUB_HANDLER_EXIT="0",
    )
    assert done.returncode == 0, done.stderr
    verify = next(c for c in rig.calls if c.startswith("download"))
    assert f"MODELS_DIR={custom}" in verify
    paths = yaml.safe_load((rig.comfyui / "extra_model_paths.yaml").read_text())
    assert list(paths) == ["volume", "baked"]
    assert paths["volume"]["base_path"] == str(custom)


def test_serverless_prefers_baked_models(rig: Rig) -> None:
    """An image with baked models verifies those, even when a volume is attached."""
    baked = Path(rig.env["BAKED_MODELS_DIR"])
    _install_models(baked)
    (baked / ".baked").write_text("flux_dev_fp8\n")
    (rig.volume / "models").mkdir()
    done = rig.run(MODE="serverless", MODEL_GROUPS="flux_dev_fp8", STUB_HANDLER_EXIT="0")
    assert done.returncode == 0, done.stderr
    verify = next(c for c in rig.calls if c.startswith("download"))
    assert f"MODELS_DIR={baked}" in verify
    assert _downloads(rig.calls) == []
    assert f"models verified in {baked}" in done.stderr


def test_verified_baked_models_skip_the_download_onto_an_empty_volume(rig: Rig) -> None:
    """MODELS_DIR on an empty volume, verified baked models: no download, the handler runs."""
    baked = Path(rig.env["BAKED_MODELS_DIR"])
    _install_models(baked)
    (baked / ".baked").write_text("flux_dev_fp8\n")
    volume_models = rig.volume / "models"
    done = rig.run(
        MODE="serverless",
        MODEL_GROUPS="flux_dev_fp8",
        MODELS_DIR=str(volume_models),
        STUB_HANDLER_EXIT="0",
    )
    assert done.returncode == 0, done.stderr
    verified = [c for c in rig.calls if "--verify-only" in c]
    assert len(verified) == 2
    assert f"MODELS_DIR={volume_models}" in verified[0]
    assert f"MODELS_DIR={baked}" in verified[1]
    assert _downloads(rig.calls) == []
    assert f"models verified in {baked} (baked into the image)" in done.stderr
    assert any(c.startswith("handler") for c in rig.calls)


def test_pod_starts_comfyui_while_models_download(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """Pod: downloads run in the background with a status file; ComfyUI is up at once."""
    process = rig.start(
        MODE="pod",
        MODEL_GROUPS="wan22_t2v",
        JUPYTER_PASSWORD="s3cret-token",
        STUB_HOLD_DOWNLOAD="1",
    )
    running.append(process)
    _wait_for(
        lambda: {c.split()[0] for c in rig.calls} >= {"jupyter", "comfyui", "download"},
        "jupyter, ComfyUI and the download to start",
    )
    calls = rig.calls
    download = next(c for c in calls if c.startswith("download"))
    assert "--verify-only" not in download
    models = rig.volume / "ComfyUI" / "models"
    assert f"--status-file {models / '.download-status.json'}" in download
    assert f"MODELS_DIR={models}" in download
    assert "download-finished" not in calls  # still downloading...
    comfy = next(c for c in calls if c.startswith("comfyui"))  # ...and ComfyUI already runs
    assert "--listen 127.0.0.1 --port 18188" in comfy  # published only through the proxy
    paths = yaml.safe_load((rig.comfyui / "extra_model_paths.yaml").read_text())
    assert set(paths) == {"volume"}
    assert paths["volume"]["base_path"] == str(models)
    (rig.root / "stubs" / "release-download").touch()
    _wait_for(lambda: "download-finished" in rig.calls, "the download to finish")


def test_pod_links_comfyui_folders_onto_the_volume(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """output, input and user live on the volume; files shipped in the image are kept."""
    running.append(rig.start(MODE="pod", DOWNLOAD_MODELS="false", ENABLE_JUPYTER="false"))
    _wait_for(lambda: any(c.startswith("comfyui") for c in rig.calls), "ComfyUI to start")
    for name in ("output", "input", "user"):
        link = rig.comfyui / name
        assert link.is_symlink()
        assert link.resolve() == (rig.volume / "ComfyUI" / name).resolve()
    assert (rig.volume / "ComfyUI" / "input" / "example.png").read_bytes() == b"png"


def test_jupyter_token_comes_from_the_environment_not_the_command_line(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """JUPYTER_PASSWORD becomes JUPYTER_TOKEN in Jupyter's env and never appears in argv."""
    running.append(rig.start(MODE="pod", DOWNLOAD_MODELS="false", JUPYTER_PASSWORD="pw-123"))
    _wait_for(lambda: any(c.startswith("jupyter") for c in rig.calls), "jupyter to start")
    jupyter = next(c for c in rig.calls if c.startswith("jupyter"))
    args, token = jupyter.split(" token=")
    assert token == "pw-123"
    assert "pw-123" not in args
    assert f"--ServerApp.root_dir={rig.volume}" in args


def test_sigterm_flushes_the_sync_daemon_before_exit(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """On SIGTERM: ComfyUI and the daemon stop, then r2_sync.sh --once flushes what is left."""
    process = rig.start(MODE="pod", DOWNLOAD_MODELS="false", ENABLE_R2_SYNC="true")
    running.append(process)
    _wait_for(
        lambda: {c.split()[0] for c in rig.calls} >= {"sync-daemon", "comfyui", "jupyter"},
        "ComfyUI, JupyterLab and the sync daemon",
    )
    daemon = next(c for c in rig.calls if c.startswith("sync-daemon"))
    assert f"SYNC_DIR={rig.volume / 'ComfyUI' / 'output'}" in daemon
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    calls = rig.calls
    assert "comfyui-stopped" in calls
    assert "sync-stopped" in calls
    flush = next(c for c in calls if c.startswith("sync-once"))
    assert calls.index("sync-stopped") < calls.index(flush)
    assert "--timeout" in flush
    assert "[start] flushing pending outputs to R2" in rig.log


def test_without_r2_sync_no_daemon_runs(rig: Rig, running: list[subprocess.Popen[str]]) -> None:
    """ENABLE_R2_SYNC off: no daemon and no flush on stop."""
    process = rig.start(MODE="pod", DOWNLOAD_MODELS="false", ENABLE_JUPYTER="false")
    running.append(process)
    _wait_for(lambda: any(c.startswith("comfyui") for c in rig.calls), "ComfyUI to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert not any(c.startswith("sync") for c in rig.calls)
    assert "ENABLE_R2_SYNC is off" in rig.log


def test_pod_ssh_uses_the_injected_public_key(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """PUBLIC_KEY lands in authorized_keys once and sshd starts in the foreground mode."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest user@laptop"
    (rig.root / ".ssh").mkdir()
    (rig.root / ".ssh" / "authorized_keys").write_text(key + "\n")
    running.append(rig.start(MODE="pod", DOWNLOAD_MODELS="false", PUBLIC_KEY=key))
    _wait_for(lambda: any(c.startswith("sshd") for c in rig.calls), "sshd to start")
    assert (rig.root / ".ssh" / "authorized_keys").read_text() == key + "\n"
    assert oct((rig.root / ".ssh" / "authorized_keys").stat().st_mode & 0o777) == "0o600"
    assert next(c for c in rig.calls if c.startswith("sshd")) == "sshd -D -e"


def test_each_pod_generates_its_own_ssh_host_keys_before_sshd_starts(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """The image has no host keys: `ssh-keygen -A` runs in the pod, then sshd starts."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest user@laptop"
    running.append(rig.start(MODE="pod", DOWNLOAD_MODELS="false", PUBLIC_KEY=key))
    _wait_for(lambda: any(c.startswith("sshd") for c in rig.calls), "sshd to start")
    calls = rig.calls
    assert calls.index("ssh-keygen -A") < calls.index("sshd -D -e")
    assert "SSH host keys generated for this pod" in rig.log


def test_no_sshd_without_host_keys(rig: Rig, running: list[subprocess.Popen[str]]) -> None:
    """When key generation fails, sshd is not started with missing or stale keys."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest user@laptop"
    running.append(
        rig.start(MODE="pod", DOWNLOAD_MODELS="false", PUBLIC_KEY=key, STUB_KEYGEN_FAIL="1")
    )
    _wait_for(lambda: "ssh-keygen -A" in rig.calls, "ssh-keygen to run")
    _wait_for(lambda: "could not generate SSH host keys" in rig.log, "the warning")
    assert not any(c.startswith("sshd") for c in rig.calls)


@pytest.mark.parametrize(
    ("mode", "setting", "disabled"),
    [
        ("serverless", None, True),
        ("serverless", "true", False),
        ("pod", None, False),
        ("pod", "false", True),
    ],
)
def test_workflow_metadata_is_off_on_serverless_and_on_on_pods(
    rig: Rig, running: list[subprocess.Popen[str]], mode: str, setting: str | None, disabled: bool
) -> None:
    """--disable-metadata by default on serverless only; SAVE_WORKFLOW_METADATA overrides."""
    env = {"MODE": mode, "DOWNLOAD_MODELS": "false"}
    if setting is not None:
        env["SAVE_WORKFLOW_METADATA"] = setting
    running.append(rig.start(**env))
    _wait_for(lambda: any(c.startswith("comfyui") for c in rig.calls), "ComfyUI to start")
    comfy = next(c for c in rig.calls if c.startswith("comfyui"))
    assert ("--disable-metadata" in comfy) is disabled


def test_a_crashing_sync_daemon_is_restarted_with_backoff(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """A daemon that dies (corrupt journal, a bug) is started again, one line per restart,
    with growing delays; SIGTERM still stops it and flushes."""
    process = rig.start(
        MODE="pod", DOWNLOAD_MODELS="false", ENABLE_R2_SYNC="true", STUB_SYNC_CRASHES="2"
    )
    running.append(process)
    _wait_for(
        lambda: sum(c.startswith("sync-daemon") for c in rig.calls) == 3,
        "two restarts of the sync daemon",
        timeout=20,
    )
    log = rig.log
    assert "the R2 sync daemon exited with 1; restart 1 in 1 s" in log
    assert "the R2 sync daemon exited with 1; restart 2 in 2 s" in log
    assert "[r2_sync] Traceback: sqlite3.DatabaseError" in log
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    calls = rig.calls
    assert "sync-stopped" in calls
    assert calls.index("sync-stopped") < calls.index(
        next(c for c in calls if c.startswith("sync-once"))
    )


def test_a_sync_configuration_error_is_not_restarted(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """Exit 2 (R2_* unset) cannot be fixed by a restart: one line, no loop."""
    process = rig.start(
        MODE="pod",
        DOWNLOAD_MODELS="false",
        ENABLE_R2_SYNC="true",
        STUB_SYNC_CRASHES="5",
        STUB_SYNC_RC="2",
    )
    running.append(process)
    _wait_for(lambda: "not restarting it" in rig.log, "the supervisor to give up")
    time.sleep(1.5)
    assert sum(c.startswith("sync-daemon") for c in rig.calls) == 1


def test_pod_publishes_comfyui_only_behind_the_password_proxy(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """COMFYUI_PASSWORD set: nginx publishes 8188 -> 127.0.0.1:18188 with basic auth; the
    password reaches neither nginx's environment nor any file in clear."""
    password = "a-long-pod-password-123"
    running.append(rig.start(MODE="pod", DOWNLOAD_MODELS="false", COMFYUI_PASSWORD=password))
    _wait_for(lambda: any(c.startswith("nginx") for c in rig.calls), "nginx to start")
    nginx = next(c for c in rig.calls if c.startswith("nginx"))
    config = rig.root / "proxy" / "nginx.conf"
    assert f"-c {config}" in nginx
    assert "password=<unset>" in nginx
    text = config.read_text()
    assert "listen 0.0.0.0:8188;" in text
    assert "proxy_pass http://127.0.0.1:18188;" in text
    assert "auth_basic_user_file" in text
    assert (rig.root / "proxy" / "htpasswd").read_text().startswith("comfy:{SSHA}")
    assert all(password not in p.read_text() for p in (rig.root / "proxy").iterdir())
    assert password not in rig.log
    assert not any(password in c for c in rig.calls)


def test_the_password_reaches_no_child_but_the_proxy_config_writer(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """ComfyUI (and the custom nodes it runs), the model download, the sync daemon, sshd,
    JupyterLab and nvidia-smi never have COMFYUI_PASSWORD in their environment."""
    password = "a-long-pod-password-123"
    running.append(
        rig.start(
            MODE="pod",
            COMFYUI_PASSWORD=password,
            PROXY_PASSWORD="inherited",  # start.sh's own variable must not be exported either
            ENABLE_R2_SYNC="true",
            PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStub stub@test",
        )
    )
    for name in ("nginx", "comfyui", "download", "sync-daemon", "jupyter", "sshd"):
        _wait_for(lambda n=name: any(c.startswith(n) for c in rig.calls), f"{name} to start")
    assert [c for c in rig.calls if c.startswith("env-leak")] == []
    assert (rig.root / "proxy" / "htpasswd").read_text().startswith("comfy:{SSHA}")


def test_pod_without_a_password_keeps_comfyui_off_the_network(
    rig: Rig, running: list[subprocess.Popen[str]]
) -> None:
    """No COMFYUI_PASSWORD: no proxy, ComfyUI on loopback, a warning naming the fix."""
    running.append(rig.start(MODE="pod", DOWNLOAD_MODELS="false", ENABLE_JUPYTER="false"))
    _wait_for(lambda: any(c.startswith("comfyui") for c in rig.calls), "ComfyUI to start")
    _wait_for(lambda: "COMFYUI_PASSWORD unset" in rig.log, "the warning")
    assert not any(c.startswith("nginx") for c in rig.calls)
    assert "pulumi config set --secret videoPod.comfyPassword" in rig.log
    assert "--listen 127.0.0.1" in next(c for c in rig.calls if c.startswith("comfyui"))
