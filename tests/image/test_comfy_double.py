"""The ComfyUI double follows the reference protocol, and the client reads it correctly."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from worker.comfy import ComfyClient, process_alive

from tests.fakes.comfyui import ComfyUIDouble, Fault, png_size, safetensors_problem, tiny_png
from tests.image.lora_support import safetensors_bytes

GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 0},
    },
    "2": {"class_type": "KSampler", "inputs": {}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
RUNNABLE = {k: v for k, v in GRAPH.items() if k != "2"}


@pytest.fixture(scope="module")
def comfy() -> Iterator[ComfyUIDouble]:
    """One double for the protocol tests (each test uses its own client id)."""
    with ComfyUIDouble(models={"checkpoints": ["a.safetensors", "b.safetensors"]}) as double:
        yield double


def _events(ws: websocket.WebSocket, prompt_id: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    ws.settimeout(10)
    while True:
        frame = ws.recv()
        if isinstance(frame, bytes):
            seen.append({"type": "<binary>", "data": {"prompt_id": prompt_id}})
            continue
        message = json.loads(frame)
        if message.get("data", {}).get("prompt_id") != prompt_id:
            continue
        seen.append(message)
        if message["type"] == "executing" and message["data"]["node"] is None:
            return seen


def _queue(comfy: ComfyUIDouble, graph: dict[str, Any], client_id: str) -> requests.Response:
    return requests.post(
        f"{comfy.url}/prompt", json={"prompt": graph, "client_id": client_id}, timeout=10
    )


def test_first_frame_is_status_with_the_session_id(comfy: ComfyUIDouble) -> None:
    """The socket opens with a status message carrying the client id as sid."""
    ws = websocket.create_connection(f"{comfy.url.replace('http', 'ws')}/ws?clientId=abc")
    try:
        first = json.loads(ws.recv())
    finally:
        ws.close()
    assert first["type"] == "status"
    assert first["data"]["sid"] == "abc"
    assert "queue_remaining" in first["data"]["status"]["exec_info"]


def test_events_arrive_in_the_reference_order_and_history_precedes_done(
    comfy: ComfyUIDouble,
) -> None:
    """start, cached, per-node executing/executed, success, then executing null after history."""
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"{comfy.url.replace('http', 'ws')}/ws?clientId={client_id}")
    try:
        answer = _queue(comfy, RUNNABLE, client_id)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"prompt_id", "number", "node_errors"}
        kinds = [e["type"] for e in _events(ws, body["prompt_id"])]
        history = requests.get(f"{comfy.url}/history/{body['prompt_id']}", timeout=10).json()
    finally:
        ws.close()
    assert kinds == [
        "execution_start",
        "execution_cached",
        "executing",
        "executing",
        "executed",
        "execution_success",
        "executing",
    ]
    entry = history[body["prompt_id"]]
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    images = entry["outputs"]["3"]["images"]
    assert [i["filename"] for i in images][:1] == ["x_00001_.png"]
    assert len(images) == 2  # batch_size 2


def test_events_go_only_to_the_client_that_queued(comfy: ComfyUIDouble) -> None:
    """Another client's socket sees status broadcasts but no execution events."""
    base = comfy.url.replace("http", "ws")
    owner_id = uuid.uuid4().hex
    owner = websocket.create_connection(f"{base}/ws?clientId={owner_id}")
    other = websocket.create_connection(f"{base}/ws?clientId=other-{owner_id}")
    try:
        prompt_id = _queue(comfy, RUNNABLE, owner_id).json()["prompt_id"]
        owner_kinds = [e["type"] for e in _events(owner, prompt_id)]
        other.settimeout(0.2)
        seen: list[str] = []
        while True:
            try:
                seen.append(json.loads(other.recv())["type"])
            except websocket.WebSocketTimeoutException:
                break
    finally:
        owner.close()
        other.close()
    assert "execution_success" in owner_kinds
    assert "status" in seen
    assert set(seen) == {"status"}


