"""A client for one ComfyUI server, shaped by what the serverless handler needs.

Owns: telling "ComfyUI is still booting" from "ComfyUI is dead" (its PID file plus
``/system_stats``), uploading input images, queueing a prompt after the WebSocket is open,
following the execution events to the reliable done signal (``executing {node: null}``),
handing each event of the prompt to an optional observer (progress reporting), interrupting,
reading the history and streaming output files from ``/view``. Knows nothing about jobs,
templates or R2: :mod:`worker.handler` owns those. The protocol is described in
``../shared/reference/comfyui-api.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
import websocket

log = logging.getLogger(__name__)

#: How often a blocking wait wakes up to check that ComfyUI's process still lives.
LIVENESS_POLL_S = 0.5


EventObserver = Callable[[str, dict[str, Any]], None]
"""Called with ``(event type, data)`` for each WebSocket event of the followed prompt."""


class ComfyError(Exception):
    """Base class of everything this module raises."""


class ComfyUnavailableError(ComfyError):
    """ComfyUI cannot be reached; ``crashed`` when its process is known to be gone."""

    def __init__(self, message: str, *, crashed: bool) -> None:
        super().__init__(message)
        self.crashed = crashed


class PromptRejectedError(ComfyError):
    """``POST /prompt`` answered 400; ``body`` is ComfyUI's JSON answer."""

    def __init__(self, body: dict[str, Any]) -> None:
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        super().__init__(str(message or "prompt rejected"))
        self.body = body


class ExecutionTimeoutError(ComfyError):
    """The prompt did not finish before the deadline."""


@dataclass
class RunResult:
    """How one prompt ended, from the WebSocket events."""

    prompt_id: str
    queued_at: float
    """``time.monotonic()`` when ComfyUI accepted the prompt."""
    started_at: float | None = None
    """When ``execution_start`` arrived (None if it never did)."""
    finished_at: float | None = None
    """When the done signal arrived."""
    error: dict[str, Any] | None = None
    """The ``execution_error`` event's data, if any."""
    interrupted: bool = False
    events: list[str] = field(default_factory=list)
    """Event types seen for this prompt, in order (for diagnostics and tests)."""


def process_alive(pid_file: Path | None) -> bool | None:
    """True/False when ``pid_file`` names a live/dead process, None when unknown."""
    if pid_file is None:
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): read its state from /proc where there is one.
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in {"Z", "X"}


