"""The pod's authenticating proxy, for real: nginx on loopback with the generated config in
front of the ComfyUI double. Skips (with the reason) where nginx is not installed; CI
installs it (``.ci/run``)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket
from worker import proxy

from tests.fakes.comfyui import ComfyUIDouble

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
PASSWORD = "correct-horse-battery-staple"
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run does)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def published() -> Iterator[tuple[str, ComfyUIDouble]]:
    """nginx on 127.0.0.1:<port> with the rendered config, proxying to the double."""
    assert NGINX is not None
    with ComfyUIDouble() as comfy:
        # Not under pytest's 0700 tmp: nginx's unprivileged workers read the password file.
        out = Path(tempfile.mkdtemp(prefix="comfy-proxy-"))
        port = free_port()
        config = proxy.write(
            out,
            template=proxy.DEFAULT_TEMPLATE,
            listen=f"127.0.0.1:{port}",
            upstream=comfy.url.removeprefix("http://"),
            user="comfy",
            password=PASSWORD,
        )
        server = subprocess.Popen(
            [NGINX, "-e", "stderr", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"nginx did not start: {server.stderr}") from None
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", comfy
        finally:
            server.terminate()
            server.wait(timeout=10)
            shutil.rmtree(out, ignore_errors=True)


@needs_nginx
def test_without_the_password_the_proxy_answers_401(
    published: tuple[str, ComfyUIDouble],
) -> None:
    """No credentials, a wrong password or a wrong user: 401, and ComfyUI sees nothing."""
    url, comfy = published
    graph = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    for headers in (
        {},
        {"Authorization": basic("comfy", "wrong")},
        {"Authorization": basic("x", PASSWORD)},
    ):
        assert requests.get(f"{url}/system_stats", headers=headers, timeout=5).status_code == 401
        answer = requests.post(f"{url}/prompt", json={"prompt": graph}, headers=headers, timeout=5)
        assert answer.status_code == 401
    assert comfy.prompts == []


@needs_nginx
def test_with_the_password_requests_pass_through(
    published: tuple[str, ComfyUIDouble],
) -> None:
    """The right credentials reach ComfyUI: JSON routes and uploads work as without a proxy."""
    url, comfy = published
    auth = {"Authorization": basic("comfy", PASSWORD)}
    stats = requests.get(f"{url}/system_stats", headers=auth, timeout=5)
    assert stats.status_code == 200
    assert "devices" in stats.json()
    upload = requests.post(
        f"{url}/upload/image",
        headers=auth,
        files={"image": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")},
        data={"overwrite": "true", "type": "input"},
        timeout=5,
    )
    assert upload.status_code == 200
    assert (comfy.input_dir / "a.png").exists()


@needs_nginx
def test_websocket_upgrade_goes_through_only_with_the_password(
    published: tuple[str, ComfyUIDouble],
) -> None:
    """/ws upgrades through nginx (101) and ComfyUI's first frame arrives; without auth, 401."""
    url, _ = published
    ws_url = url.replace("http://", "ws://") + "/ws?clientId=through-proxy"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url, timeout=5)
    assert refused.value.status_code == 401
    ws = websocket.create_connection(
        ws_url, timeout=5, header=[f"Authorization: {basic('comfy', PASSWORD)}"]
    )
    try:
        first = json.loads(ws.recv())
    finally:
        ws.close()
    assert first["type"] == "status"
    assert first["data"]["sid"] == "through-proxy"


def test_password_file_holds_a_salted_hash_and_never_the_password(tmp_path: Path) -> None:
    """htpasswd has {SSHA}; the password appears in no written file and not in argv."""
    config = proxy.write(
        tmp_path / "p",
        template=proxy.DEFAULT_TEMPLATE,
        listen="0.0.0.0:8188",
        upstream="127.0.0.1:18188",
        user="comfy",
        password=PASSWORD,
    )
    line = (tmp_path / "p" / "htpasswd").read_text()
    assert line.startswith("comfy:{SSHA}")
    for path in (tmp_path / "p").iterdir():
        assert PASSWORD not in path.read_text()
    assert "listen 0.0.0.0:8188;" in config.read_text()
    assert "proxy_pass http://127.0.0.1:18188;" in config.read_text()
    assert (
        proxy.main(
            ["--out-dir", str(tmp_path / "q"), "--listen", "a:1", "--upstream", "b:2"], env={}
        )
        == 2
    )
    assert (
        proxy.main(
            ["--out-dir", str(tmp_path / "q"), "--listen", "a:1", "--upstream", "b:2"],
            env={"COMFYUI_PASSWORD": "short"},
        )
        == 2
    )