def test_samplers_send_progress_and_a_binary_preview(comfy: ComfyUIDouble) -> None:
    """A KSampler reports progress per step and one binary preview frame."""
    with ComfyUIDouble(models={"checkpoints": ["m.safetensors"]}) as double:
        graph = json.loads((_workflows() / "flux_txt2img.json").read_text())
        graph["1"]["inputs"]["ckpt_name"] = "m.safetensors"
        graph["6"]["inputs"]["steps"] = 3
        client_id = uuid.uuid4().hex
        url = f"{double.url.replace('http', 'ws')}/ws?clientId={client_id}"
        ws = websocket.create_connection(url)
        try:
            prompt_id = _queue(double, graph, client_id).json()["prompt_id"]
            events = _events(ws, prompt_id)
        finally:
            ws.close()
    progress = [e["data"]["value"] for e in events if e["type"] == "progress"]
    assert progress == [1, 2, 3]
    assert any(e["type"] == "<binary>" for e in events)


def _workflows() -> Path:
    return Path(__file__).resolve().parents[2] / "image" / "workflows"


def test_unknown_node_class_is_missing_node_type(comfy: ComfyUIDouble) -> None:
    """An unknown class_type answers 400 missing_node_type naming the class and node."""
    graph = {**RUNNABLE, "9": {"class_type": "NotInstalled", "inputs": {}}}
    answer = _queue(comfy, graph, "c")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "missing_node_type"
    assert error["extra_info"]["class_type"] == "NotInstalled"
    assert error["details"] == "Node ID '#9'"


def test_graph_without_outputs_is_prompt_no_outputs(comfy: ComfyUIDouble) -> None:
    """No output node: 400 prompt_no_outputs."""
    answer = _queue(comfy, {"1": GRAPH["1"]}, "c")
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "prompt_no_outputs"


def test_input_errors_are_reported_per_node(comfy: ComfyUIDouble) -> None:
    """Missing inputs, models not in the folder list and bad ranges land in node_errors."""
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "c.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["1", 2]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "a"}},
    }
    answer = _queue(comfy, graph, "c")
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    errors = {
        nid: [e["type"] for e in entry["errors"]] for nid, entry in body["node_errors"].items()
    }
    assert errors["1"] == ["value_not_in_list"]
    assert (
        "'c.safetensors' not in ['a.safetensors', 'b.safetensors']"
        in (body["node_errors"]["1"]["errors"][0]["details"])
    )
    assert errors["2"] == ["value_smaller_than_min", "required_input_missing"]
    assert errors["3"] == ["required_input_missing"]
    assert errors["4"] == ["return_type_mismatch"]
    assert body["node_errors"]["1"]["dependent_outputs"] == ["5"]


def test_older_comfyui_wording_for_missing_nodes() -> None:
    """missing_node_error="invalid_prompt" reproduces ComfyUI 0.3.6x's answer."""
    with ComfyUIDouble(missing_node_error="invalid_prompt") as double:
        answer = _queue(double, {"1": {"class_type": "Nope", "inputs": {}}}, "c")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_prompt"
    assert error["message"] == "Cannot execute because node Nope does not exist."


def test_view_serves_outputs_and_refuses_traversal(comfy: ComfyUIDouble) -> None:
    """/view returns file bytes, 400 for .. or a leading slash, 404 when missing."""
    (comfy.output_dir / "sub").mkdir(exist_ok=True)
    (comfy.output_dir / "sub" / "f.png").write_bytes(b"abc")
    view = f"{comfy.url}/view"
    ok = requests.get(view, params={"filename": "f.png", "subfolder": "sub"}, timeout=10)
    assert (ok.status_code, ok.content) == (200, b"abc")
    assert requests.get(view, params={"filename": "../x"}, timeout=10).status_code == 400
    assert requests.get(view, params={"filename": "/etc/passwd"}, timeout=10).status_code == 400
    assert requests.get(view, params={"filename": "none.png"}, timeout=10).status_code == 404
    api = requests.get(
        f"{comfy.url}/api/view", params={"filename": "f.png", "subfolder": "sub"}, timeout=10
    )
    assert api.content == b"abc"


def test_upload_renames_unless_overwrite(comfy: ComfyUIDouble) -> None:
    """/upload/image keeps both files when overwrite is not true, like ComfyUI."""
    files = {"image": ("u.png", tiny_png(), "image/png")}
    first = requests.post(f"{comfy.url}/upload/image", files=files, timeout=10).json()
    second = requests.post(f"{comfy.url}/upload/image", files=files, timeout=10).json()
    third = requests.post(
        f"{comfy.url}/upload/image", files=files, data={"overwrite": "true"}, timeout=10
    ).json()
    assert first == {"name": "u.png", "subfolder": "", "type": "input"}
    assert second["name"] == "u (1).png"
    assert third["name"] == "u.png"
    assert (
        requests.post(f"{comfy.url}/upload/image", data={"x": "1"}, timeout=10).status_code == 400
    )