class ComfyClient:
    """HTTP and WebSocket access to ComfyUI at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        pid_file: Path | None = None,
        request_timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.pid_file = pid_file
        self.request_timeout = request_timeout
        self.session = session or requests.Session()

    # -- liveness -----------------------------------------------------------------------
    def alive(self) -> bool | None:
        """Whether ComfyUI's process lives (None when there is no PID file to tell)."""
        return process_alive(self.pid_file)

    def reachable(self) -> bool:
        """Whether ``/system_stats`` answers 200 right now."""
        try:
            answer = self.session.get(f"{self.base_url}/system_stats", timeout=2.0)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def wait_until_ready(
        self,
        timeout: float,
        *,
        poll: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> float:
        """Block until ComfyUI answers; return the seconds waited.

        Waits as long as its process lives (up to ``timeout``), and fails at once when the
        process is gone, instead of a fixed sleep that a slow cold start outlasts.
        """
        started = clock()
        deadline = started + timeout
        while True:
            if self.reachable():
                return clock() - started
            if self.alive() is False:
                raise ComfyUnavailableError(
                    "ComfyUI exited before it came up; see the worker log lines "
                    "prefixed [comfyui] for the cause",
                    crashed=True,
                )
            if clock() >= deadline:
                raise ComfyUnavailableError(
                    f"ComfyUI did not answer at {self.base_url} within {timeout:.0f} s "
                    "(COMFY_READY_TIMEOUT_S); check the worker log for a slow model load",
                    crashed=False,
                )
            time.sleep(poll)

    def _dead_or_unreachable(self, what: str) -> ComfyUnavailableError:
        alive = self.alive()
        crashed = alive is False or (alive is None and not self.reachable())
        if crashed:
            return ComfyUnavailableError(
                f"ComfyUI crashed while {what}; the worker will be replaced", crashed=True
            )
        return ComfyUnavailableError(f"lost the connection to ComfyUI while {what}", crashed=False)

    # -- HTTP ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.request_timeout)
        try:
            return self.session.request(method, f"{self.base_url}{path}", **kwargs)
        except requests.ConnectionError as exc:
            raise self._dead_or_unreachable(f"calling {path}") from exc

    def upload_image(self, name: str, data: bytes, *, subfolder: str = "") -> str:
        """Upload ``data`` into ComfyUI's input folder; return the name LoadImage wants."""
        answer = self._request(
            "POST",
            "/upload/image",
            files={"image": (name, data, "application/octet-stream")},
            data={"overwrite": "true", "type": "input", "subfolder": subfolder},
        )
        if answer.status_code != 200:
            raise ComfyError(f"ComfyUI refused the upload of {name!r}: HTTP {answer.status_code}")
        body = answer.json()
        folder = body.get("subfolder") or ""
        return f"{folder}/{body['name']}" if folder else str(body["name"])

    def object_info(self, class_type: str) -> dict[str, Any]:
        """``/object_info/<class>`` for one node class ({} if unknown)."""
        answer = self._request("GET", f"/object_info/{class_type}")
        if answer.status_code != 200:
            return {}
        info = answer.json().get(class_type)
        return info if isinstance(info, dict) else {}

    def choices(self, class_type: str, input_name: str) -> list[str] | None:
        """The options a combo input offers (a loader's installed files), None if not a combo."""
        info = self.object_info(class_type).get("input", {})
        for section in ("required", "optional"):
            spec = info.get(section, {}).get(input_name)
            if not isinstance(spec, list) or not spec:
                continue
            if isinstance(spec[0], list):  # classic nodes: [[choices...], {opts}]
                return [str(c) for c in spec[0]]
            if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
                return [str(c) for c in spec[1].get("options", [])]  # V3 nodes
        return None

    def queue_prompt(
        self,
        graph: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str,
        extra_data: Mapping[str, Any] | None = None,
    ) -> str:
        """``POST /prompt``; raise :class:`PromptRejectedError` with ComfyUI's body on 400."""
        body: dict[str, Any] = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        answer = self._request("POST", "/prompt", json=body)
        if answer.status_code == 400:
            try:
                body = answer.json()
            except ValueError:
                body = {"error": {"type": "invalid_prompt", "message": answer.text[:500]}}
            raise PromptRejectedError(body if isinstance(body, dict) else {"error": str(body)})
        if answer.status_code != 200:
            raise ComfyError(f"ComfyUI answered HTTP {answer.status_code} to POST /prompt")
        node_errors = answer.json().get("node_errors") or {}
        if node_errors:
            log.warning("ComfyUI queued the prompt with node errors: %s", json.dumps(node_errors))
        return prompt_id

    def interrupt(self, prompt_id: str) -> None:
        """Stop ``prompt_id`` if it runs and drop it from the queue if it waits."""
        with contextlib.suppress(ComfyError, requests.RequestException):
            self._request("POST", "/interrupt", json={"prompt_id": prompt_id}, timeout=5)
            self._request("POST", "/queue", json={"delete": [prompt_id]}, timeout=5)

    def history(self, prompt_id: str) -> dict[str, Any]:
        """The history entry of ``prompt_id`` ({} while it has none)."""
        answer = self._request("GET", f"/history/{prompt_id}")
        if answer.status_code != 200:
            raise ComfyError(f"ComfyUI answered HTTP {answer.status_code} to GET /history")
        entry = answer.json().get(prompt_id)
        return entry if isinstance(entry, dict) else {}

    def download(self, filename: str, subfolder: str, folder_type: str, sink: IO[bytes]) -> int:
        """Stream one output file from ``/view`` into ``sink``; return its size."""
        answer = self._request(
            "GET",
            "/view",
            params={"filename": filename, "subfolder": subfolder, "type": folder_type},
            stream=True,
        )
        with answer:
            if answer.status_code != 200:
                raise ComfyError(
                    f"ComfyUI answered HTTP {answer.status_code} for output "
                    f"{subfolder + '/' if subfolder else ''}{filename}"
                )
            size = 0
            for block in answer.iter_content(chunk_size=1024 * 1024):
                sink.write(block)
                size += len(block)
        return size

    # -- WebSocket ----------------------------------------------------------------------
    def connect(self, client_id: str | None = None) -> websocket.WebSocket:
        """Open ``/ws`` for ``client_id`` (events of a prompt go only to its client)."""
        client_id = client_id or uuid.uuid4().hex
        ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        try:
            return websocket.create_connection(
                f"{ws_url}/ws?clientId={client_id}", timeout=self.request_timeout
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise self._dead_or_unreachable("opening the WebSocket") from exc

    def follow(
        self,
        ws: websocket.WebSocket,
        prompt_id: str,
        *,
        deadline: float,
        queued_at: float | None = None,
        on_event: EventObserver | None = None,
    ) -> RunResult:
        """Read events for ``prompt_id`` until ``executing {node: null}``.

        Raises :class:`ExecutionTimeoutError` at ``deadline`` (``time.monotonic()``) and
        :class:`ComfyUnavailableError` when the socket drops and ComfyUI is gone; when it
        drops but ComfyUI still answers, falls back to polling the history. ``on_event``
        sees every event of this prompt (``(type, data)``, e.g. ``progress {value, max,
        node}``) as it arrives; an observer that raises is logged and ignored.
        """
        result = RunResult(prompt_id=prompt_id, queued_at=queued_at or time.monotonic())
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExecutionTimeoutError(prompt_id)
            ws.settimeout(min(remaining, LIVENESS_POLL_S))
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                if self.alive() is False:
                    raise self._dead_or_unreachable("running the prompt") from None
                continue
            except (OSError, websocket.WebSocketException) as exc:
                failure = self._dead_or_unreachable("running the prompt")
                if failure.crashed:
                    raise failure from exc
                log.warning("WebSocket dropped; polling the history of %s instead", prompt_id)
                return self._poll_history(result, deadline)
            if not isinstance(frame, str):
                continue  # binary preview frames
            if self._apply_event(result, frame, on_event):
                return result

    @staticmethod
    def _apply_event(result: RunResult, frame: str, on_event: EventObserver | None = None) -> bool:
        try:
            message = json.loads(frame)
        except ValueError:
            return False
        kind = message.get("type")
        data = message.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id") != result.prompt_id:
            return False
        result.events.append(str(kind))
        if on_event is not None:
            try:
                on_event(str(kind), data)
            except Exception:  # an observer never breaks the run it watches
                log.exception("progress observer failed on a %s event", kind)
        now = time.monotonic()
        if kind == "execution_start":
            result.started_at = now
        elif kind == "execution_error":
            result.error = data
        elif kind == "execution_interrupted":
            result.interrupted = True
        elif kind == "executing" and data.get("node") is None:
            result.finished_at = now
            if result.started_at is None:
                result.started_at = now
            return True
        return False

    def _poll_history(self, result: RunResult, deadline: float) -> RunResult:
        while time.monotonic() < deadline:
            entry = self.history(result.prompt_id)
            status = entry.get("status") or {}
            if entry and (status.get("completed") or status.get("status_str") == "error"):
                result.finished_at = time.monotonic()
                result.started_at = result.started_at or result.queued_at
                for kind, data in status.get("messages", []):
                    result.events.append(kind)
                    if kind == "execution_error":
                        result.error = data
                    elif kind == "execution_interrupted":
                        result.interrupted = True
                return result
            time.sleep(0.2)
        raise ExecutionTimeoutError(result.prompt_id)