def test_object_info_lists_installed_models_in_both_combo_styles(comfy: ComfyUIDouble) -> None:
    """Classic loaders give [[files]], V3 loaders ["COMBO", {"options": files}]."""
    info = requests.get(f"{comfy.url}/object_info/CheckpointLoaderSimple", timeout=10).json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
        "a.safetensors",
        "b.safetensors",
    ]
    v3 = requests.get(f"{comfy.url}/object_info/LoadBackgroundRemovalModel", timeout=10).json()
    spec = v3["LoadBackgroundRemovalModel"]["input"]["required"]["bg_removal_name"]
    assert spec == ["COMBO", {"options": []}]
    client = ComfyClient(comfy.url)
    assert client.choices("CheckpointLoaderSimple", "ckpt_name") == [
        "a.safetensors",
        "b.safetensors",
    ]
    assert client.choices("LoadBackgroundRemovalModel", "bg_removal_name") == []
    assert client.choices("KSampler", "seed") is None
    assert requests.get(f"{comfy.url}/models/checkpoints", timeout=10).json() == [
        "a.safetensors",
        "b.safetensors",
    ]


def test_system_stats_reports_devices(comfy: ComfyUIDouble) -> None:
    """/system_stats has the system and devices sections a readiness probe reads."""
    stats = requests.get(f"{comfy.url}/system_stats", timeout=10).json()
    assert stats["devices"][0]["type"] == "cuda"
    assert "comfyui_version" in stats["system"]


def test_hang_ends_only_with_an_interrupt() -> None:
    """Fault.HANG runs until /interrupt; then execution_interrupted and a history entry."""
    with ComfyUIDouble(fault=Fault.HANG) as double:
        client = ComfyClient(double.url)
        ws = client.connect("h")
        try:
            prompt_id = client.queue_prompt(RUNNABLE, client_id="h", prompt_id=str(uuid.uuid4()))
            time.sleep(0.3)
            assert double.history() == {}
            client.interrupt(prompt_id)
            result = client.follow(ws, prompt_id, deadline=time.monotonic() + 10)
        finally:
            ws.close()
        entry = client.history(prompt_id)
    assert result.interrupted
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in result.events


def test_crash_kills_the_process_and_closes_the_port() -> None:
    """Fault.CRASH: the stand-in process dies and connections are refused afterwards."""
    with ComfyUIDouble() as double:
        pid_file = double.pid_file
        assert process_alive(pid_file) is True
        double.crash()
        assert process_alive(pid_file) is False
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{double.url}/system_stats", timeout=2)


def test_late_start_refuses_connections_until_it_serves() -> None:
    """start_delay: the port refuses at first, then the server answers."""
    with ComfyUIDouble(start_delay=0.5) as double:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{double.url}/system_stats", timeout=2)
        double.wait_until_serving()
        assert requests.get(f"{double.url}/system_stats", timeout=2).status_code == 200


def test_a_port_that_cannot_be_bound_leaves_no_process_behind() -> None:
    """start() on a taken port fails at once: no stand-in process outlives the caller or
    keeps its output pipe open (an orphaned ``sleep 86400`` hung whoever read that pipe)."""
    root = Path(__file__).resolve().parents[2]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        script = (
            "from tests.fakes.comfyui import ComfyUIDouble\n"
            "double = ComfyUIDouble()\n"
            f"double.bind_port = {taken.getsockname()[1]}\n"
            "double.start()\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=root,
            env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'image'}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: whatever it leaves behind is killed below
        )
        try:
            _, stderr = child.communicate(timeout=30)  # EOF only once no process holds the pipe
        except subprocess.TimeoutExpired:
            pytest.fail("a process the double started still holds the caller's output pipe")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode != 0
    assert "Address already in use" in stderr


def test_process_alive_tells_live_dead_zombie_and_unknown(tmp_path: Path) -> None:
    """The PID check treats a zombie (not yet reaped) as dead and a missing file as unknown."""
    pid_file = tmp_path / "pid"
    assert process_alive(None) is None
    assert process_alive(pid_file) is None
    pid_file.write_text(str(os.getpid()))
    assert process_alive(pid_file) is True
    child = subprocess.Popen(["sleep", "60"])
    pid_file.write_text(str(child.pid))
    child.kill()
    deadline = time.monotonic() + 5
    while process_alive(pid_file) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process_alive(pid_file) is False  # zombie: killed, not yet waited for
    child.wait()
    assert process_alive(pid_file) is False


def _run(comfy: ComfyUIDouble, graph: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"{comfy.url.replace('http', 'ws')}/ws?clientId={client_id}")
    try:
        answer = _queue(comfy, graph, client_id)
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        return prompt_id, _events(ws, prompt_id)
    finally:
        ws.close()


def test_an_identical_prompt_is_answered_from_the_cache_like_comfyui() -> None:
    """Same graph again: every node cached, nothing written, history names the first files."""
    with ComfyUIDouble() as double:
        first_id, _ = _run(double, RUNNABLE)
        second_id, events = _run(double, RUNNABLE)
        history = double.history()
        files = sorted(p.name for p in double.output_dir.iterdir())
    cached = next(e for e in events if e["type"] == "execution_cached")
    assert sorted(cached["data"]["nodes"]) == ["1", "3"]
    assert not any(e["type"] == "executing" and e["data"]["node"] for e in events)
    executed = [e for e in events if e["type"] == "executed" and e["data"]["node"] == "3"]
    assert executed[0]["data"]["output"] == history[first_id]["outputs"]["3"]
    assert history[second_id]["outputs"] == history[first_id]["outputs"]
    assert files == ["x_00001_.png", "x_00002_.png"]  # batch of 2, written once


def test_a_changed_save_prefix_reruns_only_the_save_node() -> None:
    """Upstream nodes stay cached; the save node with a new prefix runs and writes files."""
    with ComfyUIDouble() as double:
        _run(double, RUNNABLE)
        graph = json.loads(json.dumps(RUNNABLE))
        graph["3"]["inputs"]["filename_prefix"] = "jobs/run2/x"
        _, events = _run(double, graph)
        written = sorted(p.name for p in (double.output_dir / "jobs" / "run2").iterdir())
    cached = next(e for e in events if e["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1"]
    assert written == ["x_00001_.png", "x_00002_.png"]


def test_a_linked_save_prefix_names_the_files_and_undeclared_inputs_only_change_the_key() -> None:
    """filename_prefix linked from PrimitiveString saves under that string; the same prompt
    again is all cached, but an input SaveImage does not declare (ignored by validation and
    execution) changes its cache key, so it alone runs again."""
    graph = json.loads(json.dumps(RUNNABLE))
    graph["4"] = {"class_type": "PrimitiveString", "inputs": {"value": "linked/y"}}
    graph["3"]["inputs"]["filename_prefix"] = ["4", 0]
    with ComfyUIDouble() as double:
        _run(double, graph)
        _, again = _run(double, graph)
        graph["3"]["inputs"]["not_an_input_of_saveimage"] = "run-2"
        _, marked = _run(double, graph)
        written = sorted(p.name for p in (double.output_dir / "linked").iterdir())
    assert sorted(next(e for e in again if e["type"] == "execution_cached")["data"]["nodes"]) == [
        "1",
        "3",
        "4",
    ]
    assert "execution_success" in [e["type"] for e in marked]
    cached = next(e for e in marked if e["type"] == "execution_cached")["data"]["nodes"]
    assert sorted(cached) == ["1", "4"]
    assert written == [f"y_0000{n}_.png" for n in range(1, 5)]  # two runs of a batch of 2


def test_a_changed_input_file_invalidates_its_loader(tmp_path: Path) -> None:
    """LoadImage's IS_CHANGED is the file's hash: new bytes under the same name run again."""
    with ComfyUIDouble() as double:
        (double.input_dir / "in.png").write_bytes(tiny_png((1, 2, 3)))
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "l"},
            },
        }
        _run(double, graph)
        (double.input_dir / "in.png").write_bytes(tiny_png((9, 9, 9)))
        _, events = _run(double, graph)
    assert next(e for e in events if e["type"] == "execution_cached")["data"]["nodes"] == []


@pytest.mark.parametrize("prefix", ["../escape", "<abs>/abs", "a/../../up"])
def test_save_prefix_outside_the_output_folder_fails_like_comfyui(
    prefix: str, tmp_path: Path
) -> None:
    """ComfyUI raises "Saving image outside the output folder is not allowed."; so does this."""
    prefix = prefix.replace("<abs>", str(tmp_path))
    with ComfyUIDouble() as double:
        graph = json.loads(json.dumps(RUNNABLE))
        graph["3"]["inputs"]["filename_prefix"] = prefix
        _, events = _run(double, graph)
        root = double.output_dir.parent
        escaped = [*root.glob("escape*"), *root.glob("up*"), *tmp_path.glob("abs*")]
    error = next(e for e in events if e["type"] == "execution_error")["data"]
    assert error["node_type"] == "SaveImage"
    assert "Saving image outside the output folder is not allowed" in error["exception_message"]
    assert escaped == []


def test_load_image_accepts_what_comfyui_accepts(comfy: ComfyUIDouble) -> None:
    """Annotated, relative-up and absolute names pass validation when the file exists, as in
    ComfyUI (which is why the handler must refuse them itself)."""
    (comfy.output_dir / "made.png").write_bytes(tiny_png())
    for name in ("made.png [output]", "../output/made.png", str(comfy.output_dir / "made.png")):
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "z"},
            },
        }
        assert _queue(comfy, graph, uuid.uuid4().hex).status_code == 200, name
    graph["1"]["inputs"]["image"] = "missing.png [output]"
    assert _queue(comfy, graph, uuid.uuid4().hex).status_code == 400


def _saved(events: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    return next(
        e["data"]["output"]["images"]
        for e in events
        if e["type"] == "executed" and e["data"]["node"] == node
    )


def test_models_on_disk_are_listed_and_new_files_seen_at_the_next_prompt(
    tmp_path: Path,
) -> None:
    """With models_dir, a loader's list is the disk (subfolders too, model extensions only),
    re-read per request like folder_paths' mtime-checked cache; a loader that runs reads the
    file, so a broken safetensors fails the node as load_torch_file does."""
    loras = tmp_path / "models" / "loras"
    (loras / "bucket").mkdir(parents=True)
    (loras / "bucket" / "style.safetensors").write_bytes(safetensors_bytes(1))
    (loras / "notes.txt").write_text("not a model")
    with ComfyUIDouble(
        models={"loras": ["given.safetensors"]}, models_dir=tmp_path / "models"
    ) as d:
        listed = requests.get(f"{d.url}/models/loras", timeout=10).json()
        assert listed == ["bucket/style.safetensors", "given.safetensors"]
        (loras / "bucket" / "late.safetensors").write_bytes(b"\x10" + b"\x00" * 7 + b"{}")
        info = requests.get(f"{d.url}/object_info/LoraLoaderModelOnly", timeout=10).json()
        assert (
            "bucket/late.safetensors"
            in info["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0]
        )
        graph = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            },
            "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "c.safetensors"}},
            "3": {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {
                    "model": ["2", 0],
                    "lora_name": "bucket/style.safetensors",
                    "strength_model": 1.0,
                },
            },
            "4": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "l"},
            },
        }
        d.models["checkpoints"] = ["c.safetensors"]
        graph["6"] = {
            "class_type": "KSampler",
            "inputs": {
                "model": ["3", 0],
                "seed": 1,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["7", 0],
                "negative": ["7", 0],
                "latent_image": ["8", 0],
                "denoise": 1.0,
            },
        }
        graph["7"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 1]}}
        graph["8"] = {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        }
        graph["9"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["2", 2]}}
        graph["4"]["inputs"]["images"] = ["9", 0]
        _, events = _run(d, graph)
        assert "execution_success" in [e["type"] for e in events]
        digest = hashlib.sha256(safetensors_bytes(1)).hexdigest()
        assert ("loras", "bucket/style.safetensors", digest) in d.loaded_files
        graph["3"]["inputs"]["lora_name"] = "bucket/late.safetensors"
        _, events = _run(d, graph)
        failure = next(e for e in events if e["type"] == "execution_error")
        assert failure["data"]["node_id"] == "3"
        assert "HeaderTooLarge" in failure["data"]["exception_message"]


def test_the_doubles_loader_refuses_crafted_headers_as_safe_open_does(tmp_path: Path) -> None:
    """Offsets that are not unsigned integers and JSON nested past Python's limit are
    InvalidHeaderDeserialization (safetensors parses offsets as usize), never a crash."""
    for name, header in {
        "strings": b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": ["0", 8]}}',
        "floats": b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0.5, 8]}}',
        "bools": b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [false, 8]}}',
        "nested": b"[" * 100_000 + b"]" * 100_000,
    }.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
        assert safetensors_problem(path) == "InvalidHeaderDeserialization", name


#: Nodes "2" (the x4plus loader) and "3" (the upscale of node "1"'s image) of a test graph.
X4_UPSCALE_OF_NODE_1 = {
    "2": {
        "class_type": "UpscaleModelLoader",
        "inputs": {"model_name": "RealESRGAN_x4plus.safetensors"},
    },
    "3": {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]},
    },
}


def test_upscale_reports_progress_per_tile_and_latent_from_batch_picks_images(
    tmp_path: Path,
) -> None:
    """ImageUpscaleWithModel sends `progress` like its tiled ProgressBar; LatentFromBatch
    leaves `length` images of the batch (clamped as nodes.py does)."""
    models = {"upscale_models": ["RealESRGAN_x4plus.safetensors"], "checkpoints": ["c.sft"]}
    with ComfyUIDouble(models=models) as double:
        graph = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 0},
            },
            **X4_UPSCALE_OF_NODE_1,
            "4": {
                "class_type": "SaveImage",
                "inputs": {"images": ["3", 0], "filename_prefix": "u"},
            },
        }
        _, events = _run(double, graph)
        ticks = [e["data"] for e in events if e["type"] == "progress"]
        assert ticks
        assert {t["node"] for t in ticks} == {"3"}
        assert [t["value"] for t in ticks] == list(range(1, ticks[0]["max"] + 1))
        assert len(_saved(events, "4")) == 2
        graph = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "c.sft"}},
            "5": {
                "class_type": "EmptySD3LatentImage",
                "inputs": {"width": 64, "height": 64, "batch_size": 4},
            },
            "6": {
                "class_type": "LatentFromBatch",
                "inputs": {"samples": ["5", 0], "batch_index": 3, "length": 2},
            },
            "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
            "8": {
                "class_type": "SaveImage",
                "inputs": {"images": ["7", 0], "filename_prefix": "b"},
            },
        }
        _, events = _run(double, graph)
        assert len(_saved(events, "8")) == 1  # index 3 of 4 leaves one image
        answer = _queue(
            double,
            {**graph, "6": {**graph["6"], "inputs": {**graph["6"]["inputs"], "length": 65}}},
            "x",
        )
        assert answer.status_code == 400  # LatentFromBatch.length max is 64


def test_saved_pngs_have_the_size_the_upscale_chain_makes_even_from_the_cache() -> None:
    """A loaded 6x4 PNG through the x4 model and ImageScaleBy 0.5 is saved 12x8 (nodes.py's
    round(side * scale_by)); a rerun with a new save prefix takes the size from the cache;
    an unknown size saves 8x8; scale_by above 8.0 is refused as ComfyUI refuses it."""
    models = {"upscale_models": ["RealESRGAN_x4plus.safetensors"]}
    with ComfyUIDouble(models=models) as double:
        (double.input_dir / "in.png").write_bytes(tiny_png(size=6, height=4))
        graph = {
            "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
            **X4_UPSCALE_OF_NODE_1,
            "4": {
                "class_type": "ImageScaleBy",
                "inputs": {"image": ["3", 0], "upscale_method": "lanczos", "scale_by": 0.5},
            },
            "5": {
                "class_type": "SaveImage",
                "inputs": {"images": ["4", 0], "filename_prefix": "s"},
            },
        }

        def saved_size(events: list[dict[str, Any]], node: str) -> tuple[int, int] | None:
            (image,) = _saved(events, node)
            return png_size(
                (double.output_dir / image["subfolder"] / image["filename"]).read_bytes()
            )

        _, events = _run(double, graph)
        assert saved_size(events, "5") == (12, 8)
        again = {
            **graph,
            "5": {**graph["5"], "inputs": {"images": ["4", 0], "filename_prefix": "t"}},
        }
        _, events = _run(double, again)
        cached = next(e["data"]["nodes"] for e in events if e["type"] == "execution_cached")
        assert {"1", "2", "3", "4"} <= set(cached)
        assert saved_size(events, "5") == (12, 8)
        inverted = {**graph, "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}}}
        _, events = _run(double, inverted)
        assert saved_size(events, "5") == (8, 8)  # the double does not follow ImageInvert
        too_far = {
            **graph,
            "4": {**graph["4"], "inputs": {**graph["4"]["inputs"], "scale_by": 8.5}},
        }
        answer = _queue(double, too_far, "x")
        assert answer.status_code == 400
        assert "value_bigger_than_max" in answer.text
